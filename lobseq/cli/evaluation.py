"""Evaluation commands: evaluate, backtest, walkforward."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

import click

from lobseq.cli import cli
from lobseq.cli.options import (
    build,
    config_options,
    engine_config,
    engine_options,
    param_option,
    parse_params,
)
from lobseq.config import pick
from lobseq.evaluation.config import (
    WALKFORWARD_TRAIN_DEFAULTS,
    BacktestConfig,
    EvaluateConfig,
    WalkForwardConfig,
)
from lobseq.training.config import TrainConfig

_DATASET = click.Path(exists=True, file_okay=False, path_type=Path)


@cli.command()
@click.argument("model")
@click.argument("dataset", type=_DATASET)
@config_options(EvaluateConfig)
def evaluate(model, dataset, **settings):
    """Score MODEL (run id, runs:/ID/model, models:/NAME@alias, models:/NAME/VERSION) on a
    DATASET split against the baselines, with block-bootstrap intervals; log to MLflow."""
    from lobseq.evaluation.evaluate import evaluate_model

    evaluate_model(model, dataset, **asdict(build(EvaluateConfig, settings)), log=click.echo)


@cli.command()
@click.argument("model")
@click.argument("dataset", type=_DATASET)
@config_options(BacktestConfig)
def backtest(model, dataset, **settings):
    """Trade MODEL's probabilities on a DATASET split next to buy-and-hold and the baselines;
    log metrics, equity/drawdown PNG and the trade log to MLflow."""
    from lobseq.evaluation.backtest.model import backtest_model

    backtest_model(model, dataset, **asdict(build(BacktestConfig, settings)), log=click.echo)


@cli.command()
@click.argument("dataset", type=_DATASET)
@config_options(TrainConfig, WalkForwardConfig, rename={"learning_rate": "lr"},
                exclude={"hyper", "head"}, required={"model"}, defaults=WALKFORWARD_TRAIN_DEFAULTS)
@param_option
@engine_options
def walkforward(dataset, params, **settings):
    """Retrain per fold over DATASET (rolling or expanding), score out of sample against the
    baselines and backtest the stitched predictions; one MLflow parent run, a child per fold.

    Each fold trains a model: time is about folds x one `lobseq train` run of the same size.
    With --engine ray the folds train in parallel, one Ray task each, with the same scores."""
    from lobseq.evaluation.config import walkforward_train_config
    from lobseq.evaluation.walkforward import walk_forward

    train_cfg = walkforward_train_config(**pick(TrainConfig, settings), hyper=parse_params(params))
    walk_forward(dataset, train_cfg, build(WalkForwardConfig, settings), log=click.echo,
                 engine=engine_config(settings))
