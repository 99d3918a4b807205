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

from lobseq.errors import LobseqError
from lobseq.sources.segment import Paths, Segment, book_columns, expand_paths, require_nonempty

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
    return [_read_file(stems[stem]) for stem in sorted(stems)]


def _read_file(path: Path) -> Segment:
    require_nonempty(path)
    try:
        values = pd.read_csv(path, sep=r"\s+", header=None, dtype=np.float64, engine="c").to_numpy()
    except (ValueError, pd.errors.ParserError):
        values = None
    if values is None or not _looks_valid(values):
        _diagnose(path)  # raises with the exact row and column
        raise LobseqError("cannot read as an FI-2010 file", file=path, fix=SHAPE_FIX)

    events = values.T  # (n_events, 149)
    data: dict[str, np.ndarray] = {
        "timestamp": np.arange(len(events), dtype=np.int64).view("datetime64[ns]")
    }
    for j, name in enumerate(book_columns(LEVELS)):
        data[name] = events[:, j]
    for j, name in enumerate(FEATURE_NAMES, start=BOOK_ROWS):
        data[name] = events[:, j]
    for j, name in enumerate(LABEL_NAMES, start=144):
        data[name] = events[:, j].astype(np.int8)
    frame = pd.DataFrame(data)  # one consolidated copy, C-contiguous per column block
    return Segment(path.stem, "", "book", frame, (str(path),))


def _looks_valid(values: np.ndarray) -> bool:
    return (
        values.shape[0] == N_ROWS
        and values.shape[1] > 0
        and bool(np.isfinite(values).all())
        and bool(np.isin(values[144:], LABEL_CODES).all())
    )


def _diagnose(path: Path) -> None:
    """Scan the file line by line and raise about its first problem (error path only)."""
    width = None
    row = 0
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            cells = line.split()
            if not cells:
                continue
            row += 1
            if row > N_ROWS:
                raise LobseqError(f"more than {N_ROWS} rows", file=path, row=number, fix=SHAPE_FIX)
            if width is None:
                width = len(cells)
            elif len(cells) != width:
                raise LobseqError(
                    f"row has {len(cells)} columns but the first row has {width}",
                    file=path,
                    row=number,
                    fix=SHAPE_FIX,
                )
            field = _row_name(row)
            for column, cell in enumerate(cells, start=1):
                try:
                    value = float(cell)
                except ValueError:
                    raise LobseqError(
                        f"column {column}: {cell!r} is not a number",
                        file=path,
                        row=number,
                        field=field,
                        fix="correct the cell",
                    ) from None
                if not np.isfinite(value):
                    raise LobseqError(
                        f"column {column}: {cell!r} is not a finite number",
                        file=path,
                        row=number,
                        field=field,
                        fix="FI-2010 files have no gaps; re-download the file",
                    )
                if row > 144 and value not in LABEL_CODES:
                    raise LobseqError(
                        f"column {column}: label {cell!r} is not 1 (up), 2 (stationary) or 3 (down)",
                        file=path,
                        row=number,
                        field=field,
                        fix="re-download the file; labels are 1, 2 or 3",
                    )
    if row != N_ROWS:
        raise LobseqError(f"file has {row} rows, expected {N_ROWS}", file=path, fix=SHAPE_FIX)


def _row_name(row: int) -> str:
    """Canonical column name for 1-based FI-2010 row `row`."""
    if row <= BOOK_ROWS:
        return book_columns(LEVELS)[row - 1]
    if row <= 144:
        return FEATURE_NAMES[row - BOOK_ROWS - 1]
    return LABEL_NAMES[row - 145]
