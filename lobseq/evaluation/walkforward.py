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
* **MLflow.** One parent run (``<model> · walkforward``, ``lobseq.kind=walkforward``;
  nested under the active run, else in the dataset's experiment) with one nested
  run per fold (``<model> · walkforward · fold <k>``: the fold's rows as params,
  its ``test_*`` scores and baselines' ``test_baseline_<name>_macro_f1``, its
  per-epoch curves). The parent logs aggregates only: the model's out-of-sample
  scores over the concatenated test predictions (``oos_<metric>``, macro-F1 with
  its block-bootstrap interval), each baseline's ``oos_baseline_<name>_macro_f1``
  and the comparison with the best one, mean and sd over folds, the headline of
  the stitched backtest over all test rows (``oos_bt_model_*``), and the verdict;
  every score is in ``walkforward.json``, with the fold table and the OOS predictions.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.evaluation.fold_work import FoldJob, FoldOutcome, run_fold
from lobseq.evaluation.folds import WalkForwardConfig, make_folds
from lobseq.tracking.runs import ending_child_runs


def walk_forward(dataset_path, train_cfg, cfg: WalkForwardConfig | None = None, *,
                 log_to_mlflow: bool = True, log: Callable[[str], None] | None = print,
                 verbose: int = 0, engine=None) -> dict:
    """Retrain `train_cfg` per fold and score out of sample; see the module docstring.

    Returns a flat dict: OOS scores over the concatenated test predictions as in
    `lobseq.evaluate.score_against_baselines` (prefixed `oos_`), `fold_macro_f1_mean/_sd`
    (and per baseline), `bt_<who>_<metric>` of the stitched backtest, `n_folds`,
    `by`, `run_id` (parent run, '' when not logged) and `folds` (a list of per-fold dicts).

    `engine` (an `EngineConfig` or its name; default local) says where the folds
    run: one after another in this process, or as parallel Ray tasks (fractional
    CPUs, `lobseq.engine.cpu_share`) whose results are gathered in fold order, so
    both engines return the same scores (training is seeded and op-deterministic).
    """
    from lobseq.engine import open_engine
    from lobseq.evaluation.backtest.model import conventions
    from lobseq.evaluation.evaluate import _as_dataset

    cfg = cfg or WalkForwardConfig()
    ds = _as_dataset(dataset_path)
    conv = conventions(ds, cost_bps=cfg.cost_bps, at_touch=cfg.at_touch,
                       periods_per_year=cfg.periods_per_year, interval_s=cfg.interval_s)
    train_cfg.validate()
    if train_cfg.head != "classification":
        raise LobseqError("walk-forward scores classification models", field="head")
    folds, by = make_folds(ds, cfg)
    say = log or (lambda _m: None)
    with open_engine(engine or "local", env_vars=_tracking_env()) as eng, \
            (_parent_run(ds, train_cfg, cfg, by, len(folds)) if log_to_mlflow else nullcontext()) as parent:
        say(f"Walk-forward on {ds.name}: {len(folds)} fold(s) by {by}, {cfg.mode}" + _where(eng, folds))
        parent_id = parent.info.run_id if parent is not None else None
        jobs = [FoldJob(ds if eng.name == "local" else str(Path(ds.path).resolve()), fold, train_cfg, cfg,
                        parent_id, ds.hash, verbose) for fold in folds]
        with ending_child_runs(parent_id) if parent_id else nullcontext():
            outcomes = _gather_folds(eng, jobs, say)
        fold_rows = [o.info for o in outcomes]
        ends = np.concatenate([o.ends for o in outcomes])
        proba = np.concatenate([o.proba for o in outcomes])
        base = {b: np.concatenate([o.base[b] for o in outcomes]) for b in outcomes[0].base}
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
    if parent is not None:
        say(f"MLflow run {out['run_id']}")
    return out


def _tracking_env() -> dict[str, str]:
    """The driver's store, for Ray workers (made absolute by the engine)."""
    from lobseq.tracking import tracking_uri

    return {"MLFLOW_TRACKING_URI": tracking_uri()}


def _where(engine, folds) -> str:
    if engine.name == "local":
        return ""
    return f"; folds as Ray tasks of {_fold_cpus(engine, folds):g} CPU"


def _fold_cpus(engine, folds) -> float:
    """CPUs per fold task: as many folds at once as the cluster has CPUs, with headroom."""
    from lobseq.engine import cpu_share

    nodes = engine.node_cpus()
    return cpu_share(nodes, max(1, min(len(folds), int(sum(nodes)))))


def _gather_folds(engine, jobs: list[FoldJob], say) -> list[FoldOutcome]:
    """Run the folds on `engine` (never retried: a fold logs a run); fold order, one line each."""
    cpus = _fold_cpus(engine, [j.fold for j in jobs]) if engine.name != "local" else 1.0
    outcomes = []
    results = engine.imap(run_fold, jobs, cpus=cpus, label="lobseq-fold", retries=0)
    try:
        for o in results:
            f, s = o.info, o.info
            say(f"  fold {o.index}: train rows {f['train_rows'][0]}..{f['train_rows'][1] - 1}, "
                f"test rows {f['test_rows'][0]}..{f['test_rows'][1] - 1}: macro-F1 "
                f"{s['test_macro_f1']:.4f} (logistic {s['baseline_logistic_macro_f1']:.4f})")
            outcomes.append(o)
    finally:
        getattr(results, "close", lambda: None)()
    return outcomes


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


@contextmanager
def _parent_run(ds, train_cfg, cfg: WalkForwardConfig, by: str, n_folds: int):
    """The walk-forward's run, with the training and walk-forward settings as params."""
    import mlflow

    from lobseq.tracking import run_name, tracked_run
    from lobseq.training.run import run_params

    params = run_params(ds, train_cfg)
    params.update({f"walkforward.{k}": str(v) for k, v in asdict(cfg).items()})
    params.update({"walkforward.by_resolved": by, "walkforward.n_folds": str(n_folds)})
    with tracked_run(run_name(train_cfg.model, "walkforward"), "walkforward", experiment=ds.name,
                     dataset=ds, tags={"model": train_cfg.model}) as run:
        mlflow.log_params(params)
        yield run


def _parent_metrics(out: dict) -> dict[str, float]:
    """Aggregates only: OOS headline and table metrics, fold mean/sd, the backtest's headline."""
    from lobseq.evaluation.evaluate import TABLE_METRICS
    from lobseq.evaluation.runs import backtest_headline, evaluation_headline
    from lobseq.tracking import numeric

    oos = {k[len("oos_"):]: v for k, v in out.items() if k.startswith("oos_")}
    metrics = evaluation_headline(oos, "oos")
    metrics.update({f"oos_{k}": oos[k] for k in (*TABLE_METRICS, "n") if k in oos})
    metrics.update({k: v for k, v in out.items() if k.startswith("fold_") or k == "n_folds"})
    metrics.update(backtest_headline({k[len("bt_"):]: v for k, v in out.items()
                                      if k.startswith("bt_")}, "oos"))
    return numeric(metrics)


def _log_parent(ds, out, fold_rows, br, results, table, bt_table, ends, y, proba) -> None:
    import mlflow

    from lobseq.data.labels import class_names
    from lobseq.evaluation.backtest.report import log_backtest_artifacts
    from lobseq.tracking import jsonable

    mlflow.log_metrics(_parent_metrics(out))
    mlflow.log_dict(jsonable({k: v for k, v in out.items() if k != "folds"}), "walkforward.json")
    mlflow.log_text(table, "walkforward_table.txt")
    mlflow.log_dict({"folds": jsonable({"f": fold_rows})["f"]}, "folds.json")
    frame = pd.DataFrame({"row": ends, "timestamp": pd.to_datetime(np.asarray(ds.timestamps[ends])),
                          "label": y})
    for k, name in enumerate(class_names(ds.n_classes)):
        frame[f"p_{name}"] = proba[:, k]
    mlflow.log_text(frame.to_csv(index=False), "oos_predictions.csv")
    log_backtest_artifacts(ds, br, results, bt_table, title="Stitched out-of-sample equity")
