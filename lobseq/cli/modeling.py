"""Modeling commands: train, models, ui."""

from __future__ import annotations

import json
import sys
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
from lobseq.errors import LobseqError
from lobseq.training.config import TrainConfig
from lobseq.training.tune import TuneConfig

_SHOWN_METRICS = ("accuracy", "macro_f1", "mcc", "cohen_kappa", "log_loss")


def metrics_table(metrics: dict, names=_SHOWN_METRICS) -> str:
    rows = [f"  {'metric':<14}{'val':>10}{'test':>10}"]
    for name in names:
        cells = []
        for split in ("val", "test"):
            v = metrics.get(f"{split}_{name}")
            cells.append(f"{v:>10.4f}" if isinstance(v, (int, float)) else f"{'-':>10}")
        rows.append(f"  {name:<14}{''.join(cells)}")
    return "\n".join(rows)


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_options(TrainConfig, rename={"learning_rate": "lr"}, exclude={"hyper"}, required={"model"})
@param_option
@click.option("--experiment", default=None, help="MLflow experiment [default: the dataset's name].")
@click.option("--register", default=None, metavar="NAME",
              help="Register the logged model in the Model Registry under NAME.")
@engine_options
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="With --engine ray: Ray Train workers, each training on its slice of every batch "
                   "[default: 2].")
def train(dataset, params, experiment, register, workers, **settings):
    """Train a model on a stored DATASET and log the run to MLflow.

    Time grows with the training windows: --max-train-windows caps them for a quick run."""
    cfg = build(TrainConfig, settings, hyper=parse_params(params))
    import mlflow

    from lobseq.data.store import load_dataset
    from lobseq.evaluation.verdict import majority_rate
    from lobseq.training.run import train_and_log

    engine = engine_config(settings)
    if engine.name == "ray":
        from lobseq.training.distributed import train_distributed

        run_id = train_distributed(dataset, cfg, workers=workers or 2, ray_address=engine.address,
                                   num_cpus=engine.num_cpus, experiment=experiment, register=register,
                                   log=click.echo)
    elif workers:
        raise LobseqError("--workers and --ray-address need --engine ray", field="engine",
                          fix="add --engine ray")
    else:  # progress on stderr: a bar with an ETA on a terminal, one line per epoch in a log
        run_id = train_and_log(dataset, cfg, experiment=experiment, register=register, verbose=1,
                               log=click.echo)
    run = mlflow.get_run(run_id)
    click.echo(f"Run id: {run_id}")
    click.echo(metrics_table(run.data.metrics))
    if cfg.head == "classification" and run.data.metrics.get("test_accuracy") is not None:
        name, rate = majority_rate(load_dataset(dataset), "test")
        click.echo(f"  test accuracy {run.data.metrics['test_accuracy']:.4f} vs majority rate "
                   f"{rate:.4f} (always '{name}', the training majority)")


@cli.command()
@click.argument("dataset", type=click.Path(exists=True, file_okay=False, path_type=Path))
@config_options(TrainConfig, rename={"learning_rate": "lr"}, exclude={"hyper", "head"},
                required={"model"})
@param_option
@config_options(TuneConfig)
@click.option("--experiment", default=None, help="MLflow experiment [default: the dataset's name].")
@click.option("--register", default=None, metavar="NAME",
              help="Retrain the best configuration on train+validation (its best epoch count, no "
                   "early stopping) and register it under NAME.")
@engine_options
def tune(dataset, params, experiment, register, **settings):
    """Sweep hyperparameters of one model over a DATASET: --trials configurations drawn from
    --space (seeded by --seed), each a nested MLflow run under one parent that records the best.

    The other options are the base configuration the space's values override. --engine ray runs
    the trials on Ray Tune (ASHA or FIFO); --engine local runs the same trials one by one."""
    from lobseq.evaluation.sweep import sweep

    cfg = build(TrainConfig, settings, hyper=parse_params(params))
    out = sweep(dataset, cfg, build(TuneConfig, settings), engine=engine_config(settings),
                experiment=experiment, register=register, log=click.echo)
    click.echo(f"Run id: {out['run_id']}")


@cli.group(invoke_without_command=True)
@click.pass_context
def models(ctx):
    """Model builders and their default hyperparameters (bare), or registry subcommands."""
    if ctx.invoked_subcommand is not None:
        return
    from lobseq.models import PRESETS, describe

    for name, doc, defaults in describe():
        click.echo(f"{name:<8} {doc}")
        for key, value in defaults.items():
            click.echo(f"    {key} = {json.dumps(value)}")
        for preset, info in PRESETS.get(name, {}).items():
            click.echo(f"    preset {preset}: {info.get('doc', '')}")


@cli.command()
@click.option("--port", type=click.IntRange(1, 65535), default=5000, show_default=True)
def ui(port):
    """Open the MLflow UI on the project's store, on its classic training view.

    Against a tracking server (MLFLOW_TRACKING_URI=http://...) it prints the
    server's address: the server is the UI.

    Prints the address once the server answers (starting takes 10-30 s on 2 cores);
    the server's own log goes to mlruns/ui.log. Ctrl-C stops it.
    """
    from lobseq.tracking.store import is_server, tracking_uri
    from lobseq.tracking.ui import start_ui, stop_ui, ui_url, wait_until_up

    if is_server():  # a tracking server is its own UI: nothing to start here
        click.echo(f"MLflow UI on {tracking_uri().rstrip('/')}/"
                   "#/experiments?workflowType=machine_learning  (the tracking server's own)")
        return
    host = "127.0.0.1"
    click.echo("Starting the MLflow UI (log: mlruns/ui.log) ...", err=True)
    proc = start_ui(host, port)
    try:
        wait_until_up(proc, host, port)
        click.echo(f"MLflow UI on {ui_url(host, port)}  (Ctrl-C stops it)")
        sys.stdout.flush()
        if proc.wait():
            raise click.ClickException(f"the MLflow UI exited with code {proc.returncode} "
                                       "(see mlruns/ui.log)")
    finally:
        stop_ui(proc)
