"""Baselines a sequence model has to beat, sklearn-shaped.

Each baseline stores its parameters in ``__init__``, learns only in
``fit(X, y)`` from training rows, and ``predict_proba(X)`` always returns
``n_classes`` columns (0 down, [1 stationary,] last up), even when a class is
missing from the training labels. Fitted state ends in ``_``.

``X`` is either windows ``(n, T, F)`` or last rows ``(n, F)``; the tabular
baselines use the features of the last row of each window (the newest row,
known at decision time t).
"""

from __future__ import annotations

import warnings

import numpy as np
from threadpoolctl import threadpool_limits

from lobseq.errors import LobseqError


def _n_classes(n_classes: int) -> int:
    if n_classes not in (2, 3):
        raise LobseqError(f"n_classes must be 2 or 3, got {n_classes!r}", field="n_classes")
    return n_classes


def last_rows(X) -> np.ndarray:
    """(n, F) float64: X itself if 2-D, the last time step of each window if 3-D."""
    X = np.asarray(X)
    if X.ndim == 3:
        X = X[:, -1, :]
    elif X.ndim == 1:
        X = X[:, None]
    if X.ndim != 2:
        raise LobseqError(f"X must be (n, F) or (n, T, F), got shape {X.shape}", field="X")
    return X.astype(np.float64)


def lagged_labels(labels, horizon: int, segment=None) -> np.ndarray:
    """Label of row t - horizon for each row t (-1 where it is not known at t).

    A label at row s describes the move from s to s + horizon (point:
    mid[s+k]/mid[s]; smoothed: mean(mid[s+1..s+k]) vs the past), so it is
    fully determined by prices at rows <= s + horizon. The newest label whose
    whole future is known at decision time t is therefore the one at
    s = t - horizon; using any s > t - horizon would read prices after t.
    Rows in the first `horizon` rows of a segment, and rows whose lagged label
    is itself -1, get -1 (unknown) - nothing leaks across segments.
    """
    y = np.asarray(labels).astype(np.int64)
    k = int(horizon)
    if k < 1:
        raise LobseqError(f"horizon must be >= 1, got {horizon!r}", field="horizon")
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


class _Baseline:
    """Shared plumbing: label checks, prior, argmax predict."""

    n_classes: int

    def _check_y(self, y, n_rows: int) -> np.ndarray:
        y = np.asarray(y).astype(np.int64).ravel()
        if y.size != n_rows:
            raise LobseqError(f"y has {y.size} rows, X has {n_rows}", field="y")
        if y.size == 0:
            raise LobseqError("no training rows", field="y")
        if y.min() < 0 or y.max() >= self.n_classes:
            raise LobseqError(
                f"training labels must be in 0..{self.n_classes - 1}",
                field="y",
                fix="drop unlabelled rows (label -1) before fitting",
            )
        return y

    def _fit_prior(self, y: np.ndarray) -> None:
        self.class_prior_ = np.bincount(y, minlength=self.n_classes) / y.size
        self.majority_class_ = int(self.class_prior_.argmax())

    def _check_fitted(self) -> None:
        if not hasattr(self, "class_prior_"):
            raise LobseqError(f"{type(self).__name__} is not fitted; call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        return self.predict_proba(X).argmax(axis=1)

    def get_params(self) -> dict:
        return {k: v for k, v in vars(self).items() if not k.endswith("_")}


class PriorBaseline(_Baseline):
    """Class frequencies of the training labels for every row (argmax: majority class)."""

    def __init__(self, n_classes: int = 3):
        self.n_classes = n_classes

    def fit(self, X, y) -> PriorBaseline:
        _n_classes(self.n_classes)
        self._fit_prior(self._check_y(y, len(X)))
        return self

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        return np.tile(self.class_prior_, (len(X), 1))


class PersistenceBaseline(_Baseline):
    """Predict that the last completed move repeats.

    ``source="feature"``: the sign of a return feature in the last row of the
    window, ``X[..., -1, feature]`` (e.g. ``log(mid[t]/mid[t-1])``). Features
    are causal (value at t reads rows <= t), so this uses nothing after t.
    Values above ``zero + threshold`` mean up, below ``zero - threshold`` down,
    in between stationary (3 classes) or the training majority (2 classes).
    If X is standardized, set ``zero`` to the scaled value of a zero return
    (``-mean/scale`` of that feature).

    ``source="label"``: X is ``lagged_labels(labels, horizon, segment)`` at
    the rows to predict, i.e. the label of row t - horizon - the newest label
    whose future is fully known at t (see `lagged_labels`). Unknown (-1)
    rows get the training majority class.

    Probabilities: ``1 - smoothing`` on the persisted class plus
    ``smoothing / n_classes`` on every class (keeps log loss finite; not
    calibrated). ``fit`` only learns the class prior for ties and unknowns.
    """

    def __init__(
        self,
        n_classes: int = 3,
        source: str = "feature",
        feature: int = 0,
        threshold: float = 0.0,
        zero: float = 0.0,
        smoothing: float = 0.05,
    ):
        self.n_classes = n_classes
        self.source = source
        self.feature = feature
        self.threshold = threshold
        self.zero = zero
        self.smoothing = smoothing

    def fit(self, X, y) -> PersistenceBaseline:
        _n_classes(self.n_classes)
        if self.source not in ("feature", "label"):
            raise LobseqError(f"source must be 'feature' or 'label', got {self.source!r}",
                              field="source")
        if not 0 <= self.smoothing < 1:
            raise LobseqError(f"smoothing must be in [0, 1), got {self.smoothing!r}",
                              field="smoothing")
        self._fit_prior(self._check_y(y, len(X)))
        return self

    def persisted_class(self, X) -> np.ndarray:
        """The class each row repeats, (n,) int64."""
        self._check_fitted()
        up, down = self.n_classes - 1, 0
        if self.source == "label":
            lag = np.asarray(X).astype(np.int64).reshape(len(X), -1)[:, -1]
            return np.where((lag >= 0) & (lag < self.n_classes), lag, self.majority_class_)
        r = last_rows(X)[:, self.feature] - self.zero
        flat = 1 if self.n_classes == 3 else self.majority_class_
        out = np.full(r.shape, flat, dtype=np.int64)
        out[r > self.threshold] = up
        out[r < -self.threshold] = down
        return out  # NaN return: neither > nor <, so "flat"

    def predict_proba(self, X) -> np.ndarray:
        cls = self.persisted_class(X)
        p = np.full((cls.size, self.n_classes), self.smoothing / self.n_classes)
        p[np.arange(cls.size), cls] += 1 - self.smoothing
        return p


class _SklearnBaseline(_Baseline):
    """Fit an sklearn classifier on last-row features; map its classes_ to all columns."""

    def _make(self):  # pragma: no cover - overridden
        raise NotImplementedError

    def _prepare(self, X, fit: bool) -> np.ndarray:
        return last_rows(X)

    def fit(self, X, y) -> _SklearnBaseline:
        _n_classes(self.n_classes)
        Xl = self._prepare(X, fit=True)
        y = self._check_y(y, Xl.shape[0])
        self._fit_prior(y)
        self.classes_seen_ = np.unique(y)
        # one training class: nothing to separate, fall back to the prior
        self.model_ = self._make().fit(Xl, y) if self.classes_seen_.size > 1 else None
        return self

    def predict_proba(self, X) -> np.ndarray:
        self._check_fitted()
        Xl = self._prepare(X, fit=False)
        p = np.zeros((Xl.shape[0], self.n_classes))
        if self.model_ is None:
            p[:] = self.class_prior_
        else:
            p[:, self.model_.classes_] = self.model_.predict_proba(Xl)
        return p


class LogisticBaseline(_SklearnBaseline):
    """Multinomial logistic regression on the standardized last-row features.

    The standardization (mean, std) is fit on training rows; NaN features are
    set to 0 after standardizing (the training mean).
    """

    def __init__(self, n_classes: int = 3, C: float = 1.0, max_iter: int = 1000,
                 class_weight: str | dict | None = None):
        self.n_classes = n_classes
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight

    def _make(self):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)

    def _prepare(self, X, fit: bool) -> np.ndarray:
        Xl = last_rows(X)
        if fit:
            with warnings.catch_warnings():  # an all-NaN column is allowed: mean 0, scale 1
                warnings.simplefilter("ignore", RuntimeWarning)
                self.mean_ = np.nan_to_num(np.nanmean(Xl, axis=0))
                std = np.nanstd(Xl, axis=0)
            self.scale_ = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        elif Xl.shape[1] != self.mean_.size:
            raise LobseqError(f"X has {Xl.shape[1]} features, fit saw {self.mean_.size}",
                              field="X")
        return np.nan_to_num((Xl - self.mean_) / self.scale_, nan=0.0, posinf=0.0, neginf=0.0)


class GBTBaseline(_SklearnBaseline):
    """Histogram gradient boosting on the last-row features (NaN handled natively).

    Defaults are small and fast: 100 rounds of 15-leaf trees, no early stopping.
    ``n_threads`` caps OpenMP threads during fit/predict (None: sklearn's
    default, all cores; 1 is faster on small data or a busy machine).
    """

    def __init__(self, n_classes: int = 3, max_iter: int = 100, learning_rate: float = 0.1,
                 max_leaf_nodes: int = 15, l2_regularization: float = 0.0,
                 class_weight: str | dict | None = None, random_state: int = 0,
                 n_threads: int | None = None):
        self.n_classes = n_classes
        self.n_threads = n_threads
        self.max_iter = max_iter
        self.learning_rate = learning_rate
        self.max_leaf_nodes = max_leaf_nodes
        self.l2_regularization = l2_regularization
        self.class_weight = class_weight
        self.random_state = random_state

    def _make(self):
        from sklearn.ensemble import HistGradientBoostingClassifier

        return HistGradientBoostingClassifier(
            max_iter=self.max_iter, learning_rate=self.learning_rate,
            max_leaf_nodes=self.max_leaf_nodes, l2_regularization=self.l2_regularization,
            class_weight=self.class_weight, early_stopping=False,
            random_state=self.random_state,
        )

    def fit(self, X, y) -> GBTBaseline:
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return super().fit(X, y)

    def predict_proba(self, X) -> np.ndarray:
        with threadpool_limits(limits=self.n_threads, user_api="openmp"):
            return super().predict_proba(X)


BASELINES = {
    "prior": PriorBaseline,
    "persistence": PersistenceBaseline,
    "logistic": LogisticBaseline,
    "gbt": GBTBaseline,
}


# ------------------------------------------------------------------ on a dataset


BASELINE_NAMES = ("prior", "persistence", "logistic", "gbt")


def _evenly(ends: np.ndarray, limit: int | None) -> np.ndarray:
    if limit is None or len(ends) <= limit:
        return ends
    return ends[np.unique(np.linspace(0, len(ends) - 1, limit).round().astype(np.int64))]


def fit_baselines(ds, train_ends: np.ndarray, *, max_train: int | None = 200_000,
                  seed: int = 0) -> dict:
    """Baselines fitted on `train_ends` only (last-row raw features / lagged labels)."""
    from threadpoolctl import threadpool_limits

    from lobseq.evaluation.baselines import (
        GBTBaseline,
        LogisticBaseline,
        PersistenceBaseline,
        PriorBaseline,
        lagged_labels,
    )

    tr = _evenly(np.asarray(train_ends, dtype=np.int64), max_train)
    if len(tr) == 0:
        raise LobseqError("no training windows to fit the baselines on", file=ds.path)
    k = ds.n_classes
    y = np.asarray(ds.labels[tr], dtype=np.int64)
    x = np.asarray(ds.features[tr], dtype=np.float64)
    lag = lagged_labels(ds.labels, ds.horizon, ds.segment)
    # One thread: OpenMP/BLAS pools spinning next to TensorFlow's on a busy machine were
    # measured 20x slower than a single thread on these sizes.
    with threadpool_limits(limits=1):
        return {
            "prior": PriorBaseline(k).fit(x, y),
            "persistence": PersistenceBaseline(k, source="label").fit(lag[tr], y),
            "logistic": LogisticBaseline(k).fit(x, y),
            "gbt": GBTBaseline(k, random_state=seed, n_threads=1).fit(x, y),
            "_lagged": lag,
        }


def baseline_probas(baselines: dict, ds, ends: np.ndarray) -> dict[str, np.ndarray]:
    """Each baseline's (len(ends), K) probabilities on exactly the rows `ends`."""
    from threadpoolctl import threadpool_limits

    x = np.asarray(ds.features[ends], dtype=np.float64)
    out = {}
    with threadpool_limits(limits=1):
        for name in BASELINE_NAMES:
            b = baselines[name]
            out[name] = b.predict_proba(baselines["_lagged"][ends] if name == "persistence" else x)
    return out
