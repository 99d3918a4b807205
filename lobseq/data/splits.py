"""Chronological train/validation/test splits with an embargo, and window ends.

Split codes per row: 0 train, 1 validation, 2 test, -1 embargo (unused).
Nothing is shuffled across time. The embargo drops the first `embargo` rows
of a part that directly follows another part in the same segment, so that no
training label (reading up to t + reach, where reach = lag + k for labels of the
traded return, see `lobseq.data.labels.label_reach`) and no later window
(reading back T-1 rows) touches rows of another part.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from lobseq.data.windows import complete_windows
from lobseq.errors import LobseqError

SPLIT_NAMES = ("train", "val", "test")
TRAIN, VAL, TEST, EMBARGO = 0, 1, 2, -1


def min_embargo(window: int, reach: int) -> int:
    """window + reach - 1: `reach` is the label's reach (`labels.label_reach`), not the horizon."""
    return window + reach - 1


def check_fractions(fractions: Sequence[float]) -> list[float]:
    """Three non-negative numbers summing to 1, the training one positive."""
    try:
        fr = [float(f) for f in fractions]
    except (TypeError, ValueError):
        fr = []
    if len(fr) != 3 or min(fr) < 0 or abs(sum(fr) - 1.0) > 1e-6 or fr[0] <= 0:
        raise LobseqError(
            f"split fractions {tuple(fractions)} must be three non-negative numbers summing to 1",
            field="fractions",
            fix="use e.g. 0.7,0.15,0.15",
        )
    return fr


def cut_times_from_fractions(time_key: np.ndarray, fractions: Sequence[float]) -> tuple[int, int]:
    """Times at which validation and test begin, so the parts hold ~`fractions` of rows."""
    fr = check_fractions(fractions)
    ordered = np.sort(time_key, kind="stable")
    n = len(ordered)
    i1 = min(int(np.floor(fr[0] * n)), n - 1)
    i2 = min(int(np.floor((fr[0] + fr[1]) * n)), n - 1)
    val_start = ordered[i1]
    test_start = ordered[i2] if fr[2] > 0 else np.iinfo(np.int64).max
    if fr[1] == 0:
        val_start = test_start
    return int(val_start), int(test_start)


def assign_splits(
    time_key: np.ndarray,
    segment: np.ndarray,
    *,
    cut_times: tuple[int, int],
    embargo: int,
) -> np.ndarray:
    """Per-row split codes: by time against `cut_times` (val start, test start), then embargo."""
    time_key = np.asarray(time_key, dtype=np.int64)
    segment = np.asarray(segment)
    val_start, test_start = cut_times
    if embargo < 0:
        raise LobseqError(f"embargo {embargo} is negative", field="embargo", fix="use >= 0")
    split = np.where(time_key < val_start, TRAIN, np.where(time_key < test_start, VAL, TEST))
    split = split.astype(np.int8)
    n = len(split)
    if n == 0 or embargo == 0:
        return split
    idx = np.arange(n)
    # A run starts where the segment or the part changes; only a part that
    # follows another part *in the same segment* is embargoed.
    new_run = np.ones(n, dtype=bool)
    new_run[1:] = (segment[1:] != segment[:-1]) | (split[1:] != split[:-1])
    follows_other_part = np.zeros(n, dtype=bool)
    follows_other_part[1:] = (segment[1:] == segment[:-1]) & (split[1:] != split[:-1])
    run_start = np.maximum.accumulate(np.where(new_run, idx, 0))
    run_embargoed = follows_other_part[run_start]
    in_embargo = run_embargoed & (idx - run_start < embargo)
    split[in_embargo] = EMBARGO
    return split


def window_ends(
    split: np.ndarray,
    segment: np.ndarray,
    usable: np.ndarray,
    labelled: np.ndarray,
    window: int,
) -> dict[str, np.ndarray]:
    """Rows t that end a window of one part: rows t-T+1..t all in segment(t), in the
    same part, usable (finite features, no halt), and label(t) defined."""
    n = len(split)
    idx = np.arange(n)
    boundary = np.ones(n, dtype=bool)
    boundary[1:] = (segment[1:] != segment[:-1]) | (split[1:] != split[:-1])
    # The one window-end rule (serving applies it too), plus a defined label.
    full = complete_windows(usable & (split >= 0), window, boundary) & labelled
    return {
        name: idx[full & (split == code)].astype(np.int64)
        for code, name in enumerate(SPLIT_NAMES)
    }
