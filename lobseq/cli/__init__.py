"""The `lobseq` command: a thin click shell over the library.

Each submodule owns the commands of one area and registers them on `cli`.
Heavy imports (TensorFlow, MLflow) happen inside commands, never here, so
`lobseq --help` and `lobseq ingest` stay fast.
"""

from __future__ import annotations

import sys

import click

from lobseq import __version__
from lobseq.errors import LobseqError, LockHeld

# Exit codes a scheduler can act on.
EXIT_USAGE = 2  # bad input or settings: fix and re-run
EXIT_LOCKED = 75  # EX_TEMPFAIL: another run holds the lock; try later
EXIT_INTERRUPTED = 130


class _Group(click.Group):
    def invoke(self, ctx: click.Context):  # one clean line per user error
        try:
            return super().invoke(ctx)
        except LockHeld as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(EXIT_LOCKED)
        except LobseqError as e:
            click.echo(f"Error: {e}", err=True)
            sys.exit(EXIT_USAGE)
        except KeyboardInterrupt:
            click.echo("Interrupted.", err=True)
            sys.exit(EXIT_INTERRUPTED)
        except Exception as e:  # a tracking server's refusal or silence: one line too
            explained = _server_problem(e)
            if explained is None:
                raise
            code, line = explained
            click.echo(f"Error: {line}", err=True)
            sys.exit(code)


def _server_problem(e: Exception) -> tuple[int, str] | None:
    """(exit code, line) when `e` is a tracking server's 401/403 or silence (MLflow loaded)."""
    if "mlflow" not in sys.modules:
        return None
    from lobseq.tracking.server import explain

    return explain(e)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="lobseq")
def cli() -> None:
    """Forecast price direction from price series and limit-order-book data."""


# The areas add their commands to `cli` on import (below the group they attach to).
from lobseq.cli import data, evaluation, modeling, ops, registry  # noqa: E402, F401


def _sigterm_as_ctrl_c(signum, frame):
    raise KeyboardInterrupt  # systemd/cron/kill stop jobs with SIGTERM: runs end KILLED, exit 130


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, _sigterm_as_ctrl_c)
    cli(prog_name="lobseq")
