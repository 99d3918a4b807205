"""The summary a pipeline run prints: stages, models against baselines, backtests, the decision."""

from __future__ import annotations

from typing import Any

from lobseq.workflow.runner import PipelineResult, findings


def summary_table(result: PipelineResult) -> str:
    """Stages; then per trained model its macro-F1 [95% CI], the best baseline's macro-F1
    and the backtest's total return and Sharpe; then the promotion decision.

    Reads `evaluate_model`'s flat keys (`macro_f1`, `macro_f1_ci_low/high`, `best_baseline`,
    `baseline_<name>_macro_f1`) and `backtest_model`'s (`model_total_return`,
    `model_sharpe`, `model_n_periods`). Sharpe is "n/a" when undefined (fewer than two
    daily P&L periods, or zero variance); "-" marks a stage the pipeline did not run.
    """
    # columns as wide as their longest entry plus two spaces (`walkforward` is 11 characters)
    name_w = max(len("stage"), *(len(s.name) for s in result.stages)) + 2
    type_w = max(len("type"), *(len(s.type) for s in result.stages)) + 2
    lines = [f"Pipeline {result.pipeline.name}  (MLflow run {result.run_id})",
             f"  {'stage':<{name_w}}{'type':<{type_w}}{'status':<9}{'seconds':>8}  run"]
    for s in result.stages:
        lines.append(f"  {s.name:<{name_w}}{s.type:<{type_w}}{s.status:<9}{s.seconds:>8.1f}  "
                     f"{s.run_id[:12]}")
    evals, backs, decision, decided_now = findings(result.stages)
    models = list(dict.fromkeys([*evals, *backs]))
    if models:
        lines.append("")
        lines.append(f"  {'model':<10}{'macro-F1 [95% CI]':<26}{'best baseline':<20}"
                     f"{'acc / majority':>16}{'total return':>14}{'Sharpe':>10}{'B&H Sharpe':>12}")
        for m in models:
            e, b = evals.get(m), backs.get(m)
            lines.append(f"  {m:<10}{_f1_cell(e):<26}{_best_baseline_cell(e):<20}"
                         f"{_accuracy_cell(e):>16}"
                         f"{_backtest_cell(b, 'total_return', '+.4f'):>14}"
                         f"{_backtest_cell(b, 'sharpe', '.2f'):>10}"
                         f"{_backtest_cell(b, 'sharpe', '.2f', 'buy_and_hold'):>12}")
        lines.extend(_verdict_lines(models, evals, backs))
        if any(b and _number(b.get("model_n_periods")) is not None and b["model_n_periods"] < 2
               for b in backs.values()):
            lines.append("  (Sharpe is annualized from daily P&L: undefined with one day)")
    if decision:
        ch = decision.get("challenger") or {}
        champ = decision.get("champion") or {}
        lines.append("")
        if decision["promote"]:
            head = f"PROMOTED: {ch.get('name')} v{ch.get('version')} ({decision.get('challenger_model')})"
        elif not champ:  # the gate stopped the first challenger: nobody is crowned
            head = (f"NOT PROMOTED: no champion yet and none crowned; challenger v{ch.get('version')}"
                    f" ({decision.get('challenger_model')})")
        else:  # name the champion that stays, not the challenger's new version
            head = (f"kept champion: {champ.get('name', ch.get('name'))} v{champ.get('version', '?')};"
                    f" challenger v{ch.get('version')} ({decision.get('challenger_model')})"
                    " not promoted")
        if not decided_now:
            head = f"(unchanged, decided by an earlier run) {head}"
        lines.append(f"  {head} — {decision['reason']}")
    return "\n".join(lines)


def _number(v: Any) -> float | None:
    """A finite float, or None (missing, NaN, infinite, not a number)."""
    import math

    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _f1_cell(e: dict | None) -> str:
    if not e:
        return "-"
    f1 = _number(e.get("macro_f1"))
    if f1 is None:
        return "n/a"
    lo, hi = _number(e.get("macro_f1_ci_low")), _number(e.get("macro_f1_ci_high"))
    return f"{f1:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else "")


def _best_baseline_cell(e: dict | None) -> str:
    best = (e or {}).get("best_baseline")
    if not best:
        return "-"
    f1 = _number(e.get(f"baseline_{best}_macro_f1"))
    return f"{best} " + (f"{f1:.4f}" if f1 is not None else "n/a")


def _backtest_cell(b: dict | None, metric: str, fmt: str, who: str = "model") -> str:
    if not b:
        return "-"
    if metric == "sharpe" and (_number(b.get(f"{who}_n_periods")) or 0) < 2:
        return "n/a"
    v = _number(b.get(f"{who}_{metric}"))
    return "n/a" if v is None else format(v, fmt)


def _accuracy_cell(e: dict | None) -> str:
    acc, maj = _number((e or {}).get("accuracy")), _number((e or {}).get("majority_rate"))
    return "-" if acc is None else f"{acc:.3f} / " + ("n/a" if maj is None else f"{maj:.3f}")


def _verdict_lines(models: list[str], evals: dict, backs: dict) -> list[str]:
    """One plain-words verdict per model (`lobseq.evaluation.verdict`), and the costs used."""
    from lobseq.evaluation.verdict import verdict

    out = [f"  verdict {m}: {verdict(evals.get(m), backs.get(m)).line}" for m in models]
    costs = {b.get("costs") for b in backs.values() if b and b.get("costs")}
    return out + [f"  backtest convention: {c}" for c in sorted(costs)]
