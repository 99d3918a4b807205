"""Run a pipeline: the lock, one parent MLflow run, each stage nested or skipped when unchanged.

Runs (all through `lobseq.tracking.tracked_run`, in the pipeline's experiment):
the pipeline run; under it one run per stage that runs (named after the stage,
tagged with its `lobseq.stage_key`); under those the runs the stage's library
calls start (`gru · train`, `gru · evaluate · test`, ...). A skipped stage makes
no run: the pipeline run records which earlier run it reused
(`lobseq.workflow.records`), so a re-run with nothing to do adds one run only.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from lobseq.io import canonical_json, sha256_bytes
from lobseq.workflow.spec import Pipeline, Stage, load_pipeline
from lobseq.workflow.stages import STAGES, StageContext, _jsonable
from lobseq.workflow.stages import check_inputs_exist as _check_inputs_exist

STAGE_KEY_TAG = "lobseq.stage_key"


OUTPUTS_TAG = "lobseq.stage_outputs"


KEY_VERSION = 1  # bump when the meaning of a stage's settings changes


@dataclass
class StageResult:
    name: str
    type: str
    status: str  # ran | skipped
    run_id: str  # the stage's run; for a skipped stage the earlier run it reused (no new run)
    seconds: float
    outputs: dict = field(default_factory=dict)
    reused_from: str | None = None


@dataclass
class PipelineResult:
    pipeline: Pipeline
    run_id: str
    stages: list[StageResult]

    def outputs(self, stage: str) -> dict:
        return next(s.outputs for s in self.stages if s.name == stage)


def findings(stages: list[StageResult]) -> tuple[dict, dict, dict | None, bool]:
    """(evaluations, backtests by model, the last decision, whether this run made it)
    gathered over the stages, ran or reused: what the records and the summary report."""
    evaluations: dict = {}
    backtests: dict = {}
    decision, decided_now = None, False
    for s in stages:
        evaluations.update(s.outputs.get("evaluations") or {})
        backtests.update(s.outputs.get("backtests") or {})
        if s.outputs.get("decision"):
            decision, decided_now = s.outputs["decision"], s.status == "ran"
    return evaluations, backtests, decision, decided_now


def stage_key(stage: Stage, inputs: dict) -> str:
    return sha256_bytes(canonical_json({"v": KEY_VERSION, "type": stage.type,
                                        "settings": _jsonable(stage.settings), "inputs": inputs}))


def _previous_run(experiment_id: str, key: str):
    import mlflow

    runs = mlflow.search_runs(experiment_ids=[experiment_id],
                              filter_string=f"tags.`{STAGE_KEY_TAG}` = '{key}' and "
                                            "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=5,
                              output_format="list")
    for run in runs:
        text = run.data.tags.get(OUTPUTS_TAG)
        try:
            if text:
                return run, json.loads(text)
            # outputs too large for a tag live only in the run's artifact
            path = mlflow.artifacts.download_artifacts(run_id=run.data.tags.get(
                "lobseq.reused_from", run.info.run_id), artifact_path="stage_outputs.json")
            return run, json.loads(Path(path).read_text())
        except (ValueError, OSError, mlflow.exceptions.MlflowException):
            continue
    return None, None


def run_pipeline(path_or_pipeline: str | Path | Pipeline, overrides: list[str] | tuple = (),
                 force: bool = False, log: Callable[[str], None] = print, lock: bool = True,
                 summary: Callable[[PipelineResult], str] | None = None,
                 detail: Callable[[str], None] | None = None) -> PipelineResult:
    """Validate, take the lock, run each stage as a nested MLflow run (or reuse an unchanged one).

    `log` gets one line per stage; `detail` (default: `log`) what the stages say while
    running. `summary(result)` is the text saved as the pipeline run's summary.txt (default:
    `lobseq.workflow.report.summary_table`).
    """
    from lobseq.locks import lock_database, run_lock

    pipe = path_or_pipeline if isinstance(path_or_pipeline, Pipeline) \
        else load_pipeline(path_or_pipeline, overrides)
    # With a lock database (the file's lock_uri, else $LOBSEQ_LOCK_URI) the run lock and the
    # registry lock its promote stage takes are advisory locks there, shared by every host.
    with lock_database(pipe.lock_uri):
        ctx_lock = run_lock(pipe.lock, what=f"run of pipeline '{pipe.name}'",
                            name=f"pipeline:{pipe.name}") if lock else contextlib.nullcontext()
        with ctx_lock:
            return _run(pipe, force, log, summary, detail or log)


def _run(pipe: Pipeline, force: bool, log: Callable[[str], None],
         summary: Callable[[PipelineResult], str] | None,
         detail: Callable[[str], None]) -> PipelineResult:
    from lobseq.tracking import configure

    _check_inputs_exist(pipe)  # a missing input folder fails before any MLflow run exists
    uri = configure()
    with _pipeline_engine(pipe, uri):
        return _run_stages(pipe, force, log, summary, detail)


def _pipeline_engine(pipe: Pipeline, uri: str):
    """With `engine: ray`, one Ray session for the whole pipeline: the stages that use it join it
    (`lobseq.engine.open_engine` uses an open session and leaves it open)."""
    from lobseq.engine import open_engine
    from lobseq.workflow.spec import ENGINE_STAGES

    if pipe.engine.name == "local" or not any(s.type in ENGINE_STAGES for s in pipe.stages):
        return contextlib.nullcontext()
    return open_engine(pipe.engine, env_vars={"MLFLOW_TRACKING_URI": uri})


def _run_stages(pipe: Pipeline, force: bool, log: Callable[[str], None],
                summary: Callable[[PipelineResult], str] | None,
                detail: Callable[[str], None]) -> PipelineResult:
    import mlflow

    from lobseq.tracking import run_name, tracked_run
    from lobseq.workflow import records

    name = run_name(pipe.name, time.strftime("%Y-%m-%d %H:%M"))
    tags = {"lobseq.pipeline": pipe.name, "lobseq.pipeline_file": str(pipe.path)}
    with tracked_run(name, "pipeline", experiment=pipe.experiment, tags=tags) as parent:
        log(f"Pipeline {pipe.name}: {len(pipe.stages)} stage(s), MLflow run {parent.info.run_id}")
        mlflow.log_params(records.pipeline_params(pipe, force))
        results: list[StageResult] = []
        outputs: dict[str, dict] = {}
        for stage in pipe.stages:
            ctx = StageContext(pipe, stage, [outputs[a.name] for a in pipe.ancestors(stage)], detail)
            try:
                res = _run_stage(ctx, parent.info.experiment_id, force, log)
            except BaseException:
                mlflow.set_tag("lobseq.failed_stage", stage.name)
                raise
            outputs[stage.name] = res.outputs
            results.append(res)
        result = PipelineResult(pipe, parent.info.run_id, results)
        if summary is None:
            from lobseq.workflow.report import summary_table as summary
        records.record(result, summary(result))
    return result


def _run_stage(ctx: StageContext, experiment_id: str, force: bool,
               log: Callable[[str], None]) -> StageResult:
    """Reuse a finished run with the same key (no new run), or run the stage in a nested run."""
    import mlflow

    from lobseq.tracking import tracked_run
    from lobseq.workflow.records import flat_params, stage_metrics

    stage, kind = ctx.stage, STAGES[ctx.stage.type]
    key = stage_key(stage, kind.inputs(ctx))
    t0 = time.perf_counter()
    prev, prev_out = (None, None) if force else _previous_run(experiment_id, key)
    if prev is not None and kind.valid(prev_out):
        origin = prev.data.tags.get("lobseq.reused_from", prev.info.run_id)
        log(f"[{stage.name}] unchanged since run {origin[:8]}: skipped")
        return StageResult(stage.name, stage.type, "skipped", origin, time.perf_counter() - t0,
                           prev_out, origin)
    ctx.log(f"[{stage.name}] running ({stage.type})")
    tags = {STAGE_KEY_TAG: key, "lobseq.stage": stage.name, "lobseq.stage_type": stage.type}
    with tracked_run(stage.name, "stage", tags=tags) as run:
        ctx.run_id = run.info.run_id
        flat = dict(list(flat_params(stage.settings).items())[:100])
        if flat:
            mlflow.log_params(flat)
        out = _jsonable(kind.run(ctx))
        text = json.dumps(out, sort_keys=True)
        mlflow.log_dict(out, "stage_outputs.json")
        mlflow.set_tag(OUTPUTS_TAG, text if len(text) < 7500 else "")
        metrics = stage_metrics(out)
        if metrics:
            mlflow.log_metrics(metrics)
    res = StageResult(stage.name, stage.type, "ran", run.info.run_id, time.perf_counter() - t0, out)
    log(f"[{stage.name}] done in {res.seconds:.1f}s")
    return res
