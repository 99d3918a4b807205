"""MLflow: where runs are stored (`store`), and the one way a lobseq run starts and ends (`runs`).

    with tracked_run(run_name("gru", "train"), "train", experiment="sim", dataset=ds) as run:
        ...

MLflow's usage telemetry is off unless the user turned it on (`lobseq/__init__.py`).
"""

from lobseq.tracking.describe import describe_logged_model, describe_training_run, training_run_id
from lobseq.tracking.runs import (
    KIND_TAG,
    SEP,
    git_commit,
    jsonable,
    log_metrics_on,
    numeric,
    run_name,
    run_tags,
    set_description,
    tracked_run,
)
from lobseq.tracking.store import (
    DEFAULT_DIR,
    DEFAULT_URI,
    artifact_root,
    configure,
    ensure_experiment,
    tracking_uri,
)

MODEL_NAME = "model"  # the pyfunc's name inside a run

__all__ = ["DEFAULT_DIR", "DEFAULT_URI", "KIND_TAG", "MODEL_NAME", "SEP", "artifact_root", "configure",
           "describe_logged_model", "describe_training_run", "ensure_experiment", "git_commit", "jsonable", "log_metrics_on",
           "numeric", "run_name", "run_tags", "set_description", "tracked_run", "tracking_uri", "training_run_id"]
