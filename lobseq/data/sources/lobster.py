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
import pyarrow.csv as pacsv

from lobseq.data import validate
from lobseq.data.sources.segment import (
    Paths,
    Segment,
    book_columns,
    data_line_number,
    expand_paths,
    first_index,
    require_nonempty,
)
from lobseq.errors import LobseqError

FILE_NAME = re.compile(
    r"^(?P<ticker>.+)_(?P<day>\d{4}-\d{2}-\d{2})_(?P<start>\d+)_(?P<end>\d+)"
    r"_(?P<kind>message|orderbook)_(?P<levels>\d+)\.csv$",
    re.IGNORECASE,
)
NAME_FIX = "name LOBSTER files TICKER_YYYY-MM-DD_START_END_message_L.csv / ..._orderbook_L.csv"

PRICE_SCALE = 10_000.0
ASK_EMPTY = 9_999_999_999.0
BID_EMPTY = -9_999_999_999.0
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
    msg, msg_skip = _parse(message, MESSAGE_TYPES, "a LOBSTER message file has 6 columns")
    n = msg.num_rows
    # Checks wait until the orderbook is parsed, so errors come in file order.
    raw_cols = {name: _raw_column(msg, name) for name in MESSAGE_TYPES}
    del msg  # the message table's buffers can serve the orderbook's blocks
    book, book_rows, book_skip = _read_book(
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

    cols = {
        name: _checked(values, null_at, name, message, msg_skip)
        for name, (values, null_at) in raw_cols.items()
    }
    del raw_cols
    time = cols["time"]
    msg_rows = _rows(message, msg_skip)
    validate.check_chronological(time, "time", msg_rows, show=lambda t: f"{float(t)}")
    _check_codes(cols["event_type"], EVENT_TYPES, "event_type", message, msg_skip)
    _check_codes(cols["direction"], (-1, 1), "direction", message, msg_skip)
    validate.check_non_negative(cols["size"], ["size"], msg_rows)

    is_halt_msg = cols["event_type"] == 7
    flag = cols["price"]
    bad = first_index(is_halt_msg & ~np.isin(flag, (HALT, QUOTING, RESUME)))
    if bad is not None:
        raise LobseqError(
            f"trading-halt message (type 7) has price {float(flag[bad]):g}; LOBSTER writes -1 "
            "(halt), 0 (quoting) or 1 (resume)",
            file=message,
            row=data_line_number(message, bad, msg_skip),
            field="price",
        )
    state = np.full(len(flag), np.nan)
    state[is_halt_msg & (flag == HALT)] = 1.0
    state[is_halt_msg & (flag == RESUME)] = 0.0
    halted = pd.Series(state).ffill().fillna(0.0).to_numpy(dtype=bool)
    del state

    price = np.where(is_halt_msg, np.nan, flag / PRICE_SCALE)
    data: dict[str, np.ndarray] = {
        "timestamp": midnight + np.round(time * 1e9).astype(np.int64).view("timedelta64[ns]"),
        "time": time,
        "event_type": cols["event_type"].astype(np.int8),
        "order_id": cols["order_id"],
        "size": cols["size"],
        "price": price,
        "direction": cols["direction"].astype(np.int8),
        "halted": halted,
    }
    del cols, flag, is_halt_msg
    book_rows = _rows(orderbook, book_skip)
    for name in names:  # in file column order, as the checks always ran
        book[name].check(orderbook, book_skip)
        if "_size_" in name:
            validate.check_non_negative(book[name].values, [name], book_rows)
    data.update((name, book[name].values) for name in names)
    del book
    # Arrow's allocator keeps the parse blocks' pages; give them back before features run.
    pa.default_memory_pool().release_unused()

    validate.check_not_crossed(data["ask_price_1"], data["bid_price_1"], book_rows)

    # copy=False with a dict keeps one block per column: no consolidation copy.
    frame = pd.DataFrame(data, columns=["timestamp", *MESSAGE_TYPES, "halted", *names], copy=False)
    return Segment(ticker, day, "book", frame, (str(message), str(orderbook)))


BOOK_BLOCK_BYTES = 4 << 20  # orderbook parse block: small next to a day, large enough to be fast


class _BookColumn:
    """One orderbook column filled block by block, with its first bad cells noted."""

    __slots__ = ("name", "values", "null_at", "nonfinite_at", "nonfinite_value")

    def __init__(self, name: str, n: int) -> None:
        self.name = name
        self.values = np.empty(n)
        self.null_at: int | None = None
        self.nonfinite_at: int | None = None
        self.nonfinite_value = 0.0

    def put(self, array: pa.Array, start: int) -> np.ndarray:
        """Copy one block's raw cells in at `start`; returns the slice written."""
        out = self.values[start : start + len(array)]
        out[:] = array.to_numpy(zero_copy_only=False)
        if self.null_at is None and array.null_count:
            self.null_at = start + first_index(array.is_null().to_numpy(zero_copy_only=False))
        if self.nonfinite_at is None and not np.isfinite(out).all():
            bad = first_index(~np.isfinite(out))
            self.nonfinite_at, self.nonfinite_value = start + bad, float(out[bad])
        return out

    def check(self, path: Path, skip: int) -> None:
        """Raise what `_checked` would have raised on the raw column."""
        if self.null_at is not None:
            raise LobseqError(
                "missing or NaN value",
                file=path,
                row=data_line_number(path, self.null_at, skip),
                field=self.name,
                fix="LOBSTER files have no gaps; re-export the file",
            )
        if self.nonfinite_at is not None:
            raise LobseqError(
                f"value {self.nonfinite_value} is not a finite number",
                file=path,
                row=data_line_number(path, self.nonfinite_at, skip),
                field=self.name,
                fix="LOBSTER files have no gaps; re-export the file",
            )


def _read_book(
    path: Path, names: list[str], n: int, shape_hint: str
) -> tuple[dict[str, _BookColumn], int, int]:
    """Stream the orderbook block by block into `n`-row float64 columns (dollars, empties mapped).

    Parsing in blocks straight into the final arrays keeps memory at one day
    of columns plus a block, instead of a full Arrow table and its copy.
    Returns the columns (raw-cell problems noted, not raised), the number of
    data rows in the file (which may differ from `n`) and the header lines skipped.
    """
    require_nonempty(path)
    skip = _header_lines(path)
    types = dict.fromkeys(names, pa.float64())
    columns = {name: _BookColumn(name, n) for name in names}
    sides = [
        (columns[f"{side}_price_{i}"], columns[f"{side}_size_{i}"], empty)
        for i in range(1, len(names) // 4 + 1)
        for side, empty in (("ask", ASK_EMPTY), ("bid", BID_EMPTY))
    ]
    rows = 0
    try:
        with pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(
                column_names=names, skip_rows=skip, block_size=BOOK_BLOCK_BYTES
            ),
            convert_options=pacsv.ConvertOptions(column_types=types),
        ) as reader:
            for batch in reader:
                m = batch.num_rows
                if rows + m <= n:  # beyond n only the row count matters
                    for price_col, size_col, empty in sides:
                        price = price_col.put(batch.column(price_col.name), rows)
                        size = size_col.put(batch.column(size_col.name), rows)
                        missing = price == empty
                        price /= PRICE_SCALE
                        price[missing] = np.nan
                        size[missing] = 0.0
                rows += m
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose(path, types, skip, shape_hint)
        raise LobseqError(f"cannot parse as CSV ({exc})", file=path) from None
    if rows == 0:
        raise LobseqError("no data rows below the header", file=path, fix="re-export the file")
    return columns, rows, skip


def _parse(path: Path, types: dict[str, pa.DataType], shape_hint: str) -> tuple[pa.Table, int]:
    """Parse `path` with fixed column types; returns the table and the header lines skipped."""
    require_nonempty(path)
    skip = _header_lines(path)
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=list(types), skip_rows=skip),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose(path, types, skip, shape_hint)
        raise LobseqError(f"cannot parse as CSV ({exc})", file=path) from None
    if table.num_rows == 0:
        raise LobseqError("no data rows below the header", file=path, fix="re-export the file")
    return table, skip


def _header_lines(path: Path) -> int:
    """1 when the first line is a header (none of its cells is a number), else 0.

    A data row with one bad cell is not taken for a header: it fails parsing
    and is reported, instead of being skipped silently.
    """
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline()
    for cell in first.split(","):
        try:
            float(cell)
        except ValueError:
            continue
        return 0
    return 1


def _diagnose(path: Path, types: dict[str, pa.DataType], skip: int, shape_hint: str) -> None:
    """Find the first bad line after a parse failure and raise about it (error path only)."""
    names = list(types)
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            text = line.rstrip("\r\n")
            if number <= skip or not text:
                continue
            cells = text.split(",")
            if len(cells) != len(names):
                raise LobseqError(
                    f"expected {len(names)} columns, found {len(cells)}",
                    file=path,
                    row=number,
                    fix=f"{shape_hint}; check the file",
                )
            for name, cell in zip(names, cells, strict=True):
                convert = int if pa.types.is_integer(types[name]) else float
                try:
                    convert(cell)
                except ValueError:
                    kind = "an integer" if convert is int else "a number"
                    raise LobseqError(
                        f"{cell.strip()!r} is not {kind}",
                        file=path,
                        row=number,
                        field=name,
                        fix="correct the cell",
                    ) from None


def _raw_column(table: pa.Table, name: str) -> tuple[np.ndarray, int | None]:
    """One column as numpy (unchecked) and the index of its first missing cell, if any."""
    col = table.column(name)
    null_at = None
    if col.null_count:
        null_at = first_index(col.is_null().to_numpy(zero_copy_only=False))
    return col.to_numpy(), null_at


def _rows(path: Path, skip: int) -> validate.Rows:
    """Rows of a LOBSTER file for the shared checks: errors name its line numbers."""
    return validate.Rows(file=str(path), row_of=lambda i: data_line_number(path, i, skip),
                         fix_data="LOBSTER files have no gaps or negative sizes; re-export the file",
                         fix_order="sort the messages by time or re-export the day")


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
