"""Modeling commands: train, models, ui."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from lobseq.cli import cli
from lobseq.cli.options import build, config_options, param_option, parse_params
from lobseq.training.config import TrainConfig

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
def train(dataset, params, experiment, register, **settings):
    """Train a model on a stored DATASET and log the run to MLflow.

    Time grows with the training windows: --max-train-windows caps them for a quick run."""
    cfg = build(TrainConfig, settings, hyper=parse_params(params))
    import mlflow

    from lobseq.training.run import train_and_log

    verbose = 1 if sys.stdout.isatty() else 2  # bar on a terminal, one line per epoch in logs
    run_id = train_and_log(dataset, cfg, experiment=experiment, register=register, verbose=verbose,
                           log=click.echo)
    run = mlflow.get_run(run_id)
    click.echo(f"Run id: {run_id}")
    click.echo(metrics_table(run.data.metrics))


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
    """Open the MLflow UI on the project's store (http://127.0.0.1:PORT)."""
    from lobseq.tracking import artifact_root, configure

    uri = configure()  # creates mlruns/ so the UI starts on an empty store too
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", "127.0.0.1",
           "--port", str(port)]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    click.echo(f"MLflow UI on http://127.0.0.1:{port}  (store {uri}); Ctrl-C stops it")
    env = dict(os.environ)
    env.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sys.stdout.flush()
    # Become the UI process: Ctrl-C and kill reach the server itself, no orphaned workers.
    os.execve(sys.executable, cmd, env)
