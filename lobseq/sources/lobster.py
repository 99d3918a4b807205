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
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lobseq.errors import LobseqError
from lobseq.sources.segment import (
    Paths,
    Segment,
    book_columns,
    data_line_number,
    expand_paths,
    first_index,
    require_nonempty,
)

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

    segments = [_read_pair(*job) for job in sorted(jobs, key=lambda j: (j[1], j[0]))]
    return segments


def _read_pair(ticker: str, day: str, levels: int, message: Path, orderbook: Path) -> Segment:
    if levels < 1:
        raise LobseqError(
            "level count in the file name must be at least 1", file=message, fix=NAME_FIX
        )
    try:
        midnight = np.datetime64(day, "ns")
    except ValueError:
        raise LobseqError(
            f"file name has an invalid date {day!r}", file=message, fix=NAME_FIX
        ) from None

    names = book_columns(levels)
    msg, msg_skip = _parse(message, MESSAGE_TYPES, "a LOBSTER message file has 6 columns")
    book, book_skip = _parse(
        orderbook,
        dict.fromkeys(names, pa.float64()),
        f"the name says {levels} level(s), so 4 x {levels} = {4 * levels} columns",
    )
    if msg.num_rows != book.num_rows:
        raise LobseqError(
            f"orderbook has {book.num_rows} rows but its message file {message.name} has "
            f"{msg.num_rows}",
            file=orderbook,
            fix="re-export both files together; row i of the orderbook is the book after message i",
        )

    cols = {name: _column(msg, name, message, msg_skip) for name in MESSAGE_TYPES}
    time = cols["time"]
    bad = first_index(time[1:] < time[:-1])
    if bad is not None:
        raise LobseqError(
            f"time goes backwards ({float(time[bad + 1])} after {float(time[bad])})",
            file=message,
            row=data_line_number(message, bad + 1, msg_skip),
            field="time",
            fix="sort the messages by time or re-export the day",
        )
    _check_codes(cols["event_type"], EVENT_TYPES, "event_type", message, msg_skip)
    _check_codes(cols["direction"], (-1, 1), "direction", message, msg_skip)

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
    for i in range(1, levels + 1):
        for side, empty in (("ask", ASK_EMPTY), ("bid", BID_EMPTY)):
            raw = _column(book, f"{side}_price_{i}", orderbook, book_skip)
            size = _column(book, f"{side}_size_{i}", orderbook, book_skip)
            missing = raw == empty
            data[f"{side}_price_{i}"] = np.where(missing, np.nan, raw / PRICE_SCALE)
            data[f"{side}_size_{i}"] = np.where(missing, 0.0, size)

    crossed = first_index(data["ask_price_1"] < data["bid_price_1"])
    if crossed is not None:
        raise LobseqError(
            f"crossed book: best ask {data['ask_price_1'][crossed]} < best bid "
            f"{data['bid_price_1'][crossed]}",
            file=orderbook,
            row=data_line_number(orderbook, crossed, book_skip),
            field="ask_price_1",
            fix="check the export; a LOBSTER book is never crossed",
        )

    frame = pd.DataFrame(data, columns=["timestamp", *MESSAGE_TYPES, "halted", *names], copy=False)
    return Segment(ticker, day, "book", frame, (str(message), str(orderbook)))


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


def _column(table: pa.Table, name: str, path: Path, skip: int) -> np.ndarray:
    """One column as numpy; raises on missing, NaN or infinite cells."""
    col = table.column(name)
    if col.null_count:
        bad = first_index(col.is_null().to_numpy(zero_copy_only=False))
        raise LobseqError(
            "missing or NaN value",
            file=path,
            row=data_line_number(path, bad, skip),
            field=name,
            fix="LOBSTER files have no gaps; re-export the file",
        )
    values = col.to_numpy()
    if values.dtype.kind == "f":
        bad = first_index(~np.isfinite(values))
        if bad is not None:
            raise LobseqError(
                f"value {float(values[bad])} is not a finite number",
                file=path,
                row=data_line_number(path, bad, skip),
                field=name,
                fix="LOBSTER files have no gaps; re-export the file",
            )
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
