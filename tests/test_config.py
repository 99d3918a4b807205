"""Stage configs: defaults declared once, checks at construction, one-line errors with the fix."""

import dataclasses
import datetime
import inspect

import pytest

from lobseq.data.ingest import IngestConfig
from lobseq.data.simulate_config import SimulateConfig
from lobseq.errors import LobseqError
from lobseq.evaluation.config import (
    BacktestConfig,
    EvaluateConfig,
    WalkForwardConfig,
    walkforward_train_config,
)
from lobseq.registry import PromoteConfig, PromotionRule
from lobseq.serving.config import PredictConfig, default_output
from lobseq.training.config import TrainConfig


def _error(cls, **kw) -> LobseqError:
    with pytest.raises(LobseqError) as info:
        cls(**kw)
    return info.value


def test_defaults_are_the_documented_ones():
    cfg = IngestConfig(format="lobster")
    # the label reads one row past the horizon (entry at the next event): embargo T + h
    assert (cfg.window, cfg.horizon, cfg.n_classes, cfg.fractions, cfg.effective_embargo) == \
        (100, 10, 3, (0.7, 0.15, 0.15), 110)


@pytest.mark.parametrize("cls, kw, field, problem, fix", [
    (IngestConfig, {"format": "lobster", "window": 0}, "window", "must be >= 1, got 0",
     "use a value >= 1"),
    (IngestConfig, {"format": "lobster", "window": "5"}, "window", "must be int, got str '5'",
     "whole number"),
    (IngestConfig, {"format": "lobster", "classes": 4}, "classes", "4 is not allowed",
     "use one of 2, 3"),
    (IngestConfig, {"format": "csv"}, "format", "'csv' is not allowed",
     "use one of lobster, fi2010, bars"),
    (IngestConfig, {"format": "lobster", "windw": 5}, "windw", "unknown setting",
     "valid settings: format, window"),
    (IngestConfig, {}, "format", "missing required setting 'format'", "set format"),
    (IngestConfig, {"format": "lobster", "fractions": (0.7, 0.3)}, "fractions",
     "needs more values", "give 3 values"),
    (TrainConfig, {"epochs": 0}, "epochs", "must be >= 1", "use a value >= 1"),
    (TrainConfig, {"learning_rate": 0}, "learning_rate", "must be > 0", "use a value > 0"),
    (TrainConfig, {"require_ci": True}, "require_ci", "unknown setting", "max_train_windows"),
    (WalkForwardConfig, {"val_fraction": 1.0}, "val_fraction", "must be < 1", "use a value < 1"),
    (BacktestConfig, {"mode": "short"}, "mode", "'short' is not allowed", "long_short, long_only"),
    (EvaluateConfig, {"split": "holdout"}, "split", "'holdout' is not allowed", "train, val, test"),
    (PromoteConfig, {"model_name": "m", "require_ci": "yes"}, "require_ci", "must be bool",
     "true or false"),
    (SimulateConfig, {"events": -1}, "events", "must be >= 1", "use a value >= 1"),
])
def test_a_bad_setting_is_one_line_naming_the_field_and_the_fix(cls, kw, field, problem, fix):
    err = _error(cls, **kw)
    assert (err.field, "\n" in str(err)) == (field, False)
    assert problem in err.problem and fix in err.fix


@pytest.mark.parametrize("kw, field, problem", [
    ({"label": "provided"}, "label", "only for FI-2010"),
    ({"embargo": 50}, "embargo", "embargo 50 is shorter than window + label reach - 1 = 110"),
    ({"fractions": (0.5, 0.2, 0.2)}, "fractions", "summing to 1"),
    ({"split_dates": ("2024-01-04", "2024-01-03")}, "split_dates", "must come before"),
])
def test_cross_field_rules_are_checked_at_construction(kw, field, problem):
    err = _error(IngestConfig, format="lobster", **kw)
    assert err.field == field and problem in err.problem


def test_provided_labels_are_fine_for_fi2010():
    assert IngestConfig(format="fi2010", label="provided").label == "provided"


def test_train_config_checks_model_preset_and_hyperparameters_at_the_door():
    assert "use one of rnn, lstm" in _error(TrainConfig, model="lstn").fix
    assert _error(TrainConfig, model="gru", preset="dixon").field == "preset"
    err = _error(TrainConfig, model="gru", hyper={"unitz": 3})
    assert err.field == "hyper" and "valid for gru: units" in err.fix


def test_assignment_is_checked_too():
    cfg = TrainConfig()
    with pytest.raises(LobseqError, match="epochs"):
        cfg.epochs = 0


def test_configs_are_plain_dataclasses():
    cfg = IngestConfig(format="bars", classes=2)
    assert dataclasses.asdict(cfg)["n_classes"] == 2
    assert dataclasses.replace(cfg, window=7).window == 7


def test_unquoted_yaml_dates_become_iso_text():
    cfg = IngestConfig(format="lobster", split_dates=[datetime.date(2024, 1, 3), "2024-01-04"])
    assert cfg.split_dates == ("2024-01-03", "2024-01-04")


def test_library_functions_take_their_defaults_from_the_configs():
    from lobseq.evaluation.backtest.model import backtest_model
    from lobseq.evaluation.evaluate import evaluate_model

    for fn, cls in ((evaluate_model, EvaluateConfig), (backtest_model, BacktestConfig)):
        params = inspect.signature(fn).parameters
        assert {f.name: params[f.name].default for f in dataclasses.fields(cls)} == \
            dataclasses.asdict(cls())


def test_walkforward_trains_shorter_than_a_single_run_unless_told():
    assert (walkforward_train_config().epochs, TrainConfig().epochs) == (10, 20)
    assert walkforward_train_config(epochs=4, model="gru").epochs == 4


def test_promote_config_carries_the_rule():
    cfg = PromoteConfig(model_name="m", margin=0.01, require_ci=True)
    assert cfg.rule() == PromotionRule(margin=0.01, require_ci=True)


def test_default_prediction_file_is_under_the_ignored_predictions_folder():
    path = default_output("models:/lob live", "3", datetime.date(2024, 5, 6))
    assert path.as_posix() == "data/predictions/models_lob_live-v3-2024-05-06.parquet"
    assert PredictConfig(format="bars").out is None
