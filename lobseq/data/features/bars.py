"""Daily-bar features (kind ``"bars"``).

Inputs are canonical bar frames: ``timestamp, open, high, low, close,
adj_close, volume``, one row per day, chronological. Returns use
``adj_close`` (splits and dividends adjusted); intraday shapes use the raw
``high/low/close`` of the same day, whose ratios an adjustment leaves alone.
All windows are trailing and include day t.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lobseq.data.features import check_lags, register, require_columns


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64)


def _log(x: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(x > 0, np.log(x), np.nan)


def _lagged_diff(x: np.ndarray, k: int) -> np.ndarray:
    out = np.full(len(x), np.nan)
    out[k:] = x[k:] - x[:-k]
    return out


@register("log_returns", kind="bars", lags=(1, 2, 5, 10, 20))
def log_returns(frame: pd.DataFrame, lags: tuple[int, ...]) -> dict[str, np.ndarray]:
    """log(adj_close_t / adj_close_t-k) -> ``ret_k``; the first k days are NaN."""
    ks = check_lags(lags, "log_returns", "lags")
    require_columns(frame, ["adj_close"], "log_returns")
    lp = _log(_col(frame, "adj_close"))
    return {f"ret_{k}": _lagged_diff(lp, k) for k in ks}


@register("range", kind="bars")
def bar_range(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """The day's range: ``hl_range = (high - low) / close`` and
    ``log_hl = log(high / low)`` (the Parkinson volatility input)."""
    require_columns(frame, ["high", "low", "close"], "range")
    high, low, close = _col(frame, "high"), _col(frame, "low"), _col(frame, "close")
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.where(close > 0, (high - low) / close, np.nan)
    return {"hl_range": rel, "log_hl": _log(high) - _log(low)}


@register("volume_z", kind="bars", windows=(20,))
def volume_z(frame: pd.DataFrame, windows: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Z-score of log1p(volume) against the last n days including t (ddof=0)
    -> ``volume_z_n``. A flat window (std 0) gives 0; the first n-1 days NaN."""
    ns = check_lags(windows, "volume_z", "windows", minimum=2)
    require_columns(frame, ["volume"], "volume_z")
    volume = _col(frame, "volume")
    lv = pd.Series(np.where(volume >= 0, np.log1p(np.maximum(volume, 0)), np.nan))
    out: dict[str, np.ndarray] = {}
    for n in ns:
        roll = lv.rolling(n, min_periods=n)
        mean = roll.mean().to_numpy()
        std = roll.std(ddof=0).to_numpy()
        dev = lv.to_numpy() - mean
        # Rolling std of a flat window can come out as ~1e-17 instead of 0.
        flat = std <= 1e-9 * np.maximum(1.0, np.abs(mean))
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"volume_z_{n}"] = np.where(flat, 0.0, dev / std)
        out[f"volume_z_{n}"][np.isnan(std)] = np.nan
    return out


@register("close_location", kind="bars")
def close_location(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Where the close sits in the day's range, in [-1, 1]:
    ((close - low) - (high - close)) / (high - low) -> ``close_location``;
    -1 at the low, +1 at the high, 0 for a flat day (high == low)."""
    require_columns(frame, ["high", "low", "close"], "close_location")
    high, low, close = _col(frame, "high"), _col(frame, "low"), _col(frame, "close")
    width = high - low
    with np.errstate(divide="ignore", invalid="ignore"):
        loc = np.where(width > 0, ((close - low) - (high - close)) / width, 0.0)
    loc[np.isnan(width) | np.isnan(close)] = np.nan
    return {"close_location": loc}


@register("rolling_vol", kind="bars", windows=(5, 20))
def rolling_vol(frame: pd.DataFrame, windows: tuple[int, ...]) -> dict[str, np.ndarray]:
    """Sample std (ddof=1) of daily log returns of adj_close over the last n
    days -> ``rolling_vol_n`` (daily, not annualized; n >= 2)."""
    ns = check_lags(windows, "rolling_vol", "windows", minimum=2)
    require_columns(frame, ["adj_close"], "rolling_vol")
    r1 = pd.Series(_lagged_diff(_log(_col(frame, "adj_close")), 1))
    return {f"rolling_vol_{n}": r1.rolling(n, min_periods=n).std(ddof=1).to_numpy() for n in ns}
