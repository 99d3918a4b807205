"""Parsing LOBSTER's CSV files: fixed column types, headers, wrong separators, and
the orderbook read block by block, with one clear error per bad line or cell."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv

from lobseq.data.sources.segment import data_line_number, first_index, require_nonempty
from lobseq.errors import LobseqError

PRICE_SCALE = 10_000.0
ASK_EMPTY = 9_999_999_999.0
BID_EMPTY = -9_999_999_999.0
# What a mis-exported file separates its cells with instead of ',', and how to name it.
OTHER_SEPARATORS = {";": "';'", "\t": "tabs", "|": "'|'", " ": "spaces"}

BOOK_BLOCK_BYTES = 4 << 20  # orderbook parse block: small next to a day, large enough to be fast


class BookColumn:
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


def read_book(
    path: Path, names: list[str], n: int, shape_hint: str
) -> tuple[dict[str, BookColumn], int, int]:
    """Stream the orderbook block by block into `n`-row float64 columns (dollars, empties mapped).

    Parsing in blocks straight into the final arrays keeps memory at one day
    of columns plus a block, instead of a full Arrow table and its copy.
    Returns the columns (raw-cell problems noted, not raised), the number of
    data rows in the file (which may differ from `n`) and the header lines skipped.
    """
    require_nonempty(path)
    skip = header_lines(path, len(names))
    types = dict.fromkeys(names, pa.float64())
    columns = {name: BookColumn(name, n) for name in names}
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
        diagnose(path, types, skip, shape_hint)
        raise LobseqError(f"cannot parse as CSV ({exc})", file=path) from None
    if rows == 0:
        raise LobseqError("no data rows below the header", file=path, fix="re-export the file")
    return columns, rows, skip


def parse_csv(path: Path, types: dict[str, pa.DataType], shape_hint: str) -> tuple[pa.Table, int]:
    """Parse `path` with fixed column types; returns the table and the header lines skipped."""
    require_nonempty(path)
    skip = header_lines(path, len(types))
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(column_names=list(types), skip_rows=skip),
            convert_options=pacsv.ConvertOptions(column_types=types),
        )
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        diagnose(path, types, skip, shape_hint)
        raise LobseqError(f"cannot parse as CSV ({exc})", file=path) from None
    if table.num_rows == 0:
        raise LobseqError("no data rows below the header", file=path, fix="re-export the file")
    return table, skip


def header_lines(path: Path, n_columns: int) -> int:
    """1 when the first line is a header (none of its cells is a number), else 0.

    A data row with one bad cell is not taken for a header: it fails parsing
    and is reported, instead of being skipped silently. A first line whose
    cells are split by another separator than ',' is an error naming it.
    """
    with open(path, encoding="utf-8-sig", errors="replace") as fh:
        first = fh.readline().rstrip("\r\n")
    _check_separator(path, first, n_columns)
    for cell in first.split(","):
        try:
            float(cell)
        except ValueError:
            continue
        return 0
    return 1


def _check_separator(path: Path, first_line: str, n_columns: int) -> None:
    """Raise (row 1) when `first_line` separates its cells with ';', tabs, '|' or spaces, not ','."""
    commas = first_line.count(",")
    if commas == n_columns - 1:
        return
    found = max(OTHER_SEPARATORS, key=first_line.count)  # ties: the first in OTHER_SEPARATORS
    # Spaces only count without any comma: header names may hold spaces.
    if first_line.count(found) > commas and (found != " " or commas == 0):
        raise LobseqError(
            f"cells are separated by {OTHER_SEPARATORS[found]}, not commas",
            file=path,
            row=1,
            fix=f"LOBSTER files are comma-separated: re-export the file with ',' between its "
            f"{n_columns} columns",
        )


def diagnose(path: Path, types: dict[str, pa.DataType], skip: int, shape_hint: str) -> None:
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
