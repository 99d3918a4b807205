"""Evaluation commands: evaluate, backtest, walkforward."""

from __future__ import annotations

from pathlib import Path

import click

from lobseq.cli import cli

_DATASET = click.Path(exists=True, file_okay=False, path_type=Path)
_SPLIT = click.Choice(["train", "val", "test"])


@cli.command()
@click.argument("model")
@click.argument("dataset", type=_DATASET)
@click.option("--split", type=_SPLIT, default="test", show_default=True)
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Block-bootstrap resamples for the intervals.")
@click.option("--seed", type=int, default=0, show_default=True)
def evaluate(model, dataset, split, n_boot, seed):
    """Score MODEL (run id, runs:/ID/model, models:/NAME@alias, models:/NAME/VERSION) on a
    DATASET split against the baselines, with block-bootstrap intervals; log to MLflow."""
    from lobseq.evaluation.evaluate import evaluate_model

    evaluate_model(model, dataset, split, n_boot=n_boot, seed=seed, log=click.echo)


@cli.command()
@click.argument("model")
@click.argument("dataset", type=_DATASET)
@click.option("--split", type=_SPLIT, default="test", show_default=True)
@click.option("--tau", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Trade when |P(up) - P(down)| > tau.")
@click.option("--mode", type=click.Choice(["long_short", "long_only"]), default="long_short",
              show_default=True)
@click.option("--cost-bps", type=click.FloatRange(min=0), default=None,
              help="Cost per trade leg in bps of the net traded notional [default: bars 1, books 0].")
@click.option("--at-touch/--at-mid", "at_touch", default=None,
              help="Books: buy at the ask, sell at the bid, or fill at the mid [default: touch].")
@click.option("--periods-per-year", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Periods per year for Sharpe/Sortino [default: bars 252; books from --interval-s].")
@click.option("--interval-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Books: seconds per return period [default: 60, annualized x sqrt(252*390)].")
def backtest(model, dataset, split, tau, mode, cost_bps, at_touch, periods_per_year, interval_s):
    """Trade MODEL's probabilities on a DATASET split next to buy-and-hold and the baselines,
    under the dataset's execution contract; log metrics, equity/drawdown PNG, trade log."""
    from lobseq.evaluation.backtest.model import backtest_model

    backtest_model(model, dataset, split, tau=tau, mode=mode, cost_bps=cost_bps,
                   at_touch=at_touch, periods_per_year=periods_per_year, interval_s=interval_s,
                   log=click.echo)


@cli.command()
@click.argument("dataset", type=_DATASET)
@click.option("--model", "model_name", required=True, help="Model builder (see `lobseq models`).")
@click.option("--preset", default=None, help="Named hyperparameter preset.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter (repeatable); values are JSON.")
@click.option("--folds", type=click.IntRange(min=1), default=None,
              help="Number of folds [default: 3 without sizes; all that fit with sizes].")
@click.option("--by", type=click.Choice(["auto", "days", "periods"]), default="auto",
              show_default=True, help="Fold over calendar days or over rows (auto: days if >= 3).")
@click.option("--train-size", type=click.IntRange(min=1), default=None,
              help="Training periods per fold (days or rows).")
@click.option("--test-size", type=click.IntRange(min=1), default=None,
              help="Test periods per fold (days or rows).")
@click.option("--mode", type=click.Choice(["rolling", "expanding"]), default="rolling",
              show_default=True)
@click.option("--val-fraction", type=click.FloatRange(0, 1, min_open=True, max_open=True),
              default=0.2, show_default=True, help="Validation tail of each fold's training rows.")
@click.option("--embargo", type=click.IntRange(min=0), default=None,
              help="Rows between training and test rows [default: window + label reach - 1; reach = horizon + entry lag].")
@click.option("--epochs", type=click.IntRange(min=1), default=10, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True)
@click.option("--patience", type=click.IntRange(min=0), default=3, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-train-windows", type=click.IntRange(min=1), default=None,
              help="Train each fold on at most this many windows, evenly spaced.")
@click.option("--n-boot", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--tau", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option("--backtest-mode", type=click.Choice(["long_short", "long_only"]),
              default="long_short", show_default=True)
@click.option("--cost-bps", type=click.FloatRange(min=0), default=None,
              help="[default: bars 1 bps, books 0 bps + the half-spread at the touch]")
@click.option("--at-touch/--at-mid", "at_touch", default=None)
@click.option("--periods-per-year", type=click.FloatRange(min=0, min_open=True), default=None)
@click.option("--interval-s", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Books: seconds per return period [default: 60].")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none",
              show_default=True, help="For the model and the baselines alike.")
def walkforward(dataset, model_name, preset, params, folds, by, train_size, test_size, mode,
                val_fraction, embargo, epochs, batch_size, learning_rate, patience, seed,
                max_train_windows, n_boot, tau, backtest_mode, cost_bps, at_touch,
                periods_per_year, interval_s, class_weight):
    """Retrain per fold over DATASET (rolling or expanding), score out of sample against the
    baselines and backtest the stitched predictions; one MLflow parent run, a child per fold."""
    from lobseq.cli.modeling import parse_params
    from lobseq.evaluation.folds import WalkForwardConfig
    from lobseq.evaluation.walkforward import walk_forward
    from lobseq.training.config import TrainConfig

    train_cfg = TrainConfig(model=model_name, hyper=parse_params(params), preset=preset,
                            epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                            patience=patience, seed=seed, max_train_windows=max_train_windows,
                            class_weight=class_weight)
    cfg = WalkForwardConfig(by=by, folds=folds, train_size=train_size, test_size=test_size,
                            mode=mode, val_fraction=val_fraction, embargo=embargo, n_boot=n_boot,
                            seed=seed, tau=tau, backtest_mode=backtest_mode, cost_bps=cost_bps,
                            at_touch=at_touch, periods_per_year=periods_per_year,
                            interval_s=interval_s)
    walk_forward(dataset, train_cfg, cfg, log=click.echo)
