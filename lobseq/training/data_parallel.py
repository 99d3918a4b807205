"""One data-parallel training loop under a `tf.distribute` strategy, without `model.fit`.

Keras 3's `model.fit` fails under `MultiWorkerMirroredStrategy` ("Attempt to
convert a value (PerReplica...) with an unsupported type": keras-team/keras#20585,
tensorflow/tensorflow#72388, ray-project/ray#47464). This loop needs no private
API: each step runs `strategy.run`, and the Keras optimizer sums the replicas'
gradients itself (an all-reduce in `apply_gradients`).

It reproduces `lobseq.training.fit` batch for batch: the epoch's global batches
are the same seeded permutation of the training windows that
`Dataset.windows(shuffle=True)` makes (only their order within an epoch
differs: Keras also shuffles the batch order), and worker r of W takes the r-th
of W slices of each global batch. Each replica's loss is divided by the
global batch size, so the summed gradient is the gradient of the global mean
loss: with W workers the update is the one-process update on the same batch,
up to float summation order and the dropout masks, which each worker draws
for its own slice. Windows are gathered lazily from the memory-mapped
features, one slice at a time.

Early stopping on the validation loss with the best weights restored works as
`keras.callbacks.EarlyStopping(patience=p, restore_best_weights=True)`; the
validation split is sharded too and its sums all-reduced once per epoch, so
every worker sees the same numbers and stops at the same epoch.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lobseq.data.windows import gather_windows
from lobseq.training.config import TrainConfig
from lobseq.training.fit import balanced_class_weight, evenly_spaced

VAL_BATCH = 256  # fit validates with max(batch_size, 256)


@dataclass
class LoopResult:
    history: dict[str, list[float]]  # like fit's: loss, accuracy|mae, val_loss, val_accuracy|val_mae
    best_epoch: int  # 0-based; the model holds this epoch's weights
    seconds: float  # training loop only (no start-up)
    steps: int  # global steps run
    shard_windows: int  # training windows this worker read per epoch
    train_windows: int  # training windows of all workers per epoch
    class_weight: dict[int, float] | None
    shard_loss: list[float] = field(default_factory=list)  # this worker's own mean loss per epoch


class EarlyStop:
    """keras.callbacks.EarlyStopping(monitor="val_loss", restore_best_weights=True, min_delta=0)."""

    def __init__(self, patience: int):
        self.patience = patience
        self.best = math.inf
        self.best_epoch: int | None = None
        self.wait = 0

    def update(self, epoch: int, value: float) -> tuple[bool, bool]:
        """(keep these weights as the best, stop now) after `epoch` scored `value`."""
        keep = self.best_epoch is None  # Keras keeps the first epoch's weights whatever they score
        if keep:
            self.best_epoch = epoch
        self.wait += 1
        if value < self.best:  # NaN never improves
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return True, False
        return keep, self.wait >= self.patience and epoch > 0


def global_batches(ends: np.ndarray, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    """One epoch's global batches: shuffle `ends` in place (as WindowBatches does), then cut."""
    rng.shuffle(ends)
    return [ends[i:i + batch_size] for i in range(0, len(ends), batch_size)]


def shard(batch: np.ndarray, rank: int, world: int) -> np.ndarray:
    """Worker `rank`'s slice of a global batch, sorted so the gather reads the memory map in order."""
    return np.sort(np.array_split(batch, world)[rank])


class _Steps:
    """The compiled per-replica steps for one model, optimizer and head."""

    def __init__(self, strategy, model, optimizer, head: str, world: int, window: int, n_features: int):
        import tensorflow as tf

        self.strategy, self.model, self.optimizer, self.world = strategy, model, optimizer, world
        self.regression = head == "regression"
        x = tf.TensorSpec([None, window, n_features], tf.float32)
        y = tf.TensorSpec([None], tf.float32 if self.regression else tf.int32)
        w = tf.TensorSpec([None], tf.float32)
        n = tf.TensorSpec([], tf.float32)
        self.train = tf.function(self._train, input_signature=[x, y, w, n])
        self.evaluate = tf.function(self._evaluate, input_signature=[x, y, w])
        self.all_sum = tf.function(self._all_sum, input_signature=[tf.TensorSpec([3], tf.float64)])

    def _per_example(self, y, out):
        """(loss, metric) per window: crossentropy and hit, or squared and absolute error."""
        import keras
        import tensorflow as tf

        if self.regression:
            err = tf.reshape(out, [-1]) - y
            return tf.square(err), tf.abs(err)
        hit = tf.cast(tf.equal(tf.argmax(out, axis=-1, output_type=tf.int32), y), tf.float32)
        return keras.losses.sparse_categorical_crossentropy(y, out), hit

    def _sums(self, loss, metric, weight, valid, penalty=0.0):
        """[sum of weighted losses (+ the penalty once per window), sum of metrics, windows]."""
        import tensorflow as tf

        count = tf.reduce_sum(valid)
        return tf.cast(tf.stack([tf.reduce_sum(loss * weight) + penalty * count,
                                 tf.reduce_sum(metric * valid), count]), tf.float64)

    def _train(self, x, y, w, n_global):
        import tensorflow as tf

        def replica_step(x, y, w):
            valid = tf.cast(w > 0, tf.float32)
            with tf.GradientTape() as tape:
                out = self.model(x, training=True)
                loss, metric = self._per_example(y, out)
                total = tf.reduce_sum(loss * w) / n_global
                reg = tf.add_n(self.model.losses) if self.model.losses else tf.constant(0.0)
                total += reg / self.world  # every replica adds its share of the penalty once
            variables = self.model.trainable_variables
            self.optimizer.apply_gradients(zip(tape.gradient(total, variables), variables, strict=True))
            return self._sums(loss, metric, w, valid, reg)

        return self.strategy.run(replica_step, args=(x, y, w))

    def _evaluate(self, x, y, valid):
        def replica_eval(x, y, valid):
            loss, metric = self._per_example(y, self.model(x, training=False))
            return self._sums(loss, metric, valid, valid)

        return self.strategy.run(replica_eval, args=(x, y, valid))

    def _all_sum(self, value):
        import tensorflow as tf

        def replica_sum(v):  # identity places the value on the replica's device (else no destination)
            return tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, tf.identity(v))

        return self.strategy.run(replica_sum, args=(value,))

    def local(self, per_replica) -> np.ndarray:
        return self.strategy.experimental_local_results(per_replica)[0].numpy()

    def reduce(self, local_sums: np.ndarray) -> np.ndarray:
        return self.local(self.all_sum(np.asarray(local_sums, dtype=np.float64)))


class DataParallelLoop:
    """Train `model` (built in `strategy.scope()`) on `dataset` as worker `rank` of `world`."""

    def __init__(self, strategy, model, optimizer, dataset, cfg: TrainConfig, rank: int = 0, world: int = 1):
        self.dataset, self.cfg, self.rank, self.world = dataset, cfg, rank, world
        self.targets = dataset.returns if cfg.head == "regression" else dataset.labels
        self.train_ends = evenly_spaced(dataset.ends["train"], cfg.max_train_windows).copy()
        self.val_ends = shard(evenly_spaced(dataset.ends["val"], cfg.max_val_windows), rank, world)
        self.class_weight = None
        if cfg.class_weight == "balanced" and cfg.head == "classification":
            self.class_weight = balanced_class_weight(dataset.labels[self.train_ends], dataset.n_classes)
        self.steps = _Steps(strategy, model, optimizer, cfg.head, world, dataset.window, dataset.n_features)
        self.model = model

    def _inputs(self, ends: np.ndarray, weighted: bool):
        """Scaled windows, targets and weights; an empty slice becomes one window of weight 0."""
        weight = 1.0
        if len(ends) == 0:  # every replica must join every step's all-reduce
            ends, weight = self.dataset.ends["train"][:1], 0.0
        ds = self.dataset
        x = gather_windows(ds.features, ends, ds.window, ds.scaler.mean_, ds.scaler.scale_)
        y = np.asarray(self.targets[ends])
        y = y.astype(np.float32 if self.cfg.head == "regression" else np.int32)
        w = np.full(len(ends), weight, dtype=np.float32)
        if weighted and self.class_weight and weight:
            w = np.array([self.class_weight[int(c)] for c in y], dtype=np.float32)
        return x, y, w

    def _train_epoch(self, batches: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        local = np.zeros(3)
        for batch in batches:
            x, y, w = self._inputs(shard(batch, self.rank, self.world), weighted=True)
            local += self.steps.local(self.steps.train(x, y, w, np.float32(len(batch))))
        return local, self.steps.reduce(local)

    def _validate(self) -> np.ndarray:
        local = np.zeros(3)
        for i in range(0, len(self.val_ends), VAL_BATCH):
            x, y, w = self._inputs(self.val_ends[i:i + VAL_BATCH], weighted=False)
            local += self.steps.local(self.steps.evaluate(x, y, w))
        return self.steps.reduce(local)

    def run(self, on_epoch: Callable[[int, dict, dict], None] | None = None) -> LoopResult:
        """Train up to cfg.epochs; `on_epoch(epoch, logs, shard_logs)` after each (logs as Keras')."""
        metric = "mae" if self.cfg.head == "regression" else "accuracy"
        rng = np.random.default_rng(self.cfg.seed)
        history: dict[str, list[float]] = {k: [] for k in ("loss", metric, "val_loss", f"val_{metric}")}
        stop, best, shard_loss, steps = EarlyStop(self.cfg.patience), None, [], 0
        start = time.perf_counter()
        for epoch in range(self.cfg.epochs):
            batches = global_batches(self.train_ends, self.cfg.batch_size, rng)
            local, total = self._train_epoch(batches)
            val = self._validate()
            steps += len(batches)
            logs = {"loss": total[0] / total[2], metric: total[1] / total[2],
                    "val_loss": val[0] / val[2], f"val_{metric}": val[1] / val[2]}
            for key, value in logs.items():
                history[key].append(float(value))
            shard_loss.append(float(local[0] / local[2]))
            keep, halt = stop.update(epoch, logs["val_loss"])
            if keep:
                best = self.model.get_weights()
            if on_epoch is not None:
                on_epoch(epoch, logs, {"shard_loss": shard_loss[-1], "shard_windows": int(local[2])})
            if halt:
                break
        self.model.set_weights(best)
        return LoopResult(history=history, best_epoch=int(stop.best_epoch), seconds=time.perf_counter() - start,
                          steps=steps, shard_windows=int(local[2]), train_windows=int(total[2]),
                          class_weight=self.class_weight, shard_loss=shard_loss)
