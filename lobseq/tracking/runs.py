"""One run lifecycle: every lobseq MLflow run starts, is tagged, named and ends here.

    with tracked_run(run_name("gru", "train"), "train", experiment="sim", dataset=ds) as run:
        mlflow.log_metrics(...)

Where a run lands: nested under the active run (in its experiment) when there
is one; else under `parent` (a run id, e.g. the training run of a model being
evaluated) in the parent's experiment; else top-level in `experiment`,
created by name if needed. It ends FINISHED, FAILED on an exception, KILLED
on KeyboardInterrupt (Ctrl-C, and SIGTERM in the CLI); the exception is
re-raised.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import subprocess
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lobseq import __version__
from lobseq.tracking.store import configure, ensure_experiment

KIND_TAG = "lobseq.kind"  # train | evaluation | backtest | walkforward | walkforward_fold | pipeline | stage
SEP = " · "


def run_name(*parts: object) -> str:
    """`gru · evaluate · test`: what was run, then the step, then its detail."""
    return SEP.join(str(p) for p in parts if p not in (None, ""))


@functools.lru_cache(maxsize=1)
def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the lobseq source tree, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def run_tags(dataset=None, kind: str | None = None, **extra) -> dict[str, str]:
    """Tags every lobseq run carries: its kind, versions, and the dataset with its manifest hash."""
    tags = {"lobseq_version": __version__}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    if kind:
        tags[KIND_TAG] = kind
    if dataset is not None:
        tags.update(dataset=dataset.name, dataset_hash=dataset.hash)
    tags.update({k: str(v) for k, v in extra.items() if v is not None})
    return tags


def _placement(experiment: str | None, parent: str | None) -> tuple[str, str | None, bool]:
    """(experiment id, parent run id to pass MLflow, nested under the active run?)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    active = mlflow.active_run()
    if active is not None:
        return active.info.experiment_id, None, True
    if parent:
        try:
            run = mlflow.MlflowClient().get_run(parent)
            if run.info.lifecycle_stage == "active":
                return run.info.experiment_id, parent, False
        except MlflowException:
            pass  # a deleted or foreign parent: fall back to the named experiment
    if not experiment:
        raise ValueError("a run needs an active run, a parent run or an experiment name")
    return ensure_experiment(experiment), None, False


@contextmanager
def tracked_run(name: str, kind: str, *, experiment: str | None = None, parent: str | None = None,
                dataset=None, tags: Mapping[str, object] | None = None,
                description: str | None = None) -> Iterator:
    """Start an MLflow run (see the module docstring for where), yield it, end it.

    Tags: `run_tags(dataset, kind, **tags)`. `description` is the run's note in the UI.
    """
    import mlflow

    configure()
    experiment_id, parent_id, nested = _placement(experiment, parent)
    run = mlflow.start_run(experiment_id=experiment_id, run_name=name, nested=nested,
                           parent_run_id=parent_id, description=description,
                           tags=run_tags(dataset, kind, **dict(tags or {})))
    status = "FAILED"
    try:
        yield run
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        _end(run.info.run_id, status)


# How long a run that ends while the tracking server is down waits for the server to be back,
# to be marked FAILED/KILLED (or FINISHED) rather than left RUNNING (beyond MLflow's retries).
END_WAIT_S = 120.0
logger = logging.getLogger("lobseq.tracking")


def _end(run_id: str, status: str) -> None:
    """End `run_id` with `status`; if the server does not answer, wait for it (`END_WAIT_S`)."""
    from lobseq.tracking.server import unreachable, wait_until_answering
    from lobseq.tracking.store import is_server, tracking_uri

    try:
        _end_now(run_id, status)
    except Exception as e:
        if not (is_server() and unreachable(e)):
            raise
        uri = tracking_uri()
        logger.warning("the tracking server %s does not answer: waiting up to %.0f s to mark run "
                       "%s %s", uri, END_WAIT_S, run_id, status)
        if not wait_until_answering(uri, END_WAIT_S):
            raise
        _end_now(run_id, status)
        logger.warning("run %s marked %s", run_id, status)


def _end_now(run_id: str, status: str) -> None:
    """End `run_id` with `status`, and any run still open inside it with the same status."""
    import mlflow

    active = mlflow.active_run()
    open_ids = []
    while active is not None:
        open_ids.append(active.info.run_id)
        if active.info.run_id == run_id:
            break
        mlflow.end_run(status)
        active = mlflow.active_run()
    if run_id in open_ids:
        mlflow.end_run(status)
    else:  # not on the fluent stack any more: make sure it does not stay RUNNING
        client = mlflow.MlflowClient()
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, status)


PARENT_TAG = "mlflow.parentRunId"


@contextmanager
def ending_child_runs(parent_run_id: str) -> Iterator[None]:
    """Runs other processes opened under `parent_run_id` (Ray workers, folds, trials) and left
    RUNNING when the block stops end KILLED (Ctrl-C, SIGTERM) or FAILED, then the error goes on.

    A worker killed with its task never ends its own run; the driver does it for it.
    """
    try:
        yield
    except BaseException as e:
        end_running_children(parent_run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise


def end_running_children(parent_run_id: str, status: str, **tags: str) -> list[str]:
    """End the still-RUNNING child runs of `parent_run_id` with `status` (and `tags`); their ids."""
    import mlflow

    client = mlflow.MlflowClient()
    exp = client.get_run(parent_run_id).info.experiment_id
    ended = []
    for child in client.search_runs([exp], f"tags.`{PARENT_TAG}` = '{parent_run_id}' "
                                           "and attributes.status = 'RUNNING'"):
        for key, value in tags.items():
            client.set_tag(child.info.run_id, key, value)
        client.set_terminated(child.info.run_id, status)
        ended.append(child.info.run_id)
    return ended


def set_description(text: str, run_id: str | None = None) -> None:
    """The run's description (markdown, shown at the top of its page in the UI)."""
    import mlflow

    if run_id is None:
        mlflow.set_tag("mlflow.note.content", text)
    else:
        mlflow.MlflowClient().set_tag(run_id, "mlflow.note.content", text)


def log_metrics_on(run_id: str, metrics: Mapping[str, float]) -> None:
    """Log metrics on another (e.g. finished) run, such as a model's training run."""
    import time

    import mlflow
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    batch = [Metric(k, float(v), now, 0) for k, v in numeric(metrics).items()]
    if batch:
        mlflow.MlflowClient().log_batch(run_id, metrics=batch)


def numeric(d: Mapping) -> dict[str, float]:
    """The finite numbers of `d` (no bools), keys made valid MLflow metric names."""
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        if np.isfinite(v):
            out[re.sub(r"[^A-Za-z0-9_\-. /]", "_", k)] = float(v)
    return out


def jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
