"""The stage types a pipeline can run: what each depends on (hashed into its key) and what it does."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lobseq.errors import LobseqError
from lobseq.io import sha256_file
from lobseq.workflow.spec import Pipeline, Stage, _ingest_config, _train_config


@dataclass
class StageContext:
    pipeline: Pipeline
    stage: Stage
    upstream: list[dict]  # outputs of ancestor stages, nearest first
    log: Callable[[str], None]
    run_id: str = ""  # this stage's MLflow run

    def find(self, key: str) -> Any:
        for out in self.upstream:
            if key in out:
                return out[key]
        return None

    def dataset(self) -> str:
        path = self.stage.settings.get("dataset") or self.find("dataset")
        if not path:
            raise LobseqError("no dataset: set 'dataset' or add an ingest stage", field="dataset")
        return path


def _dataset_hash(path: str) -> str:
    manifest = Path(path) / "manifest.json"
    if not manifest.exists():
        raise LobseqError("no dataset here (manifest.json missing)", file=path,
                          fix="run the ingest stage first")
    return sha256_file(manifest)


def _source_files(sources: list[str]) -> list[str]:
    files: list[str] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
        elif p.exists():
            files.append(str(p))
        else:
            raise LobseqError("source not found", file=s, fix="check the 'sources' paths")
    return files


def _as_list(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _candidates(ctx: StageContext) -> dict[str, dict]:
    models = ctx.find("models")
    if not models:
        raise LobseqError("no trained models upstream", field="needs")
    return models


def _simulate_inputs(ctx: StageContext) -> dict:
    return {}


def _simulate_run(ctx: StageContext) -> dict:
    from lobseq.data.simulate import simulate_bars, simulate_lobster

    s = ctx.stage.settings
    if s["kind"] == "lobster":
        paths = simulate_lobster(s["out"], events=s["events"], levels=s["levels"], days=s.get("days") or 1,
                                 seed=s["seed"], ticker=s["ticker"])
    else:
        paths = simulate_bars(s["out"], symbols=tuple(s.get("symbols") or ("AAA", "BBB", "CCC")),
                              days=s.get("days") or 750, seed=s["seed"], fmt=s["file_format"])
    ctx.log(f"  wrote {len(paths)} file(s) to {s['out']}")
    return {"raw": s["out"], "files": {str(p): sha256_file(p) for p in paths}}


def _simulate_valid(out: dict) -> bool:
    return all(Path(p).exists() and sha256_file(p) == h for p, h in out.get("files", {}).items())


def _ingest_sources(ctx: StageContext) -> list[str]:
    return _as_list(ctx.stage.settings.get("sources")) or [ctx.find("raw")]


def _ingest_inputs(ctx: StageContext) -> dict:
    return {f: sha256_file(f) for f in _source_files(_ingest_sources(ctx))}


def _ingest_run(ctx: StageContext) -> dict:
    from lobseq.data.ingest import ingest, summary

    s = ctx.stage.settings
    ds = ingest(_ingest_sources(ctx), s["out"], _ingest_config(s), log=ctx.log)
    ctx.log(summary(ds))
    return {"dataset": s["out"], "dataset_hash": ds.hash}


def _ingest_valid(out: dict) -> bool:
    try:
        return _dataset_hash(out["dataset"]) == out["dataset_hash"]
    except LobseqError:
        return False


def _train_inputs(ctx: StageContext) -> dict:
    return {"dataset": _dataset_hash(ctx.dataset())}


def _train_run(ctx: StageContext) -> dict:
    from lobseq.training.run import logged_model_uri, train_and_log

    s = ctx.stage.settings
    dataset = ctx.dataset()
    models = {}
    for m in s["models"]:
        ctx.log(f"  training {m}")
        run_id = train_and_log(dataset, _train_config(s, m), experiment=ctx.pipeline.experiment,
                               register=s.get("register"), log=ctx.log)
        models[m] = {"run_id": run_id, "model_uri": logged_model_uri(run_id)}
    return {"dataset": dataset, "models": models}


def _models_inputs(ctx: StageContext) -> dict:
    return {"dataset": _dataset_hash(ctx.dataset()),
            "models": {m: v["run_id"] for m, v in _candidates(ctx).items()}}


def _evaluate_run(ctx: StageContext) -> dict:
    from lobseq.evaluation.evaluate import evaluate_model

    s, dataset = ctx.stage.settings, ctx.dataset()
    evaluations = {}
    for m, info in _candidates(ctx).items():
        metrics = evaluate_model(info["model_uri"], dataset, split=s["split"], **_eval_options(s))
        evaluations[m] = _jsonable(metrics)
        ctx.log(f"  {m}: " + ", ".join(f"{k} {v:.4f}" for k, v in evaluations[m].items()
                                       if isinstance(v, float) and "_ci" not in k)[:200])
    return {"evaluations": evaluations, "split": s["split"]}


def _eval_options(settings: dict) -> dict:
    return {k: settings[k] for k in ("n_boot", "max_baseline_train") if settings.get(k) is not None}


def _backtest_run(ctx: StageContext) -> dict:
    from lobseq.evaluation.backtest.model import backtest_model

    s, dataset = ctx.stage.settings, ctx.dataset()
    results = {}
    for m, info in _candidates(ctx).items():
        results[m] = _jsonable(backtest_model(info["model_uri"], dataset, split=s["split"],
                                              **(s.get("params") or {})))
    return {"backtests": results}


def _promote_run(ctx: StageContext) -> dict:
    from mlflow import MlflowClient

    from lobseq import registry
    from lobseq.evaluation.evaluate import evaluate_model

    s, dataset = ctx.stage.settings, ctx.dataset()
    rule = registry.PromotionRule(metric=s["metric"], margin=float(s["margin"]),
                                  require_ci=s["require_ci"], greater_is_better=s.get("greater_is_better"),
                                  gate=s.get("gate", "baselines"),
                                  require_trading=bool(s.get("require_trading")))
    evaluations = ctx.find("evaluations") or {}
    if ctx.find("split") not in (None, s["split"]):
        raise LobseqError(f"the evaluate stage scored split '{ctx.find('split')}', promote compares "
                          f"on '{s['split']}'", field="split", fix="use the same split in both")
    # the champion is scored exactly as the challengers were (same options, same split)
    evaluate_settings = next((a.settings for a in ctx.pipeline.ancestors(ctx.stage)
                              if a.type == "evaluate"), {})
    candidates = _candidates(ctx)
    scored = {m: evaluations[m] for m in candidates if m in evaluations}
    if not scored:
        raise LobseqError("no evaluated models to promote", field="needs")
    higher = rule.better_is_higher()
    best = (max if higher else min)(scored, key=lambda m: registry.score_of(scored[m], rule.metric))
    ctx.log(f"  challenger: {best} ({rule.metric} {registry.score_of(scored[best], rule.metric):.4f})")

    def record(decision: registry.Decision) -> None:  # before the alias moves
        if ctx.run_id:
            MlflowClient().log_dict(ctx.run_id, {**decision.to_dict(), "challenger_model": best},
                                    "promotion_decision.json")

    # the gate's trading test reads the challenger's backtest (Sharpe after costs vs buy-and-hold)
    trading = {k: v for k, v in ((ctx.find("backtests") or {}).get(best) or {}).items()
               if k in ("model_sharpe", "buy_and_hold_sharpe", "costs")}
    decision = registry.champion_challenger(
        s["model_name"], candidates[best]["model_uri"], {**scored[best], **trading},
        evaluate=lambda uri: _jsonable(evaluate_model(uri, dataset, split=s["split"],
                                                      **_eval_options(evaluate_settings))),
        rule=rule, log=ctx.log, on_decision=record)
    out = {"decision": {**decision.to_dict(), "challenger_model": best}}
    verdict = ("PROMOTED" if decision.promote else "kept the champion"
               if decision.gate.get("passed", True) else "NOT PROMOTED")
    ctx.log(f"  {verdict}: {decision.reason}")
    return out


def _always_valid(out: dict) -> bool:
    return True


@dataclass(frozen=True)
class StageType:
    inputs: Callable[[StageContext], dict]
    run: Callable[[StageContext], dict]
    valid: Callable[[dict], bool] = _always_valid


STAGES: dict[str, StageType] = {
    "simulate": StageType(_simulate_inputs, _simulate_run, _simulate_valid),
    "ingest": StageType(_ingest_inputs, _ingest_run, _ingest_valid),
    "train": StageType(_train_inputs, _train_run),
    "evaluate": StageType(_models_inputs, _evaluate_run),
    "backtest": StageType(_models_inputs, _backtest_run),
    # promote's key leaves out the current champion: an unchanged challenger is judged once
    # (re-judging it would register the same model again).
    "promote": StageType(_models_inputs, _promote_run),
}


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj
