"""Data commands: simulate, ingest."""

from __future__ import annotations

from pathlib import Path

import click

from lobseq.cli import cli


def _floats(text: str, n: int, what: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{what} must be {n} comma-separated numbers, got '{text}'") from None
    if len(values) != n:
        raise click.BadParameter(f"{what} must be {n} comma-separated numbers, got '{text}'")
    return values


@cli.command()
@click.option("--out", "out", type=click.Path(file_okay=False, path_type=Path),
              default=Path("data/raw/sim"), show_default=True, help="Folder to write into.")
@click.option("--kind", type=click.Choice(["lobster", "bars"]), default="lobster", show_default=True)
@click.option("--events", type=int, default=100_000, show_default=True, help="Events per day (lobster).")
@click.option("--levels", type=int, default=10, show_default=True, help="Book levels (lobster).")
@click.option("--days", type=int, default=None,
              help="Trading days [default: 1 for lobster, 750 for bars].")
@click.option("--symbols", default="AAA,BBB,CCC", show_default=True, help="Symbols (bars).")
@click.option("--ticker", default="SIM", show_default=True, help="Ticker (lobster).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--format", "fmt", type=click.Choice(["csv", "parquet"]), default="csv",
              show_default=True, help="File format (bars).")
def simulate(out, kind, events, levels, days, symbols, ticker, seed, fmt):
    """Write simulated LOBSTER-format books (or daily OHLCV bars) so everything runs offline."""
    from lobseq.data.simulate import simulate_bars, simulate_lobster

    if kind == "lobster":
        paths = simulate_lobster(out, events=events, levels=levels, days=days or 1, seed=seed,
                                 ticker=ticker)
    else:
        paths = simulate_bars(out, symbols=tuple(s for s in symbols.split(",") if s),
                              days=days or 750, seed=seed, fmt=fmt)
    click.echo(f"Wrote {len(paths)} file(s) to {out}")
    for p in paths:
        click.echo(f"  {p}")


@cli.command()
@click.argument("sources", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["lobster", "fi2010", "bars"]), required=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Dataset folder, e.g. data/processed/NAME.")
@click.option("--window", type=int, default=100, show_default=True, help="Sequence length T.")
@click.option("--horizon", type=int, default=10, show_default=True,
              help="Label horizon k (events for books, days for bars).")
@click.option("--threshold", type=float, default=0.0, show_default=True,
              help="Moves within ±threshold (relative) are 'stationary'.")
@click.option("--label", type=click.Choice(["point", "smoothed", "provided"]), default="point",
              show_default=True, help="'provided' uses FI-2010's own labels.")
@click.option("--classes", "n_classes", type=click.IntRange(2, 3), default=3, show_default=True)
@click.option("--features", default=None,
              help="Comma-separated feature names [default: the format's default set].")
@click.option("--fractions", default="0.7,0.15,0.15", show_default=True,
              help="Train,validation,test fractions (chronological).")
@click.option("--split-dates", default=None,
              help="VAL_START,TEST_START dates instead of fractions.")
@click.option("--embargo", type=int, default=None,
              help="Rows dropped after each split boundary [default: window + label reach - 1; reach = horizon + entry lag].")
@click.option("--symbol-column", default="symbol", show_default=True, help="Bars: symbol column.")
@click.option("--entry", type=click.Choice(["next_open", "close", "next"]), default=None,
              help="Execution contract: bars enter at the next open (default) or at the close of "
                   "the decision bar; books at the next event (next).")
def ingest(sources, fmt, out, window, horizon, threshold, label, n_classes, features, fractions,
           split_dates, embargo, symbol_column, entry):
    """Turn raw files into a windowed, labelled, split dataset."""
    from lobseq.data.ingest import IngestConfig, summary
    from lobseq.data.ingest import ingest as run_ingest

    cfg = IngestConfig(
        format=fmt, window=window, horizon=horizon, threshold=threshold, label=label,
        n_classes=n_classes,
        features=[f.strip() for f in features.split(",") if f.strip()] if features else None,
        fractions=_floats(fractions, 3, "--fractions"),
        split_dates=tuple(split_dates.split(",")) if split_dates else None,
        embargo=embargo, symbol_column=symbol_column, name=out.name, entry=entry,
    )
    ds = run_ingest(sources, out, cfg, log=lambda m: click.echo(m, err=True))
    click.echo(summary(ds))
