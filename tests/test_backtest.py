import math

import numpy as np
import pytest

from lobseq.errors import LobseqError
from lobseq.evaluation.backtest.engine import (
    buy_and_hold,
    drawdown_of,
    make_market,
    performance,
    positions_from_proba,
    run_backtest,
)
from lobseq.evaluation.folds import walk_forward_folds

MID = np.array([100.0, 100.0, 102.0, 105.0, 104.0])


def _walk(n, seed=0, vol=0.01):
    rng = np.random.default_rng(seed)
    return 100 * np.exp(np.cumsum(rng.normal(0, vol, n)))


# --- signals -------------------------------------------------------------------------------

def test_signal_is_up_minus_down_against_tau():
    p = np.array([[0.1, 0.3, 0.6], [0.5, 0.3, 0.2], [0.35, 0.3, 0.35], [0.3, 0.2, 0.5]])
    assert positions_from_proba(p, tau=0.25).tolist() == [1, -1, 0, 0]


def test_two_class_proba_uses_column_0_as_down_and_1_as_up():
    assert positions_from_proba(np.array([[0.8, 0.2], [0.3, 0.7]])).tolist() == [-1, 1]


def test_long_only_never_shorts():
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=500)
    assert positions_from_proba(p, mode="long_only").min() == 0


# --- execution: sleeves of 1/horizon, entered entry_lag rows after the decision ------------

def test_a_decision_enters_at_the_next_row_and_exits_horizon_rows_later():
    r = run_backtest([1, 0, 0, 0, 0], MID, horizon=2)
    t = r.trades.iloc[0]
    assert (t.signal_row, t.entry_row, t.exit_row, t.side) == (0, 1, 3, 1)
    assert (t.entry_price, t.exit_price, t.weight) == (100, 105, 0.5)
    assert t["return"] == pytest.approx(0.05)
    assert r.weight.tolist() == [0, 0.5, 0.5, 0, 0]  # one sleeve of 1/2 the capital


def test_entry_lag_0_enters_at_the_decision_row():
    r = run_backtest([0, 1, 0, 0, 0], MID, horizon=1, entry_lag=0)
    t = r.trades.iloc[0]
    assert (t.entry_row, t.exit_row, t["return"]) == (1, 2, pytest.approx(0.02))


def test_a_decision_every_row_with_horizon_1_holds_the_previous_decision():
    sig = np.array([1, -1, -1, 1, 0, 1, 0])
    r = run_backtest(sig, _walk(7), horizon=1)
    # w[j] (held from row j to j+1) is the decision at j-1; row 5's exit (row 7) does not exist
    assert r.weight.tolist() == [0, 1, -1, -1, 1, 0, 0]


def test_overlapping_sleeves_add_their_weights():
    r = run_backtest([1, 1, -1, 0, 0, 0], _walk(6), horizon=2)
    assert r.weight == pytest.approx([0, 0.5, 1, 0, -0.5, 0])


def test_a_decision_whose_exit_is_beyond_its_run_is_not_taken():
    r = run_backtest([0, 1, 0, 1, 0, 0], _walk(6), horizon=2, run=[0, 0, 0, 0, 0, 1])
    assert r.trades.signal_row.tolist() == [1]  # row 3's exit (row 6) does not exist in run 0


def test_returns_compound_on_capital():
    r = run_backtest([1, 1, 0, 0, 0], MID, horizon=1)  # long over rows 1->2->3
    assert r.metrics["total_return"] == pytest.approx(105 / 100 - 1)
    assert r.equity[-1] == pytest.approx(1.05)


def test_costs_are_charged_on_the_net_traded_notional():
    # two consecutive long decisions: one buy and one sell, not two round trips
    r = run_backtest([1, 1, 0, 0, 0], MID, horizon=1, cost_bps=10)
    assert r.cost.sum() == pytest.approx(2 * 0.001)
    assert r.trades.cost.tolist() == pytest.approx([0.001 * (1 + 102 / 100),
                                                   0.001 * (1 + 105 / 102)])


def test_a_flip_trades_twice_the_notional():
    r = run_backtest([1, -1, 0, 0, 0], MID, horizon=1, cost_bps=10)
    assert r.cost[2] == pytest.approx(2 * 0.001)


def test_at_touch_trades_fill_at_the_ask_and_bid_and_the_book_pays_half_the_spread():
    bid, ask = MID - 0.5, MID + 0.5
    r = run_backtest([1, 0, 0, 0, 0], MID, bid=bid, ask=ask, at_touch=True, horizon=1)
    t = r.trades.iloc[0]
    assert (t.entry_price, t.exit_price) == (100.5, 101.5)
    assert r.cost[1] == pytest.approx(0.5 / 100) and r.cost[2] == pytest.approx(0.5 / 102)


def test_at_touch_needs_bid_and_ask():
    with pytest.raises(LobseqError, match="bid and ask"):
        run_backtest([1, 0, 0], [1.0, 1.0, 1.0], at_touch=True)


def test_sleeve_returns_add_up_to_the_row_returns_before_costs():
    px = _walk(300, seed=1)
    sig = np.random.default_rng(1).choice([-1, 0, 1], 300)
    r = run_backtest(sig, px, horizon=4)
    # sum over rows of w[j-1] g[j] = (1/h) * sum over sleeves of their per-row returns
    g = np.r_[0.0, px[1:] / px[:-1] - 1]
    by_sleeve = sum(t.side * g[t.entry_row + 1: t.exit_row + 1].sum() for t in r.trades.itertuples())
    assert r.pnl.sum() == pytest.approx(by_sleeve / 4)


@pytest.mark.parametrize("seed", range(5))
def test_weights_and_returns_up_to_t_ignore_prices_after_t(seed):
    rng = np.random.default_rng(seed)
    n = 120
    mid = _walk(n, seed)
    spread = rng.uniform(0.01, 0.05, n)
    sig = positions_from_proba(rng.dirichlet(np.ones(3), n), tau=0.1)
    t = int(rng.integers(5, n - 5))

    def run(m, s):
        return run_backtest(sig, m, bid=m - s, ask=m + s, at_touch=True, cost_bps=2, horizon=3)

    m2, s2 = mid.copy(), spread.copy()
    m2[t + 1:] *= rng.uniform(0.5, 1.5, n - t - 1)
    s2[t + 1:] *= 3
    a, b = run(mid, spread), run(m2, s2)
    assert np.array_equal(a.weight[: t + 1], b.weight[: t + 1])
    assert np.array_equal(a.pnl[: t + 1], b.pnl[: t + 1])


# --- periods and statistics ----------------------------------------------------------------

R5 = np.array([0.1, -0.05, 0.02, -0.04, 0.03])


def test_statistics_match_empyrical_within_1e_9():
    ep = pytest.importorskip("empyrical")
    r = np.random.default_rng(3).normal(0.0004, 0.012, 700)
    m = performance(r, 252)
    assert m["sharpe"] == pytest.approx(ep.sharpe_ratio(r), abs=1e-9)
    assert m["sortino"] == pytest.approx(ep.sortino_ratio(r), abs=1e-9)
    assert m["max_drawdown"] == pytest.approx(-ep.max_drawdown(r), abs=1e-9)
    assert m["calmar"] == pytest.approx(ep.calmar_ratio(r), abs=1e-9)
    assert m["annualized_return"] == pytest.approx(ep.annual_return(r), abs=1e-9)
    assert m["annualized_volatility"] == pytest.approx(ep.annual_volatility(r), abs=1e-9)
    assert m["total_return"] == pytest.approx(ep.cum_returns_final(r), abs=1e-9)


def test_intraday_statistics_match_empyrical_with_the_stated_annualization():
    ep = pytest.importorskip("empyrical")
    n = 2000
    px = _walk(n, seed=4, vol=0.0005)
    minute = np.arange(n) // 20  # 20 events a minute
    sig = np.random.default_rng(4).choice([-1, 0, 1], n)
    r = run_backtest(sig, px, horizon=10, period=minute, periods_per_year=98_280)
    assert r.metrics["n_periods"] == np.unique(minute).size
    assert r.metrics["sharpe"] == pytest.approx(
        ep.sharpe_ratio(r.period_pnl, annualization=98_280), abs=1e-9)
    assert np.isfinite(r.metrics["sharpe"])


def test_row_returns_compound_within_a_period():
    r = run_backtest([1, 1, 1, 0, 0], MID, horizon=1, period=[0, 0, 0, 1, 1])
    # long rows 1->4 (100, 102, 105, 104), realised at row 2 (period 0) and rows 3, 4 (period 1)
    assert r.period_pnl == pytest.approx([102 / 100 - 1, 104 / 102 - 1])


def test_a_period_return_is_the_mean_over_the_runs_in_it():
    px = np.array([100.0, 100, 110, 50, 50, 45])
    r = run_backtest([1, 0, 0, 1, 0, 0], px, horizon=1, run=[0, 0, 0, 1, 1, 1],
                     period=[0, 1, 2, 0, 1, 2])
    # spans: run 0 rows 1..2, run 1 rows 4..5 (one decision each); the entry rows earn nothing
    # and fold into the next period; period 2: run 0 +10%, run 1 -10%
    assert r.period_pnl == pytest.approx([(0.10 - 0.10) / 2])


def test_one_period_leaves_sharpe_and_sortino_undefined():
    for r in ([-0.3], [0.02]):
        m = performance(np.array(r), 252)
        assert math.isnan(m["sharpe"]) and math.isnan(m["sortino"])


def test_max_drawdown_by_hand():
    dd = drawdown_of(np.cumprod(1 + R5))
    assert dd.min() == pytest.approx(1.1 * 0.95 * 1.02 * 0.96 / 1.10 - 1)


def test_no_trades_gives_zero_sharpe_and_undefined_hit_rate():
    r = run_backtest(np.zeros(5, int), MID)
    assert r.metrics["sharpe"] == 0 and math.isnan(r.metrics["hit_rate"])


def test_metrics_are_plain_python_numbers():
    m = run_backtest([1, 0, 0, 0, 0], MID).metrics
    assert all(type(v) in (int, float) for v in m.values())


def test_exposure_and_turnover():
    r = run_backtest([1, 0, 0, 0, 0], MID, horizon=2, decide=[1, 1, 1, 0, 0])
    # span rows 1..4 (first entry .. last possible exit); long 1/2 over 2 of its 3 intervals;
    # periods: rows 2..4 (the entry row's trade is counted in the first of them)
    assert r.metrics["exposure"] == pytest.approx((0.5 + 0.5 + 0) / 3)
    assert r.metrics["turnover"] == pytest.approx((0.5 + 0.5) / 3)


def test_buy_and_hold_at_the_close_is_the_close_to_close_return_series():
    ep = pytest.importorskip("empyrical")
    px = _walk(300, seed=5)
    bh = buy_and_hold(make_market(px, horizon=1, entry_lag=0))
    simple = px[1:] / px[:-1] - 1
    assert bh.period_pnl == pytest.approx(simple, abs=1e-12)
    assert bh.metrics["sharpe"] == pytest.approx(ep.sharpe_ratio(simple), abs=1e-9)


def test_buy_and_hold_is_long_over_the_same_span_and_periods():
    m = make_market(MID, horizon=1, decide=[0, 1, 1, 0, 0])
    bh = buy_and_hold(m)
    assert bh.metrics["total_return"] == pytest.approx(104 / 102 - 1)  # span rows 2..4
    assert bh.metrics["n_periods"] == run_backtest([0, 1, 1, 0, 0], MID, horizon=1,
                                                   decide=[0, 1, 1, 0, 0]).metrics["n_periods"]


# --- walk-forward folds ----------------------------------------------------------------------

def test_rolling_folds_train_on_the_previous_periods():
    folds = walk_forward_folds(10, train=4, test=2)
    assert [(f[0].tolist(), f[1].tolist()) for f in folds] == [
        ([0, 1, 2, 3], [4, 5]), ([2, 3, 4, 5], [6, 7]), ([4, 5, 6, 7], [8, 9])]


def test_expanding_folds_train_on_everything_before():
    folds = walk_forward_folds(10, train=4, test=3, mode="expanding")
    assert [f[0].tolist() for f in folds] == [[0, 1, 2, 3], [0, 1, 2, 3, 4, 5, 6]]


def test_folds_are_chronological_and_embargoed():
    day = np.repeat(np.arange(12), 25)
    folds = walk_forward_folds(day, train=3, test=1, embargo=7)
    assert len(folds) == 9
    for tr, te in folds:
        assert tr.max() < te.min() - 7  # no train row within 7 rows of the test block
        assert np.unique(day[te]).size == 1 and np.unique(day[tr]).size == 3
    starts = [te.min() for _, te in folds]
    assert starts == sorted(starts)


def test_unsorted_period_labels_are_rejected():
    with pytest.raises(LobseqError, match="chronological"):
        walk_forward_folds([1, 1, 2, 1, 3], train=1, test=1)


# --- plots -----------------------------------------------------------------------------------

def test_equity_and_learning_curve_plots_write_pngs(tmp_path):
    from lobseq.plots import plot_equity, plot_learning_curves

    r = run_backtest([1, 0, 0, 0, 0], MID, horizon=2)
    plot_equity(r.equity, r.drawdown, tmp_path / "eq.png",
                benchmark=buy_and_hold(make_market(MID, horizon=2)).equity)
    plot_learning_curves({"loss": [1, 0.8], "val_loss": [1.1, 0.9], "accuracy": [0.4, 0.5]},
                         tmp_path / "lc.png")
    for name in ("eq.png", "lc.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eq.png", "lc.png"]  # no temp left
