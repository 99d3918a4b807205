"""Windows of length T ending at t, gathered lazily from the (N, F) feature matrix.

The full N×T×F tensor is never built: each batch gathers its B×T rows from
the (memory-mapped) matrix and scales them on the fly.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

WINDOW_END_RULE = ("row t ends a window iff rows t-T+1..t are all usable (finite features, "
                   "not halted) and in the same instrument-day (segment); see "
                   "lobseq.data.windows.complete_windows")


def usable_rows(features: np.ndarray, halted: np.ndarray | None = None,
                chunk_rows: int = 65_536) -> np.ndarray:
    """bool (n,): rows a window may contain: every feature finite and, when given, not halted.

    Row chunks keep the temporary small (no (n, F) bool array for a big day).
    """
    out = np.empty(len(features), dtype=bool)
    for start in range(0, len(features), chunk_rows):
        out[start : start + chunk_rows] = np.isfinite(features[start : start + chunk_rows]).all(axis=1)
    if halted is not None:
        out &= ~np.asarray(halted, dtype=bool)
    return out


def complete_windows(good: np.ndarray, window: int, breaks: np.ndarray | None = None) -> np.ndarray:
    """bool (n,): True at row t iff rows t-T+1..t are all `good` and no row t-T+2..t is a
    `break` (a row that starts a new segment, e.g. another instrument-day or split part).

    The one window-end rule: ingest (`splits.window_ends`) and serving
    (`Forecaster`) both call it.
    """
    good = np.asarray(good, dtype=bool)
    n = len(good)
    idx = np.arange(n)
    # A bad row ends a run (the next run starts after it); a break starts one.
    starts = np.where(~good, idx + 1, 0 if breaks is None else np.where(breaks, idx, 0))
    run_start = np.maximum.accumulate(starts)
    return good & (idx - run_start + 1 >= window)


def gather_windows(
    features: np.ndarray,
    ends: np.ndarray,
    window: int,
    mean: np.ndarray | None = None,
    scale: np.ndarray | None = None,
) -> np.ndarray:
    """float32 (len(ends), T, F): window i holds rows ends[i]-T+1 .. ends[i]."""
    ends = np.asarray(ends, dtype=np.int64)
    rows = ends[:, None] + np.arange(1 - window, 1, dtype=np.int64)[None, :]
    out = np.asarray(features[rows.ravel()], dtype=np.float32).reshape(len(ends), window, -1)
    if mean is not None:
        out -= mean.astype(np.float32)
        out /= scale.astype(np.float32)
    return out


class WindowBatches:
    """Batches of (windows, targets) in a fixed or seeded-shuffled order (no Keras needed)."""

    def __init__(self, features, targets, ends, window, mean=None, scale=None,
                 batch_size=64, shuffle=False, seed=0):
        self.features = features
        self.targets = targets
        self.ends = np.asarray(ends, dtype=np.int64)
        self.window = int(window)
        self.mean = None if mean is None else np.asarray(mean, dtype=np.float32)
        self.scale = None if scale is None else np.asarray(scale, dtype=np.float32)
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self._order = self.ends.copy()
        if shuffle:
            self._rng.shuffle(self._order)

    def __len__(self) -> int:
        return math.ceil(len(self.ends) / self.batch_size)

    def batch(self, i: int):
        ends = self._order[i * self.batch_size : (i + 1) * self.batch_size]
        # Sorted gathers read the memory map front to back.
        x = gather_windows(self.features, ends, self.window, self.mean, self.scale)
        y = np.asarray(self.targets[ends])
        return x, y

    def reshuffle(self) -> None:
        if self.shuffle:
            self._rng.shuffle(self._order)


@lru_cache(maxsize=1)
def _sequence_class():
    import keras  # imported here: ingest and evaluation paths never pay for TF

    class WindowSequence(keras.utils.PyDataset):
        """Keras PyDataset over `WindowBatches`."""

        def __init__(self, batches: WindowBatches, **kwargs):
            super().__init__(**kwargs)
            self.batches = batches

        def __len__(self):
            return len(self.batches)

        def __getitem__(self, i):
            return self.batches.batch(i)

        def on_epoch_end(self):
            self.batches.reshuffle()

    return WindowSequence


def window_sequence(batches: WindowBatches):
    """A `keras.utils.PyDataset` yielding float32 (batch, T, F) windows and targets."""
    return _sequence_class()(batches)
