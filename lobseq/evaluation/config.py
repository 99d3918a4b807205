"""The evaluation stages' settings: evaluate, backtest and walk-forward, each declared once.

`evaluate_model`, `backtest_model` and `walk_forward` take these settings (their
keyword defaults are read from here), so Python does what the CLI does:

    cfg = BacktestConfig(cost_bps=1.0, at_touch=True)
    backtest_model("models:/lob@champion", "data/processed/sim", **asdict(cfg))
    walk_forward("data/processed/sim", walkforward_train_config(model="gru"),
                 WalkForwardConfig(by="days", train_size=3, test_size=1))

Settings shared by several stages (split, seed, bootstrap, trading rules) are
built by one function each, so their defaults and help read the same everywhere.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, StrictBool, StrictInt

from lobseq.config import stage_config

Split = Literal["train", "val", "test"]
TradeMode = Literal["long_short", "long_only"]


def _split():
    return Field("test", description="Dataset split to score.")


def _seed():
    return Field(0, description="Seed for the bootstrap and the baselines.")


def _n_boot():
    return Field(1000, ge=1, description="Block-bootstrap resamples for the intervals.")


def _max_baseline_train():
    return Field(200_000, ge=1, description="Fit the baselines on at most this many training "
                                            "windows (evenly spaced).")


def _tau():
    return Field(0.0, ge=0, description="Trade when |P(up) - P(down)| > tau.")


def _trade_mode():
    return Field("long_short", description="long_short, or long_only (flat instead of short).")


def _cost_bps():
    return Field(None, ge=0, description="Cost per trade leg in basis points of the net traded "
                                         "value [default: bars 1, books 0 plus half the spread "
                                         "at the touch].")


def _at_touch():
    return Field(None, json_schema_extra={"cli_off": "--at-mid"},
                 description="Books: fill at the touch (buy at the ask, sell at the bid) or at "
                             "the mid (--at-mid) [default: at the touch; bars always fill at "
                             "the execution price].")


def _periods_per_year():
    return Field(None, gt=0, description="Periods per year for Sharpe/Sortino [default: from the "
                                         "period: 252 days for bars, 252 x 390 minutes for books].")


def _interval_s():
    return Field(None, gt=0, description="Books: seconds per P&L period [default: 60].")


@stage_config
class EvaluateConfig:
    """Score a model and the baselines on one split (`evaluate_model`)."""

    split: Split = _split()
    n_boot: StrictInt = _n_boot()
    seed: StrictInt = _seed()
    max_baseline_train: StrictInt | None = _max_baseline_train()


@stage_config
class BacktestConfig:
    """Trade a model's probabilities on one split (`backtest_model`)."""

    split: Split = _split()
    tau: float = _tau()
    mode: TradeMode = _trade_mode()
    cost_bps: float | None = _cost_bps()
    at_touch: StrictBool | None = _at_touch()
    periods_per_year: float | None = _periods_per_year()
    interval_s: float | None = _interval_s()
    max_baseline_train: StrictInt | None = _max_baseline_train()
    seed: StrictInt = _seed()


@stage_config
class WalkForwardConfig:
    """Folds, scoring and the stitched backtest of `walk_forward` (training: a `TrainConfig`)."""

    by: Literal["auto", "days", "periods"] = Field(
        "auto", description="Fold over calendar days or over rows (auto: days if >= 3).")
    folds: StrictInt | None = Field(
        None, ge=1, description="Number of folds [default: 3 without sizes; all that fit with sizes].")
    train_size: StrictInt | None = Field(None, ge=1, description="Training periods per fold (days "
                                                                 "or rows).")
    test_size: StrictInt | None = Field(None, ge=1, description="Test periods per fold (days or rows).")
    mode: Literal["rolling", "expanding"] = Field(
        "rolling", description="rolling: the last train_size periods; expanding: all before.")
    val_fraction: float = Field(0.2, gt=0, lt=1, description="Validation tail of each fold's "
                                                             "training rows.")
    embargo: StrictInt | None = Field(
        None, ge=0, description="Rows between training and test rows [default: window + label "
                                "reach - 1].")
    n_boot: StrictInt = _n_boot()
    seed: StrictInt = _seed()
    tau: float = _tau()
    backtest_mode: TradeMode = _trade_mode()
    cost_bps: float | None = _cost_bps()
    at_touch: StrictBool | None = _at_touch()
    periods_per_year: float | None = _periods_per_year()
    interval_s: float | None = _interval_s()
    max_baseline_train: StrictInt | None = _max_baseline_train()


# Walk-forward retrains once per fold: shorter training than a single `lobseq train`.
WALKFORWARD_TRAIN_DEFAULTS = {"epochs": 10, "patience": 3}


def walkforward_train_config(**settings):
    """A `TrainConfig` with walk-forward's training defaults, `settings` overriding them."""
    from lobseq.training.config import TrainConfig

    return TrainConfig(**{**WALKFORWARD_TRAIN_DEFAULTS, **settings})
