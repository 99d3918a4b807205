"""`simulate_lobster`: days of the queue-reactive model written as LOBSTER file pairs.

Each day starts from a fresh book around the previous day's last mid (the
first day: ``start_price``); order ids continue across days. Model time is
mapped linearly onto the session 09:30:00-16:00:00 (34200-57600 s after
midnight) at nanosecond resolution. The files are LOBSTER's layout:
headerless, unquoted, comma-separated, LF; prices are dollars × 10,000
(integers); empty levels are ask 9999999999 / bid -9999999999 with size 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lobseq.data.simulate.common import business_days, check_seed, int_arg, require, staged
from lobseq.data.simulate.queue_reactive import Day, simulate_day
from lobseq.io import atomic_file

SESSION_START_NS = 34_200 * 10**9
SESSION_NS = (57_600 - 34_200) * 10**9
EMPTY_ASK = 9_999_999_999
EMPTY_BID = -9_999_999_999
WRITE_ROWS = 1 << 16  # orderbook rows built and written at a time
FIRST_ORDER_ID = 1_000_000


def simulate_lobster(
    out_dir: str | Path,
    *,
    events: int = 100_000,
    levels: int = 10,
    days: int = 1,
    seed: int = 0,
    ticker: str = "SIM",
    start_date: str = "2024-01-02",
    tick: float = 0.01,
    start_price: float = 100.0,
) -> list[Path]:
    """Write ``days`` LOBSTER message/orderbook file pairs; return their paths.

    ``events`` is the number of messages (rows) per day; prices in the files
    are dollars × 10,000 (integers), ``tick`` and ``start_price`` in dollars.
    Files are named ``{ticker}_{YYYY-MM-DD}_34200000_57600000_{message|orderbook}_{levels}.csv``
    for consecutive business days from ``start_date``. The model is
    described in `lobseq.data.simulate.queue_reactive`.
    """
    events = int_arg(events, "events")
    levels = int_arg(levels, "levels")
    days = int_arg(days, "days")
    _check_lobster_args(seed, ticker, tick, start_price)
    dates = business_days(start_date, days, "start_date")

    mult = int(round(tick * 10_000))
    rng = np.random.default_rng(seed)
    mid_tick = max(int(round(start_price / tick)), 1)
    next_id = FIRST_ORDER_ID
    out = Path(out_dir)
    with staged(out) as (stage, names):
        for date in dates:
            day = simulate_day(rng, events, levels, mid_tick, next_id)
            next_id, mid_tick = day.next_id, day.last_mid
            stem = f"{ticker}_{date:%Y-%m-%d}_34200000_57600000"
            names.append(f"{stem}_message_{levels}.csv")
            _write_csv(stage / names[-1], [_message_table(day, mult)])
            names.append(f"{stem}_orderbook_{levels}.csv")
            _write_csv(stage / names[-1], _orderbook_tables(day, mult))
    return [out / name for name in names]


def _check_lobster_args(seed: object, ticker: object, tick: object, start_price: object) -> None:
    check_seed(seed)
    require(isinstance(ticker, str) and ticker.isalnum(),
            f"must be letters and digits only, got {ticker!r}", "ticker", "pass e.g. ticker='SIM'")
    require(isinstance(tick, (int, float)) and tick > 0 and abs(tick * 10_000 - round(tick * 10_000)) < 1e-6
            and round(tick * 10_000) >= 1,
            f"must be a positive multiple of 0.0001 dollars, got {tick!r}", "tick",
            "pass e.g. tick=0.01")
    require(isinstance(start_price, (int, float)) and start_price >= 2 * tick
            and np.isfinite(start_price),
            f"must be a finite price of at least two ticks, got {start_price!r}", "start_price",
            "pass e.g. start_price=100.0")


def _message_table(day: Day, mult: int) -> pa.Table:
    """The message file's six columns: time (s), type, order id, size, price (× 10,000), direction."""
    offset = np.floor(day.times * SESSION_NS).astype(np.int64)
    ns = SESSION_START_NS + np.minimum(offset, SESSION_NS - 1)  # stay before 16:00
    msgs = day.msgs
    return pa.table({
        "time": _seconds_text(ns),
        "type": msgs[:, 0], "order_id": msgs[:, 1], "size": msgs[:, 2],
        "price": msgs[:, 3] * mult, "direction": msgs[:, 4],
    })


def _orderbook_tables(day: Day, mult: int) -> Iterator[pa.Table]:
    """The orderbook file (4 columns per level), WRITE_ROWS rows at a time."""
    n = len(day.msgs)
    for lo in range(0, n, WRITE_ROWS):
        rows = _orderbook_rows(day, lo, min(lo + WRITE_ROWS, n), mult)
        yield pa.table({f"c{c}": rows[:, c] for c in range(4 * day.levels)})


def _orderbook_rows(day: Day, lo: int, hi: int, mult: int) -> np.ndarray:
    """Orderbook rows lo..hi-1: (hi - lo, 4 L) int64 ask price, ask size, bid price, bid size per level."""
    rows = np.arange(day.first_row + lo, day.first_row + hi)
    out = np.empty((hi - lo, day.levels, 4), dtype=np.int64)
    for s, col, sentinel in ((1, 0, EMPTY_ASK), (0, 2, EMPTY_BID)):
        idx = np.searchsorted(day.snapshot_rows[s], rows, side="right") - 1
        size = day.snapshot_sizes[s][idx]
        out[:, :, col] = np.where(size > 0, day.snapshot_ticks[s][idx] * mult, sentinel)
        out[:, :, col + 1] = size
    return out.reshape(hi - lo, 4 * day.levels)


def _write_csv(path: Path, tables: Iterable[pa.Table]) -> None:
    """Headerless, unquoted, comma-separated, LF: the LOBSTER layout."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="none",
                                 batch_size=1 << 16)
    with atomic_file(path, "wb") as f:
        writer = None
        for table in tables:
            if writer is None:
                writer = pacsv.CSVWriter(f, table.schema, write_options=options)
            writer.write_table(table)
        if writer is not None:
            writer.close()


def _seconds_text(ns: np.ndarray) -> pa.Array:
    """Seconds after midnight as LOBSTER prints them: up to 9 decimals, no trailing zeros."""
    whole = pc.cast(pa.array(ns // 10**9), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ns % 10**9), pa.string()), width=9, padding="0")
    frac = pc.utf8_rtrim(frac, characters="0")
    dotted = pc.binary_join_element_wise(whole, frac, ".")
    return pc.if_else(pc.equal(pc.utf8_length(frac), 0), whole, dotted)
