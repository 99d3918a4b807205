"""Daily (or any) OHLCV bars from CSV or Parquet → one bars `Segment` per symbol.

A file is either one symbol (symbol = file stem) or a long table with a
symbol column. Column names are matched case-insensitively, ignoring spaces
and underscores (`Adj Close`, `adj_close`, `adjclose`); `adj_close` = close
when absent. Within each symbol, dates must strictly increase in file
order: a repeated or earlier date is an error, never silently re-sorted.
Error rows are file line numbers for CSV (header = line 1) and 1-based
table rows for Parquet.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from lobseq.data import validate
from lobseq.data.sources.segment import (
    Paths,
    Segment,
    data_line_number,
    expand_paths,
    first_index,
    require_nonempty,
)
from lobseq.errors import LobseqError

CSV_SUFFIXES = (".csv",)
PARQUET_SUFFIXES = (".parquet", ".pq")
ALIASES = {
    "date": "timestamp",
    "datetime": "timestamp",
    "timestamp": "timestamp",
    "open": "open",
    "high": "high",
    "low": "low",
    "close": "close",
    "adjclose": "adj_close",
    "volume": "volume",
}
NUMERIC = ("open", "high", "low", "close", "adj_close", "volume")
COLUMNS = ("timestamp", *NUMERIC)
COLUMNS_FIX = "bars need Date, Open, High, Low, Close, Volume columns (Adj Close optional)"
T = TypeVar("T")
NAN_TEXT = {"", "nan", "na", "n/a", "null", "none", "-nan", "#n/a"}


def read_bars(paths: Paths, symbol_column: str = "symbol") -> list[Segment]:
    """Read bar files (or folders of them) into one segment per symbol, sorted by symbol.

    Frame columns: `timestamp` (datetime64[ns]), `open, high, low, close,
    adj_close, volume` (float64), chronological.
    """
    return merge_symbols(read_file(path, symbol_column) for path in bar_files(paths))


def bar_files(paths: Paths) -> list[Path]:
    """The files `read_bars` reads, in its order (nothing parsed)."""
    return expand_paths(
        paths,
        lambda name: name.lower().endswith(CSV_SUFFIXES + PARQUET_SUFFIXES),
        "bars",
        "*.csv, *.parquet",
    )


def merge_symbols(per_file: Iterable[list[T]]) -> list[T]:
    """Each file's symbols (objects with `.instrument` and `.files`), consumed in file order,
    as one list sorted by symbol; a symbol that comes from two files is an error."""
    merged: dict[str, T] = {}
    for items in per_file:
        for item in items:
            if item.instrument in merged:
                raise LobseqError(
                    f"symbol {item.instrument!r} also comes from "
                    f"{merged[item.instrument].files[0]}",
                    file=item.files[0],
                    fix="give each symbol one file (or one block of a long table)",
                )
            merged[item.instrument] = item
    return [merged[symbol] for symbol in sorted(merged)]


def read_file(path: Path, symbol_column: str = "symbol") -> list[Segment]:
    """One bar file: one segment per symbol in it (the file stem when it has no symbol column)."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        table, row_of = _read_csv(path)
    elif name.endswith(PARQUET_SUFFIXES):
        table, row_of = _read_parquet(path)
    else:
        raise LobseqError(
            "unsupported file type for bars", file=path, fix="use .csv or .parquet files"
        )
    if table.empty:
        raise LobseqError("no data rows", file=path, fix="export at least one bar")

    columns, symbol = _match_columns(table.columns, symbol_column, path)
    out = pd.DataFrame({"timestamp": _dates(table[columns["timestamp"]], path, row_of)})
    for canon in NUMERIC:
        if canon in columns:
            out[canon] = _numbers(table[columns[canon]], canon, path, row_of)
    if "adj_close" not in out:
        out["adj_close"] = out["close"]
    validate.check_non_negative(out["volume"].to_numpy(), [str(columns["volume"])], _rows(path, row_of))
    out = out[list(COLUMNS)]

    if symbol is None:
        symbols = pd.Series(path.stem, index=table.index)
    else:
        symbols = table[symbol].astype("string").str.strip()
        blank = symbols.isna() | (symbols == "")
        bad = first_index(blank.to_numpy())
        if bad is not None:
            raise LobseqError("missing symbol", file=path, row=row_of(bad), field=symbol)
    _check_order(out["timestamp"], symbols, str(columns["timestamp"]), path, row_of)

    segments = []
    for sym, frame in out.groupby(symbols.to_numpy(), sort=True):
        segments.append(Segment(str(sym), "", "bars", frame.reset_index(drop=True), (str(path),)))
    return segments


def _read_csv(path: Path):
    """All cells as text (converted and checked per column later), one row per data line."""
    require_nonempty(path)
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        header = next(csv.reader(fh), [])
    try:
        table = pacsv.read_csv(
            path,
            convert_options=pacsv.ConvertOptions(
                column_types=dict.fromkeys(header, pa.string()),
                strings_can_be_null=False,
                null_values=[],
            ),
        ).to_pandas()
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        _diagnose_csv(path, len(header))
        raise LobseqError(f"cannot parse as CSV ({exc})", file=path) from None
    return table, lambda i: data_line_number(path, i, 1)


def _diagnose_csv(path: Path, width: int) -> None:
    """Raise about the first row whose cell count differs from the header (error path only)."""
    with open(path, encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        for cells in reader:
            if cells and len(cells) != width:
                raise LobseqError(
                    f"row has {len(cells)} cells but the header has {width}",
                    file=path,
                    row=reader.line_num,
                    fix="every row needs as many cells as the header",
                )


def _read_parquet(path: Path):
    try:
        table = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many types for a bad file
        raise LobseqError(
            f"not a readable Parquet file ({type(exc).__name__})",
            file=path,
            fix="re-export the file as Parquet or CSV",
        ) from None
    table = table.reset_index(drop=isinstance(table.index, pd.RangeIndex))
    return table, lambda i: i + 1


def _match_columns(names, symbol_column: str, path: Path) -> tuple[dict[str, str], str | None]:
    columns: dict[str, str] = {}
    symbol = None
    for name in names:
        text = str(name).strip()
        if text.lower() == symbol_column.lower():
            symbol = name
            continue
        canon = ALIASES.get(re.sub(r"[\s_]+", "", text.lower()))
        if canon is None:
            continue
        if canon in columns:
            raise LobseqError(
                f"columns {columns[canon]!r} and {name!r} both mean {canon}",
                file=path,
                field=str(name),
                fix="keep one of them",
            )
        columns[canon] = name
    for need in ("timestamp", "open", "high", "low", "close", "volume"):
        if need not in columns:
            label = "date" if need == "timestamp" else need
            raise LobseqError(
                f"no {label} column (found {', '.join(map(str, names))})",
                file=path,
                field=label,
                fix=COLUMNS_FIX,
            )
    return columns, symbol


def _dates(column: pd.Series, path: Path, row_of) -> np.ndarray:
    if isinstance(column.dtype, pd.DatetimeTZDtype):
        parsed = column.dt.tz_localize(None)
    elif pd.api.types.is_datetime64_any_dtype(column.dtype):
        parsed = column
    elif pd.api.types.is_integer_dtype(column.dtype):  # 20240102-style dates
        parsed = pd.to_datetime(column.astype(str), format="%Y%m%d", errors="coerce")
    else:
        parsed = pd.to_datetime(column, errors="coerce")
        if isinstance(parsed.dtype, pd.DatetimeTZDtype):
            parsed = parsed.dt.tz_localize(None)
    bad = first_index(parsed.isna().to_numpy())
    if bad is not None:
        raise LobseqError(
            f"{column.iloc[bad]!r} is not a date",
            file=path,
            row=row_of(bad),
            field=str(column.name),
            fix="write dates as YYYY-MM-DD",
        )
    return parsed.to_numpy(dtype="datetime64[ns]")


def _numbers(column: pd.Series, canon: str, path: Path, row_of) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype):
        values = column.to_numpy(dtype=np.float64, na_value=np.nan)
    else:
        values = pd.to_numeric(column, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = first_index(~np.isfinite(values))
    if bad is not None:
        cell = column.iloc[bad]
        text = "" if cell is None else str(cell).strip()
        if np.isnan(values[bad]) and text.lower() not in NAN_TEXT:
            problem = f"{text!r} is not a number"
        else:
            problem = f"missing, NaN or infinite value ({text!r})"
        raise LobseqError(
            problem,
            file=path,
            row=row_of(bad),
            field=str(column.name),
            fix="correct the cell or drop the row",
        )
    return values


def _check_order(dates: pd.Series, symbols: pd.Series, field: str, path: Path, row_of) -> None:
    """Dates must strictly increase per symbol, in file order."""
    previous = dates.groupby(symbols.to_numpy()).shift()  # NaT: a symbol's first date
    validate.check_chronological(validate.as_ns(dates), field, _rows(path, row_of), strict=True,
                                 previous=validate.as_ns(previous), show=_day,
                                 what=lambda i: f"for {symbols.iloc[i]}")


def _rows(path: Path, row_of) -> validate.Rows:
    return validate.Rows(file=str(path), row_of=row_of, fix_data="correct the cell or drop the row",
                         fix_order="one row per date, oldest first")


def _day(ns) -> str:
    when = pd.Timestamp(int(ns))
    return when.strftime("%Y-%m-%d") if when == when.normalize() else str(when)
