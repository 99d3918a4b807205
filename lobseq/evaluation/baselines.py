"""Baselines a sequence model has to beat, as strong as the model: sklearn estimators.

Each baseline is an sklearn estimator (``BaseEstimator``: ``get_params``/``clone``
work): ``__init__`` stores parameters, ``fit(X, y)`` learns from training rows only,
fitted state ends in ``_``, and ``predict_proba(X)`` always returns ``n_classes``
columns (0 down, [1 stationary,] last up), even when a class is missing from training.

Inputs ``X``: windows ``(n, T, F)`` are summarized per feature into the last row, the
window mean and last-minus-first (`window_summary`, ``(n, 3F)``); 2-D ``X`` is taken
as already summarized. On a dataset (`fit_baselines`): the same class weighting as the
model, and a small search on the validation windows (logistic: regularization ``C``;
gradient-boosted trees: depth and learning rate), each candidate fitted on the training
windows only and scored by validation macro-F1; the prior (sklearn's ``DummyClassifier``)
and persistence need no search.
"""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from threadpoolctl import threadpool_limits

from lobseq.errors import LobseqError

GRIDS = {"logistic": {"C": [0.01, 0.1, 1.0, 10.0]},
         "gbt": {"max_depth": [2, 4], "learning_rate": [0.05, 0.2]}}


def _n_classes(n_classes: int) -> int:
    if n_classes not in (2, 3):
        raise LobseqError(f"n_classes must be 2 or 3, got {n_classes!r}", field="n_classes")
    return n_classes


def window_summary(X) -> np.ndarray:
    """(n, 3F) float64 from windows (n, T, F): [last row, window mean, last - first];
    2-D X (already summarized, or one row per sample) passes through."""
    X = np.asarray(X)
    if X.ndim == 1:
        X = X[:, None]
    if X.ndim == 3:
        X = np.concatenate([X[:, -1, :], X.mean(axis=1), X[:, -1, :] - X[:, 0, :]], axis=1)
    if X.ndim != 2:
        raise LobseqError(f"X must be (n, F) or (n, T, F), got shape {X.shape}", field="X")
    X = X.astype(np.float64)
    return np.where(np.isfinite(X), X, np.nan)  # infinities count as missing


def lagged_labels(labels, reach: int, segment=None) -> np.ndarray:
    """Label of row t - reach for each row t (-1 where it is not known at t).

    The label at row s reads prices up to row s + reach (`lobseq.data.labels.label_reach`:
    horizon + entry lag for labels of the traded return), so the newest label whose whole
    future is known at decision time t is the one at s = t - reach; any later s would read
    prices after t. Rows in the first `reach` rows of a segment, and rows whose lagged label
    is itself -1, get -1 (unknown): nothing leaks across segments.
    """
    y = np.asarray(labels).astype(np.int64)
    k = int(reach)
    if k < 1:
        raise LobseqError(f"reach must be >= 1, got {reach!r}", field="reach")
    out = np.full(y.shape, -1, dtype=np.int64)
    out[k:] = y[:-k]
    if segment is not None:
        seg = np.asarray(segment)
        if seg.shape != y.shape:
            raise LobseqError("segment and labels lengths differ", field="segment")
        same = np.zeros(y.shape, dtype=bool)
        same[k:] = seg[k:] == seg[:-k]
        out[~same] = -1
    return out


class _Baseline(ClassifierMixin, BaseEstimator):
    """Shared plumbing: label checks, the training prior, K-column probabilities."""

    def _check_y(self, y, n_rows: int) -> np.ndarray:
        _n_classes(self.n_classes)
        y = np.asarray(y).astype(np.int64).ravel()
        if y.size != n_rows:
            raise LobseqError(f"y has {y.size} rows, X has {n_rows}", field="y")
        if y.size == 0:
            raise LobseqError("no training rows", field="y")
        if y.min() < 0 or y.max() >= self.n_classes:
            raise LobseqError(f"training labels must be in 0..{self.n_classes - 1}", field="y",
                              fix="drop unlabelled rows (label -1) before fitting")
        self.classes_ = np.arange(self.n_classes)
        self.class_prior_ = np.bincount(y, minlength=self.n_classes) / y.size
        self.majority_class_ = int(self.class_prior_.argmax())
        return y

    def _check_fitted(self) -> None:
        if not hasattr(self, "class_prior_"):
            raise LobseqError(f"{type(self).__name__} is not fitted; call fit(X, y) first")

    def _all_columns(self, model, proba: np.ndarray) -> np.ndarray:
        p = np.zeros((proba.shape[0], self.n_classes))
        p[:, np.asarray(model.classes_, dtype=np.int64)] = proba
        return p

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)


class PriorBaseline(_Baseline):
    """Class frequencies of the training labels for every row (argmax: the majority class):
    sklearn's ``DummyClassifier(strategy="prior")``."""

    def __init__(self, n_classes: int = 3):
        self.n_classes = n_classes

    def fit(self, X, y) -> PriorBaseline:
        from sklearn.dummy import DummyClassifier

        y = self._check_y(y, len(X))
        self.model_ = DummyClassifier(strategy="prior").fit(np.zeros((y.size, 1)), y)
        return self

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        return self._all_columns(self.model_, self.model_.predict_proba(np.zeros((len(X), 1))))


class PersistenceBaseline(_Baseline):
    """Predict that the last completed move repeats.

    ``source="feature"``: the sign of a return feature in the last row of the window,
    ``X[..., -1, feature]`` (2-D X: column ``feature``). Features are causal, so this uses
    nothing after t. Above ``zero + threshold`` is up, below ``zero - threshold`` down, in
    between stationary (3 classes) or the training majority (2 classes).
    ``source="label"``: X is `lagged_labels` at the rows to predict (the newest label whose
    future is fully known at t); unknown (-1) rows get the training majority class.

    Probabilities: ``1 - smoothing`` on the persisted class plus ``smoothing / n_classes``
    on every class (keeps log loss finite; not calibrated).
    """

    def __init__(self, n_classes: int = 3, source: str = "feature", feature: int = 0,
                 threshold: float = 0.0, zero: float = 0.0, smoothing: float = 0.05):
        self.n_classes = n_classes
        self.source = source
        self.feature = feature
        self.threshold = threshold
        self.zero = zero
        self.smoothing = smoothing

    def fit(self, X, y) -> PersistenceBaseline:
        if self.source not in ("feature", "label"):
            raise LobseqError(f"source must be 'feature' or 'label', got {self.source!r}",
                              field="source")
        if not 0 <= self.smoothing < 1:
            raise LobseqError(f"smoothing must be in [0, 1), got {self.smoothing!r}",
                              field="smoothing")
        self._check_y(y, len(X))
        return self

    def persisted_class(self, X) -> np.ndarray:
        """The class each row repeats, (n,) int64."""
        self._check_fitted()
        if self.source == "label":
            lag = np.asarray(X).astype(np.int64).reshape(len(X), -1)[:, -1]
            return np.where((lag >= 0) & (lag < self.n_classes), lag, self.majority_class_)
        X = np.asarray(X, dtype=np.float64)
        r = (X[:, -1, self.feature] if X.ndim == 3 else X.reshape(len(X), -1)[:, self.feature])
        r = r - self.zero
        out = np.full(r.shape, 1 if self.n_classes == 3 else self.majority_class_, dtype=np.int64)
        out[r > self.threshold] = self.n_classes - 1
        out[r < -self.threshold] = 0
        return out  # NaN return: neither > nor <, so "flat"

    def predict_proba(self, X) -> np.ndarray:
        cls = self.persisted_class(X)
        p = np.full((cls.size, self.n_classes), self.smoothing / self.n_classes)
        p[np.arange(cls.size), cls] += 1 - self.smoothing
        return p


class _SklearnBaseline(_Baseline):
    """Fit an sklearn classifier on window summaries; one training class -> the prior."""

    def _make(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def fit(self, X, y) -> _SklearnBaseline:
        Xs = window_summary(X)
        y = self._check_y(y, Xs.shape[0])
        self.n_features_in_ = Xs.shape[1]
        self.model_ = self._make().fit(Xs, y) if np.unique(y).size > 1 else None
        return self

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        Xs = window_summary(X)
        if Xs.shape[1] != self.n_features_in_:
            raise LobseqError(f"X has {Xs.shape[1]} features, fit saw {self.n_features_in_}",
                              field="X")
        if self.model_ is None:
            return np.tile(self.class_prior_, (Xs.shape[0], 1))
        return self._all_columns(self.model_, self.model_.predict_proba(Xs))


class LogisticBaseline(_SklearnBaseline):
    """Multinomial logistic regression: missing features set to the training mean, then
    standardized on training rows (an sklearn Pipeline)."""

    def __init__(self, n_classes: int = 3, C: float = 1.0, max_iter: int = 1000,
                 class_weight: str | dict | None = None):
        self.n_classes = n_classes
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight

    def _make(self):
        from sklearn.impute import SimpleImputer
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(
            SimpleImputer(strategy="mean", keep_empty_features=True), StandardScaler(),
            LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight))


class GBTBaseline(_SklearnBaseline):
    """Histogram gradient boosting (NaN handled natively), 100 rounds, no early stopping.
    ``n_threads`` caps OpenMP threads (None: sklearn's default, all cores)."""

    def __init__(self, n_classes: int = 3, max_iter: int = 100, learning_rate: float = 0.1,
                 max_depth: int | None = None, max_leaf_nodes: int = 15,
                 l2_regularization: float = 0.0, class_weight: str | dict | None = None,
                 random_state: int = 0, n_threads: int | None = None):
        self.n_classes = n_classes
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_depth = max_depth
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.random_state = random_state
        self.n_threads = n_threads

    def _make(self):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate, max_depth=self.max_depth,
            max_leaf_nodes=self.max_leaf_nodes, l2_regularization=self.l2_regularization,
            class_weight=self.class_weight, early_stopping=False, random_state=self.random_state)

    def fit(self, X, y) -> GBTBaseline:
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return super().fit(X, y)

    def predict_proba(self, X) -> np.ndarray:
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return super().predict_proba(X)


BASELINES = {"prior": PriorBaseline, "persistence": PersistenceBaseline,
             "logistic": LogisticBaseline, "gbt": GBTBaseline}
BASELINE_NAMES = tuple(BASELINES)


def tuned(estimator, grid: dict, X, y, X_val, y_val):
    """`estimator` refitted for each point of `grid` on (X, y) only, the one with the best
    validation macro-F1 returned (ties: the first), with `best_params_`, `val_macro_f1_`."""
    from sklearn.metrics import f1_score
    from sklearn.model_selection import ParameterGrid

    best, best_score = None, -np.inf
    labels = np.arange(estimator.n_classes)
    for params in ParameterGrid(grid):
        cand = clone(estimator).set_params(**params).fit(X, y)
        score = (f1_score(y_val, cand.predict(X_val), labels=labels, average="macro",
                          zero_division=0) if len(y_val) else 0.0)
        if score > best_score:
            best, best_score = cand, score
            best.best_params_ = params
    best.val_macro_f1_ = float(best_score)
    return best


# ------------------------------------------------------------------ on a dataset


def _evenly(ends: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None or len(ends) <= limit:
        return ends
    return ends[np.unique(np.linspace(0, len(ends) - 1, limit).round().astype(np.int64))]


def dataset_summaries(ds, ends: np.ndarray, chunk: int = 4096) -> np.ndarray:
    """`window_summary` of the RAW feature windows ending at `ends`, (len(ends), 3F)."""
    from lobseq.data.windows import gather_windows

    ends = np.asarray(ends, dtype=np.int64)
    out = np.empty((len(ends), 3 * ds.n_features))
    for i in range(0, len(ends), chunk):
        out[i:i + chunk] = window_summary(gather_windows(ds.features, ends[i:i + chunk], ds.window))
    return out


def _weighting(class_weight) -> str | None:
    if class_weight in (None, "none"):
        return None
    if class_weight != "balanced":
        raise LobseqError(f"unknown class weighting {class_weight!r}", field="class_weight",
                          fix="use none or balanced")
    return "balanced"


_FITTED: dict[tuple, dict] = {}  # one process fits each dataset's baselines once


def fit_baselines(ds, train_ends: np.ndarray, val_ends: np.ndarray | None = None, *,
                  class_weight: str | None = "none", max_train: int | None = 200_000,
                  max_val: int | None = 50_000, seed: int = 0) -> dict:
    """Baselines fitted on `train_ends` only and tuned on `val_ends` only (no search without
    them), with the model's class weighting (`none` | `balanced`; the prior is unweighted).

    Returns {name: fitted estimator} plus `_lagged` (lagged labels per row) and `_info`
    (the weighting and the chosen hyperparameters, for tables and runs). The same dataset,
    rows and settings give the same (cached) fit, so scoring several models, and their
    backtests, in one process fits the baselines once.
    """
    import hashlib

    tr = np.asarray(train_ends, dtype=np.int64)
    va = np.asarray(val_ends if val_ends is not None else [], dtype=np.int64)
    digest = hashlib.sha1(tr.tobytes())
    digest.update(va.tobytes())
    digest.update(np.ascontiguousarray(ds.labels).tobytes())  # a dataset's labels may be swapped
    key = (ds.hash, digest.hexdigest(), class_weight or "none", max_train, max_val, seed)
    if key not in _FITTED:
        if len(_FITTED) >= 8:
            _FITTED.clear()
        _FITTED[key] = _fit_baselines(ds, tr, va, class_weight, max_train, max_val, seed)
    return _FITTED[key]


def _fit_baselines(ds, train_ends, val_ends, class_weight, max_train, max_val, seed) -> dict:
    from lobseq.data.execution import execution_of

    tr = _evenly(np.asarray(train_ends, dtype=np.int64), max_train)
    if len(tr) == 0:
        raise LobseqError("no training windows to fit the baselines on", file=ds.path)
    va = _evenly(np.asarray(val_ends, dtype=np.int64), max_val)
    k, weight = ds.n_classes, _weighting(class_weight)
    y, y_val = np.asarray(ds.labels[tr], dtype=np.int64), np.asarray(ds.labels[va], dtype=np.int64)
    x, x_val = dataset_summaries(ds, tr), dataset_summaries(ds, va)
    lag = lagged_labels(ds.labels, execution_of(ds.manifest, ds.path).label_reach, ds.segment)
    grids = GRIDS if len(va) else {name: {} for name in GRIDS}
    # One thread: OpenMP/BLAS pools spinning next to TensorFlow's on a busy machine were
    # measured 20x slower than a single thread on these sizes.
    with threadpool_limits(limits=1):
        out = {
            "prior": PriorBaseline(k).fit(x, y),
            "persistence": PersistenceBaseline(k, source="label").fit(lag[tr], y),
            "logistic": tuned(LogisticBaseline(k, class_weight=weight), grids["logistic"],
                              x, y, x_val, y_val),
            "gbt": tuned(GBTBaseline(k, class_weight=weight, random_state=seed, n_threads=1),
                         grids["gbt"], x, y, x_val, y_val),
        }
    out["_lagged"] = lag
    out["_info"] = {"class_weight": class_weight or "none",
                    **{f"{n}_params": out[n].best_params_ for n in GRIDS}}
    return out


def describe_baselines(baselines: dict) -> str:
    """One line: inputs, class weighting and the tuned hyperparameters."""
    info = baselines.get("_info", {})
    tuned_ = ", ".join(f"{n} " + (" ".join(f"{k}={v}" for k, v in info.get(f"{n}_params", {}).items())
                                  or "defaults") for n in GRIDS)
    return (f"baselines: inputs last row + window mean + last-first per feature; class weight "
            f"{info.get('class_weight', 'none')} (the model's); tuned on validation macro-F1: {tuned_}")


def baseline_probas(baselines: dict, ds, ends: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's (len(ends), K) probabilities on exactly the rows `ends`."""
    x = dataset_summaries(ds, ends)
    out = {}
    with threadpool_limits(limits=1):
        for name in BASELINE_NAMES:
            b = baselines[name]
            out[name] = b.predict_proba(baselines["_lagged"][ends] if name == "persistence" else x)
    return out
