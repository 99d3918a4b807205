import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lobseq.data.labels import label_reach
from lobseq.data.splits import (
    EMBARGO,
    TRAIN,
    VAL,
    assign_splits,
    cut_times_from_fractions,
    min_embargo,
    window_ends,
)
from lobseq.errors import LobseqError


def _split_one_segment(n, fractions, embargo):
    t = np.arange(n, dtype=np.int64)
    seg = np.zeros(n, dtype=np.int32)
    return assign_splits(t, seg, cut_times=cut_times_from_fractions(t, fractions), embargo=embargo)


def test_splits_are_chronological():
    split = _split_one_segment(1000, (0.6, 0.2, 0.2), embargo=0)
    assert (np.diff(split) >= 0).all()
    assert np.bincount(split).tolist() == [600, 200, 200]


def test_embargo_drops_rows_after_each_boundary():
    split = _split_one_segment(1000, (0.6, 0.2, 0.2), embargo=15)
    assert (split[600:615] == EMBARGO).all() and split[615] == VAL
    assert (split[800:815] == EMBARGO).all()
    assert split[599] == TRAIN


def test_embargo_not_applied_at_a_segment_start():
    # Two days; validation starts exactly with day 2: no shared rows to guard.
    t = np.arange(200, dtype=np.int64)
    seg = np.repeat([0, 1], 100)
    split = assign_splits(t, seg, cut_times=(100, 10**9), embargo=20)
    assert (split[:100] == TRAIN).all() and (split[100:] == VAL).all()


def test_bad_fractions_are_rejected():
    with pytest.raises(LobseqError, match="fractions"):
        cut_times_from_fractions(np.arange(10), (0.5, 0.2, 0.2))


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(200, 600),
    window=st.integers(1, 20),
    horizon=st.integers(1, 15),
    n_seg=st.integers(1, 3),
    seed=st.integers(0, 10_000),
)
def test_no_training_window_or_label_touches_another_part(n, window, horizon, n_seg, seed):
    rng = np.random.default_rng(seed)
    seg = np.sort(rng.integers(0, n_seg, n)).astype(np.int32)
    t = np.arange(n, dtype=np.int64)
    reach = label_reach(horizon)  # the traded return: entered at t+1, read up to t+1+k
    split = assign_splits(t, seg, cut_times=cut_times_from_fractions(t, (0.6, 0.2, 0.2)),
                          embargo=min_embargo(window, reach))
    usable = rng.random(n) > 0.02
    labelled = np.ones(n, dtype=bool)
    for s in np.unique(seg):  # the last `reach` rows of a segment have no future
        labelled[np.flatnonzero(seg == s)[-reach:]] = False
    ends = window_ends(split, seg, usable, labelled, window)
    for code, name in enumerate(("train", "val", "test")):
        for t_end in ends[name]:
            rows = np.arange(t_end - window + 1, t_end + 1)
            assert (split[rows] == code).all() and (seg[rows] == seg[t_end]).all()
            assert usable[rows].all()
            # The label reads rows t+1..t+reach: none may belong to another part.
            future = np.arange(t_end + 1, min(t_end + reach, n - 1) + 1)
            future = future[seg[future] == seg[t_end]]
            assert np.isin(split[future], [code, EMBARGO]).all()


def test_window_ends_need_full_window_in_one_segment():
    split = np.zeros(10, dtype=np.int8)
    seg = np.array([0] * 4 + [1] * 6)
    ends = window_ends(split, seg, np.ones(10, bool), np.ones(10, bool), window=3)
    assert ends["train"].tolist() == [2, 3, 6, 7, 8, 9]


def test_a_non_finite_row_breaks_windows_through_it():
    usable = np.ones(10, dtype=bool)
    usable[4] = False
    ends = window_ends(np.zeros(10, np.int8), np.zeros(10), usable, np.ones(10, bool), window=3)
    assert ends["train"].tolist() == [2, 3, 7, 8, 9]
