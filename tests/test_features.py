"""Features: causality for every registered feature, hand-computed values, errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lobseq.data.features import (
    FEATURES,
    available_features,
    compute_features,
    default_features,
    mid_price,
    register,
)
from lobseq.errors import LobseqError

TICK = 0.01


# ---------------------------------------------------------------- frame builders


def book_frame(rows: list[dict], levels: int = 1, messages: dict | None = None) -> pd.DataFrame:
    """A canonical book frame from per-row dicts of level columns (missing = empty level)."""
    n = len(rows)
    data: dict[str, object] = {"timestamp": pd.date_range("2024-01-02 09:30", periods=n, freq="s")}
    for i in range(1, levels + 1):
        for side in ("ask", "bid"):
            data[f"{side}_price_{i}"] = [r.get(f"{side}_price_{i}", np.nan) for r in rows]
            data[f"{side}_size_{i}"] = [float(r.get(f"{side}_size_{i}", 0.0)) for r in rows]
    if messages is not None:
        data["time"] = np.arange(n, dtype=float) + 34200.0
        data["event_type"] = np.asarray(messages["event_type"], dtype=np.int8)
        data["order_id"] = np.arange(n, dtype=np.int64)
        data["size"] = np.asarray(messages["size"], dtype=float)
        data["price"] = np.asarray(messages.get("price", [np.nan] * n), dtype=float)
        data["direction"] = np.asarray(messages["direction"], dtype=np.int8)
    return pd.DataFrame(data)


def random_book(seed: int, n: int, levels: int, empty_prob: float = 0.1) -> pd.DataFrame:
    """Random-walk book with LOBSTER message columns and some empty levels."""
    rng = np.random.default_rng(seed)
    mid_ticks = 10_000 + np.cumsum(rng.integers(-2, 3, n))
    half = rng.integers(1, 3, n)
    data: dict[str, object] = {"timestamp": pd.date_range("2024-01-02", periods=n, freq="ms")}
    for i in range(1, levels + 1):
        for side, sign in (("ask", 1), ("bid", -1)):
            price = (mid_ticks + sign * (half + i - 1)) * TICK
            size = rng.integers(1, 1000, n).astype(float)
            # Level 1 empties rarely (a one-sided book), deeper levels more often.
            empty = rng.random(n) < (empty_prob / 10 if i == 1 else empty_prob)
            data[f"{side}_price_{i}"] = np.where(empty, np.nan, price)
            data[f"{side}_size_{i}"] = np.where(empty, 0.0, size)
    data["time"] = 34200.0 + np.arange(n) * 0.001
    data["event_type"] = rng.integers(1, 6, n).astype(np.int8)
    data["order_id"] = np.arange(n, dtype=np.int64)
    data["size"] = rng.integers(1, 300, n).astype(float)
    data["price"] = mid_ticks * TICK
    data["direction"] = rng.choice(np.array([-1, 1], dtype=np.int8), n)
    return pd.DataFrame(data)


def random_bars(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, n)))
    high = close * (1 + rng.uniform(0, 0.03, n))
    low = close * (1 - rng.uniform(0, 0.03, n))
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2020-01-01", periods=n, freq="D"),
            "open": (high + low) / 2,
            "high": high,
            "low": low,
            "close": close,
            "adj_close": close * 0.9,
            "volume": rng.integers(0, 10_000, n).astype(float),
        }
    )


def splice_after(frame: pd.DataFrame, other: pd.DataFrame, t: int) -> pd.DataFrame:
    """``frame`` with every row after t replaced by ``other``'s rows."""
    out = frame.copy()
    for col in frame.columns:
        values = out[col].to_numpy(copy=True)
        values[t + 1 :] = other[col].to_numpy()[t + 1 :]
        out[col] = values
    return out


def leaked_columns(fn, frame: pd.DataFrame, other: pd.DataFrame, t: int) -> list[str]:
    """Columns of fn whose values at rows <= t change when rows > t do."""
    before = fn(frame)
    after = fn(splice_after(frame, other, t))
    return [
        col
        for col in before
        if not np.array_equal(before[col][: t + 1], after[col][: t + 1], equal_nan=True)
    ]


# ---------------------------------------------------------------- causality


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**31 - 1),
    n=st.integers(220, 320),
    levels=st.integers(1, 3),
    t_frac=st.floats(0.0, 1.0),
)
def test_no_book_feature_reads_rows_after_t(seed, n, levels, t_frac):
    frame = random_book(seed, n, levels)
    other = random_book(seed + 1, n, levels, empty_prob=0.3)
    t = int(t_frac * (n - 2))
    leaks = {
        name: cols
        for name in available_features("book")
        if (cols := leaked_columns(FEATURES[name], frame, other, t))
    }
    assert leaks == {}


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(30, 80), t_frac=st.floats(0.0, 1.0))
def test_no_bar_feature_reads_rows_after_t(seed, n, t_frac):
    frame, other = random_bars(seed, n), random_bars(seed + 1, n)
    t = int(t_frac * (n - 2))
    leaks = {
        name: cols
        for name in available_features("bars")
        if (cols := leaked_columns(FEATURES[name], frame, other, t))
    }
    assert leaks == {}


def test_causality_check_catches_a_feature_that_peeks_one_row_ahead():
    frame = random_book(0, 50, 1)
    other = random_book(1, 50, 1)

    def peeking(f: pd.DataFrame) -> dict[str, np.ndarray]:
        return {"next_mid": np.append(mid_price(f)[1:], np.nan)}

    assert leaked_columns(peeking, frame, other, 20) == ["next_mid"]


def test_causality_test_covers_every_registered_feature():
    assert sorted(available_features("book") + available_features("bars")) == sorted(FEATURES)


def test_book_features_have_values_in_the_causality_frames():
    # Otherwise the causality test could pass on all-NaN warm-up columns.
    X, names = compute_features(
        random_book(3, 220, 2), [{"name": n} for n in available_features("book")], "book"
    )
    all_nan = [name for j, name in enumerate(names) if np.isnan(X[110:, j]).all()]
    assert all_nan == []


# ---------------------------------------------------------------- hand cases: book


def two_level_book() -> pd.DataFrame:
    return book_frame(
        [
            {"ask_price_1": 10.02, "ask_size_1": 100, "bid_price_1": 10.00, "bid_size_1": 300,
             "ask_price_2": 10.03, "ask_size_2": 200, "bid_price_2": 9.99, "bid_size_2": 100},
            # bid side empty at level 2
            {"ask_price_1": 10.02, "ask_size_1": 50, "bid_price_1": 10.00, "bid_size_1": 50,
             "ask_price_2": 10.04, "ask_size_2": 150},
            # bid side empty altogether
            {"ask_price_1": 10.02, "ask_size_1": 50, "ask_price_2": 10.04, "ask_size_2": 150},
        ],
        levels=2,
    )


def test_mid_is_half_the_best_quotes_and_nan_for_a_one_sided_book():
    np.testing.assert_allclose(mid_price(two_level_book()), [10.01, 10.01, np.nan])


def test_mid_price_of_bars_is_adj_close():
    bars = random_bars(0, 5)
    np.testing.assert_array_equal(mid_price(bars), bars["adj_close"].to_numpy())


def test_mid_price_rejects_a_frame_without_prices():
    with pytest.raises(LobseqError, match="adj_close"):
        mid_price(pd.DataFrame({"x": [1.0]}))


def test_spread_in_ticks_bps_and_dollars():
    frame = two_level_book()
    got = {
        unit: FEATURES["spread"](frame, unit=unit)
        for unit in ("ticks", "bps", "dollars")
    }
    np.testing.assert_allclose(got["ticks"]["spread_ticks"][:2], [2.0, 2.0])
    np.testing.assert_allclose(got["bps"]["spread_bps"][:1], [0.02 / 10.01 * 1e4])
    np.testing.assert_allclose(got["dollars"]["spread"][:1], [0.02])


def test_depth_imbalance_cumulative_by_hand():
    out = FEATURES["depth_imbalance"](two_level_book())
    # row 0: level 1 (300-100)/400; levels 1-2 (400-300)/700
    np.testing.assert_allclose(out["depth_imbalance_1"], [0.5, 0.0, -1.0])
    np.testing.assert_allclose(out["depth_imbalance_2"], [100 / 700, (50 - 200) / 250, -1.0])


def test_depth_imbalance_per_level_by_hand():
    out = FEATURES["depth_imbalance"](two_level_book(), cumulative=False)
    np.testing.assert_allclose(out["level_imbalance_2"], [-1 / 3, -1.0, -1.0])


def test_depth_imbalance_of_two_empty_levels_is_zero():
    frame = book_frame([{"ask_price_1": 1.01, "ask_size_1": 5, "bid_price_1": 1.0, "bid_size_1": 5}], 2)
    assert FEATURES["depth_imbalance"](frame, cumulative=False)["level_imbalance_2"][0] == 0.0


def test_book_is_in_deeplob_order_and_keeps_empty_prices_nan():
    out = FEATURES["book"](two_level_book())
    assert list(out)[:5] == ["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1", "ask_price_2"]
    assert np.isnan(out["bid_price_2"][1])


def test_levels_rel_distances_in_bps():
    out = FEATURES["levels_rel"](two_level_book())
    np.testing.assert_allclose(
        [out["ask_bps_2"][0], out["bid_bps_2"][0]],
        [(10.03 - 10.01) / 10.01 * 1e4, (10.01 - 9.99) / 10.01 * 1e4],
    )


def test_levels_rel_encodes_an_empty_level_as_zero_distance_and_size():
    out = FEATURES["levels_rel"](two_level_book())
    assert (out["bid_bps_2"][1], out["bid_logsize_2"][1]) == (0.0, 0.0)


def test_levels_rel_size_is_log1p_shares():
    out = FEATURES["levels_rel"](two_level_book())
    assert out["ask_logsize_1"][0] == pytest.approx(np.log1p(100))


def ofi_book() -> pd.DataFrame:
    return book_frame(
        [
            {"bid_price_1": 10.00, "bid_size_1": 100, "ask_price_1": 10.01, "ask_size_1": 200},
            # quotes unchanged, bid size +50: e = (150 - 100) + (-200 + 200) = 50
            {"bid_price_1": 10.00, "bid_size_1": 150, "ask_price_1": 10.01, "ask_size_1": 200},
            # bid up (+30 new), ask up (+200 old ask size gone): e = 30 + 200 = 230
            {"bid_price_1": 10.01, "bid_size_1": 30, "ask_price_1": 10.02, "ask_size_1": 80},
            # bid down (-30 old), ask down (-50 new): e = -30 - 50 = -80
            {"bid_price_1": 10.00, "bid_size_1": 120, "ask_price_1": 10.01, "ask_size_1": 50},
        ]
    )


def test_ofi_per_event_matches_cont_kukanov_stoikov_by_hand():
    out = FEATURES["ofi"](ofi_book(), windows=[1])
    np.testing.assert_array_equal(out["ofi_1"], [np.nan, 50.0, 230.0, -80.0])


def test_ofi_sums_the_last_n_events():
    out = FEATURES["ofi"](ofi_book(), windows=[2, 3])
    np.testing.assert_array_equal(out["ofi_2"], [np.nan, np.nan, 280.0, 150.0])
    np.testing.assert_array_equal(out["ofi_3"], [np.nan, np.nan, np.nan, 200.0])


def test_ofi_normalized_divides_by_mean_touch_depth():
    out = FEATURES["ofi"](ofi_book(), windows=[1], normalize=True)
    assert out["ofi_norm_1"][1] == pytest.approx(50 / 175)


def test_ofi_counts_a_vanishing_bid_side_as_its_size_leaving():
    frame = book_frame(
        [
            {"bid_price_1": 10.00, "bid_size_1": 70, "ask_price_1": 10.01, "ask_size_1": 20},
            {"ask_price_1": 10.01, "ask_size_1": 20},
        ]
    )
    assert FEATURES["ofi"](frame, windows=[1])["ofi_1"][1] == -70.0


def dixon_book() -> pd.DataFrame:
    rows = [
        {"ask_price_1": 10.01, "ask_size_1": a, "bid_price_1": 10.00, "bid_size_1": b}
        for a, b in [(100, 50), (80, 50), (80, 45), (40, 45)]
    ]
    # submit; buy MO 20 (hits a sell, direction -1); hidden sell MO 5; buy MO 40
    messages = {"event_type": [1, 4, 5, 4], "size": [10, 20, 5, 40], "direction": [1, -1, 1, -1]}
    return book_frame(rows, messages=messages)


def test_dixon_buy_ratio_by_hand():
    out = FEATURES["dixon_ofr"](dixon_book(), windows=[2])
    np.testing.assert_allclose(out["ofr_buy_2"], [np.nan, 20 / 90, 20 / 80, 40 / 60])


def test_dixon_sell_ratio_by_hand():
    out = FEATURES["dixon_ofr"](dixon_book(), windows=[2])
    np.testing.assert_allclose(out["ofr_sell_2"], [np.nan, 0.0, 5 / 47.5, 5 / 45])


def test_dixon_market_order_imbalance_by_hand():
    out = FEATURES["dixon_ofr"](dixon_book(), windows=[2])
    np.testing.assert_allclose(out["mo_imbalance_2"], [np.nan, 1.0, 15 / 25, 35 / 45])


def test_dixon_without_message_columns_says_it_needs_lobster_messages():
    with pytest.raises(LobseqError, match="dixon_ofr.*LOBSTER message"):
        compute_features(ofi_book(), ["dixon_ofr"], "book")


def test_returns_are_log_mid_ratios_over_k_events():
    out = FEATURES["returns"](ofi_book(), lags=[2])
    expected = np.log(np.array([10.015, 10.005]) / np.array([10.005, 10.005]))
    np.testing.assert_allclose(out["ret_2"], [np.nan, np.nan, *expected])


def test_realized_vol_is_sample_std_of_one_event_returns():
    frame = ofi_book()
    r1 = np.diff(np.log(mid_price(frame)))
    out = FEATURES["realized_vol"](frame, windows=[3])
    assert out["realized_vol_3"][3] == pytest.approx(np.std(r1, ddof=1))


# ---------------------------------------------------------------- hand cases: bars


def tiny_bars() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "timestamp": pd.date_range("2021-03-01", periods=3, freq="D"),
            "open": [10.0, 11.0, 12.0],
            "high": [11.0, 12.0, 12.0],
            "low": [9.0, 10.0, 12.0],
            "close": [10.0, 11.5, 12.0],
            "adj_close": [5.0, 5.75, 6.0],
            "volume": [100.0, 100.0, 100.0],
        }
    )


def test_bar_log_returns_use_adj_close():
    out = FEATURES["log_returns"](tiny_bars(), lags=[1])
    np.testing.assert_allclose(out["ret_1"], [np.nan, np.log(5.75 / 5), np.log(6 / 5.75)])


def test_bar_range_by_hand():
    out = FEATURES["range"](tiny_bars())
    np.testing.assert_allclose(out["hl_range"], [0.2, 2 / 11.5, 0.0])
    np.testing.assert_allclose(out["log_hl"], [np.log(11 / 9), np.log(1.2), 0.0])


def test_close_location_by_hand_and_zero_on_a_flat_day():
    np.testing.assert_allclose(FEATURES["close_location"](tiny_bars())["close_location"], [0.0, 0.5, 0.0])


def test_volume_z_of_a_flat_window_is_zero_and_warm_up_is_nan():
    out = FEATURES["volume_z"](tiny_bars(), windows=[2])
    np.testing.assert_array_equal(out["volume_z_2"], [np.nan, 0.0, 0.0])


def test_volume_z_by_hand():
    bars = tiny_bars().assign(volume=[0.0, np.expm1(1.0), np.expm1(3.0)])
    # window of day 2: log1p volumes [1, 3] -> mean 2, std (ddof=0) 1
    assert FEATURES["volume_z"](bars, windows=[2])["volume_z_2"][2] == pytest.approx(1.0)


# ---------------------------------------------------------------- compute_features, defaults


def test_compute_features_returns_contiguous_float32_with_named_columns():
    X, names = compute_features(ofi_book(), ["mid", {"name": "ofi", "windows": [1, 2]}], "book")
    assert (X.dtype, X.flags.c_contiguous, X.shape, names) == (
        np.dtype(np.float32), True, (4, 3), ["mid", "ofi_1", "ofi_2"]
    )


def test_default_book_features_have_stable_names():
    _, names = compute_features(random_book(0, 60, 3), default_features("book", 3), "book")
    assert {"ask_bps_1", "bid_logsize_3", "spread_bps", "depth_imbalance_3", "ofi_10",
            "ret_5", "realized_vol_20"} <= set(names)


def test_default_book_features_with_messages_add_dixon():
    assert {"name": "dixon_ofr"} in default_features("book", 10, messages=True)


def test_default_bar_features_compute_on_bars():
    _, names = compute_features(random_bars(0, 40), default_features("bars", 0), "bars")
    assert names == ["ret_1", "ret_2", "ret_5", "ret_10", "ret_20", "hl_range", "log_hl",
                     "volume_z_20", "close_location", "rolling_vol_5", "rolling_vol_20"]


def test_all_features_run_on_200k_rows():
    frame = random_book(7, 200_000, 10)
    X, _ = compute_features(frame, [{"name": n} for n in available_features("book")], "book")
    assert X.shape[0] == 200_000


# ---------------------------------------------------------------- errors


def test_unknown_feature_error_lists_the_valid_names():
    with pytest.raises(LobseqError, match="unknown feature 'ofii'.*depth_imbalance.*ofi"):
        compute_features(ofi_book(), ["ofii"], "book")


def test_unknown_parameter_error_lists_the_valid_parameters():
    with pytest.raises(LobseqError, match="'window'.*normalize, windows"):
        compute_features(ofi_book(), [{"name": "ofi", "window": 5}], "book")


def test_a_bars_feature_on_book_data_is_refused_with_the_book_names():
    with pytest.raises(LobseqError, match="for bars data.*dixon_ofr"):
        compute_features(ofi_book(), ["volume_z"], "book")


def test_unknown_kind_is_refused():
    with pytest.raises(LobseqError, match="book, bars"):
        compute_features(ofi_book(), ["mid"], "ticks")


@pytest.mark.parametrize(
    "spec",
    [
        {"name": "ofi", "windows": [0]},
        {"name": "returns", "lags": [1.5]},
        {"name": "realized_vol", "windows": [1]},
        {"name": "spread", "unit": "percent"},
        {"name": "depth_imbalance", "levels": 2},
    ],
)
def test_bad_parameter_values_are_lobseq_errors(spec):
    with pytest.raises(LobseqError, match=spec["name"]):
        compute_features(ofi_book(), [spec], "book")


def test_a_spec_without_a_name_is_refused():
    with pytest.raises(LobseqError, match="no 'name'"):
        compute_features(ofi_book(), [{"windows": [1]}], "book")


def test_the_same_column_twice_is_refused():
    with pytest.raises(LobseqError, match="'mid' is produced twice"):
        compute_features(ofi_book(), ["mid", "mid"], "book")


def test_an_empty_spec_list_is_refused():
    with pytest.raises(LobseqError, match="no features"):
        compute_features(ofi_book(), [], "book")


def test_book_features_reject_gapped_level_columns():
    frame = book_frame([{"ask_price_1": 1.01, "ask_size_1": 1}], 2).drop(columns=["bid_size_2"])
    with pytest.raises(LobseqError, match="bid_size_2"):
        compute_features(frame, ["mid"], "book")


def test_register_rejects_defaults_that_the_function_does_not_take():
    with pytest.raises(ValueError, match="do not match"):
        register("never_registered", kind="book", window=3)(lambda frame, windows: {})
    assert "never_registered" not in FEATURES


def test_compute_features_columns_equal_each_features_own_output_in_float32():
    frame = random_book(5, 300, 3)
    specs = [{"name": n} for n in available_features("book")]
    X, names = compute_features(frame, specs, "book")
    expected = {}
    for spec in specs:
        expected.update(FEATURES[spec["name"]](frame))
    assert names == list(expected)
    for j, name in enumerate(names):
        np.testing.assert_array_equal(X[:, j], expected[name].astype(np.float32), err_msg=name)
