"""Run a pipeline: the lock, one parent MLflow run, each stage nested or skipped when unchanged."""

from __future__ import annotations

import contextlib
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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
    run_id: str
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


def _flat_params(settings: dict) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            flat[prefix] = str(v)[:500]

    walk("", settings)
    return dict(list(flat.items())[:100])


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """systemd and cron stop jobs with SIGTERM: treat it like Ctrl-C (runs end KILLED)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_pipeline(path_or_pipeline: str | Path | Pipeline, overrides: list[str] | tuple = (),
                 force: bool = False, log: Callable[[str], None] = print,
                 lock: bool = True, detail: Callable[[str], None] | None = None) -> PipelineResult:
    """Validate, take the lock, run each stage as a nested MLflow run (or reuse an unchanged one).

    `log` gets one line per stage; `detail` (default: `log`) what the stages say while running.
    """
    from lobseq.locks import run_lock

    pipe = path_or_pipeline if isinstance(path_or_pipeline, Pipeline) \
        else load_pipeline(path_or_pipeline, overrides)
    ctx_lock = run_lock(pipe.lock, what=f"run of pipeline '{pipe.name}'") if lock \
        else contextlib.nullcontext()
    with ctx_lock, _sigterm_as_interrupt():
        return _run(pipe, force, log, detail or log)


def _run(pipe: Pipeline, force: bool, log: Callable[[str], None],
         detail: Callable[[str], None]) -> PipelineResult:
    # Runs are driven through the client, never the fluent "active run": the
    # library calls a stage makes (train_and_log, evaluate) start their own runs.
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from lobseq import tracking

    _check_inputs_exist(pipe)  # a missing input folder fails before any MLflow run exists
    tracking.configure()
    exp_id = tracking.ensure_experiment(pipe.experiment)
    c = MlflowClient()
    results: list[StageResult] = []
    outputs: dict[str, dict] = {}
    parent = c.create_run(exp_id, run_name=f"pipeline:{pipe.name}",
                          tags={"lobseq.pipeline": pipe.name, "lobseq.pipeline_file": str(pipe.path)})
    parent_id = parent.info.run_id
    status = "FAILED"
    log(f"Pipeline {pipe.name}: {len(pipe.stages)} stage(s), MLflow run {parent_id}")
    try:
        for stage in pipe.stages:
            ctx = StageContext(pipe, stage, [outputs[a.name] for a in pipe.ancestors(stage)], detail)
            kind = STAGES[stage.type]
            key = stage_key(stage, kind.inputs(ctx))
            t0 = time.perf_counter()
            prev, prev_out = (None, None) if force else _previous_run(exp_id, key)
            tags = {STAGE_KEY_TAG: key, "lobseq.stage": stage.name, "lobseq.stage_type": stage.type,
                    "mlflow.parentRunId": parent_id}
            if prev is not None and kind.valid(prev_out):
                r = c.create_run(exp_id, run_name=stage.name,
                                 tags={**tags, "lobseq.reused_from": prev.info.run_id,
                                       OUTPUTS_TAG: prev.data.tags[OUTPUTS_TAG]})
                c.set_terminated(r.info.run_id, "FINISHED")
                log(f"[{stage.name}] unchanged since run {prev.info.run_id[:8]}: skipped")
                res = StageResult(stage.name, stage.type, "skipped", r.info.run_id,
                                  time.perf_counter() - t0, prev_out, prev.info.run_id)
            else:
                detail(f"[{stage.name}] running ({stage.type})")
                r = c.create_run(exp_id, run_name=stage.name, tags=tags)
                ctx.run_id = r.info.run_id
                flat = _flat_params(stage.settings)
                if flat:
                    c.log_batch(r.info.run_id, params=[Param(k, v) for k, v in flat.items()])
                try:
                    out = _jsonable(kind.run(ctx))
                    text = json.dumps(out, sort_keys=True)
                    c.log_dict(r.info.run_id, out, "stage_outputs.json")
                    c.set_tag(r.info.run_id, OUTPUTS_TAG, text if len(text) < 7500 else "")
                except KeyboardInterrupt:
                    c.set_terminated(r.info.run_id, "KILLED")
                    raise
                except BaseException:
                    c.set_terminated(r.info.run_id, "FAILED")
                    raise
                c.set_terminated(r.info.run_id, "FINISHED")
                res = StageResult(stage.name, stage.type, "ran", r.info.run_id,
                                  time.perf_counter() - t0, out)
                log(f"[{stage.name}] done in {res.seconds:.1f}s")
            outputs[stage.name] = res.outputs
            results.append(res)
        c.log_dict(parent_id, {s.name: {"status": s.status, "run_id": s.run_id, "seconds": s.seconds,
                                        "outputs": s.outputs} for s in results},
                   "pipeline_summary.json")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        c.set_terminated(parent_id, status)
    return PipelineResult(pipe, parent_id, results)
