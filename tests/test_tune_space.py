"""Sweep search spaces: the YAML form, errors that name the key and line, the seeded sampler."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from lobseq.errors import LobseqError
from lobseq.training.config import TrainConfig
from lobseq.training.tune import TuneConfig
from lobseq.training.tune_space import load_space, parse_space

SPACE = """\
units: {choice: [16, 32, 64]}
dropout: {uniform: [0.0, 0.4]}
lr: {loguniform: [0.0001, 0.01]}
batch_size: {randint: [32, 129]}
epochs: {choice: [2, 3]}
"""
GRU = TrainConfig(model="gru")


def test_the_same_seed_draws_the_same_configurations_and_another_seed_others():
    space = parse_space(SPACE, GRU)
    assert space.sample(5, seed=3) == space.sample(5, seed=3)
    assert space.sample(5, seed=3) != space.sample(5, seed=4)
    assert space.sample(2, seed=3) == space.sample(5, seed=3)[:2]  # more trials extend, not reshuffle


def test_draws_stay_in_their_distributions():
    for values in parse_space(SPACE, GRU).sample(200, seed=0):
        assert values["units"] in (16, 32, 64) and values["epochs"] in (2, 3)
        assert 0.0 <= values["dropout"] < 0.4
        assert 1e-4 <= values["lr"] < 1e-2 and isinstance(values["lr"], float)
        assert 32 <= values["batch_size"] < 129 and isinstance(values["batch_size"], int)


def test_log_uniform_draws_spread_over_the_decades():
    lrs = [v["lr"] for v in parse_space(SPACE, GRU).sample(400, seed=1)]
    below = sum(lr < 1e-3 for lr in lrs) / len(lrs)  # half the log range lies below 1e-3
    assert 0.4 < below < 0.6


def test_values_land_on_the_training_config_and_the_model():
    space = parse_space(SPACE, GRU)
    cfg = space.apply(GRU, {"units": 32, "lr": 0.002, "batch_size": 40, "epochs": 3, "dropout": 0.1})
    assert (cfg.learning_rate, cfg.batch_size, cfg.epochs) == (0.002, 40, 3)
    assert cfg.hyper == {"units": 32, "dropout": 0.1} and cfg.model_hyperparameters()["units"] == 32


@pytest.mark.parametrize("text, line, key, words", [
    ("units: {choice: [8]}\nwidth: {choice: [1]}\n", 2, "width", "not a hyperparameter of gru"),
    ("units: [8, 16]\n", 1, "units", "needs exactly one of choice, uniform"),
    ("units: {choice: [8]}\ndropout: {uniform: [0.4, 0.1]}\n", 2, "dropout.uniform", "low 0.4 must be below"),
    ("lr: {loguniform: [0, 0.01]}\n", 1, "lr.loguniform", "bounds must be positive"),
    ("batch_size: {uniform: [16, 64]}\n", 1, "batch_size.uniform", "takes whole numbers"),
    ("units: {randint: [8.5, 16]}\n", 1, "units.randint", "whole numbers"),
    ("epochs: {choice: [2, 0]}\n", 1, "epochs.choice", "0: must be >= 1"),
    ("units: {choice: []}\n", 1, "units.choice", "non-empty list"),
])
def test_a_bad_space_names_the_key_and_its_line(text, line, key, words, tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text(text)
    with pytest.raises(LobseqError) as info:
        load_space(path, GRU)
    assert str(info.value).startswith(f"{path}: line {line}, key '{key}': ")
    assert words in str(info.value)


def test_the_local_engine_refuses_asha_and_defaults_to_fifo():
    cfg = TuneConfig(space=Path("s.yaml"))
    assert (cfg.scheduler_for("local"), cfg.scheduler_for("ray")) == ("fifo", "asha")
    with pytest.raises(LobseqError, match="asha scheduler needs the ray engine"):
        TuneConfig(space=Path("s.yaml"), scheduler="asha").scheduler_for("local")
    assert TuneConfig(space=Path("s.yaml"), metric="val_log_loss").mode == "min"
    assert math.isclose(parse_space("lr: {loguniform: [0.001, 0.001001]}\n", GRU).sample(1, 0)[0]["lr"],
                        0.001, rel_tol=1e-3)
