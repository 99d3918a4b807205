"""Hyperparameter sweeps: sample configurations, train each as a trial, keep the best.

    result = tune_model("data/processed/sim", TrainConfig(model="gru", epochs=5),
                        TuneConfig(space=Path("space.yaml"), trials=20), engine=EngineConfig("ray"))

One parent run (`<model> · tune`, `lobseq.kind=tune`) holds the sweep: its base
training params, the space file, the sampled configurations, then the best
configuration (params `best.<name>`) and its score (`best_<metric>`), the table
of all trials (`trials.csv`) and a scatter of score by hyperparameter
(`plots/trials.png`). Each trial is a nested run (`<model> · tune · trial <i>`,
`lobseq.kind=tune_trial`; `lobseq.training.tune_trial`).

The configurations are drawn by lobseq's seeded sampler before anything runs
(`lobseq.training.tune_space`; seed = the training seed), so both engines run
the same trials: `local` one after another in this process (every trial to its
end: FIFO), `ray` as Ray Tune trials (`lobseq.training.tune_ray`; ASHA may stop
a poor trial early on its per-epoch metric, FIFO runs all). The score is the
metric of the restored best model on the validation split or, with walk-forward
`folds` (passed in by the caller), its mean over the folds' validation tails:
each configuration is scored as a whole, never by its best fold. Only completed
trials can be best (ties: the lower trial number). `register` retrains the best
configuration on train+validation for the best trial's best epoch count (its
folds' mean with folds), without early stopping, as a nested `<model> · train`
run, and registers that model.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import Literal

from pydantic import Field, StrictInt

from lobseq.config import stage_config
from lobseq.errors import LobseqError

Metric = Literal["val_macro_f1", "val_accuracy", "val_weighted_f1", "val_balanced_accuracy",
                 "val_mcc", "val_cohen_kappa", "val_log_loss", "val_brier"]
LOWER_IS_BETTER = ("val_log_loss", "val_brier")


@stage_config
class TuneConfig:
    """A sweep: which space, how many trials, how they are scored and scheduled."""

    space: Path = Field(description="Search space YAML: hyperparameter (as --param names it, or lr, "
                                    "batch_size, epochs) -> {choice|uniform|loguniform|randint: [...]}.")
    trials: StrictInt = Field(10, ge=1, description="Configurations to try (drawn with --seed).")
    folds: StrictInt | None = Field(
        None, ge=1, description="Score each configuration as its mean over K walk-forward folds' "
                                "validation tails [default: the validation split].")
    metric: Metric = Field("val_macro_f1", description="What decides the best configuration (log "
                                                       "loss and Brier: lower is better).")
    scheduler: Literal["asha", "fifo"] | None = Field(
        None, description="asha stops poor trials early on the per-epoch metric; fifo runs all "
                          "[default: asha on ray; the local engine runs fifo only].")
    max_concurrent: StrictInt | None = Field(
        None, ge=1, description="Most trials at once on Ray [default: the cluster's CPU count].")

    @property
    def mode(self) -> str:
        return "min" if self.metric in LOWER_IS_BETTER else "max"

    def scheduler_for(self, engine: str) -> str:
        if engine == "local" and self.scheduler == "asha":
            raise LobseqError("the asha scheduler needs the ray engine (the local engine runs every "
                              "trial to its end)", field="scheduler",
                              fix="add --engine ray, or use --scheduler fifo")
        return self.scheduler or ("asha" if engine == "ray" else "fifo")


def tune_model(dataset_path, train_cfg, cfg: TuneConfig, *, engine=None, folds: list | None = None,
               experiment: str | None = None, register: str | None = None,
               log: Callable[[str], None] = print) -> dict:
    """Run the sweep (see the module docstring); returns `run_id` (the parent), `best` (the best
    trial's row), `trials` (every row, trial order) and, with `register`, `model_run_id` and
    `version`. `folds`: walk-forward folds (`lobseq.evaluation.folds.make_folds`) or None."""
    from lobseq.data.store import load_dataset
    from lobseq.engine import EngineConfig, open_engine
    from lobseq.engine.ray_engine import absolute_uri
    from lobseq.tracking import configure
    from lobseq.training.tune_space import load_space

    ds = dataset_path if hasattr(dataset_path, "ends") else load_dataset(dataset_path)
    train_cfg.validate()
    if train_cfg.head != "classification":
        raise LobseqError("a sweep scores classification models", field="head")
    engine = engine or EngineConfig()
    scheduler = cfg.scheduler_for(engine.name)
    space = load_space(cfg.space, train_cfg)
    values = space.sample(cfg.trials, train_cfg.seed)
    configs = [space.apply(train_cfg, v) for v in values]
    _check_trials(ds, configs, log)  # a bad configuration fails before any run exists
    uri = absolute_uri(configure())
    with open_engine(engine, env_vars={"MLFLOW_TRACKING_URI": uri}) as eng:
        return _sweep(ds, train_cfg, cfg, space, values, configs, eng, scheduler, folds or [], uri,
                      experiment, register, log)


def _check_trials(ds, configs: list, log) -> None:
    from lobseq.training.run import _check_before_run

    seen = set()
    for cfg in configs:
        key = repr(sorted(cfg.model_hyperparameters().items()))
        if key not in seen:
            seen.add(key)
            _check_before_run(ds, cfg, log)


def _sweep(ds, train_cfg, cfg: TuneConfig, space, values, configs, eng, scheduler, folds, uri,
           experiment, register, log) -> dict:
    import mlflow

    from lobseq.tracking import run_name, tracked_run
    from lobseq.tracking.runs import ending_child_runs
    from lobseq.training.run import run_params
    from lobseq.training.tune_trial import TrialJob

    tags = {"model": train_cfg.model, "lobseq.engine": eng.name, "lobseq.scheduler": scheduler}
    with tracked_run(run_name(train_cfg.model, "tune"), "tune", experiment=experiment or ds.name,
                     dataset=ds, tags=tags) as parent, ending_child_runs(parent.info.run_id):
        parent_id = parent.info.run_id
        mlflow.log_params({**run_params(ds, train_cfg), **_tune_params(cfg, scheduler, eng.name, folds)})
        mlflow.log_text(space.text, "space.yaml")
        mlflow.log_dict({"seed": train_cfg.seed, "configurations": values}, "configurations.json")
        log(f"Sweep of {cfg.trials} {train_cfg.model} configuration(s) on {ds.name} "
            f"({len(folds) or 'no'} folds, {cfg.metric}, {scheduler}), MLflow run {parent_id}")
        jobs = [TrialJob(ds if eng.name == "local" else str(Path(ds.path).resolve()), i, c, v,
                         cfg.metric, parent_id, folds, uri, per_epoch=scheduler == "asha")
                for i, (c, v) in enumerate(zip(configs, values, strict=True))]
        rows = _run_trials(eng, jobs, cfg, scheduler, log)
        best = _best(rows, cfg)
        _log_sweep(rows, best, space, cfg, train_cfg)
        out = {"run_id": parent_id, "best": best, "trials": rows}
        log(_table(rows, best, space.names, cfg.metric))
        if register:
            out.update(_retrain(ds, configs[best["trial"]], best, register, log))
    return out


def _tune_params(cfg: TuneConfig, scheduler: str, engine: str, folds: list) -> dict[str, str]:
    params = {f"tune.{k}": str(v) for k, v in asdict(cfg).items()}
    params.update({"tune.scheduler": scheduler, "tune.engine": engine, "tune.n_folds": str(len(folds))})
    return params


def _run_trials(eng, jobs: list, cfg: TuneConfig, scheduler: str, log) -> list[dict]:
    """Every trial's row: one after another here, or on Ray Tune (one 0-CPU task runs the Tuner)."""
    if eng.name == "local":
        from lobseq.training.tune_trial import run_trial

        rows = []
        for job in jobs:
            rows.append(run_trial(job))
            log(f"  trial {job.index}: {cfg.metric} {rows[-1][cfg.metric]:.4f}  {job.values}")
        return rows
    from lobseq.engine import cpu_share
    from lobseq.training.tune_ray import run_tuner
    from lobseq.training.tune_trial import STATUS_TAG

    nodes = eng.node_cpus()
    at_once = min(len(jobs), cfg.max_concurrent or max(1, int(sum(nodes))))
    job = {"trials": jobs, "metric": cfg.metric, "mode": cfg.mode, "scheduler": scheduler,
           "max_t": len(jobs[0].folds) or max(j.cfg.epochs for j in jobs),
           "max_concurrent": at_once, "cpus_per_trial": cpu_share(nodes, at_once),
           "parent_run_id": jobs[0].parent_run_id, "storage": tempfile.mkdtemp(prefix="lobseq-tune-")}
    log(f"  Ray Tune: {at_once} trial(s) at once x {job['cpus_per_trial']:g} CPU on {len(nodes)} node(s)")
    try:
        rows = eng.map(run_tuner, [job], cpus=0, label="lobseq-tune", retries=0)[0]
    finally:  # also after Ctrl-C, when the task that ran Tune was killed
        shutil.rmtree(job["storage"], ignore_errors=True)
    from lobseq.tracking.runs import end_running_children

    end_running_children(job["parent_run_id"], "FINISHED", **{STATUS_TAG: "stopped"})  # killed at a stop
    runs = _trial_runs(job["parent_run_id"])
    for row in rows:
        row["run_id"] = row["run_id"] or runs.get(row["trial"])
        log(f"  trial {row['trial']}: {cfg.metric} {row[cfg.metric]:.4f} ({row['status']})")
    return rows


def _trial_runs(parent_id: str) -> dict[int, str]:
    import mlflow

    from lobseq.tracking.runs import PARENT_TAG

    client = mlflow.MlflowClient()
    exp = client.get_run(parent_id).info.experiment_id
    return {int(r.data.tags["trial"]): r.info.run_id
            for r in client.search_runs([exp], f"tags.`{PARENT_TAG}` = '{parent_id}'")
            if "trial" in r.data.tags}


def _best(rows: list[dict], cfg: TuneConfig) -> dict:
    done = [r for r in rows if r["status"] == "completed" and r[cfg.metric] is not None]
    if not done:
        raise RuntimeError("no trial completed")
    sign = -1.0 if cfg.mode == "max" else 1.0
    return min(done, key=lambda r: (sign * r[cfg.metric], r["trial"]))


def _log_sweep(rows: list[dict], best: dict, space, cfg: TuneConfig, train_cfg) -> None:
    """Into the parent run: the best configuration and score, the trials table and plot."""
    import mlflow
    import pandas as pd

    from lobseq.plots import plot_trials
    from lobseq.tracking import numeric

    table = pd.DataFrame(rows)
    mlflow.log_text(table.to_csv(index=False), "trials.csv")
    mlflow.log_params({f"best.{k}": str(best[k]) for k in space.names})
    mlflow.log_metrics(numeric({f"best_{cfg.metric}": best[cfg.metric], "best_trial": best["trial"],
                                "best_epoch": best["best_epoch"],
                                "trials_completed": sum(r["status"] == "completed" for r in rows),
                                "trials_stopped": sum(r["status"] == "stopped" for r in rows)}))
    mlflow.set_tag("lobseq.best_run_id", best["run_id"] or "")
    log_x = {d.name for d in space.dimensions if d.kind == "loguniform"}
    with tempfile.TemporaryDirectory(prefix="lobseq-tune-") as tmp:
        path = Path(tmp) / "trials.png"
        plot_trials({k: [r[k] for r in rows] for k in space.names}, [r[cfg.metric] for r in rows],
                    cfg.metric, path, completed=[r["status"] == "completed" for r in rows],
                    best=rows.index(best), log_x=log_x)
        mlflow.log_artifact(str(path), "plots")


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def _table(rows: list[dict], best: dict, names: list[str], metric: str) -> str:
    width = [max(len(k), *(len(_shown(r[k])) for r in rows)) for k in names]
    # `ran` is the epochs a trial ran (early stopping, ASHA); a sampled `epochs` is its budget
    head = f"  {'trial':>5}  {metric:>14}  {'ran':>6}  {'status':<9}  " + "  ".join(
        f"{k:>{w}}" for k, w in zip(names, width, strict=True))
    lines = [head]
    for r in rows:
        score = f"{r[metric]:.4f}" if r[metric] is not None else "-"
        lines.append(f"  {r['trial']:>5}  {score:>14}  {str(r['epochs_run']):>6}  {r['status']:<9}  "
                     + "  ".join(f"{_shown(r[k]):>{w}}" for k, w in zip(names, width, strict=True))
                     + ("  *" if r is best else ""))
    lines.append(f"best: trial {best['trial']} ({metric} {best[metric]:.4f}): "
                 + ", ".join(f"{k}={_shown(best[k])}" for k in names))
    return "\n".join(lines)


def _retrain(ds, cfg, best: dict, register: str, log) -> dict:
    """The best configuration on train+validation for its best epoch count, then registered."""
    from dataclasses import replace

    from lobseq.training.run import register_model, train_and_log

    epochs = max(1, int(best["best_epoch"]))
    log(f"Retraining trial {best['trial']}'s configuration on train+validation for {epochs} epoch(s)")
    run_id = train_and_log(ds.path, replace(cfg, epochs=epochs), on_validation=True, log=log)
    version = register_model(run_id, register)
    log(f"Registered {register} version {version}")
    return {"model_run_id": run_id, "version": version}
