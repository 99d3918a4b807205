import math

import numpy as np
import pytest

from lobseq.errors import LobseqError
from lobseq.evaluation.backtest.engine import (
    buy_and_hold,
    drawdown_of,
    hold_signal,
    positions_from_proba,
    risk_metrics,
    run_backtest,
)
from lobseq.evaluation.folds import walk_forward_folds

MID = np.array([100.0, 100.0, 102.0, 105.0, 104.0])


# --- signals and holding -------------------------------------------------------------------

def test_signal_is_up_minus_down_against_tau():
    p = np.array([[0.1, 0.3, 0.6], [0.5, 0.3, 0.2], [0.35, 0.3, 0.35], [0.3, 0.2, 0.5]])
    assert positions_from_proba(p, tau=0.25).tolist() == [1, -1, 0, 0]


def test_two_class_proba_uses_column_0_as_down_and_1_as_up():
    assert positions_from_proba(np.array([[0.8, 0.2], [0.3, 0.7]])).tolist() == [-1, 1]


def test_long_only_never_shorts():
    p = np.random.default_rng(0).dirichlet(np.ones(3), size=500)
    assert positions_from_proba(p, mode="long_only").min() == 0


def test_holding_keeps_a_signal_for_horizon_rows_then_goes_flat():
    assert hold_signal([1, 0, 0, 0, 0], 3).tolist() == [1, 1, 1, 0, 0]


def test_a_new_signal_restarts_the_holding_clock():
    assert hold_signal([1, 0, 1, 0, 0, 0], 2).tolist() == [1, 1, 1, 1, 0, 0]


def test_an_opposite_signal_flips_immediately():
    assert hold_signal([1, 0, -1, 0, 0], 3).tolist() == [1, 1, -1, -1, -1]


def test_holding_does_not_carry_into_the_next_day():
    assert hold_signal([0, 1, 0, 0], 3, day=[1, 1, 2, 2]).tolist() == [0, 1, 0, 0]


# --- execution and P&L ---------------------------------------------------------------------

def test_one_long_trade_has_known_pnl():
    # decided at row 0, bought at row 1 (100), held 2 rows, sold at row 3 (105)
    r = run_backtest([1, 0, 0, 0, 0], MID, horizon=2)
    assert r.position.tolist() == [0, 1, 1, 0, 0]
    assert r.pnl == pytest.approx([0, 0, 0.02, 0.03, 0])
    assert r.metrics["total_return"] == pytest.approx(0.05)
    t = r.trades.iloc[0]
    assert (t.entry_row, t.exit_row, t.side, t.entry_price, t.exit_price) == (1, 3, 1, 100, 105)


def test_a_signal_earns_the_move_from_t_plus_1_to_t_plus_2():
    # the move 0->1 is +100%, the move 1->2 is +5%: only the second is earned
    r = run_backtest([1, 0, 0, 0], [100.0, 200.0, 210.0, 210.0])
    assert r.metrics["total_return"] == pytest.approx(0.05)


def test_a_signal_at_the_last_row_is_never_executed():
    r = run_backtest([0, 0, 0, 0, 1], MID)
    assert r.position.tolist() == [0] * 5 and r.metrics["n_trades"] == 0


def test_short_trade_profits_when_price_falls():
    r = run_backtest([0, 0, -1, 0, 0], MID)  # sold at row 3 (105), bought back at 104
    assert r.metrics["total_return"] == pytest.approx(1 / 105)


def test_costs_in_bps_on_entry_and_exit_notional():
    r = run_backtest([1, 0, 0, 0, 0], MID, horizon=2, cost_bps=10)
    # 10 bps of 1 unit at entry, 10 bps of 105/100 units at exit
    assert r.metrics["total_return"] == pytest.approx(0.05 - 0.001 - 0.00105)
    assert r.trades.cost.iloc[0] == pytest.approx(0.00205)


def test_a_flip_pays_cost_on_both_legs():
    r = run_backtest([1, -1, 0, 0, 0], MID, cost_bps=10)
    assert r.cost[2] == pytest.approx(0.001 * 102 / 100 + 0.001)


def test_at_touch_buys_at_the_ask_and_sells_at_the_bid():
    bid, ask = MID - 0.5, MID + 0.5
    r = run_backtest([1, 0, 0, 0, 0], MID, bid=bid, ask=ask, at_touch=True, horizon=2)
    assert r.metrics["total_return"] == pytest.approx((104.5 - 100.5) / 100.5)
    assert (r.trades.entry_price.iloc[0], r.trades.exit_price.iloc[0]) == (100.5, 104.5)


def test_at_touch_short_sells_at_the_bid_and_covers_at_the_ask():
    bid, ask = MID - 0.5, MID + 0.5
    r = run_backtest([0, -1, 0, 0, 0], MID, bid=bid, ask=ask, at_touch=True)
    # sold at row 2's bid 101.5, bought back at row 3's ask 105.5
    assert r.metrics["total_return"] == pytest.approx(-(105.5 - 101.5) / 101.5)
    assert (r.trades.entry_price.iloc[0], r.trades.exit_price.iloc[0]) == (101.5, 105.5)


def test_at_touch_needs_bid_and_ask():
    with pytest.raises(LobseqError, match="bid and ask"):
        run_backtest([1, 0], [1.0, 1.0], at_touch=True)


def test_trade_pnl_adds_up_to_row_pnl():
    rng = np.random.default_rng(1)
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 300)))
    sig = rng.choice([-1, 0, 1], 300)
    r = run_backtest(sig, mid, bid=mid - 0.02, ask=mid + 0.02, at_touch=True, cost_bps=3,
                     horizon=4)
    assert r.trades.pnl.sum() == pytest.approx(r.pnl.sum())
    assert r.trades.cost.sum() == pytest.approx(r.cost.sum())


@pytest.mark.parametrize("seed", range(5))
def test_positions_and_pnl_up_to_t_ignore_prices_after_t(seed):
    rng = np.random.default_rng(seed)
    n = 120
    mid = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    spread = rng.uniform(0.01, 0.05, n)
    proba = rng.dirichlet(np.ones(3), n)
    sig = positions_from_proba(proba, tau=0.1)
    t = int(rng.integers(5, n - 5))

    def run(m, s):
        return run_backtest(sig, m, bid=m - s, ask=m + s, at_touch=True, cost_bps=2, horizon=3)

    m2, s2 = mid.copy(), spread.copy()
    m2[t + 1:] *= rng.uniform(0.5, 1.5, n - t - 1)
    s2[t + 1:] *= 3
    a, b = run(mid, spread), run(m2, s2)
    assert np.array_equal(a.position[: t + 1], b.position[: t + 1])
    assert np.array_equal(a.pnl[: t + 1], b.pnl[: t + 1])


# --- risk metrics ----------------------------------------------------------------------------

R5 = np.array([0.1, -0.05, 0.02, -0.04, 0.03])  # equity 1.10, 1.05, 1.07, 1.03, 1.06


def test_sharpe_by_hand():
    # mean 0.012; squared deviations sum to 0.01468; std (ddof 1) = sqrt(0.01468 / 4)
    m = risk_metrics(R5, periods_per_year=252)
    assert m["sharpe"] == pytest.approx(0.012 / math.sqrt(0.01468 / 4) * math.sqrt(252))
    assert m["annualized_return"] == pytest.approx(0.012 * 252)


def test_sortino_by_hand():
    # downside deviation = sqrt((0.05^2 + 0.04^2) / 5) over all 5 periods
    m = risk_metrics(R5, periods_per_year=252)
    assert m["sortino"] == pytest.approx(0.012 / math.sqrt(0.0041 / 5) * math.sqrt(252))


def test_one_period_leaves_sharpe_and_sortino_undefined():
    # one day of P&L has no dispersion: Sortino used to print -sqrt(252) for any loss
    for r in ([-0.3], [0.02]):
        m = risk_metrics(np.array(r), periods_per_year=252)
        assert math.isnan(m["sharpe"]) and math.isnan(m["sortino"])
    assert risk_metrics(np.array([0.0]), periods_per_year=252)["sortino"] == 0


def test_max_drawdown_by_hand():
    dd = drawdown_of(1 + np.cumsum(R5))
    assert dd.min() == pytest.approx(1.03 / 1.10 - 1)  # peak 1.10, trough 1.03


def test_backtest_reports_max_drawdown_as_a_positive_fraction():
    r = run_backtest([1, 0, 0, 0, 0, 0], [100.0, 100, 110, 99, 99, 99], horizon=3)
    # equity 1, 1, 1.10, 0.99: down 0.11 from 1.10
    assert r.metrics["max_drawdown"] == pytest.approx(1 - 0.99 / 1.10)


def test_no_trades_gives_zero_sharpe_and_undefined_hit_rate():
    r = run_backtest(np.zeros(5, int), MID)
    assert r.metrics["sharpe"] == 0 and math.isnan(r.metrics["hit_rate"])


def test_hit_rate_counts_closed_trades_only():
    # trades: long 1->2 (100->102, win), long 3->4 (105->104, loss), long from row 5, still open
    mid = [100.0, 100, 102, 105, 104, 110, 120]
    r = run_backtest([1, 0, 1, 0, 1, 1, 1], mid)
    assert r.metrics["n_trades"] == 3 and r.metrics["n_closed_trades"] == 2
    assert r.metrics["hit_rate"] == 0.5
    assert not r.trades.closed.iloc[-1]


def test_metrics_are_plain_python_numbers():
    m = run_backtest([1, 0, 0, 0, 0], MID).metrics
    assert all(type(v) in (int, float) for v in m.values())


def test_exposure_and_turnover():
    r = run_backtest([1, 0, 0, 0, 0], MID, horizon=2)  # in the market at rows 1, 2
    assert r.metrics["exposure"] == pytest.approx(2 / 5)
    assert r.metrics["turnover"] == pytest.approx(2 / 5)  # bought 1, sold 1 over 5 periods


# --- days ------------------------------------------------------------------------------------

def test_no_position_is_held_overnight():
    day = np.repeat([1, 2], 4)
    r = run_backtest(np.ones(8, int), np.linspace(100, 107, 8), day=day)
    assert r.position.tolist() == [0, 1, 1, 0, 0, 1, 1, 0]


def test_intraday_pnl_is_summed_per_day_before_annualizing():
    day = np.repeat([1, 2], 4)
    mid = np.array([100.0, 100, 101, 102, 90, 90, 91, 93])
    r = run_backtest(np.ones(8, int), mid, day=day)
    assert r.period_pnl == pytest.approx([0.02, 3 / 90])
    assert r.metrics["sharpe"] == pytest.approx(risk_metrics(r.period_pnl, 252)["sharpe"])


def test_buy_and_hold_buys_at_row_1_and_holds_to_the_end():
    r = buy_and_hold(MID)
    assert r.metrics["total_return"] == pytest.approx(104 / 100 - 1)


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
    plot_equity(r.equity, r.drawdown, tmp_path / "eq.png", benchmark=buy_and_hold(MID).equity)
    plot_learning_curves({"loss": [1, 0.8], "val_loss": [1.1, 0.9], "accuracy": [0.4, 0.5]},
                         tmp_path / "lc.png")
    for name in ("eq.png", "lc.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["eq.png", "lc.png"]  # no temp left
