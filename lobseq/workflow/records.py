"""What a pipeline run records in MLflow besides its stages: params, headline metrics, the
outcome (reuse, verdict, promotion decision) as tags, the summary table, an informative name.

Pipeline run (`demo · gru promoted v2 · 2026-11-30 14:05`, `lobseq.kind=pipeline`;
its description: decision, verdict and the summary table):
  params   `pipeline.*` and every stage setting as `<stage>.<key>`
  metrics  per model `<model>/<split>_macro_f1`, its interval, the best baseline, the
           comparison (`lobseq.evaluation.runs` names) and the backtest headline
  tags     `lobseq.stage.<stage>` = ran | reused <run id>, `lobseq.outcome`,
           `lobseq.verdict` (+ `_outcome`), `lobseq.decision` (+ `_reason`), `lobseq.champion`
  files    summary.txt (the printed summary), pipeline_summary.json, pipeline.yaml
Stage runs carry the same per-model metrics for their own models.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from lobseq.workflow.runner import findings


def flat_params(settings: dict, prefix: str = "") -> dict[str, str]:
    """Nested settings → `a.b.c` params (values as text, at most 500 characters)."""
    flat: dict[str, str] = {}

    def walk(key: str, v: Any) -> None:
        if isinstance(v, dict) and v:
            for k, x in v.items():
                walk(f"{key}.{k}" if key else str(k), x)
        else:
            flat[key] = str(v)[:500]

    walk(prefix, settings)
    return flat


def pipeline_params(pipe, force: bool) -> dict[str, str]:
    params = {"pipeline.name": pipe.name, "pipeline.experiment": pipe.experiment,
              "pipeline.file": str(getattr(pipe, "path", "") or ""), "pipeline.force": str(force),
              "pipeline.engine": pipe.engine.name}
    if pipe.engine.name == "ray":
        params["pipeline.ray_address"] = str(pipe.engine.cluster_address() or "local instance")
    for stage in pipe.stages:
        params[f"{stage.name}.type"] = stage.type
        params.update(flat_params(stage.settings, stage.name))
    return params


def stage_metrics(outputs: dict) -> dict[str, float]:
    """`<model>/<name>` headline metrics of a stage's evaluations and backtests."""
    from lobseq.evaluation.runs import backtest_headline, evaluation_headline

    split = outputs.get("split", "test")
    out: dict[str, float] = {}
    for model, scores in (outputs.get("evaluations") or {}).items():
        out.update({f"{model}/{k}": v for k, v in evaluation_headline(scores, split).items()})
    for model, bt in (outputs.get("backtests") or {}).items():
        out.update({f"{model}/{k}": v for k, v in backtest_headline(bt, bt.get("split", split)).items()})
    return out


def _finite(v) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) \
        else None


def verdict(evaluations: dict, backtests: dict | None = None) -> tuple[str, str] | None:
    """(outcome, one line) of `lobseq.evaluation.verdict` for the best model by macro-F1."""
    from lobseq.evaluation.verdict import verdict as verdict_of

    scored = {m: e for m, e in evaluations.items() if _finite(e.get("macro_f1")) is not None}
    if not scored:
        return None
    model = max(scored, key=lambda m: scored[m]["macro_f1"])
    v = verdict_of(scored[model], (backtests or {}).get(model))
    return v.outcome, f"{model}: {v.line}"


def outcome(result) -> tuple[dict[str, str], str]:
    """(tags, short outcome for the run name) of a finished pipeline."""
    tags: dict[str, str] = {}
    ran = [s for s in result.stages if s.status == "ran"]
    for s in result.stages:
        tags[f"lobseq.stage.{s.name}"] = "ran" if s.status == "ran" else f"reused {s.reused_from}"
    tags["lobseq.outcome"] = (f"ran {len(ran)}, reused {len(result.stages) - len(ran)}" if ran
                              else f"unchanged: reused all {len(result.stages)} stages")
    evaluations, backtests, decision, decided_now = findings(result.stages)
    short = "" if ran else "unchanged"
    found = verdict(evaluations, backtests)
    if found:
        tags["lobseq.verdict_outcome"], tags["lobseq.verdict"] = found
    if decision:
        ch, champ = decision.get("challenger") or {}, decision.get("champion") or {}
        tags["lobseq.decision"] = _decision_tag(decision, champ)
        tags["lobseq.decision_reason"] = str(decision.get("reason", ""))[:500]
        kept = ch if decision.get("promote") else champ
        tags["lobseq.champion"] = (f"{kept.get('name', ch.get('name'))} v{kept['version']}"
                                   if kept.get("version") else "none")
        if decided_now:
            short = (f"{decision.get('challenger_model')} promoted v{ch.get('version')}"
                     if decision.get("promote") else f"champion kept v{champ['version']}"
                     if champ.get("version") else "no champion (gate not passed)")
    elif found and ran:
        short = f"model {found[0]} baseline" if found[0] in ("beats", "within", "worse") else ""
    return tags, short


def _decision_tag(decision: dict, champion: dict) -> str:
    """promoted | kept_champion | below_baseline (the gate stopped it) | not_promoted."""
    if decision.get("promote"):
        return "promoted"
    if (decision.get("gate") or {}).get("passed") is False:
        return "below_baseline"
    return "kept_champion" if champion.get("version") else "not_promoted"


def record(result, summary_text: str) -> None:
    """Into the active (pipeline) run: outcome tags, headline metrics, summary, name."""
    import mlflow

    from lobseq.tracking import SEP, run_name, set_description

    tags, short = outcome(result)
    mlflow.set_tags(tags)
    metrics: dict[str, float] = {}
    for s in result.stages:
        metrics.update(stage_metrics(s.outputs))
    if metrics:
        mlflow.log_metrics(metrics)
    mlflow.log_text(summary_text, "summary.txt")
    mlflow.log_dict({s.name: {"status": s.status, "run_id": s.run_id, "seconds": s.seconds,
                              "reused_from": s.reused_from, "outputs": s.outputs}
                     for s in result.stages}, "pipeline_summary.json")
    path = getattr(result.pipeline, "path", None)
    if path and Path(path).is_file():
        mlflow.log_text(Path(path).read_text(), "pipeline.yaml")  # as written; --set is in params
    set_description(_description(tags, summary_text))
    if short:  # `demo · 2026-11-30 14:05` → `demo · gru promoted v2 · 2026-11-30 14:05`
        pipe = result.pipeline.name
        when = mlflow.active_run().info.run_name[len(pipe) + len(SEP):]
        mlflow.set_tag("mlflow.runName", run_name(pipe, short, when))


def _description(tags: dict[str, str], summary_text: str) -> str:
    lines = []
    if "lobseq.decision" in tags:
        who = ("no model is champion" if tags["lobseq.champion"] == "none"
               else f"{tags['lobseq.champion']} is champion")
        lines.append(f"**{tags['lobseq.decision'].replace('_', ' ')}**: {who} — "
                     f"{tags['lobseq.decision_reason']}")
    if "lobseq.verdict" in tags:
        lines.append(f"Verdict: {tags['lobseq.verdict']}")
    lines.append(f"Stages: {tags['lobseq.outcome']}")
    return "  \n".join(lines) + f"\n\n```\n{summary_text}\n```"
