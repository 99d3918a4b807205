"""Backtest tables and their MLflow record (metrics, equity PNG, trade log, daily P&L)."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from lobseq.evaluation.backtest.model import BacktestRows


BACKTEST_COLUMNS = ("total_return", "annualized_return", "sharpe", "sortino", "max_drawdown",
                    "calmar", "hit_rate", "n_trades", "turnover", "exposure", "total_cost")
_HEAD = {"annualized_return": "CAGR", "total_return": "total", "max_drawdown": "max_dd",
         "total_cost": "cost"}


def format_backtest_table(metrics: dict, who: list[str], title: str = "",
                          conventions: list[str] | None = None) -> str:
    """Everyone's figures side by side, then the periods, the conventions and the units."""
    head = f"{'':<14}" + "".join(f"{_HEAD.get(c, c):>11}" for c in BACKTEST_COLUMNS)
    lines = ([title] if title else []) + [head, "-" * len(head)]
    for w in who:
        cells = []
        for c in BACKTEST_COLUMNS:
            v = metrics.get(f"{w}_{c}", float("nan"))
            cells.append(f"{int(v):>11,}" if c == "n_trades" else f"{v:>11.4f}")
        lines.append(f"{w:<14}" + "".join(cells))
    n = metrics.get(f"{who[0]}_n_periods", 0) if who else 0
    lines.append(f"periods {int(n):,} (the same for every row above)"
                 + ("; Sharpe/Sortino undefined with fewer than two" if n < 2 else ""))
    lines.extend(conventions or [])
    if metrics.get("label_is_traded_return") is False:
        lines.append(f"NOTE: the label is {metrics.get('label')} (a research target), not the "
                     "traded return; the trades earn the execution contract's return")
    lines.append("returns compound per period on capital (0.0065 = 0.65%), in sleeves of "
                 "1/horizon per decision (costs netted); hit_rate per trade (a sleeve as if traded alone,\n"
                 "after its own costs); turnover per period")
    return "\n".join(lines)


def log_backtest(ds, model, split: str, br: BacktestRows, results: dict, metrics: dict, table: str,
                 params: dict, verdict=None) -> str:
    """The backtest's run (`<model> · backtest · <split>`, placed as `lobseq.evaluation.runs`
    says): `<split>_bt_<who>_<metric>` metrics, equity + drawdown PNG, trade log and daily P&L
    CSVs; the headline also on the model's training run. Returns the run id."""
    import mlflow

    from lobseq.evaluation.runs import (
        backtest_headline,
        backtest_metrics,
        copy_to_training_run,
        run_context,
        table_description,
    )
    from lobseq.tracking import set_description

    ctx, training = run_context(model, ds, "backtest", split, "backtest", {})
    with ctx as run:
        set_description(table_description(f"{run.info.run_name} on {ds.name}", table))
        mlflow.log_params(params)
        mlflow.log_metrics(backtest_metrics(metrics, split))
        log_backtest_artifacts(ds, br, results, table, title=f"Equity: {run.info.run_name}")
        copy_to_training_run(training, ds, backtest_headline(metrics, split))
        if verdict is not None:
            verdict.log()
        return run.info.run_id


def log_backtest_artifacts(ds, br: BacktestRows, results: dict, table: str, title: str = "Equity",
                           artifact_dir: str = "backtest") -> None:
    """Into the active run: equity + drawdown PNG (the first result against the others),
    the first result's trade log, everyone's daily P&L, and the printed table."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    from lobseq.plots import plot_equity

    lead = "model" if "model" in results else next(iter(results))
    with tempfile.TemporaryDirectory(prefix="lobseq-bt-") as tmp:
        tmp = Path(tmp)
        res = results[lead]
        plot_equity(res.equity, res.drawdown, tmp / "equity.png",
                    benchmark={w: r.equity for w, r in results.items() if w != lead}, title=title)
        trade_log(ds, br, res.trades).to_csv(tmp / "trades.csv", index=False)
        daily = pd.DataFrame({"period": res.periods})
        for w, r in results.items():
            daily[w] = r.period_pnl
        daily.to_csv(tmp / "daily_pnl.csv", index=False)
        for f in ("equity.png", "trades.csv", "daily_pnl.csv"):
            mlflow.log_artifact(str(tmp / f), artifact_dir)
    mlflow.log_text(table, f"{artifact_dir}/backtest_table.txt")


def trade_log(ds, br: BacktestRows, trades: pd.DataFrame) -> pd.DataFrame:
    """The backtest's trades with dataset rows, timestamps, instrument and day."""
    t = trades.copy()
    segs = ds.manifest.get("segments") or []
    for col in ("signal_row", "entry_row", "exit_row"):  # positions in br.rows -> dataset rows
        idx = t[col].to_numpy(np.int64).clip(0, max(len(br.rows) - 1, 0))
        t[col] = br.rows[idx] if len(br.rows) else idx
        t[col.replace("_row", "_time")] = pd.to_datetime(np.asarray(ds.timestamps[t[col]]))
    seg_of = np.asarray(ds.segment[t["entry_row"].to_numpy(np.int64)]) if len(t) else []
    t.insert(0, "instrument", [segs[s]["instrument"] if s < len(segs) else "" for s in seg_of])
    t.insert(1, "day", [segs[s]["day"] if s < len(segs) else "" for s in seg_of])
    return t
