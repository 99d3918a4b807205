"""Training: determinism, early stopping, subsampling, class weights."""

from __future__ import annotations

import numpy as np
import pytest

from lobseq.data.scaler import StandardScaler
from lobseq.data.store import load_dataset, write_dataset
from lobseq.errors import LobseqError
from lobseq.training.config import TrainConfig
from lobseq.training.fit import balanced_class_weight, evenly_spaced


def make_dataset(path, n=1500, n_features=4, window=10, seed=0):
    """A tiny stored dataset whose label is readable from the last row's feature 0."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, n_features)).astype(np.float32)
    labels = np.where(x[:, 0] > 0.4, 2, np.where(x[:, 0] < -0.4, 0, 1)).astype(np.int8)
    split = np.zeros(n, dtype=np.int8)
    split[int(n * 0.6):] = 1
    split[int(n * 0.8):] = 2
    ends = {}
    for s, name in enumerate(("train", "val", "test")):
        rows = np.flatnonzero(split == s)
        ends[name] = rows[window - 1:]
    arrays = {
        "features": x, "labels": labels, "returns": (x[:, 0] * 1e-3).astype(np.float32),
        "prices": np.ones((n, 3)), "timestamps": np.arange(n, dtype=np.int64),
        "segment": np.zeros(n, dtype=np.int32), "split": split,
    }
    scaler = StandardScaler().fit(x, rows=np.flatnonzero(split == 0))
    manifest = {"name": "toy", "kind": "book", "config": {"window": window, "horizon": 1, "n_classes": 3},
                "feature_names": [f"f{i}" for i in range(n_features)], "windows": {k: len(v) for k, v in ends.items()}}
    write_dataset(path, arrays, ends, scaler, manifest)
    return load_dataset(path)


@pytest.fixture(scope="module")
def toy(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("data") / "toy")


def test_evenly_spaced_keeps_first_and_last():
    ends = np.arange(100, 200)
    sub = evenly_spaced(ends, 5)
    assert len(sub) == 5 and sub[0] == 100 and sub[-1] == 199
    assert evenly_spaced(ends, None) is ends


def test_balanced_class_weight_is_inverse_frequency():
    w = balanced_class_weight(np.array([0, 0, 0, 1, 2, 2]), 3)
    assert w == pytest.approx({0: 6 / 9, 1: 2.0, 2: 1.0})


def test_balanced_class_weight_gives_a_class_absent_from_training_weight_one():
    labels = np.array([0, 0, 0, 2, 2, 2, 2, 2], dtype=np.int8)
    w = balanced_class_weight(labels, 3)
    assert w[1] == 1.0
    # the present classes are balanced among themselves: equal total weight, summing to n
    assert w[0] * 3 == pytest.approx(w[2] * 5)
    assert w[0] * 3 + w[2] * 5 == pytest.approx(len(labels))


def test_balanced_class_weight_keys_every_class_even_when_only_one_is_present():
    assert balanced_class_weight(np.array([1, 1, 1]), 3) == {0: 1.0, 1: 1.0, 2: 1.0}


def test_unknown_hyperparameter_is_a_user_error():
    with pytest.raises(LobseqError, match="unknown hyperparameter"):
        TrainConfig(model="lstm", hyper={"unitz": 3}).model_hyperparameters()


def test_bad_config_is_a_user_error():
    with pytest.raises(LobseqError, match="class_weight"):
        TrainConfig(class_weight="inverse").validate()


@pytest.mark.slow
def test_same_seed_gives_same_metrics(toy):
    from lobseq.training.fit import fit

    cfg = TrainConfig(model="gru", hyper={"units": 8}, epochs=2, batch_size=64, seed=3,
                      class_weight="balanced", max_train_windows=400)
    a = fit(toy, cfg)
    b = fit(toy, cfg)
    assert a.metrics == b.metrics
    np.testing.assert_array_equal(a.val_pred, b.val_pred)
    assert set(a.history) >= {"loss", "val_loss", "accuracy", "val_accuracy"}
    assert len(a.history["loss"]) == 2
    assert a.class_weight is not None


@pytest.mark.slow
def test_fit_learns_subsamples_and_scores_both_splits(toy):
    from lobseq.training.fit import fit

    cfg = TrainConfig(model="lstm", hyper={"units": 8}, epochs=4, learning_rate=1e-2, seed=0,
                      max_train_windows=600, max_val_windows=200)
    res = fit(toy, cfg)
    assert res.train_windows == 600
    assert res.val_pred.shape == (len(res.val_labels), 3) and len(res.val_labels) <= 200
    assert res.test_pred.shape == (len(toy.ends["test"]), 3)
    assert res.metrics["val_accuracy"] > 0.6  # the label is in the last row: learnable
    assert {"test_macro_f1", "val_mcc", "test_log_loss", "val_f1_up"} <= set(res.metrics)
    assert 0 <= res.best_epoch < 4


@pytest.mark.slow
def test_regression_head_scores_returns(toy):
    from lobseq.training.fit import fit

    res = fit(toy, TrainConfig(model="cnn", head="regression", epochs=1, max_train_windows=300))
    assert res.val_pred.ndim == 1 and "val_mse" in res.metrics
