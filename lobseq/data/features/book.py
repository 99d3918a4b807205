"""Limit-order-book features (kind ``"book"``).

Inputs are canonical book frames: ``ask_price_i, ask_size_i, bid_price_i,
bid_size_i`` for levels ``i = 1..L`` (prices in dollars; an empty level has
price NaN and size 0), plus LOBSTER's message columns where present. Each row
is the book *after* that row's event, so "the last n events" are rows
``t-n+1..t``.

Every window is trailing (pandas ``rolling`` on rows <= t), so all features
are causal; warm-up rows are NaN. Features yield their columns one at a time
(``compute_features`` casts each into the matrix before the next is made).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import pandas as pd

from lobseq.data.features import check_lags, mid_price, register
from lobseq.errors import LobseqError

_LEVEL = re.compile(r"^ask_price_(\d+)$")
MESSAGE_COLUMNS = ("event_type", "size", "direction")
EXECUTION_TYPES = (4, 5)  # LOBSTER: 4 visible execution, 5 hidden execution


def book_levels(frame: pd.DataFrame) -> int:
    """Number of book levels L, inferred from the ``ask_price_i`` columns.

    Levels must be 1..L with all four columns each; anything else is an error.
    """
    # Every book feature asks; the answer depends on the column names only.
    return _levels_of(tuple(frame.columns.tolist()))


@lru_cache(maxsize=256)
def _levels_of(columns: tuple) -> int:
    found = sorted(int(m.group(1)) for c in columns if (m := _LEVEL.match(str(c))))
    if not found:
        raise LobseqError(
            "frame has no book columns (ask_price_1, ...)",
            field="columns",
            fix="pass a canonical book frame (see lobseq.sources)",
        )
    levels = len(found)
    expected = [
        f"{side}_{what}_{i}"
        for i in range(1, levels + 1)
        for side in ("ask", "bid")
        for what in ("price", "size")
    ]
    present = set(columns)
    missing = [c for c in expected if c not in present]
    if found != list(range(1, levels + 1)) or missing:
        raise LobseqError(
            f"book columns are not levels 1..{levels} (levels found: {found}; "
            f"missing: {', '.join(missing) or 'none'})",
            field="columns",
        )
    return levels


def _levels_param(frame: pd.DataFrame, levels: int | None, feature: str) -> int:
    available = book_levels(frame)
    if levels is None:
        return available
    if (
        isinstance(levels, bool)
        or not isinstance(levels, (int, np.integer))
        or not 1 <= levels <= available
    ):
        raise LobseqError(
            f"feature {feature!r}: levels must be one integer in 1..{available} "
            f"(the frame has {available} levels), got {levels!r}",
            field="levels",
        )
    return int(levels)


def _col(frame: pd.DataFrame, name: str) -> np.ndarray:
    return frame[name].to_numpy(dtype=np.float64)


def _rolling_sum(x: np.ndarray, n: int) -> np.ndarray:
    # pandas' online window sum is sequential, so row t never sees rows > t.
    return pd.Series(x).rolling(n, min_periods=n).sum().to_numpy()


def _rolling_mean(x: np.ndarray, n: int) -> np.ndarray:
    return pd.Series(x).rolling(n, min_periods=n).mean().to_numpy()


def _log_mid(frame: pd.DataFrame) -> np.ndarray:
    mid = mid_price(frame)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(mid > 0, np.log(mid), np.nan)


@register("mid", kind="book")
def mid(frame: pd.DataFrame) -> Iterator[tuple[str, np.ndarray]]:
    """``mid``: (ask_price_1 + bid_price_1) / 2 in dollars; NaN if a side is empty."""
    book_levels(frame)
    yield "mid", mid_price(frame)


_SPREAD_UNITS = ("bps", "ticks", "dollars")


@register("spread", kind="book", unit="bps", tick_size=0.01)
def spread(frame: pd.DataFrame, unit: str, tick_size: float) -> Iterator[tuple[str, np.ndarray]]:
    """Best-quote spread ask_1 - bid_1.

    ``unit="bps"`` (default): relative to mid, in basis points -> ``spread_bps``;
    ``"ticks"``: divided by ``tick_size`` dollars -> ``spread_ticks``;
    ``"dollars"`` -> ``spread``. NaN when a side is empty.
    """
    if unit not in _SPREAD_UNITS:
        raise LobseqError(
            f"feature 'spread': unknown unit {unit!r}",
            field="unit",
            fix=f"use one of: {', '.join(_SPREAD_UNITS)}",
        )
    if not isinstance(tick_size, (int, float)) or isinstance(tick_size, bool) or tick_size <= 0:
        raise LobseqError(
            f"feature 'spread': tick_size must be a positive number of dollars, got {tick_size!r}",
            field="tick_size",
        )
    book_levels(frame)
    width = _col(frame, "ask_price_1") - _col(frame, "bid_price_1")
    if unit == "bps":
        with np.errstate(divide="ignore", invalid="ignore"):
            bps = width / mid_price(frame) * 1e4
        yield "spread_bps", bps
    elif unit == "ticks":
        yield "spread_ticks", width / float(tick_size)
    else:
        yield "spread", width


@register("book", kind="book", levels=None)
def raw_book(frame: pd.DataFrame, levels: int | None) -> Iterator[tuple[str, np.ndarray]]:
    """The raw book in DeepLOB order: per level ``ask_price_i, ask_size_i,
    bid_price_i, bid_size_i`` (dollars, shares) for levels 1..``levels``
    (default all).

    Empty levels keep price NaN: there is no neutral raw price, and a made-up
    one would be a fake quote. Use ``levels_rel`` for a gap-tolerant version.
    """
    n_levels = _levels_param(frame, levels, "book")
    for i in range(1, n_levels + 1):
        for side in ("ask", "bid"):
            for what in ("price", "size"):
                yield f"{side}_{what}_{i}", _col(frame, f"{side}_{what}_{i}")


@register("levels_rel", kind="book", levels=None, log_size=True)
def levels_rel(
    frame: pd.DataFrame, levels: int | None, log_size: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """Per-level distance from mid in bps and size, in DeepLOB order.

    ``ask_bps_i = (ask_price_i - mid) / mid * 1e4`` and
    ``bid_bps_i = (mid - bid_price_i) / mid * 1e4`` (both >= 0 in a normal
    book); sizes are ``ask_logsize_i = log1p(shares)`` (``log_size=True``,
    tames heavy tails) or ``ask_size_i`` shares.

    An empty level is encoded as distance 0 and size 0: its zero size says
    "no liquidity" unambiguously, and filling (rather than NaN) keeps a
    missing deep level from invalidating every window that touches it. Rows
    with no mid (a whole side empty) stay NaN for non-empty levels.
    """
    n_levels = _levels_param(frame, levels, "levels_rel")
    if not isinstance(log_size, bool):
        raise LobseqError(
            f"feature 'levels_rel': log_size must be true or false, got {log_size!r}",
            field="log_size",
        )
    mid_ = mid_price(frame)
    size_tag = "logsize" if log_size else "size"
    for i in range(1, n_levels + 1):
        for side, sign in (("ask", 1.0), ("bid", -1.0)):
            price = _col(frame, f"{side}_price_{i}")
            size = _col(frame, f"{side}_size_{i}")
            # sign * (price - mid) / mid * 1e4, in place (same operations, same order)
            dist = np.subtract(price, mid_)
            dist *= sign
            with np.errstate(divide="ignore", invalid="ignore"):
                dist /= mid_
            dist *= 1e4
            dist[np.isnan(price) & (size == 0)] = 0.0  # empty level
            yield f"{side}_bps_{i}", dist
            del dist
            yield f"{side}_{size_tag}_{i}", np.log1p(size) if log_size else size


@register("depth_imbalance", kind="book", levels=None, cumulative=True)
def depth_imbalance(
    frame: pd.DataFrame, levels: int | None, cumulative: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """(bid - ask) / (bid + ask) of resting size, in [-1, 1]; > 0 = more bids.

    ``cumulative=True`` (default): sizes summed over levels 1..i ->
    ``depth_imbalance_i``; ``False``: level i alone -> ``level_imbalance_i``.
    Empty levels have size 0; a 0/0 (no size on either side) is 0, balanced.
    """
    n_levels = _levels_param(frame, levels, "depth_imbalance")
    if not isinstance(cumulative, bool):
        raise LobseqError(
            f"feature 'depth_imbalance': cumulative must be true or false, got {cumulative!r}",
            field="cumulative",
        )
    name = "depth_imbalance" if cumulative else "level_imbalance"
    bids = asks = None
    for i in range(1, n_levels + 1):
        bid, ask = _col(frame, f"bid_size_{i}"), _col(frame, f"ask_size_{i}")
        if cumulative and bids is not None:  # running sums: cumsum over levels, one level at a time
            bids, asks = bids + bid, asks + ask
        else:
            bids, asks = bid, ask
        total = bids + asks
        with np.errstate(divide="ignore", invalid="ignore"):
            imb = np.subtract(bids, asks)
            imb /= total
        imb[~(total > 0)] = 0.0
        imb[np.isnan(total)] = np.nan
        yield f"{name}_{i}", imb
        del total, imb


def order_flow_events(frame: pd.DataFrame) -> np.ndarray:
    """Cont, Kukanov & Stoikov (2014) e_n from consecutive best quotes (shares).

    e_n = 1{Pb_n >= Pb_n-1} qb_n - 1{Pb_n <= Pb_n-1} qb_n-1
        - 1{Pa_n <= Pa_n-1} qa_n + 1{Pa_n >= Pa_n-1} qa_n-1.
    Row 0 has no previous quote -> NaN. An empty side is priced -inf (bid) /
    +inf (ask) with size 0, so a side vanishing counts as its size leaving.
    """
    book_levels(frame)
    pb = np.nan_to_num(_col(frame, "bid_price_1"), nan=-np.inf)
    pa = np.nan_to_num(_col(frame, "ask_price_1"), nan=np.inf)
    qb = _col(frame, "bid_size_1")
    qa = _col(frame, "ask_size_1")
    e = np.full(len(frame), np.nan)
    if len(frame) > 1:
        e[1:] = (
            (pb[1:] >= pb[:-1]) * qb[1:]
            - (pb[1:] <= pb[:-1]) * qb[:-1]
            - (pa[1:] <= pa[:-1]) * qa[1:]
            + (pa[1:] >= pa[:-1]) * qa[:-1]
        )
    return e


@register("ofi", kind="book", windows=(1, 10, 50), normalize=False)
def ofi(
    frame: pd.DataFrame, windows: tuple[int, ...], normalize: bool
) -> Iterator[tuple[str, np.ndarray]]:
    """Order-flow imbalance (Cont, Kukanov & Stoikov 2014): the sum of e_n over
    the last n events (rows t-n+1..t), in shares -> ``ofi_n``.

    ``normalize=True`` divides by the mean touch depth (qb + qa) / 2 over the
    same rows (comparable across instruments) -> ``ofi_norm_n``. The first n
    rows are NaN (row 0 has no previous quote).
    """
    ns = check_lags(windows, "ofi", "windows")
    if not isinstance(normalize, bool):
        raise LobseqError(
            f"feature 'ofi': normalize must be true or false, got {normalize!r}",
            field="normalize",
        )
    e = order_flow_events(frame)
    depth = (_col(frame, "bid_size_1") + _col(frame, "ask_size_1")) / 2.0
    for n in ns:
        total = _rolling_sum(e, n)
        if normalize:
            scale = _rolling_mean(depth, n)
            yield f"ofi_norm_{n}", _ratio(total, scale)
        else:
            yield f"ofi_{n}", total


@register("dixon_ofr", kind="book", windows=(10, 50))
def dixon_ofr(frame: pd.DataFrame, windows: tuple[int, ...]) -> Iterator[tuple[str, np.ndarray]]:
    """Order-flow ratios after Dixon (2017), from LOBSTER messages.

    Market-order volume over the last n events (rows t-n+1..t; executions,
    event types 4/5) by aggressor side, relative to the mean resting size at
    the touch they hit over the same rows:
    ``ofr_buy_n = buy MO shares / mean(ask_size_1)`` (a buy MO executes a
    resting sell, LOBSTER direction -1), ``ofr_sell_n = sell MO shares /
    mean(bid_size_1)``, and ``mo_imbalance_n = (buy - sell) / (buy + sell)``
    (0 when no executions). A zero touch with no executions gives 0.

    Needs the message columns (event_type, size, direction): FI-2010 has none.
    """
    ns = check_lags(windows, "dixon_ofr", "windows")
    missing = [c for c in MESSAGE_COLUMNS if c not in frame.columns]
    if missing:
        raise LobseqError(
            "feature 'dixon_ofr' needs LOBSTER message data "
            f"(columns {', '.join(MESSAGE_COLUMNS)}); this frame lacks {', '.join(missing)}",
            field="features",
            fix="drop 'dixon_ofr' for FI-2010 or other book-only data",
        )
    book_levels(frame)
    event = frame["event_type"].to_numpy()
    direction = frame["direction"].to_numpy()
    size = _col(frame, "size")
    executed = np.isin(event, EXECUTION_TYPES)
    buy = np.where(executed & (direction == -1), size, 0.0)
    sell = np.where(executed & (direction == 1), size, 0.0)
    ask_touch = _col(frame, "ask_size_1")
    bid_touch = _col(frame, "bid_size_1")
    for n in ns:
        b, s = _rolling_sum(buy, n), _rolling_sum(sell, n)
        yield f"ofr_buy_{n}", _ratio(b, _rolling_mean(ask_touch, n))
        yield f"ofr_sell_{n}", _ratio(s, _rolling_mean(bid_touch, n))
        with np.errstate(divide="ignore", invalid="ignore"):
            imb = np.where(b + s > 0, (b - s) / (b + s), 0.0)
        imb[np.isnan(b + s)] = np.nan
        yield f"mo_imbalance_{n}", imb


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, num / den, np.where(num == 0, 0.0, np.nan))


@register("returns", kind="book", lags=(1, 5, 10, 50))
def returns(frame: pd.DataFrame, lags: tuple[int, ...]) -> Iterator[tuple[str, np.ndarray]]:
    """Log mid returns over the last k events: log(mid_t / mid_t-k) -> ``ret_k``.

    NaN for the first k rows and where either mid is missing.
    """
    ks = check_lags(lags, "returns", "lags")
    book_levels(frame)
    lm = _log_mid(frame)
    for k in ks:
        r = np.full(len(lm), np.nan)
        r[k:] = lm[k:] - lm[:-k]
        yield f"ret_{k}", r


@register("realized_vol", kind="book", windows=(20, 100))
def realized_vol(
    frame: pd.DataFrame, windows: tuple[int, ...]
) -> Iterator[tuple[str, np.ndarray]]:
    """Sample std (ddof=1) of the 1-event log mid returns over the last n
    events -> ``realized_vol_n`` (per event, not annualized; n >= 2).

    Returns missing because a side was briefly empty are skipped (at least
    half the window must be there), so one gap does not void n rows; the
    first n rows are NaN.
    """
    ns = check_lags(windows, "realized_vol", "windows", minimum=2)
    book_levels(frame)
    lm = _log_mid(frame)
    r1 = np.full(len(lm), np.nan)
    r1[1:] = np.diff(lm)
    series = pd.Series(r1)
    for n in ns:
        vol = series.rolling(n, min_periods=max(2, n // 2)).std(ddof=1).to_numpy(copy=True)
        vol[:n] = np.nan
        yield f"realized_vol_{n}", vol


__all__ = ["book_levels", "order_flow_events"]
