"""One walk-forward fold as a unit of work: train, score against the baselines, log its run.

    outcome = run_fold(FoldJob(dataset, fold, train_cfg, cfg, parent_run_id=parent))

`run_fold` is what the local engine runs in this process, one fold after
another, and what the Ray engine runs as one task per fold (`walk_forward(...,
engine=...)`); the driver only gathers the outcomes in fold order. The fold's
MLflow run nests under the walk-forward's parent run: under the active run
here, under `parent_run_id` (passed explicitly) in a Ray worker, whose tracking
URI arrives through the runtime_env. Training is seeded and op-deterministic
(`lobseq.training.fit`), so a fold scores the same wherever it runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lobseq.evaluation.folds import Fold, WalkForwardConfig, fold_view


@dataclass
class FoldJob:
    dataset: object  # a loaded Dataset (this process) or its path (another process)
    fold: Fold
    train_cfg: object  # TrainConfig
    cfg: WalkForwardConfig
    parent_run_id: str | None = None  # None: nothing is logged
    dataset_hash: str = ""  # the driver's: a worker must find the same dataset
    verbose: int = 0


@dataclass
class FoldOutcome:
    index: int
    info: dict  # fold.describe(ds), best_epoch, epochs_run and the scores
    ends: np.ndarray  # test window ends
    proba: np.ndarray  # the model's test probabilities
    base: dict[str, np.ndarray]  # each baseline's test probabilities


def fold_scores(y, proba, base, n_classes) -> dict:
    from lobseq.metrics import classification_metrics

    out = {f"test_{k}": v for k, v in classification_metrics(y, proba, n_classes).items()}
    for name, p in base.items():
        out[f"baseline_{name}_macro_f1"] = classification_metrics(y, p, n_classes)["macro_f1"]
    return out


def _dataset(job: FoldJob):
    from lobseq.errors import LobseqError
    from lobseq.evaluation.evaluate import _as_dataset

    ds = _as_dataset(job.dataset)
    if job.dataset_hash and ds.hash != job.dataset_hash:
        raise LobseqError("the dataset changed while the walk-forward ran (its manifest hash "
                          "differs on this worker)", file=ds.path,
                          fix="keep datasets on storage every node reads and don't rewrite them mid-run")
    return ds


def run_fold(job: FoldJob) -> FoldOutcome:
    """Train and score one fold (see the module docstring); its run ends with it."""
    from contextlib import nullcontext

    from lobseq.evaluation.baselines import baseline_probas, fit_baselines
    from lobseq.training.fit import fit

    ds, fold, train_cfg, cfg = _dataset(job), job.fold, job.train_cfg, job.cfg
    logged = job.parent_run_id is not None
    with _fold_run(ds, fold, train_cfg, job.parent_run_id) if logged else nullcontext():
        if logged:
            import mlflow

            mlflow.log_params({k: str(v) for k, v in fold.describe(ds).items()})
        result = fit(fold_view(ds, fold), train_cfg, callbacks=_epoch_callbacks(logged),
                     verbose=job.verbose)
        te = fold.ends["test"]
        proba = np.asarray(result.test_pred, dtype=np.float64)
        base = baseline_probas(fit_baselines(ds, fold.ends["train"], fold.ends["val"],
                                             class_weight=train_cfg.class_weight,
                                             max_train=cfg.max_baseline_train, seed=cfg.seed), ds, te)
        y = np.asarray(ds.labels[te], dtype=np.int64)
        info = {**fold.describe(ds), "best_epoch": result.best_epoch + 1,
                "epochs_run": len(result.history.get("loss", [])),
                **fold_scores(y, proba, base, ds.n_classes)}
        if logged:
            _log_fold(info)
    return FoldOutcome(fold.index, info, te, proba, base)


def _fold_run(ds, fold: Fold, train_cfg, parent_run_id: str):
    """The fold's nested run: under the active run (local), else under `parent_run_id`."""
    from lobseq.tracking import run_name, tracked_run

    return tracked_run(run_name(train_cfg.model, "walkforward", f"fold {fold.index}"),
                       "walkforward_fold", parent=parent_run_id, dataset=ds,
                       tags={"fold": fold.index, "model": train_cfg.model})


def _epoch_callbacks(logged: bool) -> list:
    if not logged:
        return []
    from lobseq.training.callbacks import EpochMetrics

    return [EpochMetrics()]


def _log_fold(info: dict) -> None:
    """The fold's scores (`test_*`, `test_baseline_<name>_macro_f1`, `best_epoch`, `epochs_run`)."""
    import mlflow

    from lobseq.tracking import numeric

    metrics = {(f"test_{k}" if k.startswith("baseline_") else k): v for k, v in info.items()
               if k.startswith(("test_", "baseline_")) or k in ("best_epoch", "epochs_run")}
    mlflow.log_metrics(numeric(metrics))
