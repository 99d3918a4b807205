"""MLflow: where runs are stored, how they are named, and what one training run records.

Store: `sqlite:///mlruns/mlflow.db` (relative to the working directory) with
artifacts in `mlruns/artifacts/<experiment>`; `MLFLOW_TRACKING_URI`
overrides. MLflow's usage telemetry is off unless the user turned it on.

    run_id = train_and_log("data/processed/sim", TrainConfig(model="lstm"))
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from lobseq import __version__
from lobseq.errors import LobseqError

DEFAULT_DIR = "mlruns"
DEFAULT_URI = f"sqlite:///{DEFAULT_DIR}/mlflow.db"
MODEL_NAME = "model"  # the pyfunc's name inside a run


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def _sqlite_path(uri: str) -> Path | None:
    if not uri.startswith("sqlite:///"):
        return None
    return Path(uri[len("sqlite:///"):])


def artifact_root(uri: str | None = None) -> str | None:
    """Local artifact root next to a sqlite store (`<db dir>/artifacts`), else None (server decides)."""
    db = _sqlite_path(uri or tracking_uri())
    if db is None:
        return None
    return (db.parent / "artifacts").resolve().as_uri()


def configure() -> str:
    """Point MLflow at the store (creating its folder) and return the tracking URI."""
    import mlflow

    uri = tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        db.parent.mkdir(parents=True, exist_ok=True)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def _safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "experiment"


def ensure_experiment(name: str) -> str:
    """The id of experiment `name`, created with its artifacts under the store's folder."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise LobseqError(f"experiment {name!r} is deleted", field="experiment",
                              fix="restore it in the MLflow UI or pick another --experiment")
        return exp.experiment_id
    root = artifact_root()
    location = f"{root}/{_safe_name(name)}" if root else None
    return mlflow.create_experiment(name, artifact_location=location)


def git_commit(path: str | Path | None = None) -> str | None:
    """The commit of the lobseq source tree, or None outside git."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path or Path(__file__).parent,
                             capture_output=True, text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    sha = out.stdout.strip()
    return sha if out.returncode == 0 and re.fullmatch(r"[0-9a-f]{40}", sha) else None


def run_tags(dataset, **extra) -> dict[str, str]:
    """Tags every lobseq run carries: the dataset, its manifest hash, versions."""
    tags = {"dataset": dataset.name, "dataset_hash": dataset.hash, "lobseq_version": __version__}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    tags.update({k: str(v) for k, v in extra.items() if v is not None})
    return tags


@contextmanager
def ending(run):
    """Yield `run`; end it FINISHED, or KILLED on Ctrl-C / FAILED on an exception (re-raised)."""
    import mlflow

    try:
        yield run
    except KeyboardInterrupt:
        mlflow.end_run("KILLED")
        raise
    except BaseException:
        mlflow.end_run("FAILED")
        raise
    mlflow.end_run("FINISHED")


def store_paths() -> tuple[str, str | None]:
    """(backend store URI, default artifact root) for `mlflow ui` / `mlflow server`."""
    return tracking_uri(), artifact_root()


@contextmanager
def mlflow_run(ds, run_name: str, tags: dict):
    """A run in the dataset's experiment, or nested in the active run (in its experiment).

    Ends FINISHED, FAILED on an exception, KILLED on Ctrl-C.
    """
    import mlflow

    from lobseq.tracking import configure, ending, ensure_experiment, run_tags

    tags = run_tags(ds, **tags)
    parent = mlflow.active_run()
    if parent is not None:
        run = mlflow.start_run(experiment_id=parent.info.experiment_id, run_name=run_name,
                               nested=True, tags=tags)
    else:
        configure()
        run = mlflow.start_run(experiment_id=ensure_experiment(ds.name), run_name=run_name, tags=tags)
    with ending(run):
        yield run


def _numeric(d: dict) -> dict[str, float]:
    out = {}
    for k, v in d.items():
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, float, np.integer, np.floating)):
            continue
        if np.isfinite(v):
            out[re.sub(r"[^A-Za-z0-9_\-. /]", "_", k)] = float(v)
    return out


def _jsonable(d: dict) -> dict:
    return json.loads(json.dumps(d, default=lambda o: o.item() if hasattr(o, "item") else str(o)))
