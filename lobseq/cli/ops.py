"""Operations commands: demo (and, later, run, predict, serve)."""

from __future__ import annotations

from pathlib import Path

import click

from lobseq.cli import cli


@cli.command()
@click.option("--events", type=int, default=60_000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(events: int, seed: int) -> None:
    """The README's main job on the embedded default (simulated LOBSTER data)."""
    from lobseq.ingest import IngestConfig, ingest, summary
    from lobseq.simulate import simulate_lobster

    raw = Path("data/raw/demo")
    paths = simulate_lobster(raw, events=events, levels=10, days=1, seed=seed, ticker="SIM")
    click.echo(f"Simulated {events:,} events × 10 levels → {raw} ({len(paths)} files)")
    cfg = IngestConfig(format="lobster", window=50, horizon=10, name="demo")
    ds = ingest([raw], Path("data/processed/demo"), cfg, log=lambda m: click.echo(m, err=True))
    click.echo(summary(ds))
