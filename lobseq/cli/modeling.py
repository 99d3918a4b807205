"""Modeling commands: train, models, ui."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from lobseq.cli import cli
from lobseq.errors import LobseqError

_SHOWN_METRICS = ("accuracy", "macro_f1", "mcc", "cohen_kappa", "log_loss")


def parse_params(pairs: tuple[str, ...]) -> dict:
    """`key=value` pairs → dict; values read as JSON when they parse (8, 0.2, [64,32], true)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise LobseqError(f"--param {pair!r} is not key=value", field="param",
                              fix="write e.g. --param units=64 or --param units=[64,32]")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out


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
@click.option("--model", "model_name", required=True, help="Model builder (see `lobseq models`).")
@click.option("--preset", default=None, help="Named hyperparameter preset, e.g. dixon for rnn.")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="Override a hyperparameter (repeatable); values are JSON: 64, 0.2, [64,32].")
@click.option("--head", type=click.Choice(["classification", "regression"]), default="classification",
              show_default=True)
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True)
@click.option("--batch-size", type=click.IntRange(min=1), default=64, show_default=True)
@click.option("--lr", "learning_rate", type=click.FloatRange(min=0, min_open=True), default=1e-3,
              show_default=True, help="Adam learning rate.")
@click.option("--patience", type=click.IntRange(min=0), default=5, show_default=True,
              help="Epochs without validation-loss improvement before stopping.")
@click.option("--class-weight", type=click.Choice(["none", "balanced"]), default="none",
              show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-train-windows", type=click.IntRange(min=1), default=None,
              help="Train on at most this many windows, evenly spaced (fast runs).")
@click.option("--max-val-windows", type=click.IntRange(min=1), default=None,
              help="Validate on at most this many windows, evenly spaced.")
@click.option("--experiment", default=None, help="MLflow experiment [default: the dataset's name].")
@click.option("--register", default=None, metavar="NAME",
              help="Register the logged model in the Model Registry under NAME.")
@click.option("--engine", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: this process; ray: data-parallel on Ray Train workers (lobseq[ray]).")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Ray Train workers, each training on its slice of every batch [default: 2].")
@click.option("--ray-address", default=None, metavar="ADDR",
              help="Join this Ray cluster [default: $RAY_ADDRESS, else start a local Ray instance].")
def train(dataset, model_name, preset, params, head, epochs, batch_size, learning_rate, patience,
          class_weight, seed, max_train_windows, max_val_windows, experiment, register, engine,
          workers, ray_address):
    """Train a model on a stored DATASET and log the run to MLflow."""
    from lobseq.training.config import TrainConfig

    cfg = TrainConfig(model=model_name, hyper=parse_params(params), preset=preset, head=head,
                      epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
                      patience=patience, class_weight=class_weight, seed=seed,
                      max_train_windows=max_train_windows, max_val_windows=max_val_windows)
    import mlflow

    from lobseq.training.run import train_and_log

    verbose = 1 if sys.stdout.isatty() else 2  # bar on a terminal, one line per epoch in logs
    if engine == "ray":
        from lobseq.training.distributed import train_distributed

        run_id = train_distributed(dataset, cfg, workers=workers or 2, ray_address=ray_address,
                                   experiment=experiment, register=register, log=click.echo)
    elif ray_address or workers:
        raise LobseqError("--workers and --ray-address need --engine ray", field="engine",
                          fix="add --engine ray")
    else:
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
