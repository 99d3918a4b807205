"""Execution of signals under the execution contract, costs, period returns, risk statistics.

Conventions (every number in a report follows from these):

* **Decision -> sleeve.** ``signal[t]`` in {-1, 0, +1} is the decision at row t
  (`positions_from_proba`: +1 when P(up) - P(down) > tau, -1 when < -tau, 0 in
  between or shorts in ``long_only``). A non-zero decision opens its own *sleeve*:
  entry at row ``e = t + entry_lag`` (1: next open / next event; 0: at the close of
  t, see `lobseq.data.execution`), exit at ``x = e + horizon``, side = the signal.
  That is exactly the trade the point label at t describes. A decision whose exit
  row is not in its run (instrument-day, instrument, or a stretch of consecutive
  rows) is not taken, so no position crosses a run boundary.
* **Overlapping holds.** Each sleeve carries 1/horizon of the capital (Jegadeesh and
  Titman's overlapping portfolios): the weight held from row j to j+1 is
  ``w[j] = sum(side / horizon)`` over sleeves with ``e <= j < x``, re-set to 1/h per
  sleeve each row. With horizon 1 and a decision every row, ``w`` is the decision
  of the row before.
* **Returns on capital.** ``ret[j] = w[j-1] * (px[j] / px[j-1] - 1) - cost[j]`` with
  ``px`` the contract's execution price (book: mid; bars: adjusted open, or close).
  ``cost[j] = |w[j] - w[j-1]| * (cost_bps * 1e-4 + half_spread[j] / px[j])``: costs are
  charged on the *net* notional traded at row j (a sleeve that closes as another
  opens on the same side trades nothing), the half-spread only with touch fills.
* **Trades** are the sleeves, each as if traded alone: entry/exit fill at ``px``, or
  with ``at_touch`` buys at the ask and sells at the bid; ``return = side *
  (exit_fill / entry_fill - 1)``, ``pnl = return - cost_bps * 1e-4 * (1 + exit_fill
  / entry_fill)``. ``hit_rate`` is the share of trades with ``pnl > 0``.
* **Same rows and periods.** Every strategy on the same rows (model, baselines,
  buy-and-hold) is measured over the same *span* of each run: from the first row a
  decision may enter to the last row one may exit (``decide`` marks the rows where a
  decision is taken, e.g. window ends). Buy-and-hold is fully long over each span.
* **Periods.** Row returns are compounded within each period (``period`` labels, e.g.
  the day for bars, a fixed clock interval such as one minute for books) for each run;
  a period's return is the mean over the runs present in it (equal capital per run,
  e.g. per instrument). A span's first row (the first entry) earns nothing: its cost
  is folded into the next row, so no zero-return period pads the series (buy-and-hold
  entered at the close is then exactly the close-to-close return series).
  ``equity`` compounds the period returns.
* **Statistics** (empyrical's definitions; the tests check them against empyrical
  within 1e-9), with ``r`` the period returns and ``ppy`` periods per year:
  total_return = prod(1 + r) - 1; annualized_return (CAGR) = (1 + total)^(ppy / n) - 1;
  annualized_volatility = std(r, ddof=1) sqrt(ppy); sharpe = mean(r) / std(r, ddof=1)
  sqrt(ppy); sortino = mean(r) / sqrt(mean(min(r, 0)^2)) sqrt(ppy); max_drawdown =
  max(1 - equity / running peak), the starting capital 1 being the first peak;
  calmar = annualized_return / max_drawdown; turnover = mean one-way notional traded
  per period (fraction of capital); exposure = mean |w| over the span's intervals.
  No risk-free rate. Fewer than two periods: Sharpe and Sortino are NaN.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError

MODES = ("long_short", "long_only")
TRADE_COLUMNS = ["signal_row", "entry_row", "exit_row", "side", "weight", "entry_price",
                 "exit_price", "return", "cost", "pnl"]


def _direction_probs(proba) -> tuple[np.ndarray, np.ndarray]:
    p = np.asarray(proba, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] not in (2, 3):
        raise LobseqError(f"proba must be (n, 2) or (n, 3), got shape {p.shape}", field="proba")
    return p[:, -1], p[:, 0]  # P(up), P(down) for both class conventions


def _day_runs(day, n: int) -> np.ndarray | None:
    """Index of the contiguous run of equal labels each row is in (None without labels)."""
    if day is None:
        return None
    d = np.asarray(day)
    if d.shape != (n,):
        raise LobseqError(f"run/day labels must be one per row ({n}), got shape {d.shape}",
                          field="day")
    run = np.zeros(n, dtype=np.int64)
    if n > 1:
        run[1:] = np.cumsum(d[1:] != d[:-1])
    return run


def positions_from_proba(proba, tau: float = 0.0, mode: str = "long_short") -> np.ndarray:
    """Decision per row (int8, -1/0/+1) from class probabilities (n, 2|3).

    +1 when P(up) - P(down) > tau, -1 when < -tau (0 in ``long_only``), else 0.
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
    return sig


@dataclass(frozen=True)
class Market:
    """The rows a backtest walks: prices, runs, periods, and where decisions are taken."""

    px: np.ndarray        # (n,) execution price (dollars): mid, adjusted open or close
    run: np.ndarray       # (n,) int64 run index, contiguous; no position crosses a run
    period: np.ndarray    # (n,) period key of the return realised at each row
    decide: np.ndarray    # (n,) bool: a decision is taken here and its exit lies in its run
    horizon: int
    entry_lag: int = 1
    bid: np.ndarray | None = None
    ask: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(self.px.size)

    def span(self) -> np.ndarray:
        """(n,) bool: rows from each run's first possible entry to its last possible exit."""
        rows = np.flatnonzero(self.decide)
        mark = np.zeros(self.n + 1, dtype=np.int64)
        if rows.size:
            r = self.run[rows]
            first = np.r_[True, r[1:] != r[:-1]]
            last = np.r_[r[1:] != r[:-1], True]
            np.add.at(mark, rows[first] + self.entry_lag, 1)
            np.add.at(mark, rows[last] + self.entry_lag + self.horizon + 1, -1)
        return np.cumsum(mark)[: self.n] > 0


def _positive(name: str, x, n: int) -> np.ndarray:
    a = np.asarray(x, dtype=np.float64)
    if a.shape != (n,) or not (np.isfinite(a).all() and (a > 0).all()):
        raise LobseqError(f"{name} must be finite, positive and one per row ({n})", field=name)
    return a


def make_market(px, *, horizon: int = 1, entry_lag: int = 1, run=None, period=None,
                decide=None, bid=None, ask=None) -> Market:
    """Validate arrays into a `Market`. ``run``/``period``: labels per row (default: one
    run; each row its own period); ``decide``: bool per row (default: every row)."""
    p = np.asarray(px, dtype=np.float64)
    if p.ndim != 1:
        raise LobseqError(f"prices must be 1-D, got shape {p.shape}", field="px")
    n = p.size
    _positive("px", p, n)
    h = int(horizon)
    if h < 1 or entry_lag not in (0, 1):
        raise LobseqError(f"horizon must be >= 1 and entry_lag 0 or 1, got {horizon!r}, "
                          f"{entry_lag!r}", field="horizon")
    runs = _day_runs(run, n) if run is not None else np.zeros(n, dtype=np.int64)
    per = np.arange(n) if period is None else np.asarray(period)
    if per.shape != (n,):
        raise LobseqError(f"period must have one label per row ({n})", field="period")
    dec = np.ones(n, dtype=bool) if decide is None else np.asarray(decide, dtype=bool)
    if dec.shape != (n,):
        raise LobseqError(f"decide must have one flag per row ({n})", field="decide")
    exit_row = np.arange(n) + entry_lag + h
    inside = exit_row < n
    inside[inside] = runs[exit_row[inside]] == runs[inside]
    b = None if bid is None else _positive("bid", bid, n)
    a = None if ask is None else _positive("ask", ask, n)
    return Market(p, runs, per, dec & inside, h, int(entry_lag), b, a)


def _fills(m: Market, at_touch: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(buy fill, sell fill, half-spread as a fraction of px) per row."""
    if not at_touch:
        return m.px, m.px, np.zeros(m.n)
    if m.bid is None or m.ask is None:
        raise LobseqError("fills at the touch need bid and ask", field="at_touch",
                          fix="pass bid= and ask=, or fill at the mid")
    return m.ask, m.bid, (m.ask - m.bid) / 2.0 / m.px


def _sleeves(signal, m: Market) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    s = np.asarray(signal)
    if s.shape != (m.n,) or not np.isin(s, (-1, 0, 1)).all():
        raise LobseqError(f"signal must be -1, 0 or +1 on each of the {m.n} rows", field="signal")
    t = np.flatnonzero(m.decide & (s != 0))
    return t, t + m.entry_lag, s[t].astype(np.float64)


def sleeve_weights(signal, m: Market) -> np.ndarray:
    """(n,) weight held from row j to j+1 (see the module docstring)."""
    _, entry, side = _sleeves(signal, m)
    delta = np.zeros(m.n + 1)
    np.add.at(delta, entry, side / m.horizon)
    np.add.at(delta, entry + m.horizon, -side / m.horizon)
    w = np.cumsum(delta)[: m.n]
    w[np.abs(w) < 1e-12] = 0.0  # sums of +-1/h leave float dust where sleeves cancel
    return w


def row_returns(w: np.ndarray, m: Market, cost_bps: float, at_touch: bool
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(return, cost, net notional traded) realised at each row, on capital."""
    _, _, half = _fills(m, at_touch)
    prev = np.r_[0.0, w[:-1]]
    new_run = np.r_[True, m.run[1:] != m.run[:-1]]
    prev[new_run] = 0.0
    growth = np.zeros(m.n)
    growth[1:] = m.px[1:] / m.px[:-1] - 1.0
    growth[new_run] = 0.0
    traded = np.abs(w - prev)
    cost = traded * (cost_bps * 1e-4 + half)
    return prev * growth - cost, cost, traded


def trade_log(signal, m: Market, cost_bps: float, at_touch: bool) -> pd.DataFrame:
    """One row per sleeve, each as if traded alone (module docstring)."""
    t, entry, side = _sleeves(signal, m)
    buy, sell, _ = _fills(m, at_touch)
    exit_ = entry + m.horizon
    e_fill = np.where(side > 0, buy[entry], sell[entry])
    x_fill = np.where(side > 0, sell[exit_], buy[exit_])
    ret = side * (x_fill / e_fill - 1.0)
    cost = cost_bps * 1e-4 * (1.0 + x_fill / e_fill)
    return pd.DataFrame({"signal_row": t, "entry_row": entry, "exit_row": exit_,
                         "side": side.astype(np.int8), "weight": 1.0 / m.horizon,
                         "entry_price": e_fill, "exit_price": x_fill, "return": ret,
                         "cost": cost, "pnl": ret - cost}, columns=TRADE_COLUMNS)


def period_returns(values: np.ndarray, m: Market, span: np.ndarray, compound: bool = True
                   ) -> tuple[np.ndarray, np.ndarray]:
    """(period keys, per-period value): compounded (or summed) per run and period, then
    averaged over the runs present in the period."""
    idx = np.flatnonzero(span)
    if idx.size == 0:
        return np.zeros(0, dtype=m.period.dtype), np.zeros(0)
    pk, rk, v = m.period[idx], m.run[idx], values[idx]
    starts = np.flatnonzero(np.r_[True, (pk[1:] != pk[:-1]) | (rk[1:] != rk[:-1])])
    grp = (np.multiply.reduceat(1.0 + v, starts) - 1.0) if compound else np.add.reduceat(v, starts)
    keys, inv = np.unique(pk[starts], return_inverse=True)
    return keys, np.bincount(inv, weights=grp) / np.bincount(inv)


def _ratio(num: float, den: float) -> float:
    """num/den; 0 when num is 0, NaN when only den is 0 (undefined)."""
    if num == 0:
        return 0.0
    return float(num / den) if den > 0 else float("nan")


def performance(r, periods_per_year: float) -> dict[str, float]:
    """Standard statistics of period returns on capital (module docstring)."""
    r = np.asarray(r, dtype=np.float64)
    if periods_per_year <= 0:
        raise LobseqError("periods_per_year must be > 0", field="periods_per_year")
    k = np.sqrt(periods_per_year)
    n = r.size
    equity = np.cumprod(1.0 + r)
    total = float(equity[-1] - 1.0) if n else 0.0
    mean = float(r.mean()) if n else 0.0
    std = float(r.std(ddof=1)) if n > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(r, 0.0) ** 2))) if n > 1 else 0.0
    cagr = float((1.0 + total) ** (periods_per_year / n) - 1.0) if n and total > -1 else -1.0
    mdd = float(-drawdown_of(equity).min()) if n else 0.0
    return {
        "total_return": total,
        "annualized_return": cagr if n else 0.0,
        "annualized_volatility": float(std * k),
        "sharpe": float(_ratio(mean, std) * k) if n > 1 else float("nan"),
        "sortino": float(_ratio(mean, downside) * k) if n > 1 else float("nan"),
        "max_drawdown": mdd,
        "calmar": _ratio(cagr, mdd) if n else 0.0,
        "n_periods": int(n),
    }


def drawdown_of(equity: np.ndarray) -> np.ndarray:
    """equity / running peak - 1, with the starting capital 1 as the first peak."""
    peak = np.maximum.accumulate(np.maximum(equity, 1.0))
    return equity / peak - 1.0


@dataclass
class BacktestResult:
    """Per-period figures, per-row weights and returns, the trade log and metrics."""

    metrics: dict[str, float]
    periods: np.ndarray       # period keys (as given in Market.period)
    period_pnl: np.ndarray    # return on capital per period
    equity: np.ndarray        # cumprod(1 + period_pnl)
    drawdown: np.ndarray      # equity / running peak - 1 (<= 0)
    trades: pd.DataFrame      # TRADE_COLUMNS
    weight: np.ndarray = field(repr=False, default=None)  # (n,) held from row j to j+1
    pnl: np.ndarray = field(repr=False, default=None)     # (n,) return realised at row j
    cost: np.ndarray = field(repr=False, default=None)    # (n,) costs at row j (in pnl)


def _span_starts(span: np.ndarray, m: Market) -> np.ndarray:
    prev_in = np.r_[False, span[:-1] & (m.run[1:] == m.run[:-1])]
    return np.flatnonzero(span & ~prev_in)


def _fold_entry_rows(span: np.ndarray, m: Market) -> np.ndarray:
    """The span without its first row per run: that row earns nothing (its entry cost is
    folded into the next row), so no period of zero return pads the series."""
    out = span.copy()
    out[_span_starts(span, m)] = False
    return out


def _fold(values: np.ndarray, span: np.ndarray, m: Market, compound: bool) -> np.ndarray:
    out = values.copy()
    first = _span_starts(span, m)
    nxt = out[first + 1]
    out[first + 1] = (1 + out[first]) * (1 + nxt) - 1 if compound else out[first] + nxt
    return out


def evaluate_weights(w: np.ndarray, m: Market, trades: pd.DataFrame, *, cost_bps: float,
                     at_touch: bool, periods_per_year: float) -> BacktestResult:
    """Returns, costs, periods and statistics of the weights `w` over the market's span."""
    if cost_bps < 0:
        raise LobseqError(f"cost_bps must be >= 0, got {cost_bps!r}", field="cost_bps")
    ret, cost, traded = row_returns(w, m, cost_bps, at_touch)
    span = m.span()
    periods = _fold_entry_rows(span, m)
    keys, r = period_returns(_fold(ret, span, m, compound=True), m, periods)
    _, turn = period_returns(_fold(traded, span, m, compound=False), m, periods, compound=False)
    equity = np.cumprod(1.0 + r)
    interval = span & np.r_[m.run[1:] == m.run[:-1], False]
    metrics = performance(r, periods_per_year)
    metrics.update(
        hit_rate=float((trades["pnl"] > 0).mean()) if len(trades) else float("nan"),
        n_trades=int(len(trades)),
        turnover=float(turn.mean()) if turn.size else 0.0,
        exposure=float(np.abs(w[interval]).mean()) if interval.any() else 0.0,
        total_cost=float(cost[span].sum()),
    )
    return BacktestResult(metrics=metrics, periods=keys, period_pnl=r, equity=equity,
                          drawdown=drawdown_of(equity), trades=trades, weight=w,
                          pnl=ret, cost=cost)


def backtest(signal, m: Market, *, cost_bps: float = 0.0, at_touch: bool = False,
             periods_per_year: float = 252.0) -> BacktestResult:
    """Trade the decisions `signal` (n,) on market `m` (module conventions)."""
    return evaluate_weights(sleeve_weights(signal, m), m, trade_log(signal, m, cost_bps, at_touch),
                            cost_bps=cost_bps, at_touch=at_touch,
                            periods_per_year=periods_per_year)


def buy_and_hold(m: Market, *, cost_bps: float = 0.0, at_touch: bool = False,
                 periods_per_year: float = 252.0) -> BacktestResult:
    """Fully long over each run's span (same rows and periods as any signal on `m`):
    bought at the span's first row, sold at its last; one trade per run."""
    span = m.span()
    w = (span & np.r_[span[1:], False] & np.r_[m.run[1:] == m.run[:-1], False]).astype(float)
    idx = np.flatnonzero(span)
    first = idx[np.r_[True, m.run[idx][1:] != m.run[idx][:-1]]] if idx.size else idx
    last = idx[np.r_[m.run[idx][1:] != m.run[idx][:-1], True]] if idx.size else idx
    buy, sell, _ = _fills(m, at_touch)
    ratio = sell[last] / buy[first] if idx.size else np.zeros(0)
    cost = cost_bps * 1e-4 * (1.0 + ratio)
    trades = pd.DataFrame({"signal_row": first - m.entry_lag, "entry_row": first,
                           "exit_row": last, "side": np.ones(first.size, dtype=np.int8),
                           "weight": 1.0, "entry_price": buy[first], "exit_price": sell[last],
                           "return": ratio - 1.0, "cost": cost, "pnl": ratio - 1.0 - cost},
                          columns=TRADE_COLUMNS)
    return evaluate_weights(w, m, trades, cost_bps=cost_bps, at_touch=at_touch,
                            periods_per_year=periods_per_year)


def run_backtest(signal, px, *, horizon: int = 1, entry_lag: int = 1, bid=None, ask=None,
                 cost_bps: float = 0.0, at_touch: bool = False, periods_per_year: float = 252.0,
                 run=None, period=None, decide=None) -> BacktestResult:
    """`backtest` on plain arrays: see `make_market` for the arguments."""
    m = make_market(px, horizon=horizon, entry_lag=entry_lag, run=run, period=period,
                    decide=decide, bid=bid, ask=ask)
    return backtest(signal, m, cost_bps=cost_bps, at_touch=at_touch,
                    periods_per_year=periods_per_year)
