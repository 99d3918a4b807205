"""Where runs are stored: the tracking URI, its artifact folder, and named experiments.

Store: `sqlite:///mlruns/mlflow.db` (relative to the working directory) with
artifacts in `mlruns/artifacts/<experiment>`; `MLFLOW_TRACKING_URI`
overrides, e.g. `http://127.0.0.1:5000` for a shared `mlflow server` (team
mode): the server then decides where artifacts go (`--artifacts-destination`),
credentials come from `MLFLOW_TRACKING_USERNAME`/`MLFLOW_TRACKING_PASSWORD`, and
lobseq sets bounded HTTP retries unless the user set them (`SERVER_DEFAULTS`).
Experiments are only ever created by name (`ensure_experiment`), never
implicitly: no lobseq run lands in MLflow's "Default" experiment.
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
LOCK_DIR_ENV = "LOBSEQ_LOCK_DIR"
# Against a server: ride out a restart (~30 s to boot on 2 cores) but give up within
# ~2 minutes: retries after 0, 2, 4, ..., 64 s (urllib3: factor * 2^(n-1), jitter <= 1 s),
# 30 s per attempt. MLflow's own defaults (7 retries, factor 2, 120 s) wait ~4 minutes
# or more. The user's settings win.
SERVER_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "7",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_BACKOFF_JITTER": "1.0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    # MLflow prints "View run ... at: URL" on stdout for every run against a server.
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or DEFAULT_URI


def is_server(uri: str | None = None) -> bool:
    """Is the store a tracking server (http/https) rather than a local database?"""
    return (uri or tracking_uri()).startswith(("http://", "https://"))


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
    if is_server(uri):
        from lobseq.tracking.server import announce_retries

        for key, value in SERVER_DEFAULTS.items():
            os.environ.setdefault(key, value)
        announce_retries()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def local_lock_dir(uri: str | None = None) -> Path:
    """Where local lock files go: `$LOBSEQ_LOCK_DIR`; else next to a sqlite store
    (`<db folder>/.locks`); else, for a server, a folder of this user's per server
    (`~/.local/state/lobseq/locks/HOST_PORT`), so every working directory on this host
    shares it. Across hosts, configure a lock database (`lobseq.locks`)."""
    if os.environ.get(LOCK_DIR_ENV):
        return Path(os.environ[LOCK_DIR_ENV])
    if uri is None:
        import mlflow

        uri = mlflow.get_tracking_uri()
    db = _sqlite_path(uri)
    if db is not None:
        return db.parent / ".locks"
    if is_server(uri):
        state = Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state")
        return state / "lobseq" / "locks" / _safe_name(uri.split("://", 1)[1].split("/")[0])
    return Path(DEFAULT_DIR) / ".locks"


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
