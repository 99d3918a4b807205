"""FI-2010 benchmark text files → one book `Segment` per file.

Each file is 149 whitespace-separated rows of floats and one COLUMN per
event. Rows 1-40: the 10-level book, per level ask price, ask volume, bid
price, bid volume; rows 41-144: the dataset's other features; rows 145-149:
labels for horizons 10, 20, 30, 50, 100 events (1 up, 2 stationary, 3 down).

The files are normalized (z-score, min-max or decimal precision), so book
values are not dollars and may be negative: no crossed-book check here.
`timestamp` is synthetic, one ns per event from 1970-01-01.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.data.sources.segment import (
    Paths,
    Segment,
    book_columns,
    expand_paths,
    first_index,
    require_nonempty,
)
from lobseq.errors import LobseqError

N_ROWS = 149
LEVELS = 10
BOOK_ROWS = 4 * LEVELS  # rows 1-40
FEATURE_NAMES = [f"fi_{i:03d}" for i in range(BOOK_ROWS + 1, 145)]  # fi_041..fi_144
HORIZONS = (10, 20, 30, 50, 100)
LABEL_NAMES = [f"label_h{h}" for h in HORIZONS]
LABEL_CODES = (1.0, 2.0, 3.0)
SHAPE_FIX = "an FI-2010 file has 149 rows (144 features + 5 labels), one column per event"


def read_fi2010(paths: Paths) -> list[Segment]:
    """Read FI-2010 `.txt` files (or folders of them): one segment per file, sorted by stem."""
    return [read_file(path) for path in fi2010_files(paths)]


def fi2010_files(paths: Paths) -> list[Path]:
    """The files `read_fi2010` reads, in its order (stems checked for clashes, nothing parsed)."""
    files = expand_paths(paths, lambda name: name.lower().endswith(".txt"), "FI-2010", "*.txt")
    stems: dict[str, Path] = {}
    for path in files:
        if path.stem in stems:
            raise LobseqError(
                f"two files with the same name stem (also {stems[path.stem]})",
                file=path,
                fix="rename one; the stem names the instrument",
            )
        stems[path.stem] = path
    return [stems[stem] for stem in sorted(stems)]


def read_file(path: Path) -> Segment:
    """One FI-2010 file as a book segment."""
    require_nonempty(path)
    matrix = _parse(path)  # (149, n_events)
    n_events = matrix.shape[1]
    # One contiguous float block for the 144 feature rows, then the int8 labels.
    frame = pd.DataFrame(
        np.ascontiguousarray(matrix[:144].T), columns=book_columns(LEVELS) + FEATURE_NAMES
    )
    frame.insert(0, "timestamp", np.arange(n_events, dtype=np.int64).view("datetime64[ns]"))
    for j, name in enumerate(LABEL_NAMES, start=144):
        frame[name] = matrix[j].astype(np.int8)
    return Segment(path.stem, "", "book", frame, (str(path),))


def _parse(path: Path) -> np.ndarray:
    """The file as a (149, n_events) float64 matrix; raises about the first bad line.

    One Python step per file row (149 of them), each row converted in C.
    """
    rows: list[np.ndarray] = []
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            cells = line.split()
            if not cells:
                continue
            row = len(rows) + 1
            if row > N_ROWS:
                raise LobseqError(f"more than {N_ROWS} rows", file=path, row=number, fix=SHAPE_FIX)
            if rows and len(cells) != len(rows[0]):
                raise LobseqError(
                    f"row has {len(cells)} columns but the first row has {len(rows[0])}",
                    file=path,
                    row=number,
                    fix=SHAPE_FIX,
                )
            rows.append(_parse_row(cells, path, number, _row_name(row), is_label=row > 144))
    if len(rows) != N_ROWS:
        raise LobseqError(f"file has {len(rows)} rows, expected {N_ROWS}", file=path, fix=SHAPE_FIX)
    return np.vstack(rows)


def _parse_row(cells: list[str], path: Path, number: int, field: str, is_label: bool) -> np.ndarray:
    try:
        values = np.array(cells, dtype=np.float64)
    except ValueError:
        for column, cell in enumerate(cells, start=1):
            try:
                float(cell)
            except ValueError:
                raise LobseqError(
                    f"column {column}: {cell!r} is not a number",
                    file=path,
                    row=number,
                    field=field,
                    fix="correct the cell",
                ) from None
        raise
    bad = first_index(~np.isfinite(values))
    if bad is not None:
        raise LobseqError(
            f"column {bad + 1}: {cells[bad]!r} is not a finite number",
            file=path,
            row=number,
            field=field,
            fix="FI-2010 files have no gaps; re-download the file",
        )
    if is_label:
        bad = first_index(~np.isin(values, LABEL_CODES))
        if bad is not None:
            raise LobseqError(
                f"column {bad + 1}: label {cells[bad]!r} is not 1 (up), 2 (stationary) or 3 (down)",
                file=path,
                row=number,
                field=field,
                fix="re-download the file; labels are 1, 2 or 3",
            )
    return values


def _row_name(row: int) -> str:
    """Canonical column name for 1-based FI-2010 row `row`."""
    if row <= BOOK_ROWS:
        return book_columns(LEVELS)[row - 1]
    if row <= 144:
        return FEATURE_NAMES[row - BOOK_ROWS - 1]
    return LABEL_NAMES[row - 145]
