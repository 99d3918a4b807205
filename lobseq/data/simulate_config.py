"""The simulate stage: its settings, and the one dispatch to the LOBSTER or bars simulator.

    paths = simulate(SimulateConfig(kind="bars", out="data/raw/bars", days=300))
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, StrictInt

from lobseq.config import stage_config


@stage_config
class SimulateConfig:
    """Simulated LOBSTER-format books (`kind: lobster`) or daily OHLCV bars (`kind: bars`)."""

    kind: Literal["lobster", "bars"] = Field("lobster", description="What to simulate.")
    out: Path = Field(Path("data/raw/sim"), description="Folder to write into.")
    events: StrictInt = Field(100_000, ge=1, description="Events per day (lobster).")
    levels: StrictInt = Field(10, ge=1, description="Book levels (lobster).")
    days: StrictInt | None = Field(None, ge=1, description="Trading days [default: 1 for lobster, "
                                                           "750 for bars].")
    symbols: tuple[str, ...] = Field(("AAA", "BBB", "CCC"), description="Symbols (bars).")
    ticker: str = Field("SIM", description="Ticker (lobster).")
    seed: StrictInt = Field(0, ge=0, description="Random seed.")
    file_format: Literal["csv", "parquet"] = Field("csv", description="File format (bars).")

    @property
    def n_days(self) -> int:
        return self.days or (1 if self.kind == "lobster" else 750)


def simulate(cfg: SimulateConfig) -> list[Path]:
    """Write the files `cfg` describes; returns their paths."""
    from lobseq.data.simulate import simulate_bars, simulate_lobster

    if cfg.kind == "lobster":
        return simulate_lobster(cfg.out, events=cfg.events, levels=cfg.levels, days=cfg.n_days,
                                seed=cfg.seed, ticker=cfg.ticker)
    return simulate_bars(cfg.out, symbols=cfg.symbols, days=cfg.n_days, seed=cfg.seed,
                         fmt=cfg.file_format)
