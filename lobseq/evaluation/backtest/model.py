"""Backtest a logged model on a dataset split, next to buy-and-hold and the baselines.

The trade is the dataset's execution contract (`lobseq.data.execution`, read from its
manifest): the decision at a window end t is entered `entry_lag` rows later and held
`horizon` rows, in sleeves of 1/horizon of the capital (`lobseq.evaluation.backtest.engine`).
Default costs, stated in every table: bars 1 bps per leg of the net traded notional at
the execution price; books 0 bps and fills at the touch (half the spread per leg).
Periods: bars one day (252 a year); order books a fixed clock interval (default one
minute; 252 x 390 a year for 60 s); FI-2010 (no clock) blocks of 100 events, not
annualized.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from lobseq.data.execution import Execution, execution_of
from lobseq.data.splits import SPLIT_NAMES
from lobseq.errors import LobseqError
from lobseq.evaluation.backtest.engine import Market
from lobseq.evaluation.backtest.report import format_backtest_table, log_backtest
from lobseq.evaluation.config import BacktestConfig

DAY_NS = 86_400 * 10**9
TRADING_SECONDS = 6.5 * 3600  # one regular US session
DEFAULT_COST_BPS = {"bars": 1.0, "book": 0.0}
DEFAULT_INTERVAL_S = 60.0
FI2010_EVENTS = 100  # events per period on FI-2010 (its rows carry no clock)


@dataclass(frozen=True)
class Conventions:
    """How a backtest fills and costs trades and how it annualizes: stated in every table."""

    execution: Execution
    cost_bps: float
    at_touch: bool
    periods_per_year: float
    period: str  # "day" | "<s>s" clock interval | "<n> events"

    def costs_line(self) -> str:
        fill = ("fills at the touch (half the spread per leg)" if self.at_touch else
                f"fills at the {'adjusted ' if self.execution.kind == 'bars' else ''}"
                f"{self.execution.price}")
        return f"costs {self.cost_bps:g} bps per leg of net traded notional; {fill}"

    def annualization_line(self) -> str:
        if self.period.endswith("events"):
            return f"Sharpe/Sortino per {self.period} period, not annualized (no clock)"
        if self.period == "day":
            return f"Sharpe/Sortino from daily returns x sqrt({self.periods_per_year:,.0f})"
        secs = float(self.period[:-1])
        what = f"{secs / 60:g}-minute" if secs % 60 == 0 else f"{secs:g}-second"
        per_day = TRADING_SECONDS / secs
        return (f"Sharpe/Sortino from {what} returns x sqrt({self.periods_per_year:,.0f})"
                f" ({self.periods_per_year / per_day:g} days x {per_day:g} periods of a 6.5 h session)")

    def lines(self) -> list[str]:
        out = [f"execution: {self.execution.describe()}", f"{self.costs_line()}; "
               f"{self.annualization_line()}"]
        return out

    def params(self) -> dict:
        return {"cost_bps": self.cost_bps, "at_touch": self.at_touch,
                "periods_per_year": self.periods_per_year, "period": self.period,
                "entry": self.execution.entry, "horizon": self.execution.horizon}


def conventions(ds, *, cost_bps: float | None = None, at_touch: bool | None = None,
                periods_per_year: float | None = None, interval_s: float | None = None
                ) -> Conventions:
    """The dataset's contract plus cost, fill and period settings (None: the kind's default)."""
    exe = execution_of(ds.manifest, ds.path)
    if at_touch and exe.kind == "bars":
        raise LobseqError("bars have no bid and ask to fill at", field="at_touch",
                          fix="fill bars at the execution price; charge --cost-bps instead")
    cost = DEFAULT_COST_BPS[exe.kind] if cost_bps is None else float(cost_bps)
    touch = (exe.kind == "book") if at_touch is None else bool(at_touch)
    if cost < 0 or (periods_per_year is not None and periods_per_year <= 0) or \
            (interval_s is not None and interval_s <= 0):
        raise LobseqError("cost_bps must be >= 0, periods_per_year and interval_s > 0",
                          field="cost_bps/periods_per_year/interval_s")
    if exe.kind == "bars":
        period, ppy = "day", 252.0
    elif ds.manifest.get("format") == "fi2010":
        period, ppy = f"{FI2010_EVENTS} events", 1.0
    else:
        secs = DEFAULT_INTERVAL_S if interval_s is None else float(interval_s)
        period, ppy = f"{secs:g}s", 252.0 * TRADING_SECONDS / secs
    return Conventions(exe, cost, touch, float(periods_per_year or ppy), period)


@dataclass
class BacktestRows:
    """The rows a backtest walks: dataset rows in order and the market built on them."""

    rows: np.ndarray    # dataset row indices, increasing
    market: Market
    dropped: int        # rows dropped for non-finite or non-positive prices
    skipped: int        # window ends whose exit row is not in their run (never traded)


def _period_keys(ds, rows: np.ndarray, conv: Conventions) -> np.ndarray:
    ts = np.asarray(ds.timestamps[rows], dtype=np.int64)
    if conv.period == "day":
        return ts // DAY_NS
    if conv.period.endswith("events"):
        return rows // FI2010_EVENTS
    return ts // int(round(float(conv.period[:-1]) * 1e9))


def _period_labels(keys: np.ndarray, conv: Conventions) -> np.ndarray:
    """Period keys as the start time of each period (datetime64), or event blocks."""
    if conv.period.endswith("events"):
        return keys * FI2010_EVENTS
    step = DAY_NS if conv.period == "day" else int(round(float(conv.period[:-1]) * 1e9))
    return (np.asarray(keys, dtype=np.int64) * step).astype("datetime64[ns]")


def backtest_rows(ds, rows: np.ndarray, ends: np.ndarray, conv: Conventions) -> BacktestRows:
    """Rows with usable prices; runs break at a segment change or a gap in rows."""
    from lobseq.evaluation.backtest.engine import make_market

    rows = np.asarray(rows, dtype=np.int64)
    px = np.asarray(ds.prices[rows], dtype=np.float64)
    cols = px if conv.at_touch else px[:, :1]
    ok = np.isfinite(cols).all(axis=1) & (cols > 0).all(axis=1)
    rows, px = rows[ok], px[ok]
    seg = np.asarray(ds.segment[rows])
    run = np.cumsum(np.r_[True, (seg[1:] != seg[:-1]) | (np.diff(rows) > 1)]) - 1
    decide = np.isin(rows, ends)
    m = make_market(px[:, 0], horizon=conv.execution.horizon, entry_lag=conv.execution.entry_lag,
                    run=run, period=_period_keys(ds, rows, conv), decide=decide,
                    bid=px[:, 1] if conv.at_touch else None, ask=px[:, 2] if conv.at_touch else None)
    return BacktestRows(rows=rows, market=m, dropped=int((~ok).sum()),
                        skipped=int(decide.sum() - m.decide.sum()))


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


def backtest_probas(ds, rows: np.ndarray, ends: np.ndarray, probas: dict[str, np.ndarray],
                    conv: Conventions, *, tau: float = 0.0, mode: str = "long_short",
                    what: str = "the rows") -> tuple[BacktestRows, dict, dict]:
    """Backtest each `probas[who]` (probabilities at `ends`) over `rows`, plus buy-and-hold,
    all over the same span and periods.

    Returns (rows walked, {who: BacktestResult}, flat `<who>_<metric>` dict with `rows`,
    `dropped_rows`, `skipped_decisions` and the conventions).
    """
    from lobseq.evaluation.backtest.engine import backtest, buy_and_hold
    from lobseq.evaluation.verdict import add_sharpe_comparison

    br = backtest_rows(ds, rows, ends, conv)
    if not br.market.decide.any():
        raise LobseqError(f"{what} hold no window end whose trade can exit inside the data",
                          file=ds.path, field="split")
    kw = dict(cost_bps=conv.cost_bps, at_touch=conv.at_touch,
              periods_per_year=conv.periods_per_year)
    results = {who: backtest(signal_on_rows(br, ends, p, tau, mode), br.market, **kw)
               for who, p in probas.items()}
    results["buy_and_hold"] = buy_and_hold(br.market, **kw)
    out: dict = {}
    for who, res in results.items():
        res.periods = _period_labels(res.periods, conv)
        out.update({f"{who}_{k}": v for k, v in res.metrics.items()})
    add_sharpe_comparison(out, results, conv.periods_per_year)
    out.update(rows=int(len(br.rows)), dropped_rows=br.dropped, skipped_decisions=br.skipped,
               **conv.params(), costs=conv.costs_line(), label=conv.execution.label,
               label_is_traded_return=conv.execution.label_is_traded_return)
    return br, results, out


_DEFAULTS = BacktestConfig()  # the defaults below are BacktestConfig's, declared there once


def backtest_model(model_uri: str, dataset_path, split: str = _DEFAULTS.split, *,
                   tau: float = _DEFAULTS.tau, mode: str = _DEFAULTS.mode,
                   cost_bps: float | None = _DEFAULTS.cost_bps,
                   at_touch: bool | None = _DEFAULTS.at_touch,
                   periods_per_year: float | None = _DEFAULTS.periods_per_year,
                   interval_s: float | None = _DEFAULTS.interval_s,
                   max_baseline_train: int | None = _DEFAULTS.max_baseline_train,
                   seed: int = _DEFAULTS.seed, log_to_mlflow: bool = True,
                   log: Callable[[str], None] | None = print) -> dict:
    """Trade the model's probabilities on `split` (module conventions), next to buy-and-hold
    and the baselines' signals under the same rules.

    Returns a flat dict: `<who>_<metric>` (who: model, buy_and_hold and the baselines;
    metrics of `engine.evaluate_weights`), `rows`, `dropped_rows`, `skipped_decisions`,
    the conventions (`cost_bps`, `at_touch`, `periods_per_year`, `period`, `costs`),
    `verdict`, `split`, `model_uri`, `model_run_id`, `run_id`.
    """
    from lobseq.evaluation.backtest.engine import MODES
    from lobseq.evaluation.baselines import baseline_probas, fit_baselines
    from lobseq.evaluation.evaluate import (
        _as_dataset,
        _check_split,
        check_compatible,
        predict_proba,
    )
    from lobseq.evaluation.verdict import model_class_weight, trading_verdict
    from lobseq.serving.loader import load_model

    if mode not in MODES or tau < 0:
        raise LobseqError(f"mode must be one of {', '.join(MODES)} and tau >= 0, got {mode!r}, "
                          f"{tau!r}", field="mode/tau")
    ds = _as_dataset(dataset_path)
    conv = conventions(ds, cost_bps=cost_bps, at_touch=at_touch,
                       periods_per_year=periods_per_year, interval_s=interval_s)
    ends = _check_split(ds, split)
    model = load_model(model_uri)
    check_compatible(model, ds)
    proba = predict_proba(model, ds, ends)
    baselines = fit_baselines(ds, ds.ends["train"], ds.ends["val"],
                              class_weight=model_class_weight(model),
                              max_train=max_baseline_train, seed=seed)
    probas = {"model": proba, **baseline_probas(baselines, ds, ends)}
    rows = np.flatnonzero(np.asarray(ds.split) == SPLIT_NAMES.index(split))
    br, results, out = backtest_probas(ds, rows, ends, probas, conv, tau=tau, mode=mode,
                                       what=f"the '{split}' split")
    out.update(split=split, model_uri=model.uri, model_run_id=model.run_id or "", run_id="")
    v = trading_verdict(out)
    out["verdict"] = v.line
    title = f"Backtest of {model.uri} on {ds.name} [{split}]  mode {mode}, tau {tau:g}"
    table = format_backtest_table(out, list(results), title, conv.lines()) + f"\nverdict: {v.line}"
    if log:
        log(table)
    if log_to_mlflow:
        params = {"model_uri": model.uri, "split": split, "tau": tau, "mode": mode,
                  **conv.params()}
        out["run_id"] = log_backtest(ds, model, split, br, results, out, table, params,
                                     verdict=v)
        if log:
            log(f"MLflow run {out['run_id']}")
    return out
