"""Walk-forward evaluation: retrain per fold, score out of sample, stitch the backtest.

    summary = walk_forward("data/processed/sim", TrainConfig(model="lstm", epochs=3),
                           WalkForwardConfig(by="days", train_size=3, test_size=1))

Conventions:

* **Periods.** ``by="days"``: a period is a calendar day of the row
  timestamps (rows must run day by day, e.g. one instrument); ``by="periods"``:
  each row is a period, sizes count rows. ``auto``: days when the dataset has
  at least 3 days, else rows. Folds come from
  `lobseq.backtest.walk_forward_folds`: fold k tests ``test_size`` periods and
  trains on the ``train_size`` periods before them (``rolling``, Dixon's
  protocol) or on everything before them (``expanding``); test blocks follow
  each other without overlap. Without sizes, the periods are cut into
  ``folds + 1`` equal chunks (first chunk: training only).
* **Windows.** A fold uses only the dataset's valid windows (the union of its
  train/val/test window ends: inside one segment, finite features, labelled);
  a window belongs to a part when all its T rows lie in that part's rows.
  Windows near the dataset's own split boundaries (its embargo rows) are
  therefore not used.
* **Embargo.** ``embargo`` rows (default and minimum window + label reach - 1, the reach being
  horizon + 1 for labels of the traded return)
  separate a fold's training rows from its test rows, and its inner training
  rows from the validation tail (the last ``val_fraction`` of the training
  rows, used for early stopping only). No training label reads a row of a
  later part, no training row lies after a test row.
* **Scaler.** Re-fitted per fold on the rows its training windows cover.
* **Baselines** per fold are fitted on the fold's inner training windows with
  the model's class weighting, tuned on its validation tail (as the model is
  early-stopped on it), and scored on the same test windows.
* **Verdict**: `lobseq.evaluation.verdict` on the OOS scores and the stitched
  backtest (costs and fills per `lobseq.evaluation.backtest.model.conventions`).
* **MLflow.** One parent run (``lobseq.kind=walkforward``) with one nested run
  per fold; the parent holds the out-of-sample scores over the concatenated
  test predictions (with block-bootstrap intervals), mean and sd over folds,
  the stitched backtest over all test rows (`lobseq.evaluate` backtest
  conventions), the fold table and the OOS predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.evaluation.folds import Fold, WalkForwardConfig, fold_view, make_folds


def _fold_scores(y, proba, base, n_classes) -> dict:
    from lobseq.metrics import classification_metrics

    out = {f"test_{k}": v for k, v in classification_metrics(y, proba, n_classes).items()}
    for name, p in base.items():
        out[f"baseline_{name}_macro_f1"] = classification_metrics(y, p, n_classes)["macro_f1"]
    return out


def walk_forward(dataset_path, train_cfg, cfg: WalkForwardConfig | None = None, *,
                 log_to_mlflow: bool = True, log: Callable[[str], None] | None = print,
                 verbose: int = 0) -> dict:
    """Retrain `train_cfg` per fold and score out of sample; see the module docstring.

    Returns a flat dict: OOS scores over the concatenated test predictions as in
    `lobseq.evaluate.score_against_baselines` (prefixed `oos_`), `fold_macro_f1_mean/_sd`
    (and per baseline), `bt_<who>_<metric>` of the stitched backtest, `n_folds`,
    `by`, `run_id` (parent run, '' when not logged) and `folds` (a list of per-fold dicts).
    """
    from lobseq.evaluation.backtest.model import conventions
    from lobseq.evaluation.baselines import BASELINE_NAMES, baseline_probas, fit_baselines
    from lobseq.evaluation.evaluate import _as_dataset
    from lobseq.training.fit import fit

    cfg = cfg or WalkForwardConfig()
    ds = _as_dataset(dataset_path)
    conv = conventions(ds, cost_bps=cfg.cost_bps, at_touch=cfg.at_touch,
                       periods_per_year=cfg.periods_per_year, interval_s=cfg.interval_s)
    train_cfg.validate()
    if train_cfg.head != "classification":
        raise LobseqError("walk-forward scores classification models", field="head")
    folds, by = make_folds(ds, cfg)
    say = log or (lambda _m: None)
    say(f"Walk-forward on {ds.name}: {len(folds)} fold(s) by {by}, {cfg.mode}")

    parent = _start_parent(ds, train_cfg, cfg, by, len(folds)) if log_to_mlflow else None
    try:
        fold_rows, oos = [], {"ends": [], "fold": [], "proba": [], **{b: [] for b in BASELINE_NAMES}}
        for fold in folds:
            view = fold_view(ds, fold)
            result = fit(view, train_cfg, verbose=verbose)
            te = fold.ends["test"]
            proba = np.asarray(result.test_pred, dtype=np.float64)
            base = baseline_probas(fit_baselines(ds, fold.ends["train"], fold.ends["val"],
                                                 class_weight=train_cfg.class_weight,
                                                 max_train=cfg.max_baseline_train,
                                                 seed=cfg.seed), ds, te)
            y = np.asarray(ds.labels[te], dtype=np.int64)
            scores = _fold_scores(y, proba, base, ds.n_classes)
            info = {**fold.describe(ds), "best_epoch": result.best_epoch,
                    "epochs_run": len(result.history.get("loss", [])), **scores}
            fold_rows.append(info)
            oos["ends"].append(te)
            oos["fold"].append(np.full(len(te), fold.index))
            oos["proba"].append(proba)
            for b in BASELINE_NAMES:
                oos[b].append(base[b])
            say(f"  fold {fold.index}: train rows {fold.train_rows[0]}..{fold.train_rows[1] - 1}, "
                f"test rows {fold.test_rows[0]}..{fold.test_rows[1] - 1}: macro-F1 "
                f"{scores['test_macro_f1']:.4f} (logistic {scores['baseline_logistic_macro_f1']:.4f})")
            if log_to_mlflow:
                _log_fold(ds, fold, info, result)

        ends = np.concatenate(oos["ends"])
        proba = np.concatenate(oos["proba"])
        base = {b: np.concatenate(oos[b]) for b in BASELINE_NAMES}
        out, br, results, table, bt_table, v = _oos_summary(
            ds, folds, fold_rows, ends, proba, base, conv, train_cfg, cfg, by)
        y = np.asarray(ds.labels[ends], dtype=np.int64)
        say(table)
        say(bt_table)
        say(f"verdict: {v.line}")
        if log_to_mlflow:
            out["run_id"] = parent.info.run_id
            _log_parent(ds, out, fold_rows, br, results, table, bt_table, ends, y, proba)
            v.log()
        out["folds"] = fold_rows
    except KeyboardInterrupt:
        if parent is not None:
            _end(parent, "KILLED")
        raise
    except BaseException:
        if parent is not None:
            _end(parent, "FAILED")
        raise
    if parent is not None:
        _end(parent, "FINISHED")
        say(f"MLflow run {out['run_id']}")
    return out


def _oos_summary(ds, folds, fold_rows, ends, proba, base, conv, train_cfg, cfg, by):
    """Scores over the concatenated test predictions, fold aggregates, the stitched backtest
    and the verdict: (flat dict, backtest rows, results, table, backtest table, verdict)."""
    from lobseq.evaluation.backtest.model import backtest_probas
    from lobseq.evaluation.backtest.report import format_backtest_table
    from lobseq.evaluation.baselines import BASELINE_NAMES
    from lobseq.evaluation.evaluate import format_table, score_against_baselines
    from lobseq.evaluation.verdict import verdict

    y = np.asarray(ds.labels[ends], dtype=np.int64)
    scores = score_against_baselines(y, proba, base, ds.n_classes, ds.horizon,
                                     n_boot=cfg.n_boot, seed=cfg.seed)
    out: dict = {f"oos_{k}": v for k, v in scores.items()}
    out["oos_majority_rate"] = float(scores["baseline_prior_accuracy"])
    for key in ["test_macro_f1", *[f"baseline_{b}_macro_f1" for b in BASELINE_NAMES]]:
        vals = np.array([f[key] for f in fold_rows])
        name = "fold_macro_f1" if key == "test_macro_f1" else f"fold_{key}"
        out[f"{name}_mean"] = float(vals.mean())
        out[f"{name}_sd"] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
    test_rows = np.concatenate([np.arange(*f.test_rows) for f in folds])
    br, results, bt = backtest_probas(ds, test_rows, ends, {"model": proba, **base}, conv,
                                      tau=cfg.tau, mode=cfg.backtest_mode,
                                      what="the folds' test rows")
    out.update({f"bt_{k}": v for k, v in bt.items()})
    v = verdict(out, out, scores_prefix="oos_", backtest_prefix="bt_")
    out.update(n_folds=len(folds), by=by, dataset=ds.name, dataset_hash=ds.hash, run_id="",
               verdict=v.line)
    table = (format_table(scores, f"Walk-forward OOS on {ds.name}: {train_cfg.model}, "
                                  f"{len(folds)} folds by {by} ({cfg.mode})")
             + f"\nfold macro-F1 {out['fold_macro_f1_mean']:.4f} ± {out['fold_macro_f1_sd']:.4f}"
             + f"   (logistic {out['fold_baseline_logistic_macro_f1_mean']:.4f} ± "
               f"{out['fold_baseline_logistic_macro_f1_sd']:.4f})"
             + f"\nbaselines per fold: class weight {train_cfg.class_weight} (the model's), tuned "
               "on the fold's validation tail")
    bt_table = format_backtest_table(bt, list(results), "Stitched OOS backtest "
                                     f"(mode {cfg.backtest_mode}, tau {cfg.tau:g})", conv.lines())
    return out, br, results, table, bt_table, v


# ------------------------------------------------------------------ MLflow


def _start_parent(ds, train_cfg, cfg: WalkForwardConfig, by: str, n_folds: int):
    import mlflow

    from lobseq import __version__
    from lobseq.tracking import configure, ensure_experiment, git_commit
    from lobseq.training.run import run_params

    tags = {"dataset": ds.name, "dataset_hash": ds.hash, "lobseq_version": __version__,
            "lobseq.kind": "walkforward", "model": train_cfg.model}
    commit = git_commit()
    if commit:
        tags["git_commit"] = commit
    name = f"walkforward-{train_cfg.model}-{ds.name}"
    active = mlflow.active_run()
    if active is not None:
        run = mlflow.start_run(experiment_id=active.info.experiment_id, run_name=name, nested=True,
                               tags=tags)
    else:
        configure()
        run = mlflow.start_run(experiment_id=ensure_experiment(ds.name), run_name=name, tags=tags)
    params = run_params(ds, train_cfg)
    params.update({f"walkforward.{k}": str(v) for k, v in asdict(cfg).items()})
    params.update({"walkforward.by_resolved": by, "walkforward.n_folds": str(n_folds)})
    mlflow.log_params(params)
    return run


def _end(run, status: str) -> None:
    import mlflow

    active = mlflow.active_run()
    while active is not None and active.info.run_id != run.info.run_id:
        mlflow.end_run("FAILED" if status != "FINISHED" else status)  # a fold run left open
        active = mlflow.active_run()
    if active is not None:
        mlflow.end_run(status)


def _log_fold(ds, fold: Fold, info: dict, result) -> None:
    import mlflow

    from lobseq.tracking import _numeric

    parent = mlflow.active_run()
    with mlflow.start_run(run_name=f"fold-{fold.index}", nested=True,
                          experiment_id=parent.info.experiment_id,
                          tags={"lobseq.kind": "walkforward_fold", "fold": str(fold.index),
                                "dataset": ds.name, "dataset_hash": ds.hash}):
        mlflow.log_params({k: str(v) for k, v in fold.describe(ds).items()})
        mlflow.log_metrics(_numeric({k: v for k, v in info.items() if k.startswith(("test_", "baseline_"))
                                     or k in ("best_epoch", "epochs_run")}))
        for epoch in range(len(result.history.get("loss", []))):
            mlflow.log_metrics({f"epoch_{k}": float(v[epoch]) for k, v in result.history.items()
                                if epoch < len(v)}, step=epoch)


def _log_parent(ds, out, fold_rows, br, results, table, bt_table, ends, y, proba) -> None:
    import mlflow

    from lobseq.data.labels import class_names
    from lobseq.evaluation.backtest.report import log_backtest_artifacts
    from lobseq.evaluation.evaluate import _jsonable
    from lobseq.tracking import _numeric

    mlflow.log_metrics(_numeric(out))
    mlflow.log_text(table, "walkforward_table.txt")
    mlflow.log_dict({"folds": _jsonable({"f": fold_rows})["f"]}, "folds.json")
    frame = pd.DataFrame({"row": ends, "timestamp": pd.to_datetime(np.asarray(ds.timestamps[ends])),
                          "label": y})
    for k, name in enumerate(class_names(ds.n_classes)):
        frame[f"p_{name}"] = proba[:, k]
    mlflow.log_text(frame.to_csv(index=False), "oos_predictions.csv")
    log_backtest_artifacts(ds, br, results, bt_table, title="Stitched out-of-sample equity")
