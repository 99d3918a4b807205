"""Where runs are stored: the tracking URI, its artifact folder, and named experiments.

Store: `sqlite:///mlruns/mlflow.db` (relative to the working directory) with
artifacts in `mlruns/artifacts/<experiment>`; `MLFLOW_TRACKING_URI`
overrides. Experiments are only ever created by name (`ensure_experiment`),
never implicitly: no lobseq run lands in MLflow's "Default" experiment.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from lobseq.errors import LobseqError

DEFAULT_DIR = "mlruns"
DEFAULT_URI = f"sqlite:///{DEFAULT_DIR}/mlflow.db"
# MLflow 3 tells GenAI experiments from classic training ones by this experiment tag.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
CLASSIC_ML = "custom_model_development"


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
    """The id of experiment `name`, created (classic-ML kind, artifacts under the store's
    folder) when it does not exist yet."""
    import mlflow

    exp = mlflow.get_experiment_by_name(name)
    if exp is not None:
        if exp.lifecycle_stage == "deleted":
            raise LobseqError(f"experiment {name!r} is deleted", field="experiment",
                              fix="restore it in the MLflow UI or pick another --experiment")
        return exp.experiment_id
    root = artifact_root()
    location = f"{root}/{_safe_name(name)}" if root else None
    return mlflow.create_experiment(name, artifact_location=location,
                                    tags={EXPERIMENT_KIND_TAG: CLASSIC_ML})
