"""LOBSTER message + orderbook files → one book `Segment` per ticker-day.

File pairs are matched by name, `TICKER_YYYY-MM-DD_START_END_message_L.csv`
and `..._orderbook_L.csv`; row i of the orderbook is the book after message i.

Decisions (see LOBSTER_SampleFiles_ReadMe.txt for the format):
- Prices are dollars × 10,000 in the files and dollars in the frame.
- Empty levels (ask 9999999999, bid -9999999999) become price NaN, size 0.
- A header row is tolerated: a first line in which no cell is a number is
  skipped (error rows still count it: they are file line numbers).
- Trading halts (message type 7) are kept as rows: LOBSTER writes the
  preceding book state again for them, so the book columns repeat and no
  book update happens. Their message `price` (a flag: -1 halt, 0 quoting,
  1 resume) becomes NaN. Column `halted` is True from a halt message up to,
  not including, the resume message (a halt without resume lasts to the end
  of the file), so later stages can skip windows that touch a halt.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from lobseq.data import validate
from lobseq.data.sources.lobster_csv import PRICE_SCALE, parse_csv, read_book
from lobseq.data.sources.segment import (
    Paths,
    Segment,
    book_columns,
    data_line_number,
    expand_paths,
    first_index,
)
from lobseq.errors import LobseqError

FILE_NAME = re.compile(
    r"^(?P<ticker>.+)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)"
    r"_(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$",
    re.IGNORECASE,
)
NAME_FIX = "name LOBSTER files TICKER_YYYY-MM-DD_START_END_message_L.csv / ..._orderbook_L.csv"

HALT, QUOTING, RESUME = -1.0, 0.0, 1.0

MESSAGE_TYPES = {
    "time": pa.float64(),
    "event_type": pa.int64(),
    "order_id": pa.int64(),
    "size": pa.float64(),
    "price": pa.float64(),
    "direction": pa.int64(),
}
EVENT_TYPES = (1, 2, 3, 4, 5, 6, 7)  # 6 (cross trade) appears in newer LOBSTER output


def read_lobster(paths: Paths) -> list[Segment]:
    """Read LOBSTER file pairs (files or folders of them) into book segments.

    Returns one `Segment` per ticker-day, sorted by (day, ticker). Frame
    columns: `timestamp`, the message columns `time, event_type, order_id,
    size, price, direction`, `halted`, then the book columns for levels 1..L
    (prices in dollars).
    """
    return list(iter_lobster(paths))


def iter_lobster(paths: Paths) -> SegmentStream:
    """Like `read_lobster`, but parses one ticker-day at a time, on iteration.

    File names, pairing, level counts and dates are checked at once (before
    any file is parsed); each pair's content is read and checked when its
    segment is reached, so memory holds one day at a time.
    """
    return SegmentStream(_pair_jobs(paths))


class SegmentStream:
    """The pairs to read (`len`, `files`) and their segments, parsed lazily on iteration."""

    def __init__(self, jobs: list[tuple[str, str, int, Path, Path]]) -> None:
        self.jobs = jobs

    def __len__(self) -> int:
        return len(self.jobs)

    @property
    def files(self) -> list[tuple[str, str]]:
        return [(str(job[3]), str(job[4])) for job in self.jobs]

    def __iter__(self) -> Iterator[Segment]:
        return (_read_pair(*job) for job in self.jobs)


def _pair_jobs(paths: Paths) -> list[tuple[str, str, int, Path, Path]]:
    files = expand_paths(
        paths, lambda name: FILE_NAME.match(name) is not None, "LOBSTER", "*_message_L.csv"
    )
    pairs: dict[tuple[str, ...], dict[str, Path]] = {}
    for path in files:
        m = FILE_NAME.match(path.name)
        if m is None:
            raise LobseqError("file name is not a LOBSTER file name", file=path, fix=NAME_FIX)
        key = (m["ticker"], m["day"], m["start"], m["end"], m["levels"])
        pairs.setdefault(key, {})[m["kind"].lower()] = path

    seen: dict[tuple[str, str], Path] = {}
    jobs = []
    for key, pair in pairs.items():
        ticker, day, _start, _end, levels = key
        for kind, partner in (("message", "orderbook"), ("orderbook", "message")):
            if partner not in pair:
                raise LobseqError(
                    f"{kind} file has no {partner} file beside it",
                    file=pair[kind],
                    fix=f"add {pair[kind].name.replace(f'_{kind}_', f'_{partner}_')}",
                )
        if (ticker, day) in seen:
            raise LobseqError(
                f"two file pairs for {ticker} on {day} (also {seen[(ticker, day)].name})",
                file=pair["message"],
                fix="keep one pair per ticker and day",
            )
        seen[(ticker, day)] = pair["message"]
        jobs.append((ticker, day, int(levels), pair["message"], pair["orderbook"]))
    jobs.sort(key=lambda j: (j[1], j[0]))
    for _ticker, day, levels, message, _orderbook in jobs:
        _check_name(day, levels, message)
    return jobs


def _check_name(day: str, levels: int, message: Path) -> np.datetime64:
    """Midnight of `day`; raises if the name's level count or date is invalid."""
    if levels < 1:
        raise LobseqError(
            "level count in the file name must be at least 1", file=message, fix=NAME_FIX
        )
    try:
        return np.datetime64(day, "ns")
    except ValueError:
        raise LobseqError(
            f"file name has an invalid date {day!r}", file=message, fix=NAME_FIX
        ) from None


def _read_pair(ticker: str, day: str, levels: int, message: Path, orderbook: Path) -> Segment:
    midnight = _check_name(day, levels, message)
    names = book_columns(levels)
    raw_cols, msg_skip = _raw_messages(message)
    n = len(raw_cols["time"][0])
    # Checks wait until the orderbook is parsed, so errors come in file order.
    book, book_rows, book_skip = read_book(
        orderbook,
        names,
        n,
        f"the name says {levels} level(s), so 4 x {levels} = {4 * levels} columns",
    )
    if book_rows != n:
        raise LobseqError(
            f"orderbook has {book_rows} rows but its message file {message.name} has {n}",
            file=orderbook,
            fix="re-export both files together; row i of the orderbook is the book after message i",
        )
    data = _message_columns(raw_cols, midnight, message, msg_skip)
    del raw_cols
    rows = _rows(orderbook, book_skip)
    for name in names:  # in file column order, as the checks always ran
        book[name].check(orderbook, book_skip)
        if "_size_" in name:
            validate.check_non_negative(book[name].values, [name], rows)
    data.update((name, book[name].values) for name in names)
    del book
    # Arrow's allocator keeps the parse blocks' pages; give them back before features run.
    pa.default_memory_pool().release_unused()
    validate.check_not_crossed(data["ask_price_1"], data["bid_price_1"], rows)
    # copy=False with a dict keeps one block per column: no consolidation copy.
    frame = pd.DataFrame(data, columns=["timestamp", *MESSAGE_TYPES, "halted", *names], copy=False)
    return Segment(ticker, day, "book", frame, (str(message), str(orderbook)))


def _raw_messages(message: Path) -> tuple[dict[str, tuple[np.ndarray, int | None]], int]:
    """The message file's columns, unchecked, with their first missing cells; and the header lines.

    The parsed Arrow table is dropped on return, so its buffers can serve the orderbook's blocks.
    """
    msg, skip = parse_csv(message, MESSAGE_TYPES, "a LOBSTER message file has 6 columns")
    return {name: _raw_column(msg, name) for name in MESSAGE_TYPES}, skip


def _message_columns(
    raw_cols: dict[str, tuple[np.ndarray, int | None]], midnight: np.datetime64, message: Path,
    skip: int,
) -> dict[str, np.ndarray]:
    """The frame's message columns and `timestamp`, `halted`, after every check of the message file."""
    cols = {
        name: _checked(values, null_at, name, message, skip)
        for name, (values, null_at) in raw_cols.items()
    }
    time = cols["time"]
    rows = _rows(message, skip)
    validate.check_chronological(time, "time", rows, show=lambda t: f"{float(t)}")
    _check_codes(cols["event_type"], EVENT_TYPES, "event_type", message, skip)
    _check_codes(cols["direction"], (-1, 1), "direction", message, skip)
    validate.check_non_negative(cols["size"], ["size"], rows)
    is_halt_msg = cols["event_type"] == 7
    return {
        "timestamp": midnight + np.round(time * 1e9).astype(np.int64).view("timedelta64[ns]"),
        "time": time,
        "event_type": cols["event_type"].astype(np.int8),
        "order_id": cols["order_id"],
        "size": cols["size"],
        "price": np.where(is_halt_msg, np.nan, cols["price"] / PRICE_SCALE),
        "direction": cols["direction"].astype(np.int8),
        "halted": _halted(is_halt_msg, cols["price"], message, skip),
    }


def _halted(is_halt_msg: np.ndarray, flag: np.ndarray, message: Path, skip: int) -> np.ndarray:
    """True from each halt message up to, not including, its resume message (see module doc)."""
    bad = first_index(is_halt_msg & ~np.isin(flag, (HALT, QUOTING, RESUME)))
    if bad is not None:
        raise LobseqError(
            f"trading-halt message (type 7) has price {float(flag[bad]):g}; LOBSTER writes -1 "
            "(halt), 0 (quoting) or 1 (resume)",
            file=message,
            row=data_line_number(message, bad, skip),
            field="price",
        )
    state = np.full(len(flag), np.nan)
    state[is_halt_msg & (flag == HALT)] = 1.0
    state[is_halt_msg & (flag == RESUME)] = 0.0
    return pd.Series(state).ffill().fillna(0.0).to_numpy(dtype=bool)


def _raw_column(table: pa.Table, name: str) -> tuple[np.ndarray, int | None]:
    """One column as numpy (unchecked) and the index of its first missing cell, if any."""
    col = table.column(name)
    null_at = None
    if col.null_count:
        null_at = first_index(col.is_null().to_numpy(zero_copy_only=False))
    return col.to_numpy(), null_at


def _checked(values: np.ndarray, null_at: int | None, name: str, path: Path, skip: int) -> np.ndarray:
    """`values` if the column has no missing, NaN or infinite cells; raises otherwise."""
    if null_at is not None:
        raise LobseqError(
            "missing or NaN value",
            file=path,
            row=data_line_number(path, null_at, skip),
            field=name,
            fix="LOBSTER files have no gaps; re-export the file",
        )
    validate.check_finite(values, [name], _rows(path, skip))
    return values


def _rows(path: Path, skip: int) -> validate.Rows:
    """Rows of a LOBSTER file for the shared checks: errors name its line numbers."""
    return validate.Rows(file=str(path), row_of=lambda i: data_line_number(path, i, skip),
                         fix_data="LOBSTER files have no gaps or negative sizes; re-export the file",
                         fix_order="sort the messages by time or re-export the day")


def _check_codes(
    values: np.ndarray, allowed: tuple[int, ...], name: str, path: Path, skip: int
) -> None:
    bad = first_index(~np.isin(values, allowed))
    if bad is not None:
        raise LobseqError(
            f"{name} {values[bad]} is not one of {', '.join(map(str, allowed))}",
            file=path,
            row=data_line_number(path, bad, skip),
            field=name,
        )
