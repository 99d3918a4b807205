"""Sweep trials on Ray Tune (`lobseq tune --engine ray`).

The driver samples the configurations (`lobseq.training.tune_space`) and runs
`run_tuner` as ONE engine task of no CPU: a `ray.tune.Tuner` over a grid of
trial indexes, each trial `lobseq.training.tune_trial.run_trial` in a Tune
actor of fractional CPUs (`lobseq.engine.cpu_share`), at most `max_concurrent`
at once, with the ASHA or FIFO scheduler. Running Tune inside a task makes
Ctrl-C simple and complete: cancelling that task kills the process that owns
the trial actors, so every trial goes with it (no Tune signal handler is
involved; it is switched off). Tune writes only to a scratch folder the driver
removes. Trials are never retried: each logs an MLflow run.
"""

from __future__ import annotations

import json
import os
import shutil


def run_tuner(job: dict) -> list[dict]:
    """Run `job["trials"]` (TrialJobs) on Ray Tune; one outcome per trial, in trial order.

    A completed trial's outcome is `run_trial`'s; a trial the scheduler stopped has
    `status: stopped` and the last metric it reported. A failed trial stops the sweep
    (fail fast): its LobseqError is raised unchanged, as the local engine raises it.
    """
    os.environ["TUNE_DISABLE_SIGINT_HANDLER"] = "1"  # the driver handles Ctrl-C (it cancels this task)
    from ray import tune

    storage = job["storage"]
    made_here = not os.path.isdir(storage)  # on another node than the driver
    try:
        grid = _tuner(job, tune).fit()
        return _outcomes(grid, job)
    finally:
        if made_here:
            shutil.rmtree(storage, ignore_errors=True)


def _tuner(job: dict, tune):
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    trials = job["trials"]
    if job["scheduler"] == "asha":  # never stops at max_t: a trial ends on its own, after its final report
        scheduler = ASHAScheduler(time_attr="training_iteration", max_t=job["max_t"] + 1,
                                  grace_period=1, reduction_factor=2)
    else:
        scheduler = FIFOScheduler()
    trainable = tune.with_resources(tune.with_parameters(_trainable, trials=trials),
                                    {"cpu": job["cpus_per_trial"]})
    return tune.Tuner(
        trainable, param_space={"trial": tune.grid_search(list(range(len(trials))))},
        # reuse_actors: a trial runs in a process an earlier trial used, so TensorFlow is imported
        # once per slot, not once per trial; the local engine runs every trial in one process too
        tune_config=tune.TuneConfig(metric=job["metric"], mode=job["mode"], scheduler=scheduler,
                                    max_concurrent_trials=job["max_concurrent"], reuse_actors=True),
        run_config=tune.RunConfig(name=f"lobseq-tune-{job['parent_run_id']}", storage_path=job["storage"],
                                  verbose=0, failure_config=tune.FailureConfig(max_failures=0,
                                                                               fail_fast=True)))


def _trainable(config: dict, trials: list) -> None:
    """One Tune trial: lobseq's trial function, then its outcome as the final report."""
    from ray import tune

    from lobseq.training.tune_trial import run_trial

    job = trials[config["trial"]]
    outcome = run_trial(job, report=tune.report)
    tune.report({job.metric: outcome[job.metric], "lobseq_outcome": json.dumps(outcome)})


def _outcomes(grid, job: dict) -> list[dict]:
    from lobseq.engine.ray_engine import find_lobseq_error

    by_trial: dict[int, dict] = {}
    errors = []
    for result in grid:
        i = int(result.config["trial"])
        metrics = result.metrics or {}
        if "lobseq_outcome" in metrics:
            by_trial[i] = json.loads(metrics["lobseq_outcome"])
        elif result.error is not None:
            errors.append((i, result.error))
        else:
            trial = job["trials"][i]
            by_trial[i] = {"trial": i, **trial.values, trial.metric: metrics.get(trial.metric),
                           "best_epoch": None, "epochs_run": metrics.get("epoch", metrics.get("folds_done")),
                           "status": "stopped", "run_id": None}
    if errors:
        i, error = min(errors, key=lambda e: e[0])
        raise find_lobseq_error(error) or RuntimeError(f"trial {i} failed: {error}")
    return [by_trial[i] for i in sorted(by_trial)]
