"""Direction labels over a horizon of k rows (events for books, days for bars).

Classes: 3 classes ``0 down, 1 stationary, 2 up``; 2 classes ``0 down,
1 up`` with moves inside ``[-threshold, threshold]`` unlabelled. ``-1`` marks
a row with no label: no full future, a missing (NaN) or non-positive price
among the rows the label needs, or (2 classes) a small move. A missing future
is never filled.

Point labels follow the execution contract (`lobseq.data.execution`): the
label at t is the sign of ``price[t+lag+k] / price[t+lag] - 1``, the return
of the trade decided at t, entered ``lag`` rows later (1: next open / next
event; 0: at the close of t) and held k rows. It reads rows up to t+lag+k
(`label_reach`), so it must only be paired with inputs that end at t
(``lobseq.data.splits`` embargoes the overlap).

Exact-zero moves: with 2 classes a move of exactly 0 (an unchanged price,
common with tick-sized prices) is neither up nor down, whatever the
threshold: the row is unlabelled (-1), ends no window, and no trade is
scored on it. With 3 classes it is stationary.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError

METHODS = ("point", "smoothed")
CLASS_NAMES: Mapping[int, tuple[str, ...]] = {
    3: ("down", "stationary", "up"),
    2: ("down", "up"),
}
FI2010_HORIZONS = (10, 20, 30, 50, 100)
# FI-2010 files: 1 up, 2 stationary, 3 down -> ours: 2 up, 1 stationary, 0 down.
_FI2010_MAP = {1: 2, 2: 1, 3: 0}


def _check_horizon(horizon: Any) -> int:
    if (
        isinstance(horizon, bool)
        or not isinstance(horizon, (int, np.integer))
        or horizon < 1
    ):
        raise LobseqError(
            f"horizon must be an integer >= 1 (rows ahead), got {horizon!r}",
            field="horizon",
        )
    return int(horizon)


def _check_n_classes(n_classes: Any) -> int:
    if isinstance(n_classes, bool) or n_classes not in CLASS_NAMES:
        raise LobseqError(
            f"n_classes must be 2 or 3, got {n_classes!r}",
            field="n_classes",
            fix="3 = down/stationary/up, 2 = down/up",
        )
    return int(n_classes)


def class_names(n_classes: int) -> tuple[str, ...]:
    """Names of classes 0..K-1 (the one class convention labels, metrics and serving share)."""
    return CLASS_NAMES[_check_n_classes(n_classes)]


def _as_mid(mid: Any) -> np.ndarray:
    arr = np.asarray(mid, dtype=np.float64)
    if arr.ndim != 1:
        raise LobseqError(f"mid must be 1-D, got shape {arr.shape}", field="mid")
    # Non-positive prices have no meaningful return; treat them as missing.
    return np.where(arr > 0, arr, np.nan)


def _window_means(x: np.ndarray, k: int) -> np.ndarray:
    """m[j] = mean(x[j..j+k-1]) for j = 0..n-k (NaN if any is NaN)."""
    if len(x) < k:
        return np.empty(0)
    return np.lib.stride_tricks.sliding_window_view(x, k).mean(axis=1)


def _check_lag(lag: Any) -> int:
    if isinstance(lag, bool) or lag not in (0, 1):
        raise LobseqError(f"lag must be 0 or 1 (rows from decision to entry), got {lag!r}",
                          field="lag")
    return int(lag)


def label_reach(horizon: int, method: str = "point", lag: int = 1) -> int:
    """The furthest row ahead of t the label at t reads: lag + k (point), k (smoothed)."""
    k = _check_horizon(horizon)
    return k + _check_lag(lag) if method == "point" else k


def relative_change(mid: Any, horizon: int, method: str = "point", lag: int = 1) -> np.ndarray:
    """The r the label thresholds, float64, NaN where undefined.

    ``point``: mid[t+lag+k] / mid[t+lag] - 1, the return of the trade decided at t
    (``mid`` is then the contract's execution price: mid, adjusted open or close).
    ``smoothed``: mean(mid[t+1..t+k]) / mean(mid[t-k+1..t]) - 1 (FI-2010 /
    DeepLOB; ``lag`` unused); NaN for the first k-1 rows (no full past mean) too.
    """
    k = _check_horizon(horizon)
    lag = _check_lag(lag)
    if method not in METHODS:
        raise LobseqError(
            f"unknown label method {method!r}",
            field="method",
            fix=f"use one of: {', '.join(METHODS)}",
        )
    m = _as_mid(mid)
    n = len(m)
    r = np.full(n, np.nan)
    if n <= k:
        return r
    if method == "point":
        if n > k + lag:
            r[: n - k - lag] = m[k + lag:] / m[lag: n - k] - 1.0
        return r
    means = _window_means(m, k)  # means[j] = mean(m[j..j+k-1])
    # past mean at t = means[t-k+1]; future mean at t = means[t+1]; t in k-1..n-k-1.
    t = np.arange(k - 1, n - k)
    r[t] = means[t + 1] / means[t - k + 1] - 1.0
    return r


def direction_labels(
    mid: Any,
    horizon: int,
    threshold: float = 0.0,
    method: str = "point",
    n_classes: int = 3,
    lag: int = 1,
) -> np.ndarray:
    """Direction class of each row over ``horizon`` rows; int8, -1 = unlabelled.

    ``mid``: 1-D prices (dollars): the execution price for ``point``. r (see
    :func:`relative_change`) > threshold is up, r < -threshold is down,
    otherwise stationary (3 classes) or unlabelled (2 classes, exact zeros
    included). ``threshold`` is a fraction (0.0002 = 2 bps).
    """
    if (
        isinstance(threshold, bool)
        or not isinstance(threshold, (int, float, np.integer, np.floating))
        or not np.isfinite(threshold)
        or threshold < 0
    ):
        raise LobseqError(
            f"threshold must be a finite number >= 0 (a fraction, 0.0002 = 2 bps), got {threshold!r}",
            field="threshold",
        )
    classes = _check_n_classes(n_classes)
    r = relative_change(mid, horizon, method, lag)
    up, down = r > threshold, r < -threshold
    labels = np.full(len(r), -1, dtype=np.int8)
    if classes == 3:
        labels[np.isfinite(r)] = 1
        labels[up] = 2
    else:
        labels[up] = 1
    labels[down] = 0
    return labels


def forward_returns(mid: Any, horizon: int, lag: int = 1) -> np.ndarray:
    """log(mid[t+lag+k] / mid[t+lag]): the traded log return, float64; NaN for the
    last lag+k rows and missing prices."""
    k, lag = _check_horizon(horizon), _check_lag(lag)
    m = _as_mid(mid)
    out = np.full(len(m), np.nan)
    if len(m) > k + lag:
        out[: len(m) - k - lag] = np.log(m[k + lag:]) - np.log(m[lag: len(m) - k])
    return out


def class_balance(labels: Any, n_classes: int) -> dict[str, Any]:
    """Counts and fractions (of labelled rows) per class, JSON-ready.

    ``{"labelled": int, "unlabelled": int, "counts": {"down": .., ...},
    "fractions": {"down": .., ...}}``; fractions are 0.0 with nothing labelled.
    """
    classes = _check_n_classes(n_classes)
    arr = np.asarray(labels)
    valid = arr != -1
    bad = valid & ((arr < 0) | (arr >= classes))
    if bad.any():
        raise LobseqError(
            f"labels hold values outside -1..{classes - 1}: {sorted(set(arr[bad].tolist()))[:5]}",
            field="labels",
            fix=f"check n_classes (got {classes})",
        )
    counts = np.bincount(arr[valid].astype(np.int64), minlength=classes)
    labelled = int(counts.sum())
    names = CLASS_NAMES[classes]
    return {
        "labelled": labelled,
        "unlabelled": int(len(arr) - labelled),
        "counts": {name: int(c) for name, c in zip(names, counts, strict=True)},
        "fractions": {
            name: (float(c) / labelled if labelled else 0.0) for name, c in zip(names, counts, strict=True)
        },
    }


def fi2010_labels(frame: pd.DataFrame, horizon: int) -> np.ndarray:
    """FI-2010's own labels for ``horizon`` (10, 20, 30, 50 or 100 events),
    mapped from the files' 1 up / 2 stationary / 3 down to 2 / 1 / 0; int8."""
    if isinstance(horizon, bool) or horizon not in FI2010_HORIZONS:
        raise LobseqError(
            f"FI-2010 has no labels for horizon {horizon!r}",
            field="horizon",
            fix=f"use one of: {', '.join(map(str, FI2010_HORIZONS))}",
        )
    column = f"label_h{int(horizon)}"
    if column not in frame.columns:
        raise LobseqError(
            f"frame has no column {column!r} (not an FI-2010 frame?)",
            field=column,
            fix="read the data with lobseq.sources.read_fi2010",
        )
    raw = frame[column].to_numpy()
    out = np.full(len(raw), -1, dtype=np.int8)
    for ours_from, ours_to in _FI2010_MAP.items():
        out[raw == ours_from] = ours_to
    unknown = out == -1
    if unknown.any():
        row = int(np.flatnonzero(unknown)[0])
        raise LobseqError(
            f"FI-2010 label {raw[row]!r} at sample {row} (0-based) is not 1, 2 or 3",
            field=column,
        )
    return out


__all__ = [
    "CLASS_NAMES",
    "FI2010_HORIZONS",
    "METHODS",
    "class_balance",
    "class_names",
    "direction_labels",
    "fi2010_labels",
    "forward_returns",
    "label_reach",
    "relative_change",
]
