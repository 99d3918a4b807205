"""Backtest a logged model on a dataset split, next to buy-and-hold and the baselines.

Rows, runs and signals: see `lobseq.evaluation.evaluate`'s conventions; the
execution rules are `lobseq.evaluation.backtest.engine`'s.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lobseq.data.splits import SPLIT_NAMES
from lobseq.errors import LobseqError
from lobseq.evaluation.backtest.report import format_backtest_table, log_backtest
from lobseq.evaluation.baselines import baseline_probas, fit_baselines
from lobseq.evaluation.config import BacktestConfig
from lobseq.evaluation.evaluate import _as_dataset, _check_split, check_compatible, predict_proba
from lobseq.serving.loader import load_logged_model


@dataclass
class BacktestRows:
    """The rows a backtest walks: dataset rows in order, their run ids and price arrays."""

    rows: np.ndarray   # dataset row indices, increasing
    run: np.ndarray    # run label per row (segment change or gap in rows → new run)
    mid: np.ndarray
    bid: np.ndarray
    ask: np.ndarray
    day: np.ndarray    # calendar day (int, days since epoch) per row, for period P&L
    dropped: int       # rows dropped for non-finite or non-positive prices


def backtest_rows(ds, rows: np.ndarray, at_touch: bool = False) -> BacktestRows:
    rows = np.asarray(rows, dtype=np.int64)
    seg = np.asarray(ds.segment[rows])
    new = np.ones(len(rows), dtype=bool)
    new[1:] = (seg[1:] != seg[:-1]) | (np.diff(rows) > 1)
    run = np.cumsum(new) - 1
    px = np.asarray(ds.prices[rows], dtype=np.float64)
    cols = px if at_touch else px[:, :1]
    ok = np.isfinite(cols).all(axis=1) & (cols > 0).all(axis=1)
    day = np.asarray(ds.timestamps[rows], dtype=np.int64) // (86_400 * 10**9)
    return BacktestRows(rows=rows[ok], run=run[ok], mid=px[ok, 0], bid=px[ok, 1], ask=px[ok, 2],
                        day=day[ok], dropped=int((~ok).sum()))


def signal_on_rows(br: BacktestRows, ends: np.ndarray, proba: np.ndarray, tau: float,
                   mode: str) -> np.ndarray:
    """-1/0/+1 per backtest row: from `proba` at window ends, 0 at every other row."""
    from lobseq.evaluation.backtest.engine import positions_from_proba

    sig = positions_from_proba(proba, tau=tau, mode=mode)
    pos = np.searchsorted(br.rows, ends)
    hit = (pos < len(br.rows)) & (br.rows[np.minimum(pos, len(br.rows) - 1)] == ends)
    out = np.zeros(len(br.rows), dtype=np.int8)
    out[pos[hit]] = sig[hit]
    return out


def run_on_rows(br: BacktestRows, signal, *, horizon: int, cost_bps: float, at_touch: bool,
                periods_per_year: float, buy_hold: bool = False):
    """`lobseq.backtest.run_backtest` per the module conventions; risk metrics on daily P&L."""
    from lobseq.evaluation.backtest.engine import buy_and_hold, risk_metrics, run_backtest

    kw = dict(bid=br.bid, ask=br.ask, cost_bps=cost_bps, at_touch=at_touch,
              periods_per_year=periods_per_year, day=br.run)
    res = (buy_and_hold(br.mid, **kw) if buy_hold
           else run_backtest(signal, br.mid, horizon=horizon, **kw))
    _, inv = np.unique(br.day, return_inverse=True)
    period_pnl = np.bincount(inv, weights=res.pnl) if len(br.day) else np.zeros(0)
    res.period_pnl = period_pnl
    trades_per_row = np.abs(np.diff(res.position.astype(np.int64), prepend=0)).sum()
    res.metrics.update(risk_metrics(period_pnl, periods_per_year))
    res.metrics.update(n_periods=int(period_pnl.size),
                       turnover=float(trades_per_row / max(period_pnl.size, 1)))
    return res


_DEFAULTS = BacktestConfig()  # the defaults below are BacktestConfig's, declared there once


def backtest_model(model_uri: str, dataset_path, split: str = _DEFAULTS.split, *,
                   tau: float = _DEFAULTS.tau, mode: str = _DEFAULTS.mode,
                   cost_bps: float = _DEFAULTS.cost_bps, at_touch: bool = _DEFAULTS.at_touch,
                   periods_per_year: float = _DEFAULTS.periods_per_year,
                   max_baseline_train: int | None = _DEFAULTS.max_baseline_train,
                   seed: int = _DEFAULTS.seed, log_to_mlflow: bool = True,
                   log: Callable[[str], None] | None = print) -> dict:
    """Trade the model's probabilities on `split` (module conventions), next to buy-and-hold
    and the baselines' signals under the same rules.

    Returns a flat dict `<who>_<metric>` for who in model, buy_and_hold, prior,
    persistence, logistic, gbt and the metrics of `lobseq.backtest.run_backtest`
    (total_return, annualized_return/volatility, sharpe, sortino, max_drawdown,
    hit_rate, turnover, n_trades, exposure, total_cost, n_periods ...), plus
    `rows`, `dropped_rows`, and the strings `split`, `model_uri`, `model_run_id`, `run_id`.
    """
    from lobseq.evaluation.backtest.engine import MODES

    if mode not in MODES:
        raise LobseqError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", field="mode")
    if tau < 0 or cost_bps < 0 or periods_per_year <= 0:
        raise LobseqError("tau and cost_bps must be >= 0 and periods_per_year > 0",
                          field="tau/cost_bps/periods_per_year")
    ds = _as_dataset(dataset_path)
    ends = _check_split(ds, split)
    model = load_logged_model(model_uri)
    check_compatible(model, ds)
    proba = predict_proba(model, ds, ends)
    baselines = fit_baselines(ds, ds.ends["train"], max_train=max_baseline_train, seed=seed)
    probas = {"model": proba, **baseline_probas(baselines, ds, ends)}
    rows = np.flatnonzero(np.asarray(ds.split) == SPLIT_NAMES.index(split))
    br, results, out = backtest_probas(ds, rows, ends, probas, tau=tau, mode=mode,
                                       cost_bps=cost_bps, at_touch=at_touch,
                                       periods_per_year=periods_per_year, what=f"the '{split}' split")
    out.update(split=split, model_uri=model.uri, model_run_id=model.run_id or "", run_id="")
    table = format_backtest_table(out, list(results),
                                  f"Backtest of {model.uri} on {ds.name} [{split}]  mode {mode}, "
                                  f"tau {tau:g}, cost {cost_bps:g} bps"
                                  + (", at touch" if at_touch else ", at mid"))
    if log:
        log(table)
    if log_to_mlflow:
        params = {"model_uri": model.uri, "split": split, "tau": tau, "mode": mode,
                  "cost_bps": cost_bps, "at_touch": at_touch, "periods_per_year": periods_per_year,
                  "horizon": ds.horizon}
        out["run_id"] = log_backtest(ds, br, results, out, table, params,
                                     tags={"lobseq.kind": "backtest",
                                           "lobseq.model_run_id": model.run_id,
                                           "lobseq.model_uri": model.uri, "split": split},
                                     run_name=f"backtest-{ds.name}-{split}")
        if log:
            log(f"MLflow run {out['run_id']}")
    return out


def backtest_probas(ds, rows: np.ndarray, ends: np.ndarray, probas: dict[str, np.ndarray], *,
                    tau: float = 0.0, mode: str = "long_short", cost_bps: float = 0.0,
                    at_touch: bool = False, periods_per_year: float = 252.0,
                    what: str = "the rows") -> tuple[BacktestRows, dict, dict]:
    """Backtest each `probas[who]` (probabilities at `ends`) over `rows`, plus buy-and-hold.

    Returns (rows walked, {who: BacktestResult}, flat `<who>_<metric>` dict with
    `rows` and `dropped_rows`).
    """
    br = backtest_rows(ds, rows, at_touch)
    if len(br.rows) < 3:
        raise LobseqError(f"{what} has fewer than 3 rows with prices to trade", file=ds.path,
                          field="split")
    kw = dict(horizon=ds.horizon, cost_bps=cost_bps, at_touch=at_touch,
              periods_per_year=periods_per_year)
    results = {who: run_on_rows(br, signal_on_rows(br, ends, p, tau, mode), **kw)
               for who, p in probas.items()}
    results["buy_and_hold"] = run_on_rows(br, None, buy_hold=True, **kw)
    out: dict = {}
    for who, res in results.items():
        out.update({f"{who}_{k}": v for k, v in res.metrics.items()})
    out.update(rows=int(len(br.rows)), dropped_rows=br.dropped)
    return br, results, out
