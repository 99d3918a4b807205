"""Fit a Keras model on a stored dataset: Adam, early stopping, class weights, seeds.

    result = fit(load_dataset("data/processed/sim"), TrainConfig(model="lstm", epochs=5))

Batches come lazily from `Dataset.windows` (never all windows at once). The
same seed gives the same weights and metrics: Keras and TF are seeded and TF
ops are made deterministic.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np

from lobseq.errors import LobseqError
from lobseq.training.config import TrainConfig


@dataclass
class TrainResult:
    model: object  # keras.Model, restored to the best validation-loss epoch
    config: TrainConfig
    history: dict[str, list[float]]  # per epoch: loss, val_loss (+ accuracy, val_accuracy)
    best_epoch: int  # 0-based epoch whose weights the model holds
    val_pred: np.ndarray  # (n_val, n_classes) probabilities, or (n_val,) returns for regression
    val_labels: np.ndarray  # classes, or returns for regression
    test_pred: np.ndarray | None
    test_labels: np.ndarray | None
    metrics: dict[str, float]  # val_* and test_*
    class_weight: dict[int, float] | None
    train_windows: int
    seconds: float


def evenly_spaced(ends: np.ndarray, limit: int | None) -> np.ndarray:
    """At most `limit` of `ends`, evenly spaced over the whole split (keeps the time spread)."""
    if limit is None or len(ends) <= limit:
        return ends
    idx = np.linspace(0, len(ends) - 1, limit).round().astype(np.int64)
    return ends[np.unique(idx)]


def balanced_class_weight(labels: np.ndarray, n_classes: int) -> dict[int, float]:
    """sklearn's 'balanced' weights, n / (K * count_k) over the K classes present in `labels`;
    a class absent from them gets 1."""
    from sklearn.utils.class_weight import compute_class_weight

    labels = np.asarray(labels, dtype=np.int64)
    weights = dict.fromkeys(range(n_classes), 1.0)
    present = np.unique(labels)
    if present.size:
        balanced = compute_class_weight("balanced", classes=present, y=labels)
        weights.update(zip(present.tolist(), balanced.tolist(), strict=True))
    return weights


def seed_everything(seed: int) -> None:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(seed)  # python, numpy and TF/Keras RNGs
    tf.config.experimental.enable_op_determinism()


def _regression_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    y = np.asarray(y, dtype=np.float64)
    pred = np.asarray(pred, dtype=np.float64).reshape(-1)
    err = pred - y
    return {"mse": float(np.mean(err ** 2)), "mae": float(np.mean(np.abs(err))),
            "direction_accuracy": float(np.mean(np.sign(pred) == np.sign(y))), "n": int(len(y))}


def score(y: np.ndarray, pred: np.ndarray, n_classes: int, head: str) -> dict[str, float]:
    """Metrics of one split's predictions (classification: `lobseq.metrics`)."""
    if head == "regression":
        return _regression_metrics(y, pred)
    from lobseq.metrics import classification_metrics

    return classification_metrics(y, pred, n_classes)


def _predict(model, dataset, split: str, batch_size: int, target: str):
    ends = dataset.ends[split]
    if len(ends) == 0:
        return None, None
    seq = dataset.windows(split, batch_size=max(batch_size, 256), shuffle=False, target=target)
    pred = model.predict(seq, verbose=0)
    targets = dataset.labels if target == "class" else dataset.returns
    y = np.asarray(targets[ends])
    if target == "return":
        pred = pred.reshape(-1)
    return pred, y


def _compiled_model(dataset, cfg: TrainConfig, hyper: dict):
    """`cfg.model` built for `dataset`'s windows and compiled with Adam and the head's loss."""
    import keras

    from lobseq.models import build

    model = build(cfg.model, (dataset.window, dataset.n_features), dataset.n_classes, head=cfg.head, **hyper)
    if cfg.head == "regression":
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate), loss="mse", metrics=["mae"])
    else:
        model.compile(optimizer=keras.optimizers.Adam(cfg.learning_rate),
                      loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _subsampled(dataset, cfg: TrainConfig):
    """`dataset` with its train and validation window ends thinned to the configured maxima."""
    ends = dict(dataset.ends)
    ends["train"] = evenly_spaced(ends["train"], cfg.max_train_windows)
    ends["val"] = evenly_spaced(ends["val"], cfg.max_val_windows)
    return replace(dataset, ends=ends)


def _best_epoch(history: dict[str, list[float]]) -> int:
    val_loss = history.get("val_loss", [])
    return int(np.nanargmin(val_loss)) if val_loss else len(history.get("loss", [])) - 1


def _split_metrics(model, data, cfg: TrainConfig, target: str) -> tuple[dict, tuple, tuple]:
    """val_*/test_* metrics and the (predictions, targets) of both splits (test: None, None if empty)."""
    val = _predict(model, data, "val", cfg.batch_size, target)
    test = _predict(model, data, "test", cfg.batch_size, target)
    metrics = {f"val_{k}": v for k, v in score(val[1], val[0], data.n_classes, cfg.head).items()}
    if test[0] is not None:
        metrics.update({f"test_{k}": v for k, v in score(test[1], test[0], data.n_classes, cfg.head).items()})
    return metrics, val, test


def fit(dataset, cfg: TrainConfig, callbacks: list | None = None, verbose: int | str = 0,
        early_stopping: bool = True) -> TrainResult:
    """Train `cfg.model` on `dataset`'s train split, early-stopped on its validation loss.

    `callbacks` are extra Keras callbacks (e.g. MLflow logging); `verbose` is
    Keras' (0 quiet, 1 progress bar, 2 one line per epoch). `early_stopping=False`
    trains exactly `cfg.epochs` epochs and keeps the last weights (a retrain on
    train+validation, whose epoch count a sweep chose).
    """
    cfg.validate()
    hyper = cfg.model_hyperparameters()
    if len(dataset.ends["train"]) == 0 or len(dataset.ends["val"]) == 0:
        raise LobseqError("the dataset has no training or no validation windows", file=dataset.path,
                          fix="re-ingest with more data or other split fractions")
    from lobseq.quiet import quiet_tensorflow

    quiet_tensorflow()
    import keras

    seed_everything(cfg.seed)
    data = _subsampled(dataset, cfg)
    target = "return" if cfg.head == "regression" else "class"
    model = _compiled_model(dataset, cfg, hyper)
    class_weight = None
    if cfg.class_weight == "balanced" and target == "class":
        class_weight = balanced_class_weight(dataset.labels[data.ends["train"]], dataset.n_classes)

    stop = [keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                          restore_best_weights=True, verbose=0)] if early_stopping else []
    train_seq = data.windows("train", batch_size=cfg.batch_size, shuffle=True, seed=cfg.seed, target=target)
    val_seq = data.windows("val", batch_size=max(cfg.batch_size, 256), shuffle=False, target=target)
    start = time.perf_counter()
    hist = model.fit(train_seq, validation_data=val_seq, epochs=cfg.epochs, class_weight=class_weight,
                     callbacks=[*stop, *(callbacks or [])], verbose=verbose)
    seconds = time.perf_counter() - start
    history = {k: [float(v) for v in vals] for k, vals in hist.history.items()}
    metrics, (val_pred, val_y), (test_pred, test_y) = _split_metrics(model, data, cfg, target)
    best = _best_epoch(history) if early_stopping else len(history.get("loss", [])) - 1
    return TrainResult(model=model, config=cfg, history=history, best_epoch=best,
                       val_pred=val_pred, val_labels=val_y, test_pred=test_pred, test_labels=test_y,
                       metrics=metrics, class_weight=class_weight,
                       train_windows=int(len(data.ends["train"])), seconds=seconds)
