"""Labels: hand-computed point/smoothed classes, look-ahead limits, validation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lobseq.data.labels import (
    class_balance,
    direction_labels,
    fi2010_labels,
    forward_returns,
    label_reach,
)
from lobseq.errors import LobseqError

# Point labels follow the execution contract: decided at t, entered at t+1 (lag 1), held k rows.
# r (point, k=1, lag 1) = mid[t+2]/mid[t+1]-1 = [+1%, 0, -1.98%, 0, no future, no future]
POINT_MID = [100.0, 100.0, 101.0, 101.0, 99.0, 99.0]
# k=2 smoothed, t=1..4 (t=0 lacks a past mean, t=5,6 a future):
# t=1: 10/11-1=-0.091  t=2: 8/11.5-1=-0.304  t=3: 8.5/10-1=-0.15  t=4: 10/8-1=+0.25
SMOOTH_MID = [10.0, 12.0, 11.0, 9.0, 7.0, 10.0, 10.0]


def test_point_three_classes_by_hand():
    assert direction_labels(POINT_MID, 1).tolist() == [2, 1, 0, 1, -1, -1]


def test_point_three_classes_with_threshold_by_hand():
    assert direction_labels(POINT_MID, 1, threshold=0.015).tolist() == [1, 1, 0, 1, -1, -1]


def test_point_two_classes_leaves_flat_moves_unlabelled():
    assert direction_labels(POINT_MID, 1, n_classes=2).tolist() == [1, -1, 0, -1, -1, -1]


def test_point_two_classes_with_threshold_by_hand():
    got = direction_labels(POINT_MID, 1, threshold=0.015, n_classes=2)
    assert got.tolist() == [-1, -1, 0, -1, -1, -1]


def test_point_over_two_rows_by_hand():
    # r = [mid3/mid1-1, mid4/mid2-1, mid5/mid3-1] = [101/100-1, 99/101-1, 99/101-1]
    assert direction_labels(POINT_MID, 2).tolist() == [2, 0, 0, -1, -1, -1]


def test_point_label_at_the_close_of_t_has_lag_0():
    # the `close` bars convention: r = mid[t+1]/mid[t]-1
    assert direction_labels(POINT_MID, 1, lag=0).tolist() == [1, 2, 1, 0, 1, -1]


def test_an_exact_zero_move_is_unlabelled_with_two_classes_and_stationary_with_three():
    mid = [100.0, 100.0, 100.0, 101.0]  # t=0 trades 100 -> 100, exactly 0
    assert direction_labels(mid, 1, n_classes=2)[0] == -1
    assert direction_labels(mid, 1, threshold=0.0, n_classes=3)[0] == 1
    assert direction_labels(mid, 1, n_classes=2)[1] == 1


def test_smoothed_three_classes_by_hand():
    got = direction_labels(SMOOTH_MID, 2, method="smoothed")
    assert got.tolist() == [-1, 0, 0, 0, 2, -1, -1]


def test_smoothed_three_classes_with_threshold_by_hand():
    got = direction_labels(SMOOTH_MID, 2, threshold=0.1, method="smoothed")
    assert got.tolist() == [-1, 1, 0, 0, 2, -1, -1]


def test_smoothed_two_classes_with_threshold_by_hand():
    got = direction_labels(SMOOTH_MID, 2, threshold=0.1, method="smoothed", n_classes=2)
    assert got.tolist() == [-1, -1, 0, 0, 1, -1, -1]


def test_labels_are_int8():
    assert direction_labels(POINT_MID, 1).dtype == np.int8


@pytest.mark.parametrize("method", ["point", "smoothed"])
def test_rows_without_a_full_future_are_unlabelled(method):
    mid = 100 + np.cumsum(np.random.default_rng(0).normal(0, 0.1, 50))
    assert (direction_labels(mid, 7, method=method)[-7:] == -1).all()


def test_a_nan_mid_unlabels_the_rows_that_need_it():
    mid = [100.0, 100.0, 101.0, np.nan, 99.0, 98.0]
    assert direction_labels(mid, 1).tolist() == [2, -1, -1, 0, -1, -1]


def test_a_nan_mid_unlabels_every_smoothed_row_whose_means_include_it():
    mid = [10.0, 11.0, 12.0, np.nan, 14.0, 15.0, 16.0, 17.0]
    # k=2: row t uses rows t-1..t+2; row 3 is in rows 1..4's windows.
    assert direction_labels(mid, 2, method="smoothed").tolist() == [-1, -1, -1, -1, -1, 2, -1, -1]


def test_forward_returns_by_hand():
    got = forward_returns([100.0, 100.0, 110.0, 99.0], 1)  # entered at t+1
    np.testing.assert_allclose(got, [np.log(1.1), np.log(0.9), np.nan, np.nan])


def test_forward_returns_are_nan_without_a_full_future():
    assert np.isnan(forward_returns(np.ones(10), 4)[-5:]).all()
    assert not np.isnan(forward_returns(np.ones(10), 4)[:-5]).any()


# ---------------------------------------------------------------- look-ahead limits


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(5, 60),
    k=st.integers(1, 10),
    t_frac=st.floats(0.0, 1.0),
    threshold=st.sampled_from([0.0, 0.0005, 0.002]),
    method=st.sampled_from(["point", "smoothed"]),
    n_classes=st.sampled_from([2, 3]),
)
def test_label_at_t_ignores_rows_after_its_reach(seed, n, k, t_frac, threshold, method, n_classes):
    rng = np.random.default_rng(seed)
    mid = 100 + np.cumsum(rng.choice([-0.1, 0.0, 0.1], n))
    t = int(t_frac * (n - 1))
    reach = label_reach(k, method)  # point: k + 1 (entered at t+1); smoothed: k
    changed = mid.copy()
    changed[t + reach + 1 :] = rng.uniform(50, 150, max(0, n - t - reach - 1))
    a = direction_labels(mid, k, threshold, method, n_classes)[t]
    b = direction_labels(changed, k, threshold, method, n_classes)[t]
    assert a == b


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(5, 60), k=st.integers(1, 10),
       t_frac=st.floats(0.0, 1.0))
def test_forward_return_at_t_ignores_rows_after_its_reach(seed, n, k, t_frac):
    rng = np.random.default_rng(seed)
    mid = 100 + np.cumsum(rng.normal(0, 0.1, n))
    t = int(t_frac * (n - 1))
    changed = mid.copy()
    changed[t + k + 2 :] = 1.0
    assert np.array_equal(forward_returns(mid, k)[t], forward_returns(changed, k)[t], equal_nan=True)


@pytest.mark.parametrize("method", ["point", "smoothed"])
def test_label_at_t_depends_on_the_row_at_its_reach(method):
    mid = np.full(7, 10.0)
    raised = mid.copy()
    raised[1 + label_reach(2, method)] = 11.0  # t=1, k=2: row 4 (point), row 3 (smoothed)
    assert (direction_labels(mid, 2, method=method)[1], direction_labels(raised, 2, method=method)[1]) == (1, 2)


def test_point_label_at_t_ignores_the_price_at_t():
    # the trade enters at t+1: the price at the decision row itself is not part of the label
    mid = np.array([10.0, 10.0, 11.0, 12.0])
    moved = mid.copy()
    moved[0] = 50.0
    assert direction_labels(mid, 1)[0] == direction_labels(moved, 1)[0] == 2


# ---------------------------------------------------------------- class balance, FI-2010


def test_class_balance_counts_and_fractions():
    got = class_balance(np.array([0, 2, 2, 1, -1], dtype=np.int8), 3)
    assert got == {
        "labelled": 4,
        "unlabelled": 1,
        "counts": {"down": 1, "stationary": 1, "up": 2},
        "fractions": {"down": 0.25, "stationary": 0.25, "up": 0.5},
    }


def test_class_balance_with_nothing_labelled_has_zero_fractions():
    assert class_balance(np.full(3, -1), 2)["fractions"] == {"down": 0.0, "up": 0.0}


def test_class_balance_rejects_a_class_beyond_n_classes():
    with pytest.raises(LobseqError, match="outside"):
        class_balance(np.array([0, 2]), 2)


def fi2010_frame() -> pd.DataFrame:
    labels = np.array([1, 2, 3, 1], dtype=np.int8)
    return pd.DataFrame({f"label_h{h}": labels for h in (10, 20, 30, 50, 100)})


def test_fi2010_labels_map_up_stationary_down_to_2_1_0():
    assert fi2010_labels(fi2010_frame(), 50).tolist() == [2, 1, 0, 2]


def test_fi2010_labels_refuse_other_horizons_listing_the_valid_ones():
    with pytest.raises(LobseqError, match="10, 20, 30, 50, 100"):
        fi2010_labels(fi2010_frame(), 40)


def test_fi2010_labels_refuse_a_frame_without_label_columns():
    with pytest.raises(LobseqError, match="label_h10"):
        fi2010_labels(pd.DataFrame({"x": [1]}), 10)


def test_fi2010_labels_refuse_an_unknown_label_value():
    frame = fi2010_frame().assign(label_h10=np.array([1, 4, 2, 3], dtype=np.int8))
    with pytest.raises(LobseqError, match="not 1, 2 or 3"):
        fi2010_labels(frame, 10)


# ---------------------------------------------------------------- validation


@pytest.mark.parametrize("horizon", [0, -3, 1.5, True])
def test_bad_horizon_is_refused(horizon):
    with pytest.raises(LobseqError, match="horizon"):
        direction_labels(POINT_MID, horizon)


@pytest.mark.parametrize("threshold", [-0.001, float("nan"), "2bps"])
def test_bad_threshold_is_refused(threshold):
    with pytest.raises(LobseqError, match="threshold"):
        direction_labels(POINT_MID, 1, threshold=threshold)


@pytest.mark.parametrize("n_classes", [1, 4, True])
def test_bad_n_classes_is_refused(n_classes):
    with pytest.raises(LobseqError, match="n_classes must be 2 or 3"):
        direction_labels(POINT_MID, 1, n_classes=n_classes)


def test_unknown_method_is_refused_listing_the_methods():
    with pytest.raises(LobseqError, match="point, smoothed"):
        direction_labels(POINT_MID, 1, method="mean")


def test_a_two_dimensional_mid_is_refused():
    with pytest.raises(LobseqError, match="1-D"):
        direction_labels(np.ones((3, 2)), 1)
