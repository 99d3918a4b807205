"""Data commands: simulate, ingest."""

from __future__ import annotations

from pathlib import Path

import click

from lobseq.cli import cli
from lobseq.cli.options import build, config_options, engine_config, engine_options
from lobseq.data.ingest import IngestConfig
from lobseq.data.simulate_config import SimulateConfig


@cli.command()
@config_options(SimulateConfig, rename={"file_format": "format"})
def simulate(**settings):
    """Write simulated LOBSTER-format books (or daily OHLCV bars) so everything runs offline."""
    from lobseq.data.simulate_config import simulate as run_simulate

    cfg = build(SimulateConfig, settings)
    paths = run_simulate(cfg)
    click.echo(f"Wrote {len(paths)} file(s) to {cfg.out}")
    for p in paths:
        click.echo(f"  {p}")


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder, e.g. data/processed/NAME.")
@config_options(IngestConfig, exclude={"name"})
@engine_options
def ingest(sources, out, **settings):
    """Turn raw files into a windowed, labelled, split dataset.

    With --engine ray each instrument-day is read, checked, featurized and labelled in its own
    Ray task; the dataset is byte-identical to the local engine's."""
    from lobseq.data.ingest import ingest as run_ingest
    from lobseq.data.ingest import summary
    from lobseq.engine import open_engine

    cfg = build(IngestConfig, settings, name=out.name)
    with open_engine(engine_config(settings)) as engine:
        ds = run_ingest(sources, out, cfg, log=lambda m: click.echo(m, err=True),
                        mapper=engine.mapper(label="lobseq-ingest"))
    click.echo(summary(ds))
