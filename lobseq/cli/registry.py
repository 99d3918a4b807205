"""Registry commands under `lobseq models`: list, promote, rollback.

The registry functions take the registry lock themselves: a second change
while one is in progress exits 75 (try later).
"""

from __future__ import annotations

import click

from lobseq.cli.modeling import models


@models.command("list")
@click.argument("name", required=False)
def models_list(name):
    """Registered versions with their aliases, promotion decisions and scores."""
    from lobseq import registry, tracking

    tracking.configure()
    rows = registry.list_versions(name)
    if not rows:
        click.echo("No registered models.")
        return
    cols = ("name", "version", "aliases", "decision", "score", "champion_score", "created", "run_id")
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in cols}
    click.echo("  ".join(c.ljust(widths[c]) for c in cols))
    for r in rows:
        click.echo("  ".join(str(r[c]).ljust(widths[c]) for c in cols))


def _move(name: str, old: str | None, new: str) -> str:
    if old == new:
        return f"{name}@champion: v{new} already"
    return f"{name}@champion: {f'v{old}' if old else 'no champion'} → v{new}"


@models.command("promote")
@click.argument("name")
@click.argument("version")
def models_promote(name, version):
    """Make VERSION the champion (the old one is remembered for rollback)."""
    from lobseq import registry, tracking

    tracking.configure()
    old = registry.promote(name, version, reason="manual promotion")
    click.echo(_move(name, old, str(version)))


@models.command("rollback")
@click.argument("name")
@click.option("--to", "to", default=None, metavar="VERSION",
              help="Go back to this earlier champion [default: the previous one].")
def models_rollback(name, to):
    """Move the champion back to the previous champion (or to an earlier one with --to)."""
    from lobseq import registry, tracking

    tracking.configure()
    old, new = registry.rollback(name, to=to)
    click.echo(_move(name, old, new))
