"""Readers: raw LOBSTER, FI-2010 and bar files → `list[Segment]` (see docs/architecture.md)."""

from __future__ import annotations

from collections.abc import Callable

from lobseq.data.sources.bars import read_bars
from lobseq.data.sources.fi2010 import read_fi2010
from lobseq.data.sources.lobster import read_lobster
from lobseq.data.sources.segment import Paths, Segment
from lobseq.errors import LobseqError

FORMATS: dict[str, Callable[[Paths], list[Segment]]] = {
    "lobster": read_lobster,
    "fi2010": read_fi2010,
    "bars": read_bars,
}


def read_sources(paths: Paths, format: str) -> list[Segment]:
    """Read `paths` with the reader for `format` (one of `FORMATS`)."""
    reader = FORMATS.get(str(format).lower())
    if reader is None:
        raise LobseqError(
            f"unknown format {format!r}",
            field="format",
            fix=f"use one of: {', '.join(sorted(FORMATS))}",
        )
    return reader(paths)


__all__ = ["FORMATS", "Segment", "read_bars", "read_fi2010", "read_lobster", "read_sources"]
