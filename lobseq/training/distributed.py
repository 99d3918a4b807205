"""Data-parallel training of one model on Ray Train (`lobseq train --workers N --engine ray`).

    run_id = train_distributed("data/processed/sim", TrainConfig(model="gru"), workers=2)

The driver opens the Ray engine (joins `ray_address` / RAY_ADDRESS or starts a
local instance), starts the parent MLflow run and logs what `train_and_log`
logs before training (params, dataset input, manifest). One Ray task (no CPU
of its own) then runs Ray Train's `TensorflowTrainer`; cancelling that task
(Ctrl-C, SIGTERM) takes the trainer's controller and workers with it.

Each of the N workers (fractional CPUs, see `lobseq.engine.cpu_share`) joins a
`MultiWorkerMirroredStrategy`, trains with `lobseq.training.data_parallel`
(Keras 3's `fit` fails under that strategy) on its slice of every batch, read
lazily from the stored dataset, and logs its own nested run `worker-<rank>`
under the parent: its shard's loss per epoch, its node and a digest of its
final weights. Rank 0 alone logs the training's per-epoch metrics, the final
val/test metrics, the evaluation artifacts and the model (the same pyfunc as
`lobseq.training.package.log_pyfunc`) into the parent run. Workers reach the
driver's tracking URI through the Ray runtime_env; a sqlite store therefore
only works when every node sees the same file (one machine, or a shared
disk): a cluster needs a tracking server.
"""

from __future__ import annotations

import hashlib
import math
import os
import shutil
import tempfile
import time
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

from lobseq.errors import LobseqError
from lobseq.tracking import configure, run_name, tracked_run
from lobseq.tracking.runs import PARENT_TAG, ending_child_runs


def weights_digest(weights: list[np.ndarray]) -> str:
    """SHA-256 over the shapes and bytes of a model's weights: equal digests, equal weights."""
    h = hashlib.sha256()
    for w in weights:
        w = np.ascontiguousarray(w)
        h.update(repr((w.dtype.str, w.shape)).encode())
        h.update(w.tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------ driver


def train_distributed(dataset_path: str | Path, cfg, workers: int = 2, ray_address: str | None = None,
                      experiment: str | None = None, register: str | None = None,
                      num_cpus: int | None = None, log=print) -> str:
    """Train `cfg` on `workers` Ray Train workers; returns the parent run's id (as train_and_log).

    Ctrl-C or SIGTERM cancels the Ray work and ends the parent and worker runs
    KILLED; a failure ends them FAILED and re-raises (a worker's LobseqError
    unchanged). Nothing is registered then.
    """
    import mlflow

    from lobseq.data.store import load_dataset
    from lobseq.engine import EngineConfig, cpu_share, open_engine
    from lobseq.engine.ray_engine import absolute_uri, import_ray
    from lobseq.training.run import register_model, run_params

    import_ray()  # without Ray, say so before anything is read
    dataset = load_dataset(dataset_path)
    cfg.validate()
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise LobseqError(f"workers must be a positive integer, got {workers!r}", field="workers")
    params = run_params(dataset, cfg)  # bad settings fail before Ray starts or a run exists
    engine_cfg = EngineConfig(name="ray", address=ray_address, num_cpus=num_cpus)
    engine_cfg.validate()
    _check_model_fits(dataset, cfg)
    uri = absolute_uri(configure())
    with open_engine(engine_cfg, env_vars={"MLFLOW_TRACKING_URI": uri}) as engine:
        nodes = engine.node_cpus()
        share = cpu_share(nodes, workers)
        tags = {"model": cfg.model, "head": cfg.head, "lobseq.engine": "ray",
                "lobseq.workers": workers}
        with tracked_run(run_name(cfg.model, "train"), "train", experiment=experiment or dataset.name,
                         dataset=dataset, tags=tags) as run, ending_child_runs(run.info.run_id):
            run_id = run.info.run_id
            where = mlflow.get_experiment(run.info.experiment_id).name
            log(f"MLflow run {run_id} ({run.info.run_name}) in experiment {where}: "
                f"{workers} workers x {share:g} CPU on {len(nodes)} Ray node(s)")
            _log_inputs(params, dataset)
            _train_on_ray(engine, {"dataset": str(Path(dataset.path).resolve()), "cfg": cfg,
                                   "workers": workers, "cpus_per_worker": share,
                                   "experiment_id": run.info.experiment_id, "parent_run_id": run_id,
                                   "tracking_uri": uri, "runtime_env": engine.task_runtime_env})
    if register:
        log(f"Registered {register} version {register_model(run_id, register)}")
    return run_id


def _train_on_ray(engine, job: dict) -> None:
    """Run the trainer as one 0-CPU task (never retried: it would log twice); check rank 0's model."""
    import mlflow

    job["storage"] = tempfile.mkdtemp(prefix="lobseq-raytrain-")  # Ray Train's scratch; we report nothing
    try:
        engine.map(run_trainer, [job], cpus=0, label="lobseq-train", retries=0)
    finally:  # also after Ctrl-C, when the task that ran the trainer was killed
        shutil.rmtree(job["storage"], ignore_errors=True)
    if "model_uri" not in mlflow.get_run(job["parent_run_id"]).data.tags:
        raise RuntimeError(f"distributed training ended without a logged model (run {job['parent_run_id']})")


def _check_model_fits(dataset, cfg) -> None:
    from lobseq.models import build

    build(cfg.model, (dataset.window, dataset.n_features), dataset.n_classes, head=cfg.head,
          **cfg.model_hyperparameters())


def _log_inputs(params: dict, dataset) -> None:
    import mlflow

    from lobseq.training.run import _dataset_input

    mlflow.log_params(params)
    with warnings.catch_warnings():  # the int8 label column makes MLflow hint about NaNs
        warnings.simplefilter("ignore", UserWarning)
        mlflow.log_input(_dataset_input(dataset), context="training")
    mlflow.log_artifact(str(Path(dataset.path) / "manifest.json"), "dataset")


# ------------------------------------------------------------------ the Ray task that runs Ray Train


def run_trainer(job: dict) -> None:
    """Run `train_worker` on job["workers"] Ray Train workers; a worker's LobseqError is re-raised."""
    from ray.train import FailureConfig, RunConfig, ScalingConfig, TrainingFailedError
    from ray.train.tensorflow import TensorflowTrainer

    storage = job["storage"]  # the driver's; on another node the task makes (and removes) its own
    made_here = not os.path.isdir(storage)
    try:
        trainer = TensorflowTrainer(
            train_worker, train_loop_config=job,
            scaling_config=ScalingConfig(num_workers=job["workers"],
                                         resources_per_worker={"CPU": job["cpus_per_worker"]}),
            run_config=RunConfig(name=f"lobseq-{job['parent_run_id']}", storage_path=storage,
                                 failure_config=FailureConfig(max_failures=0),
                                 worker_runtime_env=job["runtime_env"]))
        trainer.fit()
    except TrainingFailedError as e:
        from lobseq.engine.ray_engine import find_lobseq_error

        raise find_lobseq_error(e) or e from None
    finally:
        if made_here:
            shutil.rmtree(storage, ignore_errors=True)


# ------------------------------------------------------------------ one Ray Train worker


def train_worker(job: dict) -> None:
    """Ray Train's per-worker function: join the strategy, train, log this worker's run."""
    import ray.train
    from mlflow.tracking import MlflowClient

    from lobseq.data.store import load_dataset

    ctx = ray.train.get_context()
    rank, world = ctx.get_world_rank(), ctx.get_world_size()
    strategy = _strategy(job["cpus_per_worker"])
    client = MlflowClient(job["tracking_uri"])
    run_id = client.create_run(job["experiment_id"], run_name=f"worker-{rank}", tags={
        PARENT_TAG: job["parent_run_id"], "lobseq.rank": str(rank), "lobseq.world_size": str(world),
        "lobseq.node": ray.get_runtime_context().get_node_id()}).info.run_id
    try:
        dataset, cfg = load_dataset(job["dataset"]), job["cfg"]
        model, result = _train(strategy, dataset, cfg, rank, world,
                               _epoch_logger(client, run_id, job["parent_run_id"], rank))
        weights = model.get_weights()
        client.set_tag(run_id, "lobseq.weights_sha256", weights_digest(weights))
        client.log_metric(run_id, "shard_windows", result.shard_windows)
        client.log_metric(run_id, "train_seconds", result.seconds)
        if rank == 0:
            _log_results(job, dataset, cfg, weights, result)
    except BaseException as e:
        client.set_terminated(run_id, "KILLED" if isinstance(e, KeyboardInterrupt) else "FAILED")
        raise
    client.set_terminated(run_id, "FINISHED")


def _strategy(cpus: float):
    from lobseq.quiet import quiet_tensorflow

    quiet_tensorflow()
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # the strategy's INFO lines on every worker
    threads = max(1, math.ceil(cpus))  # as many TF threads as the worker holds CPUs
    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(threads)
    return tf.distribute.MultiWorkerMirroredStrategy()


def _train(strategy, dataset, cfg, rank: int, world: int, on_epoch):
    import keras

    from lobseq.models import build
    from lobseq.training.data_parallel import DataParallelLoop
    from lobseq.training.fit import seed_everything

    seed_everything(cfg.seed)  # the same initial weights on every worker
    with strategy.scope():
        model = build(cfg.model, (dataset.window, dataset.n_features), dataset.n_classes, head=cfg.head,
                      **cfg.model_hyperparameters())
        optimizer = keras.optimizers.Adam(cfg.learning_rate)
    loop = DataParallelLoop(strategy, model, optimizer, dataset, cfg, rank=rank, world=world)
    return model, loop.run(on_epoch)


def _epoch_logger(client, run_id: str, parent_run_id: str, rank: int):
    """Per epoch: the shard's loss into this worker's run; rank 0 also the training's into the parent."""
    from mlflow.entities import Metric

    def on_epoch(epoch: int, logs: dict, shard_logs: dict) -> None:
        now = int(time.time() * 1000)
        step = epoch + 1  # counted from 1, as train_and_log's EpochMetrics and the console
        client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in shard_logs.items()])
        if rank == 0:  # the names train_and_log's EpochMetrics uses
            client.log_batch(parent_run_id, metrics=[Metric(f"epoch_{k}", float(v), now, step)
                                                     for k, v in logs.items()])

    return on_epoch


def _log_results(job: dict, dataset, cfg, weights: list, result) -> None:
    """Rank 0: score val/test with a plain copy of the model and log it all into the parent run."""
    import matplotlib

    matplotlib.use("Agg")
    import mlflow

    from lobseq.models import build
    from lobseq.training.fit import TrainResult, _predict, evenly_spaced, score
    from lobseq.training.run import _log_result

    model = build(cfg.model, (dataset.window, dataset.n_features), dataset.n_classes, head=cfg.head,
                  **cfg.model_hyperparameters())  # outside the strategy: saved and served as fit's
    model.set_weights(weights)
    ends = dict(dataset.ends, val=evenly_spaced(dataset.ends["val"], cfg.max_val_windows))
    data, target = replace(dataset, ends=ends), "return" if cfg.head == "regression" else "class"
    preds = {split: _predict(model, data, split, cfg.batch_size, target) for split in ("val", "test")}
    metrics = {f"{split}_{k}": v for split, (pred, y) in preds.items() if pred is not None
               for k, v in score(y, pred, dataset.n_classes, cfg.head).items()}
    train_result = TrainResult(
        model=model, config=cfg, history=result.history, best_epoch=result.best_epoch,
        val_pred=preds["val"][0], val_labels=preds["val"][1], test_pred=preds["test"][0],
        test_labels=preds["test"][1], metrics=metrics, class_weight=result.class_weight,
        train_windows=result.train_windows, seconds=result.seconds)
    mlflow.set_tracking_uri(job["tracking_uri"])
    mlflow.set_registry_uri(job["tracking_uri"])
    mlflow.start_run(run_id=job["parent_run_id"])  # the driver owns its status: leave it RUNNING
    try:  # what train_and_log logs after fit: scores, plots, report, the model, the description
        _log_result(train_result, dataset, cfg)
    finally:
        mlflow.end_run(status="RUNNING")

