"""`simulate_bars`: daily OHLCV bars, one file per symbol.

Daily log returns per symbol are ``r_t = mu_t + x_t`` with a hidden
two-state drift ``mu_t = ±0.0015`` per day (Markov regime, stays with
probability 0.98), AR(1) excess returns ``x_t = 0.15 * x_{t-1} + e_t`` and
GARCH(1,1) shocks ``e_t = sigma_t * z_t``, ``sigma_t^2 = 2e-6 + 0.08 *
e_{t-1}^2 + 0.9 * sigma_{t-1}^2``, ``z_t`` standard normal. Volume is log-normal around
1e6 shares and rises with |r_t| / sigma (the volume–volatility link). Opens
gap from the previous close; highs and lows extend beyond open and close by
half-normal amounts scaled by sigma_t. ``Adj Close`` equals ``Close`` (no
corporate actions).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.data.simulate.common import business_days, check_seed, int_arg, require, staged
from lobseq.io import atomic_file


def simulate_bars(
    out_dir: str | Path,
    *,
    symbols: Sequence[str] = ("AAA", "BBB", "CCC"),
    days: int = 750,
    seed: int = 0,
    start_date: str = "2020-01-01",
    fmt: str = "csv",
) -> list[Path]:
    """Write daily OHLCV bars, one file per symbol; return their paths.

    ``SYMBOL.csv`` has the header ``Date,Open,High,Low,Close,Adj Close,Volume``
    (prices in dollars, 6 decimals; volume in shares); ``fmt="parquet"``
    writes ``SYMBOL.parquet`` with the same columns (``Date`` as a date-time).
    Rows are consecutive business days from ``start_date``. The model is
    described in this module's docstring.
    """
    days = int_arg(days, "days", minimum=2)
    _check_bars_args(seed, fmt, symbols)
    dates = business_days(start_date, days, "start_date")

    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    with staged(out) as (stage, names):
        for sym in symbols:
            names.append(f"{sym}.{fmt}")
            _write_bars(stage / names[-1], _bars_frame(rng, dates), fmt)
    return [out / name for name in names]


def _write_bars(path: Path, frame: pd.DataFrame, fmt: str) -> None:
    with atomic_file(path, "wb") as f:
        if fmt == "csv":
            text = frame.to_csv(index=False, float_format="%.6f", date_format="%Y-%m-%d",
                                lineterminator="\n")
            f.write(text.encode())
        else:
            frame.to_parquet(f, index=False)


def _check_bars_args(seed: object, fmt: object, symbols: object) -> None:
    check_seed(seed)
    require(fmt in ("csv", "parquet"), f"must be 'csv' or 'parquet', got {fmt!r}", "fmt",
            "pass fmt='csv' or fmt='parquet'")
    require(not isinstance(symbols, str) and len(symbols) >= 1,
            f"must be a non-empty list of names, got {symbols!r}", "symbols",
            "pass e.g. symbols=('AAA', 'BBB')")
    for sym in symbols:
        require(isinstance(sym, str) and sym.replace("-", "").replace(".", "").isalnum(),
                f"has a name that is not a plain ticker: {sym!r}", "symbols",
                "use letters, digits, '-' or '.'")
    require(len(set(symbols)) == len(symbols), f"has duplicates: {list(symbols)!r}",
            "symbols", "list each symbol once")


def _bars_frame(rng: np.random.Generator, dates: pd.DatetimeIndex) -> pd.DataFrame:
    n = len(dates)
    eps = rng.standard_normal(n)
    switch = rng.random(n)
    gap_noise = rng.standard_normal(n)
    up_noise = np.abs(rng.standard_normal(n))
    down_noise = np.abs(rng.standard_normal(n))
    vol_noise = rng.standard_normal(n)
    price0 = float(rng.uniform(20, 200))

    phi, stay, drift = 0.15, 0.98, 0.0015
    omega, alpha, beta = 2e-6, 0.08, 0.9
    regime = 1 if rng.random() < 0.5 else -1
    var = omega / (1 - alpha - beta)
    r = np.empty(n)
    sigma = np.empty(n)
    excess = shock = 0.0
    for t in range(n):  # the GARCH/AR recursion is serial; one short loop per symbol
        if switch[t] > stay:
            regime = -regime
        var = omega + alpha * shock**2 + beta * var
        sigma[t] = np.sqrt(var)
        shock = sigma[t] * eps[t]
        excess = phi * excess + shock
        r[t] = regime * drift + excess
    close = price0 * np.exp(np.cumsum(r))
    prev_close = np.concatenate([[price0], close[:-1]])
    open_ = prev_close * np.exp(0.25 * sigma * gap_noise)
    high = np.maximum(open_, close) * np.exp(0.5 * sigma * up_noise)
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma * down_noise)
    shock = np.abs(r) / sigma
    volume = np.round(1e6 * np.exp(0.4 * shock + 0.3 * vol_noise)).astype(np.int64)
    # Round once here so the CSV (6 decimals) and parquet hold the same numbers and OHLC order holds.
    open_, high, low, close = (np.round(a, 6) for a in (open_, high, low, close))
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])
    return pd.DataFrame({
        "Date": dates, "Open": open_, "High": high, "Low": low, "Close": close,
        "Adj Close": close, "Volume": volume,
    })
