"""Operations commands: run (pipelines), demo, predict, serve.

Exit codes a scheduler can act on: 0 ok, 1 failure (a bug or a crashed
stage), 2 bad input or settings, 75 another run holds the lock (try later),
130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click

from lobseq.cli import cli
from lobseq.cli.options import build, config_options, engine_config, engine_options
from lobseq.serving.config import PredictConfig

EXIT_FAILURE = 1
UI_HINT = "Open the MLflow UI: lobseq ui   (then http://127.0.0.1:5000)"
_VERBOSE = click.option("--verbose", "-v", is_flag=True,
                        help="Also print what each stage does (tables, training, decisions); "
                             "without it: one line per stage, then the summary.")


def _run_pipeline(file: Path, overrides: tuple[str, ...], force: bool, verbose: bool) -> None:
    from lobseq.errors import LobseqError
    from lobseq.workflow.report import summary_table
    from lobseq.workflow.runner import run_pipeline
    from lobseq.workflow.spec import load_pipeline

    pipe = load_pipeline(file, overrides)  # bad config: exit 2 before anything runs
    if not verbose:  # MLflow's INFO chatter (store set-up, signature checks) is a detail too
        os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")

    def say(message: str) -> None:
        click.echo(message, err=True)

    try:
        result = run_pipeline(pipe, force=force, log=say,
                              detail=say if verbose else (lambda _message: None))
    except (LobseqError, KeyboardInterrupt):
        raise  # the group maps these to 2 / 75 / 130
    except Exception as e:  # noqa: BLE001 - a crashed stage: one line, exit 1, runs marked FAILED
        from lobseq.tracking.server import explain

        code, line = explain(e) or (EXIT_FAILURE, f"{type(e).__name__}: {e}")
        click.echo(f"Error: pipeline {pipe.name} failed: {line}", err=True)
        sys.exit(code)
    click.echo(summary_table(result))
    click.echo(_ui_hint())


def _ui_hint() -> str:
    from lobseq.tracking.store import is_server, tracking_uri

    if is_server():  # the server is the UI
        return f"Open the MLflow UI: {tracking_uri().rstrip('/')}/"
    return UI_HINT


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--set", "overrides", multiple=True, metavar="STAGE.KEY=VALUE",
              help="Override a setting, e.g. --set train.epochs=3 (repeatable).")
@click.option("--force", is_flag=True, help="Re-run every stage even if its inputs are unchanged.")
@_VERBOSE
def run(file, overrides, force, verbose):
    """Run a pipeline file (validated first; unchanged stages are skipped)."""
    _run_pipeline(file, overrides, force, verbose)


@cli.command()
@click.option("--events", type=int, default=None, help="Override the simulated events per day.")
@click.option("--force", is_flag=True, help="Re-run every stage.")
@_VERBOSE
def demo(events, force, verbose):
    """The main job: pipelines/demo.yaml (simulate → ingest → train 5 models → evaluate → register)."""
    file = Path("pipelines/demo.yaml")
    if not file.exists():
        file = Path(__file__).resolve().parents[2] / "pipelines" / "demo.yaml"
    overrides = (f"simulate.events={events}",) if events else ()
    _run_pipeline(file, overrides, force, verbose)


@cli.command()
@click.argument("model_uri")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@config_options(PredictConfig)
@engine_options
def predict(model_uri, inputs, **settings):
    """Predict every timestamp of raw files that has a full window (e.g. models:/NAME@champion).

    With --engine ray the files are scored by a Ray Data actor pool (each actor loads the model
    once); the table written equals the local engine's."""
    from lobseq.serving.config import predict_to_file

    table, out = predict_to_file(model_uri, inputs, build(PredictConfig, settings),
                                 engine=engine_config(settings), log=click.echo)
    click.echo(f"Wrote {len(table):,} predictions for {table['instrument'].nunique()} instrument(s) "
               f"to {out}")


@cli.command()
@click.argument("model_uri")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Interface to bind (0.0.0.0 exposes it to the network: put a TLS reverse "
                   "proxy in front).")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True)
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True,
              help="Worker processes on the port (gunicorn pre-fork), each with its own model.")
@click.option("--threads", type=click.IntRange(min=1), default=8, show_default=True,
              help="Request threads per worker.")
@click.option("--follow-every", type=click.FloatRange(min=0), default=60.0, show_default=True,
              metavar="SECONDS", help="Poll the registry alias of a models:/NAME@ALIAS URI this "
                                      "often and switch to the version it names; 0: never.")
@click.option("--max-bytes", type=click.IntRange(min=1024), default=8 * 1024 * 1024,
              show_default=True, help="Largest request body accepted (413 above).")
def serve(model_uri, host, port, workers, threads, follow_every, max_bytes):
    """Answer forecasts over HTTP: POST /invocations (MLflow's JSON payload), GET /health, /ready,
    /metrics (Prometheus). Serving models:/NAME@champion follows the alias by default."""
    from lobseq.serving.http import serve as run_server

    run_server(model_uri, host=host, port=port, max_bytes=max_bytes, workers=workers,
               threads=threads, follow_every=follow_every, log=click.echo)
