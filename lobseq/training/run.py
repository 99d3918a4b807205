"""A tracked training run: train on a stored dataset inside an MLflow run and log everything.

    run_id = train_and_log("data/processed/sim", TrainConfig(model="lstm"))

A run (`gru · train`, `lobseq.kind=train`) records params `data.*`, `model.*`,
`train.*`; per-epoch curves `epoch_*` (`lobseq.training.callbacks`); the final
scores of the restored best model `val_*`/`test_*`, `best_epoch` (counted from
1), `epochs_run`; the dataset as an MLflow input; plots and the report; the model
as a pyfunc (`lobseq.training.package`). Evaluations and backtests of the model
on its own dataset later add their headline scores (`test_macro_f1_ci_low`,
`test_diff_macro_f1_vs_best`, ...; see `lobseq.evaluation.runs`).
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np

from lobseq.errors import LobseqError
from lobseq.tracking import MODEL_NAME, configure, run_name, tracked_run


def flatten(prefix: str, obj) -> dict[str, str]:
    """Nested dicts → `prefix.key.sub` params; lists and scalars as compact JSON text."""
    out: dict[str, str] = {}
    if isinstance(obj, dict):
        for key, value in obj.items():
            out.update(flatten(f"{prefix}.{key}" if prefix else str(key), value))
    elif isinstance(obj, str):
        out[prefix] = obj
    else:
        out[prefix] = json.dumps(obj, separators=(",", ":"), default=str)
    return out


def run_params(dataset, cfg) -> dict[str, str]:
    """The full configuration of a training run: `data.*`, `model.*`, `train.*`."""
    m = dataset.manifest
    data = dict(dataset.config)
    data.update({"kind": m.get("kind"), "n_features": dataset.n_features, "embargo": m.get("embargo"),
                 "windows": m.get("windows", {})})
    train = {k: v for k, v in cfg.to_dict().items() if k not in ("model", "hyper", "preset")}
    params = flatten("data", data)
    params.update(flatten("model", {"name": cfg.model, "preset": cfg.preset,
                                    **cfg.model_hyperparameters()}))
    params.update(flatten("train", train))
    return params


def _dataset_input(dataset, rows: int = 256):
    """A small MLflow dataset: the first rows of features and labels, named/digested by the manifest."""
    import mlflow
    import pandas as pd

    n = min(rows, len(dataset.labels))
    frame = pd.DataFrame(np.asarray(dataset.features[:n]), columns=dataset.feature_names)
    frame["label"] = np.asarray(dataset.labels[:n])
    with warnings.catch_warnings():  # a local path matches two equivalent source types
        warnings.simplefilter("ignore", UserWarning)
        return mlflow.data.from_pandas(frame, source=str(Path(dataset.path).resolve()),
                                       targets="label", name=dataset.name, digest=dataset.hash[:36])


def _log_evaluation(result, dataset, out: Path) -> None:
    """Confusion matrices, learning curves and the classification report as artifacts."""
    import mlflow

    from lobseq.data.labels import class_names
    from lobseq.metrics import confusion_matrix
    from lobseq.plots import plot_confusion_matrix, plot_learning_curves

    report = {"dataset": dataset.name, "dataset_hash": dataset.hash, "head": result.config.head,
              "best_epoch": result.best_epoch + 1, "history": result.history}
    if result.config.head == "classification":
        names = list(class_names(dataset.n_classes))
        report["class_names"] = names
        for split, y, proba in (("val", result.val_labels, result.val_pred),
                                ("test", result.test_labels, result.test_pred)):
            if proba is None:
                continue
            cm = confusion_matrix(y, np.asarray(proba).argmax(axis=1), dataset.n_classes)
            report[split] = {"confusion_matrix": cm.tolist(),
                             "metrics": {k[len(split) + 1:]: v for k, v in result.metrics.items()
                                         if k.startswith(f"{split}_")}}
            path = out / f"confusion_matrix_{split}.png"
            plot_confusion_matrix(cm, names, path)
            mlflow.log_artifact(str(path), "plots")
    else:
        report["metrics"] = result.metrics
    if result.history:
        path = out / "learning_curves.png"
        plot_learning_curves(result.history, path)
        mlflow.log_artifact(str(path), "plots")
    mlflow.log_dict(report, "classification_report.json")


def _check_before_run(dataset, cfg, log) -> dict[str, str]:
    """Everything that can fail on bad settings fails here, before a run exists; returns params."""
    from lobseq.models import build

    cfg.validate()
    params = run_params(dataset, cfg)  # unknown hyperparameters
    # A model that can't take this dataset (e.g. deeplob without the raw book).
    build(cfg.model, (dataset.window, dataset.n_features), dataset.n_classes, head=cfg.head,
          **cfg.model_hyperparameters())
    if cfg.preset:
        from lobseq.models import preset_window

        intended = preset_window(cfg.model, cfg.preset)
        if intended and intended != dataset.window:
            log(f"Note: preset {cfg.preset!r} was designed for windows of {intended}; this dataset's "
                f"window is {dataset.window} (re-ingest with --window {intended} to match it)")
    return params


def _log_result(result, dataset, cfg) -> None:
    """Into the active run: final scores, epochs, class weights, plots and report, the model."""
    import mlflow

    from lobseq.training.package import log_pyfunc

    mlflow.log_metrics({k: float(v) for k, v in result.metrics.items()})
    mlflow.log_metrics({"best_epoch": result.best_epoch + 1,  # counted from 1, as on the console
                        "epochs_run": len(result.history.get("loss", [])),
                        "train_windows": result.train_windows, "train_seconds": result.seconds})
    if result.class_weight:
        mlflow.log_dict({str(k): v for k, v in result.class_weight.items()}, "class_weight.json")
    with tempfile.TemporaryDirectory(prefix="lobseq-run-") as tmp:
        _log_evaluation(result, dataset, Path(tmp))
    info = log_pyfunc(result.model, dataset, head=cfg.head, name=MODEL_NAME)
    mlflow.set_tag("model_uri", info.model_uri)
    from lobseq.tracking import describe_training_run, set_description

    set_description(describe_training_run(mlflow.get_run(mlflow.active_run().info.run_id),
                                          with_run_id=False))


def train_on_validation_too(dataset):
    """`dataset` whose training windows are its train and validation windows (a final retrain)."""
    from dataclasses import replace

    ends = dict(dataset.ends)
    ends["train"] = np.union1d(ends["train"], ends["val"])
    return replace(dataset, ends=ends)


def train_and_log(dataset_path: str | Path, cfg, experiment: str | None = None,
                  register: str | None = None, verbose: int | str = 0,
                  callbacks: list | None = None, log=print, on_validation: bool = False) -> str:
    """Train `cfg` on the dataset at `dataset_path` inside an MLflow run; returns the run id.

    The run (`<model> · train`) is nested under the active run when there is one
    (a pipeline's train stage), else top-level in `experiment` (default: the
    dataset's name). A Ctrl-C (or SIGTERM in the CLI) ends it KILLED, any other
    exception FAILED; nothing is registered then. `register` names a registered
    model to add the logged pyfunc to once the run has finished. `verbose`
    (non-zero) shows a progress line with an ETA on stderr. `on_validation` trains
    on the training and validation windows for exactly `cfg.epochs` epochs (no
    early stopping: nothing is left to stop on) and logs no `val_*` scores, which
    would be in-sample; the run is tagged `lobseq.trained_on=train+val`.
    """
    import matplotlib

    matplotlib.use("Agg")  # artifacts only; never open a window
    import mlflow

    from lobseq.data.store import load_dataset

    dataset = load_dataset(dataset_path)
    params = _check_before_run(dataset, cfg, log)
    from lobseq.training.callbacks import EpochMetrics, Progress
    from lobseq.training.fit import fit

    configure()
    with tracked_run(run_name(cfg.model, "train"), "train", experiment=experiment or dataset.name,
                     dataset=dataset, tags={"model": cfg.model, "head": cfg.head}) as run:
        run_id = run.info.run_id
        where = mlflow.get_experiment(run.info.experiment_id).name
        log(f"MLflow run {run_id} ({run.info.run_name}) in experiment {where}")
        mlflow.log_params(params)
        with warnings.catch_warnings():  # the int8 label column makes MLflow hint about NaNs
            warnings.simplefilter("ignore", UserWarning)
            mlflow.log_input(_dataset_input(dataset), context="training")
        mlflow.log_artifact(str(Path(dataset.path) / "manifest.json"), "dataset")
        progress = [Progress()] if verbose else []
        if on_validation:
            mlflow.set_tag("lobseq.trained_on", "train+val")
            mlflow.log_param("train.on_validation", "true")
        result = fit(train_on_validation_too(dataset) if on_validation else dataset, cfg,
                     callbacks=[EpochMetrics(), *progress, *(callbacks or [])],
                     early_stopping=not on_validation)
        if on_validation:  # scores on windows it trained on: not logged
            result.metrics = {k: v for k, v in result.metrics.items() if not k.startswith("val_")}
        _log_result(result, dataset, cfg)
    if register:
        version = register_model(run_id, register)
        log(f"Registered {register} version {version}")
    return run_id


def model_uri(run_id: str, name: str = MODEL_NAME) -> str:
    return f"runs:/{run_id}/{name}"


def logged_model_uri(run_id: str) -> str:
    """The run's logged-model URI (`models:/m-…`), else `runs:/ID/model`.

    MLflow 3 keeps a logged model's files outside the run's artifacts, so
    registering `runs:/ID/model` makes it warn and look the model up anyway.
    """
    import mlflow

    configure()
    return mlflow.get_run(run_id).data.tags.get("model_uri") or model_uri(run_id)


def register_model(run_id: str, name: str) -> str:
    """Register the pyfunc logged by run `run_id` as a new version of `name`; returns the version."""
    import mlflow

    configure()
    run = mlflow.get_run(run_id)
    if run.info.status != "FINISHED":
        raise LobseqError(f"run {run_id} ended {run.info.status}; only finished runs are registered",
                          field="run_id")
    from lobseq.registry import register
    from lobseq.tracking import describe_training_run

    tags = {"dataset_hash": run.data.tags.get("dataset_hash", ""), "run_id": run_id}
    return register(logged_model_uri(run_id), name, tags=tags,
                    description=describe_training_run(run))
