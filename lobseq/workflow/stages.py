"""The stage types a pipeline can run: what each depends on (hashed into its key) and what it does.

Each stage builds its library config(s) from its settings (`lobseq.workflow.schema`)
and calls the same library function as the matching CLI command; `ctx.log` gets the
details (tables, epochs), which `lobseq run` shows with --verbose.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from lobseq.data.ingest import IngestConfig
from lobseq.data.simulate_config import SimulateConfig
from lobseq.errors import LobseqError
from lobseq.evaluation.config import BacktestConfig, EvaluateConfig, WalkForwardConfig
from lobseq.io import sha256_file
from lobseq.registry.champion import PromoteConfig
from lobseq.serving.config import PredictConfig
from lobseq.training.config import TrainConfig
from lobseq.training.tune import TuneConfig
from lobseq.workflow.schema import stage_configs
from lobseq.workflow.spec import Pipeline, Stage, is_model_uri


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

    def configs(self, cls: type) -> list:
        """This stage's library configs `cls` (one per model for train and walkforward)."""
        return stage_configs(self.stage.type, self.stage.settings, cls)

    def config(self, cls: type):
        return self.configs(cls)[0]

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


def check_inputs_exist(pipe: Pipeline) -> None:
    """Sources and datasets no upstream stage creates must be on disk before the pipeline starts."""
    for stage in pipe.stages:
        upstream = {a.type for a in pipe.ancestors(stage)}
        if "simulate" in upstream:
            continue
        paths = _as_list(stage.settings.get("sources"))
        if stage.settings.get("dataset") and "ingest" not in upstream:
            paths.append(stage.settings["dataset"])
        for p in paths:
            if not Path(p).exists():
                raise LobseqError(f"stage {stage.name!r}: input not found", file=p,
                                  fix="create it first (e.g. `lobseq simulate --out " + p + "`) "
                                      "or set the stage's 'sources'/'dataset'")


def _simulate_inputs(ctx: StageContext) -> dict:
    return {}


def _simulate_run(ctx: StageContext) -> dict:
    from lobseq.data.simulate_config import simulate

    cfg = ctx.config(SimulateConfig)
    paths = simulate(cfg)
    ctx.log(f"  wrote {len(paths)} file(s) to {cfg.out}")
    return {"raw": str(cfg.out), "files": {str(p): sha256_file(p) for p in paths}}


def _simulate_valid(out: dict) -> bool:
    return all(Path(p).exists() and sha256_file(p) == h for p, h in out.get("files", {}).items())


def _ingest_sources(ctx: StageContext) -> list[str]:
    return _as_list(ctx.stage.settings.get("sources")) or [ctx.find("raw")]


def _ingest_inputs(ctx: StageContext) -> dict:
    return {f: sha256_file(f) for f in _source_files(_ingest_sources(ctx))}


def _ingest_run(ctx: StageContext) -> dict:
    from lobseq.data.ingest import ingest, summary
    from lobseq.engine import open_engine

    s = ctx.stage.settings
    with open_engine(ctx.pipeline.engine) as engine:
        ds = ingest(_ingest_sources(ctx), s["out"], ctx.config(IngestConfig), log=ctx.log,
                    mapper=engine.mapper(label="lobseq-ingest"))
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
    for cfg in ctx.configs(TrainConfig):
        ctx.log(f"  training {cfg.model}")
        run_id = train_and_log(dataset, cfg, experiment=ctx.pipeline.experiment,
                               register=s.get("register"), log=ctx.log)
        models[cfg.model] = {"run_id": run_id, "model_uri": logged_model_uri(run_id)}
    return {"dataset": dataset, "models": models}


def _models_inputs(ctx: StageContext) -> dict:
    return {"dataset": _dataset_hash(ctx.dataset()),
            "models": {m: v["run_id"] for m, v in _candidates(ctx).items()}}


def _evaluate_run(ctx: StageContext) -> dict:
    from lobseq.evaluation.evaluate import evaluate_model

    cfg, dataset = ctx.config(EvaluateConfig), ctx.dataset()
    evaluations = {}
    for m, info in _candidates(ctx).items():
        metrics = evaluate_model(info["model_uri"], dataset, **asdict(cfg), log=ctx.log)
        evaluations[m] = _jsonable(metrics)
        ctx.log(f"  {m}: " + ", ".join(f"{k} {v:.4f}" for k, v in evaluations[m].items()
                                       if isinstance(v, float) and "_ci" not in k)[:200])
    return {"evaluations": evaluations, "split": cfg.split}


def _backtest_run(ctx: StageContext) -> dict:
    from lobseq.evaluation.backtest.model import backtest_model

    cfg, dataset = ctx.config(BacktestConfig), ctx.dataset()
    return {"backtests": {m: _jsonable(backtest_model(info["model_uri"], dataset, **asdict(cfg),
                                                      log=ctx.log))
                          for m, info in _candidates(ctx).items()}}


def _promote_run(ctx: StageContext) -> dict:
    from mlflow import MlflowClient

    from lobseq import registry
    from lobseq.evaluation.evaluate import evaluate_model

    cfg, dataset = ctx.config(PromoteConfig), ctx.dataset()
    rule = cfg.rule()
    evaluations = ctx.find("evaluations") or {}
    if ctx.find("split") not in (None, cfg.split):
        raise LobseqError(f"the evaluate stage scored split '{ctx.find('split')}', promote compares "
                          f"on '{cfg.split}'", field="split", fix="use the same split in both")
    # the champion is scored exactly as the challengers were (same options, same split)
    scoring = next((replace(stage_configs("evaluate", a.settings, EvaluateConfig)[0], split=cfg.split)
                    for a in ctx.pipeline.ancestors(ctx.stage) if a.type == "evaluate"),
                   EvaluateConfig(split=cfg.split))
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
        cfg.model_name, candidates[best]["model_uri"], {**scored[best], **trading},
        evaluate=lambda uri: _jsonable(evaluate_model(uri, dataset, **asdict(scoring), log=ctx.log)),
        rule=rule, log=ctx.log, on_decision=record)
    out = {"decision": {**decision.to_dict(), "challenger_model": best}}
    verdict = ("PROMOTED" if decision.promote else "kept the champion"
               if decision.gate.get("passed", True) else "NOT PROMOTED")
    ctx.log(f"  {verdict}: {decision.reason}")
    return out


# walk-forward: what the summary keeps of `walk_forward`'s result (folds and tables stay in MLflow)
_WALKFORWARD_KEYS = ("n_folds", "by", "run_id", "oos_macro_f1", "oos_macro_f1_ci_low",
                     "oos_macro_f1_ci_high", "oos_best_baseline")


def _walkforward_run(ctx: StageContext) -> dict:
    from lobseq.evaluation.walkforward import walk_forward

    wf, dataset = ctx.config(WalkForwardConfig), ctx.dataset()
    results = {}
    for cfg in ctx.configs(TrainConfig):
        ctx.log(f"  walking forward {cfg.model}")
        out = walk_forward(dataset, cfg, wf, log=ctx.log, engine=ctx.pipeline.engine)
        results[cfg.model] = _jsonable({k: v for k, v in out.items() if k in _WALKFORWARD_KEYS
                                        or k.startswith(("fold_", "bt_model_"))})
    return {"walkforward": results}


def _tune_inputs(ctx: StageContext) -> dict:
    return {"dataset": _dataset_hash(ctx.dataset()),
            "space": sha256_file(ctx.config(TuneConfig).space)}


# tune: what the summary keeps (every trial is in the sweep's run and its trials.csv)
_TUNE_KEYS = ("run_id", "model_run_id", "version")


def _tune_run(ctx: StageContext) -> dict:
    from lobseq.evaluation.sweep import sweep
    from lobseq.training.run import logged_model_uri

    s, cfg, dataset = ctx.stage.settings, ctx.config(TrainConfig), ctx.dataset()
    out = sweep(dataset, cfg, ctx.config(TuneConfig), engine=ctx.pipeline.engine,
                experiment=ctx.pipeline.experiment, register=s.get("register"), log=ctx.log)
    result = {"tune": {cfg.model: _jsonable({**{k: out[k] for k in _TUNE_KEYS if k in out},
                                              "best": out["best"]})}}
    if s.get("register"):  # the retrained best model, for evaluate/backtest/promote/predict
        result.update(dataset=dataset, models={cfg.model: {
            "run_id": out["model_run_id"], "model_uri": logged_model_uri(out["model_run_id"])}})
    return result


def _predict_model_uri(ctx: StageContext) -> str:
    model = ctx.stage.settings.get("model")
    if model and is_model_uri(model):
        return model
    models = _candidates(ctx)
    return models[model or next(iter(models))]["model_uri"]


def _model_identity(uri: str) -> str:
    """A registry alias resolved to its version (an alias that moved is another model)."""
    if uri.startswith("models:/") and "@" in uri:
        from lobseq import registry, tracking

        tracking.configure()
        name, alias = uri[len("models:/"):].split("@", 1)
        mv = registry.version_by_alias(name, alias)
        if mv is None:
            raise LobseqError(f"{uri}: no version has the alias {alias!r}", field="model",
                              fix="see `lobseq models list`")
        return f"models:/{name}/{mv.version}"
    return uri


def _predict_sources(ctx: StageContext) -> list[str]:
    return _as_list(ctx.stage.settings.get("sources")) or [ctx.find("raw")]


def _predict_inputs(ctx: StageContext) -> dict:
    return {"sources": {f: sha256_file(f) for f in _source_files(_predict_sources(ctx))},
            "model": _model_identity(_predict_model_uri(ctx))}


def _predict_run(ctx: StageContext) -> dict:
    from lobseq.serving.config import predict_to_file

    table, out = predict_to_file(_predict_model_uri(ctx), _predict_sources(ctx),
                                 ctx.config(PredictConfig), engine=ctx.pipeline.engine, log=ctx.log)
    ctx.log(f"  wrote {len(table):,} predictions to {out}")
    return {"predictions": str(out), "rows": int(len(table)), "sha256": sha256_file(out)}


def _predict_valid(out: dict) -> bool:
    path = Path(out.get("predictions", ""))
    return path.is_file() and sha256_file(path) == out.get("sha256")


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
    "walkforward": StageType(_train_inputs, _walkforward_run),
    "tune": StageType(_tune_inputs, _tune_run),
    "predict": StageType(_predict_inputs, _predict_run, _predict_valid),
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
