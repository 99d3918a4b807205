"""One sweep trial: train one configuration (on the validation split, or on K walk-forward
folds) inside its own MLflow run nested under the sweep's parent run; return its score.

    outcome = run_trial(TrialJob(dataset, index=3, cfg=train_cfg, metric="val_macro_f1",
                                 parent_run_id=parent))

The same function runs in this process (`--engine local`, trials one after
another) and in a Ray Tune trial actor (`lobseq.training.tune_ray`), where
`report` is Ray Tune's: it gets the metric after every epoch (after every fold
with `folds`), so ASHA can stop a poor trial early. A trial stopped that way
ends its run FINISHED, tagged `lobseq.trial_status=stopped`, and is never the
best. The parent run id is passed explicitly; a Ray worker finds the driver's
store through the runtime_env (and `tracking_uri`, set here before any run).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

STATUS_TAG = "lobseq.trial_status"  # completed | stopped (by the scheduler)


@dataclass
class TrialJob:
    dataset: object  # a loaded Dataset (this process) or its path (a Ray worker)
    index: int
    cfg: object  # the trial's TrainConfig
    values: dict  # the sampled values, as the space names them
    metric: str  # val_<name> of lobseq.metrics.classification_metrics
    parent_run_id: str
    folds: list = field(default_factory=list)  # walk-forward folds (.ends, .scaler_rows); empty: the validation split
    tracking_uri: str | None = None
    per_epoch: bool = False  # compute and report the metric after every epoch (ASHA)


def run_trial(job: TrialJob, report: Callable[[dict], None] | None = None) -> dict:
    """Train and score one configuration; the outcome row of the sweep's table."""
    import mlflow

    from lobseq.data.store import load_dataset
    from lobseq.tracking import run_name, tracked_run
    from lobseq.training.run import run_params

    if job.tracking_uri:
        os.environ["MLFLOW_TRACKING_URI"] = job.tracking_uri
    ds = load_dataset(job.dataset) if isinstance(job.dataset, (str, os.PathLike)) else job.dataset
    stopped = None
    tags = {"trial": job.index, "model": job.cfg.model, STATUS_TAG: "completed",
            "lobseq.worker": f"{socket.gethostname()}:{os.getpid()}"}  # the process that trained it
    with tracked_run(run_name(job.cfg.model, "tune", f"trial {job.index}"), "tune_trial",
                     parent=job.parent_run_id, dataset=ds, tags=tags) as run:
        mlflow.log_params({**run_params(ds, job.cfg), **{f"trial.{k}": str(v) for k, v in job.values.items()}})
        try:
            outcome = _folds(ds, job, report) if job.folds else _split(ds, job, report)
        except SystemExit as e:  # Ray Tune's scheduler stopped the trial at a report
            stopped = e
            mlflow.set_tag(STATUS_TAG, "stopped")
        else:
            mlflow.log_metrics({k: float(v) for k, v in outcome.items() if k != "folds"})
    if stopped is not None:
        raise stopped
    return {"trial": job.index, **job.values, job.metric: outcome[job.metric],
            "best_epoch": outcome["best_epoch"], "epochs_run": outcome["epochs_run"],
            "status": "completed", "run_id": run.info.run_id}


def _split(ds, job: TrialJob, report) -> dict:
    """Fit on the training split, score the restored best model on the validation split."""
    from lobseq.training.callbacks import EpochMetrics
    from lobseq.training.fit import fit

    callbacks = [EpochMetrics()]
    if report is not None and job.per_epoch:
        callbacks.append(_epoch_report(ds, job, report))
    result = fit(ds, job.cfg, callbacks=callbacks)
    return {**{k: v for k, v in result.metrics.items() if k.startswith("val_")},
            "best_epoch": result.best_epoch + 1, "epochs_run": len(result.history.get("loss", []))}


def _folds(ds, job: TrialJob, report) -> dict:
    """Fit on each fold's inner training rows, score its validation tail; the mean over folds."""
    from lobseq.training.fit import fit

    scores, best, ran = [], [], []
    for k, fold in enumerate(job.folds):
        result = fit(_fold_view(ds, fold), job.cfg)
        scores.append(result.metrics[job.metric])
        best.append(result.best_epoch + 1)
        ran.append(len(result.history.get("loss", [])))
        if report is not None and k < len(job.folds) - 1:  # the last: the final report
            report({job.metric: float(np.mean(scores)), "folds_done": k + 1})
    out = {f"fold_{k}_{job.metric}": s for k, s in enumerate(scores)}
    # the epochs a retrain on more data runs: the folds' mean best epoch
    out.update({job.metric: float(np.mean(scores)), f"{job.metric}_sd": float(np.std(scores)),
                "best_epoch": int(round(float(np.mean(best)))), "epochs_run": int(max(ran))})
    return out


def _fold_view(ds, fold):
    """The dataset one walk-forward fold sees (`fold.ends`; a scaler fitted on `fold.scaler_rows`):
    folds come from the evaluation layer above, which passes them in."""
    from lobseq.data.scaler import StandardScaler

    return replace(ds, ends=dict(fold.ends), scaler=StandardScaler().fit(ds.features, rows=fold.scaler_rows))


def _epoch_report(ds, job: TrialJob, report):
    """A Keras callback: after each epoch, the validation metric of the current weights, to Ray
    Tune (what ASHA compares). Built here, so importing this module never imports Keras."""
    import keras
    import mlflow

    from lobseq.metrics import classification_metrics
    from lobseq.training.fit import evenly_spaced

    ends = evenly_spaced(ds.ends["val"], job.cfg.max_val_windows)
    view = replace(ds, ends={**ds.ends, "val": ends})
    y = np.asarray(ds.labels[ends], dtype=np.int64)
    name = job.metric[len("val_"):]

    class EpochReport(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            proba = self.model.predict(view.windows("val", batch_size=256), verbose=0)
            value = float(classification_metrics(y, proba, ds.n_classes)[name])
            mlflow.log_metric(f"epoch_{job.metric}", value, step=epoch + 1)  # what ASHA compares
            report({job.metric: value, "epoch": epoch + 1})

    return EpochReport()
