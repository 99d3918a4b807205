"""The `Segment` every reader returns, and the path helpers the readers share."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError

PathLike = str | os.PathLike
Paths = PathLike | Iterable[PathLike]


@dataclass
class Segment:
    """One instrument-day (book) or one symbol's whole history (bars).

    `frame` holds the canonical columns of docs/architecture.md, chronological,
    with a RangeIndex; prices are in dollars.
    """

    instrument: str  # ticker / symbol / FI-2010 file stem
    day: str  # 'YYYY-MM-DD' (LOBSTER day; '' for bars, FI-2010)
    kind: str  # 'book' | 'bars'
    frame: pd.DataFrame
    files: tuple[str, ...]  # source paths (hashed into the manifest)


def book_columns(levels: int) -> list[str]:
    """`ask_price_1, ask_size_1, bid_price_1, bid_size_1, ask_price_2, ...`."""
    return [
        f"{side}_{what}_{i}"
        for i in range(1, levels + 1)
        for side, what in (("ask", "price"), ("ask", "size"), ("bid", "price"), ("bid", "size"))
    ]


def as_path_list(paths: Paths) -> list[Path]:
    """Accept one path or an iterable of paths."""
    if isinstance(paths, (str, os.PathLike)):
        return [Path(paths)]
    out = [Path(p) for p in paths]
    if not out:
        raise LobseqError("no input paths given", fix="pass at least one file or directory")
    return out


def expand_paths(
    paths: Paths, accept: Callable[[str], bool], what: str, looked_for: str
) -> list[Path]:
    """Files named in `paths`, each directory replaced by the files in it whose name `accept`s.

    Explicit files are kept whatever their name (the reader judges them);
    a directory without any accepted file is an error.
    """
    files: list[Path] = []
    for path in as_path_list(paths):
        if path.is_dir():
            inside = sorted(p for p in path.iterdir() if p.is_file() and accept(p.name))
            if not inside:
                raise LobseqError(
                    f"directory holds no {what} files (looked for {looked_for})",
                    file=path,
                    fix=f"point at a folder of {what} files or name the files directly",
                )
            files.extend(inside)
        elif path.is_file():
            files.append(path)
        else:
            raise LobseqError("file not found", file=path, fix="check the path")
    # The same file named twice (directly and via its folder) is read once.
    unique: dict[Path, Path] = {}
    for f in files:
        unique.setdefault(f.resolve(), f)
    return list(unique.values())


def require_nonempty(path: Path) -> None:
    """Raise if `path` holds nothing but whitespace."""
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 16), b""):
            if chunk.strip():
                return
    raise LobseqError("empty file", file=path, fix="re-export the file; it has no data")


def first_index(mask: np.ndarray) -> int | None:
    """Index of the first True in `mask`, or None."""
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def data_line_number(path: Path, index: int, skip: int) -> int:
    """1-based file line of the `index`-th (0-based) data row.

    Data rows are the non-empty lines after the first `skip` lines (the CSV
    parsers drop empty lines); only called on the error path, so a plain
    scan is fine.
    """
    seen = -1
    with open(path, encoding="utf-8", errors="replace") as fh:
        for number, line in enumerate(fh, start=1):
            if number <= skip or not line.rstrip("\r\n"):
                continue
            seen += 1
            if seen == index:
                return number
    return skip + index + 1
