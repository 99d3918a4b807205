"""Classification metrics and block-bootstrap confidence intervals.

Class convention: 3 classes ``0 down, 1 stationary, 2 up``; 2 classes
``0 down, 1 up``. Everything works on plain numpy arrays and returns flat
dicts of floats (one MLflow metric per key).

All count-based metrics are computed from confusion matrices by one
vectorized function (`_cm_metrics`), so the same code scores the full test
set and every bootstrap resample at once.
"""

from __future__ import annotations

import math

import numpy as np

from lobseq.data.labels import class_names
from lobseq.errors import LobseqError

CM_METRICS = ("accuracy", "macro_f1", "weighted_f1", "balanced_accuracy", "mcc", "cohen_kappa")
LOG_LOSS_EPS = 1e-15


def _labels(y, n_classes: int, name: str) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise LobseqError(f"{name} must be 1-D, got shape {y.shape}", field=name)
    if y.size and (y.min() < 0 or y.max() >= n_classes):
        bad = y[(y < 0) | (y >= n_classes)][0]
        raise LobseqError(
            f"{name} has class {bad!r} outside 0..{n_classes - 1}",
            field=name,
            fix="drop unlabelled rows (label -1) before scoring",
        )
    return y.astype(np.int64)


def _proba(proba, n_rows: int, n_classes: int) -> np.ndarray:
    p = np.asarray(proba, dtype=np.float64)
    if p.shape != (n_rows, n_classes):
        raise LobseqError(
            f"proba must have shape ({n_rows}, {n_classes}), got {p.shape}", field="proba"
        )
    if not np.isfinite(p).all():
        raise LobseqError("proba contains NaN or inf", field="proba")
    return p


def confusion_matrix(y, pred, n_classes: int) -> np.ndarray:
    """(n_classes, n_classes) int64 counts; rows = true class, columns = predicted."""
    y = _labels(y, n_classes, "y")
    pred = _labels(pred, n_classes, "pred")
    if y.shape != pred.shape:
        raise LobseqError(f"y and pred lengths differ: {y.size} vs {pred.size}", field="pred")
    return np.bincount(y * n_classes + pred, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes
    )


def _safe_div(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den with 0 where den == 0 (sklearn's zero_division=0)."""
    num, den = np.broadcast_arrays(np.asarray(num, float), np.asarray(den, float))
    out = np.zeros(num.shape)
    np.divide(num, den, out=out, where=den != 0)
    return out


def _cm_metrics(cm: np.ndarray) -> dict[str, np.ndarray]:
    """Metrics of confusion matrices of shape (..., K, K); every value has shape (...).

    Undefined ratios (e.g. precision of a class never predicted) are 0, as in
    sklearn with ``zero_division=0``; undefined MCC and kappa are 0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    tp = np.diagonal(cm, axis1=-2, axis2=-1)
    true_n = cm.sum(axis=-1)  # support per true class
    pred_n = cm.sum(axis=-2)
    n = true_n.sum(axis=-1)
    precision = _safe_div(tp, pred_n)
    recall = _safe_div(tp, true_n)
    f1 = _safe_div(2 * tp, true_n + pred_n)
    correct = tp.sum(axis=-1)
    cov_tp = correct * n - (true_n * pred_n).sum(axis=-1)
    cov_tt = n**2 - (true_n**2).sum(axis=-1)
    cov_pp = n**2 - (pred_n**2).sum(axis=-1)
    pe = _safe_div((true_n * pred_n).sum(axis=-1), n**2)
    present = true_n > 0
    return {
        "accuracy": _safe_div(correct, n),
        "macro_f1": f1.mean(axis=-1),
        "weighted_f1": _safe_div((f1 * true_n).sum(axis=-1), n),
        "balanced_accuracy": _safe_div((recall * present).sum(axis=-1), present.sum(axis=-1)),
        "mcc": _safe_div(cov_tp, np.sqrt(cov_tt * cov_pp)),
        "cohen_kappa": _safe_div(_safe_div(correct, n) - pe, 1 - pe),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }


def classification_metrics(y_true, proba, n_classes: int) -> dict[str, float]:
    """Flat dict of scores for predicted probabilities `proba` (n, n_classes).

    Predictions are ``argmax(proba)``. Keys: accuracy, macro_f1, weighted_f1,
    balanced_accuracy, mcc, cohen_kappa, log_loss (labels 0..K-1,
    probabilities clipped to [1e-15, 1] and renormalised), brier (mean over
    rows of sum_k (p_k - onehot_k)^2, the original multi-class Brier score,
    range 0..2), ``precision_<class>``, ``recall_<class>``, ``f1_<class>``,
    ``support_<class>`` (true count) and ``predicted_<class>`` (predicted
    fraction), with class names down/stationary/up or down/up, and n.
    """
    names = class_names(n_classes)
    y = _labels(y_true, n_classes, "y_true")
    if y.size == 0:
        raise LobseqError("no rows to score", field="y_true")
    p = _proba(proba, y.size, n_classes)
    pred = p.argmax(axis=1)
    cm = confusion_matrix(y, pred, n_classes)
    m = _cm_metrics(cm)
    out = {k: float(m[k]) for k in CM_METRICS}
    clipped = np.clip(p, LOG_LOSS_EPS, 1.0)
    clipped /= clipped.sum(axis=1, keepdims=True)
    out["log_loss"] = float(-np.log(clipped[np.arange(y.size), y]).mean())
    onehot = np.eye(n_classes)[y]
    out["brier"] = float(((p - onehot) ** 2).sum(axis=1).mean())
    for k, name in enumerate(names):
        out[f"precision_{name}"] = float(m["precision"][k])
        out[f"recall_{name}"] = float(m["recall"][k])
        out[f"f1_{name}"] = float(m["f1"][k])
        out[f"support_{name}"] = int(cm[k].sum())
        out[f"predicted_{name}"] = float(cm[:, k].sum() / y.size)
    out["n"] = int(y.size)
    return out


def default_block(n: int, horizon: int | None = None) -> int:
    """Block length for the bootstrap: max(ceil(n^(1/3)), label horizon), at most n.

    Labels over a horizon k overlap, so k consecutive rows share information;
    blocks at least k long keep that dependence inside a block.
    """
    b = max(1, math.ceil(n ** (1 / 3)), int(horizon or 1))
    return min(b, max(n, 1))


def circular_block_indices(
    n: int, block: int, n_boot: int, rng: np.random.Generator
) -> np.ndarray:
    """(n_boot, n) row indices: ceil(n/block) blocks of `block` consecutive rows
    starting at uniform positions, wrapping around the end (circular), cut to n."""
    n_blocks = math.ceil(n / block)
    starts = rng.integers(0, n, size=(n_boot, n_blocks, 1))
    idx = (starts + np.arange(block)) % n
    return idx.reshape(n_boot, n_blocks * block)[:, :n]


def _boot_cms(y: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Confusion matrices of all resamples at once: (n_boot, k, k)."""
    n_boot = idx.shape[0]
    code = (np.arange(n_boot)[:, None] * (k * k) + y[idx] * k + pred[idx]).ravel()
    return np.bincount(code, minlength=n_boot * k * k).reshape(n_boot, k, k)


def block_bootstrap_ci(
    y_true,
    pred_a,
    pred_b=None,
    metric: str = "macro_f1",
    block: int | None = None,
    n_boot: int = 1000,
    alpha: float = 0.05,
    seed: int = 0,
    *,
    n_classes: int | None = None,
    horizon: int | None = None,
    chunk_rows: int = 5_000_000,
) -> dict[str, float]:
    """Circular block bootstrap interval for a count-based metric of predictions.

    Rows are serially dependent (overlapping label horizons, volatility
    clustering), so whole blocks of consecutive rows are resampled. `block`
    defaults to `default_block(n, horizon)`. `metric` is one of
    ``accuracy, macro_f1, weighted_f1, balanced_accuracy, mcc, cohen_kappa``.
    `pred_a`/`pred_b` are class predictions (n,); pass ``proba.argmax(1)``.

    Returns ``estimate, lo, hi`` (percentile interval of the metric of a,
    level 1 - alpha), and when `pred_b` is given ``estimate_b, diff, diff_lo,
    diff_hi`` for a - b computed on the SAME resampled rows each time (paired),
    and ``p_diff_le_0``: the fraction of resamples where a - b <= 0. Also
    ``block`` and ``n_boot``.
    """
    _check_bootstrap_args(metric, alpha, n_boot)
    y, preds, n_classes = _bootstrap_inputs(y_true, pred_a, pred_b, n_classes)
    n = y.size
    block = default_block(n, horizon) if block is None else int(block)
    if not 1 <= block <= n:
        raise LobseqError(f"block must be in 1..{n}, got {block}", field="block")
    boots = _resampled_metric(y, preds, n_classes, metric, block, n_boot, seed, chunk_rows)
    points = [float(_cm_metrics(confusion_matrix(y, p, n_classes))[metric]) for p in preds]
    q = [alpha / 2, 1 - alpha / 2]
    lo, hi = np.quantile(boots[0], q)
    out = {"estimate": points[0], "lo": float(lo), "hi": float(hi),
           "block": int(block), "n_boot": int(n_boot)}
    if pred_b is not None:
        diff = boots[0] - boots[1]
        dlo, dhi = np.quantile(diff, q)
        out.update(estimate_b=points[1], diff=points[0] - points[1], diff_lo=float(dlo),
                   diff_hi=float(dhi), p_diff_le_0=float((diff <= 0).mean()))
    return out


def _check_bootstrap_args(metric: str, alpha: float, n_boot: int) -> None:
    if metric not in CM_METRICS:
        raise LobseqError(f"unknown metric {metric!r}; choose one of {', '.join(CM_METRICS)}",
                          field="metric")
    if not 0 < alpha < 1:
        raise LobseqError(f"alpha must be in (0, 1), got {alpha!r}", field="alpha")
    if int(n_boot) < 1:
        raise LobseqError(f"n_boot must be >= 1, got {n_boot!r}", field="n_boot")


def _bootstrap_inputs(y_true, pred_a, pred_b, n_classes: int | None) -> tuple[np.ndarray, list, int]:
    """Checked labels, the one or two prediction arrays, and the class count (inferred if None)."""
    y_raw = np.asarray(y_true)
    if n_classes is None:
        arrays = [y_raw, np.asarray(pred_a)] + ([np.asarray(pred_b)] if pred_b is not None else [])
        n_classes = max(2, int(max(a.max() for a in arrays)) + 1) if y_raw.size else 2
    y = _labels(y_raw, n_classes, "y_true")
    if y.size == 0:
        raise LobseqError("no rows to bootstrap", field="y_true")
    preds = [_labels(pred_a, n_classes, "pred_a")]
    if pred_b is not None:
        preds.append(_labels(pred_b, n_classes, "pred_b"))
    for name, p in zip(("pred_a", "pred_b")[: len(preds)], preds, strict=True):
        if p.size != y.size:
            raise LobseqError(f"{name} has {p.size} rows, y_true has {y.size}", field=name)
    return y, preds, n_classes


def _resampled_metric(y: np.ndarray, preds: list, n_classes: int, metric: str, block: int,
                      n_boot: int, seed: int, chunk_rows: int) -> list[np.ndarray]:
    """`metric` of each prediction array on the SAME `n_boot` block resamples: (n_boot,) each."""
    n = y.size
    rng = np.random.default_rng(seed)
    per_chunk = max(1, chunk_rows // n)  # bound memory: chunk * n indices at a time
    stats = [[] for _ in preds]
    done = 0
    while done < n_boot:
        m = min(per_chunk, n_boot - done)
        idx = circular_block_indices(n, block, m, rng)
        for s, p in zip(stats, preds, strict=True):
            s.append(_cm_metrics(_boot_cms(y, p, idx, n_classes))[metric])
        done += m
    return [np.concatenate(s) for s in stats]
