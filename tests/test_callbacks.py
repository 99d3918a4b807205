"""Training progress on stderr: a redrawn line with an ETA on a terminal, one line per epoch in a log."""

from __future__ import annotations

import io

import numpy as np
import pytest

pytestmark = pytest.mark.slow  # imports TensorFlow


def _fit(progress, epochs: int = 2) -> None:
    import keras

    from lobseq.training.callbacks import Progress

    assert isinstance(progress, Progress)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
    y = np.arange(64) % 3
    model.fit(x, y, batch_size=8, epochs=epochs, validation_split=0.25, verbose=0,
              callbacks=[progress])


def test_a_log_gets_one_line_per_epoch_counted_from_1():
    from lobseq.training.callbacks import Progress

    out = io.StringIO()
    _fit(Progress(out, interactive=False, heartbeat_s=float("inf")), epochs=3)
    lines = out.getvalue().splitlines()
    assert [line.split("  ")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert lines[0].split("  ")[1].startswith("loss ") and "val_loss" in lines[0]
    assert "run ≤" in lines[0] and "run ≤" not in lines[-1]
    assert "\r" not in out.getvalue()


def test_a_terminal_gets_a_redrawn_line_with_batches_and_an_eta():
    from lobseq.training.callbacks import Progress

    out = io.StringIO()
    _fit(Progress(out, interactive=True, redraw_s=0.0))
    text = out.getvalue()
    redraws = [part for part in text.split("\r") if "ETA" in part]
    assert redraws and all("/6" in r for r in redraws)  # batch k of 6 (48 training rows / 8)
    kept = [line.split("\r")[-1] for line in text.split("\n")]  # what stays on the screen
    assert [line.split("  ")[0] for line in kept if line] == ["epoch 1/2", "epoch 2/2"]
    assert all("val_loss" in line for line in kept if line)
