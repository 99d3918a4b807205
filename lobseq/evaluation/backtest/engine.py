"""Positions from probabilities, next-row execution, costs, P&L, risk metrics, folds.

Conventions (every number in a report follows from these):

* **Signal -> decision.** ``positions_from_proba`` turns probabilities into a
  signal in {-1, 0, +1} per row t: +1 when P(up) - P(down) > tau, -1 when
  < -tau (0 instead in ``long_only``), else 0.
* **Holding.** ``hold_signal(signal, horizon)``: a non-zero signal at row t sets
  the decided position to that side for rows t..t+horizon-1; a new non-zero
  signal (same or opposite side) replaces it and restarts the clock; a zero
  signal keeps the position until the clock runs out, then the decision is
  flat. With ``horizon=1`` the decision is the signal itself.
* **Execution.** The decision made at row t is executed at row t+1's price,
  never at t: ``position[t+1] = decision[t]`` and ``position[0] = 0``.
  ``position[t]`` is the position held after trading at row t, i.e. over the
  interval (t, t+1]. A decision at the last row is never executed.
* **Prices.** Fills are at the mid of the execution row, or with
  ``at_touch`` buys at the ask and sells at the bid. Open positions are marked
  to market at the mid.
* **Sizing and P&L.** Each trade (a run of constant non-zero position) puts
  1 unit of capital in: it buys or sells ``1 / entry_fill`` shares. Row P&L
  is in units of that capital (a return), additive over rows:
  ``pnl[t] = position[t-1] * (mid[t] - mid[t-1]) / entry_fill``, plus at
  entry/exit rows the gap between fill and mid. A trade's P&L is
  ``side * (exit_fill - entry_fill) / entry_fill - costs`` and equals the
  sum of its rows' P&L. ``equity = 1 + cumsum(pnl)``. P&L at row t reads
  prices at rows <= t only.
* **Costs.** ``cost_bps * 1e-4 * |shares traded| * fill price`` per trade
  leg, as a fraction of the capital: ``cost_bps`` bps on entry and
  ``cost_bps * exit_fill / entry_fill`` bps on exit; a flip pays both.
* **Days.** With ``day`` (a label per row, contiguous runs), holding never
  carries into the next day and, with ``flat_overnight`` (default), the
  decisions at the last two rows of each day are flat, so every position is
  closed at the last row of its day and none is held overnight. Risk metrics
  are then computed on daily P&L sums, annualized with ``periods_per_year``
  (252 trading days); without ``day`` each row is one period.
* **End of data.** A trade still open at the last row is marked at the last
  mid, reported with ``closed=False`` and no exit cost, and left out of the
  hit rate.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError

MODES = ("long_short", "long_only")
TRADE_COLUMNS = ["signal_row", "entry_row", "exit_row", "side", "entry_price", "exit_price",
                 "pnl", "cost", "bars", "closed"]


def _direction_probs(proba) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3):
        raise LobseqError(f"proba must be (n, 2) or (n, 3), got shape {p.shape}", field="proba")
    return p[:, -1], p[:, 0]  # P(up), P(down) for both class conventions


def _day_runs(day, n: int) -> np.ndarray | None:
    """Index of the contiguous run of equal day labels each row is in (None without days)."""
    if day is None:
        return None
    d = np.asarray(day)
    if d.shape != (n,):
        raise LobseqError(f"day must have one label per row ({n}), got shape {d.shape}",
                          field="day")
    run = np.zeros(n, dtype=np.int64)
    if n > 1:
        run[1:] = np.cumsum(d[1:] != d[:-1])
    return run


def hold_signal(signal, horizon: int = 1, day=None) -> np.ndarray:
    """Decided position per row (int8) under the holding rule in the module docstring."""
    s = np.asarray(signal)
    if s.ndim != 1:
        raise LobseqError(f"signal must be 1-D, got shape {s.shape}", field="signal")
    if not np.isin(s, (-1, 0, 1)).all():
        raise LobseqError("signal values must be -1, 0 or +1", field="signal")
    h = int(horizon)
    if h < 1:
        raise LobseqError(f"horizon must be >= 1, got {horizon!r}", field="horizon")
    s = s.astype(np.int8)
    n = s.size
    t = np.arange(n)
    last = np.maximum.accumulate(np.where(s != 0, t, -1)) if n else t
    ok = (last >= 0) & (t - last < h)
    run = _day_runs(day, n)
    if run is not None:
        ok &= run[np.maximum(last, 0)] == run
    return np.where(ok, s[np.maximum(last, 0)], 0).astype(np.int8)


def positions_from_proba(proba, tau: float = 0.0, mode: str = "long_short", hold: int = 1,
                         day=None) -> np.ndarray:
    """Signal per row (int8, -1/0/+1) from class probabilities (n, 2|3).

    +1 when P(up) - P(down) > tau, -1 when < -tau (0 in ``long_only``), else 0.
    ``hold > 1`` applies ``hold_signal(signal, hold, day)``, the same rule as
    ``run_backtest(horizon=hold)``; use one or the other, not both.
    """
    if mode not in MODES:
        raise LobseqError(f"mode must be one of {MODES}, got {mode!r}", field="mode")
    if tau < 0:
        raise LobseqError(f"tau must be >= 0, got {tau!r}", field="tau")
    up, down = _direction_probs(proba)
    edge = up - down
    sig = np.zeros(edge.size, dtype=np.int8)
    sig[edge > tau] = 1
    if mode == "long_short":
        sig[edge < -tau] = -1
    return hold_signal(sig, hold, day) if hold != 1 else sig


@dataclass
class BacktestResult:
    """Per-row arrays (length n), the trade log and a flat metrics dict."""

    metrics: dict[str, float]
    position: np.ndarray      # int8, held over (t, t+1] after trading at row t
    pnl: np.ndarray           # float64, return on 1 unit of capital, realised at row t
    cost: np.ndarray          # float64, explicit cost_bps costs at row t (included in pnl)
    equity: np.ndarray        # 1 + cumsum(pnl)
    drawdown: np.ndarray      # equity / running peak - 1 (<= 0)
    trades: pd.DataFrame      # TRADE_COLUMNS
    period_pnl: np.ndarray    # P&L per period the risk metrics use (rows, or days)
    decision: np.ndarray = field(repr=False, default=None)  # decided position per row


def _prices(mid, bid, ask, at_touch: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = np.asarray(mid, dtype=np.float64)
    if m.ndim != 1:
        raise LobseqError(f"mid must be 1-D, got shape {m.shape}", field="mid")
    if not (np.isfinite(m).all() and (m > 0).all()):
        raise LobseqError("mid must be finite and positive on every row", field="mid")
    if not at_touch:
        return m, m, m
    if bid is None or ask is None:
        raise LobseqError("at_touch needs bid and ask", field="at_touch",
                          fix="pass bid= and ask= or at_touch=False")
    b = np.asarray(bid, dtype=np.float64)
    a = np.asarray(ask, dtype=np.float64)
    for name, x in (("bid", b), ("ask", a)):
        if x.shape != m.shape or not (np.isfinite(x).all() and (x > 0).all()):
            raise LobseqError(f"{name} must be finite, positive and as long as mid", field=name)
    return m, b, a


def _ratio(num: float, den: float) -> float:
    """num/den; 0 when num is 0, NaN when only den is 0 (undefined)."""
    if num == 0:
        return 0.0
    return float(num / den) if den > 0 else float("nan")


def risk_metrics(period_pnl: np.ndarray, periods_per_year: float) -> dict[str, float]:
    """Annualized mean, volatility, Sharpe and Sortino of additive period returns.

    Sharpe = mean / std(ddof=1) * sqrt(ppy); Sortino = mean / sqrt(mean(min(r, 0)^2))
    * sqrt(ppy) (target 0, downside over all periods). No risk-free rate. With fewer
    than two periods both are NaN (0 when the mean is 0).
    """
    r = np.asarray(period_pnl, dtype=np.float64)
    k = np.sqrt(periods_per_year)
    mean = float(r.mean()) if r.size else 0.0
    std = float(r.std(ddof=1)) if r.size > 1 else 0.0
    # one period: undefined like Sharpe (it would be just sign(r) * sqrt(ppy))
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if r.size > 1 else 0.0
    return {
        "annualized_return": float(mean * periods_per_year),
        "annualized_volatility": float(std * k),
        "sharpe": float(_ratio(mean, std) * k),
        "sortino": float(_ratio(mean, downside) * k),
    }


def drawdown_of(equity: np.ndarray) -> np.ndarray:
    """equity / running peak - 1, with the starting capital 1 as the first peak."""
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return equity / peak - 1.0


def run_backtest(signal, mid, *, bid=None, ask=None, cost_bps: float = 0.0,
                 at_touch: bool = False, horizon: int = 1, periods_per_year: float = 252,
                 day=None, flat_overnight: bool = True) -> BacktestResult:
    """Backtest a -1/0/+1 signal per row on prices `mid` (n,) in dollars.

    See the module docstring for the exact execution, holding, cost and
    day conventions. `bid`/`ask` are needed only with ``at_touch=True``.
    """
    m, bid_px, ask_px = _prices(mid, bid, ask, at_touch)
    n = m.size
    decision = hold_signal(signal, horizon, day)
    if decision.size != n:
        raise LobseqError(f"signal has {decision.size} rows, mid has {n}", field="signal")
    if cost_bps < 0:
        raise LobseqError(f"cost_bps must be >= 0, got {cost_bps!r}", field="cost_bps")
    if periods_per_year <= 0:
        raise LobseqError("periods_per_year must be > 0", field="periods_per_year")
    run = _day_runs(day, n)
    if run is not None and flat_overnight and n:
        last_of_day = np.append(run[1:] != run[:-1], True)
        before_last = np.append(last_of_day[1:], False)
        decision = np.where(last_of_day | before_last, 0, decision).astype(np.int8)

    pos = np.zeros(n, dtype=np.int8)
    pos[1:] = decision[:-1]  # executed one row later
    prev = np.zeros(n, dtype=np.int8)
    prev[1:] = pos[:-1]
    changed = pos != prev
    starts = np.flatnonzero(changed & (pos != 0))
    ends = np.flatnonzero(changed & (prev != 0))
    side = pos[starts].astype(np.float64)
    buy_fill, sell_fill = ask_px, bid_px
    entry_fill = np.where(side > 0, buy_fill[starts], sell_fill[starts])
    trade_of_row = np.cumsum(changed & (pos != 0)) - 1  # trade held after row t (if pos != 0)
    fill_held = np.where(pos != 0, entry_fill[np.maximum(trade_of_row, 0)] if starts.size
                         else 1.0, np.nan)
    fill_prev = np.full(n, np.nan)
    fill_prev[1:] = fill_held[:-1]  # entry fill of the position held over (t-1, t]

    fee = cost_bps * 1e-4
    pnl = np.zeros(n)
    held = prev != 0
    pnl[held] = prev[held] * (m[held] - m[np.flatnonzero(held) - 1]) / fill_prev[held]
    exit_fill = np.where(prev[ends] > 0, sell_fill[ends], buy_fill[ends])
    cost = np.zeros(n)
    pnl[ends] += prev[ends] * (exit_fill - m[ends]) / fill_prev[ends]
    cost[ends] += fee * exit_fill / fill_prev[ends]
    pnl[starts] += side * (m[starts] - entry_fill) / entry_fill
    cost[starts] += fee
    pnl -= cost

    # trade log: the k-th start pairs with the k-th end (ends are in order; the last may be open)
    n_closed = ends.size
    closed = np.arange(starts.size) < n_closed
    exit_row = np.full(starts.size, n - 1, dtype=np.int64)
    exit_row[:n_closed] = ends
    exit_price = m[exit_row].copy()
    exit_price[:n_closed] = exit_fill
    trade_cost = fee + np.where(closed, fee * exit_price / entry_fill, 0.0)
    trade_pnl = side * (exit_price - entry_fill) / entry_fill - trade_cost
    trades = pd.DataFrame({
        "signal_row": starts - 1, "entry_row": starts, "exit_row": exit_row,
        "side": side.astype(np.int8), "entry_price": entry_fill, "exit_price": exit_price,
        "pnl": trade_pnl, "cost": trade_cost, "bars": exit_row - starts, "closed": closed,
    }, columns=TRADE_COLUMNS)

    equity = 1.0 + np.cumsum(pnl)
    dd = drawdown_of(equity)
    if run is not None:
        period_pnl = np.bincount(run, weights=pnl) if n else np.zeros(0)
    else:
        period_pnl = pnl
    turnover = float(np.abs(pos.astype(np.int64) - prev).sum())
    metrics = {
        "total_return": float(pnl.sum()),
        **risk_metrics(period_pnl, periods_per_year),
        "max_drawdown": float(-dd.min()) if n else 0.0,
        "hit_rate": float((trade_pnl[closed] > 0).mean()) if n_closed else float("nan"),
        "turnover": turnover / max(period_pnl.size, 1),
        "n_trades": int(starts.size),
        "n_closed_trades": int(n_closed),
        "exposure": float((pos != 0).mean()) if n else 0.0,
        "total_cost": float(cost.sum()),
        "n_periods": int(period_pnl.size),
    }
    return BacktestResult(metrics=metrics, position=pos, pnl=pnl, cost=cost, equity=equity,
                          drawdown=dd, trades=trades, period_pnl=period_pnl, decision=decision)


def buy_and_hold(mid, *, bid=None, ask=None, cost_bps: float = 0.0, at_touch: bool = False,
                 periods_per_year: float = 252, day=None,
                 flat_overnight: bool = True) -> BacktestResult:
    """Always-long benchmark under the same conventions: bought at row 1 (the first
    row a decision at row 0 can execute); with ``day`` and ``flat_overnight``,
    bought at each day's second row and sold at its last row."""
    n = np.asarray(mid).size
    return run_backtest(np.ones(n, dtype=np.int8), mid, bid=bid, ask=ask, cost_bps=cost_bps,
                        at_touch=at_touch, horizon=1, periods_per_year=periods_per_year,
                        day=day, flat_overnight=flat_overnight)

