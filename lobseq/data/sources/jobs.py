"""Reading as units of work that can run anywhere: one job per LOBSTER file pair or per file.

    jobs = plan_reads(["data/raw"], "lobster")      # names, pairing, clashes checked; nothing parsed
    segments = [s for job in jobs for s in job.read()]

A `ReadJob` is small and picklable, so an engine can run `job.read()` in another
process (a Ray task) and the readers' checks run there, on the file. The plan is
the readers' own order: LOBSTER by (day, ticker), FI-2010 by file stem, bars by
file; `merge_symbols` then sorts bar symbols and rejects one that two files hold,
exactly as `read_bars` does. LOBSTER and FI-2010 jobs make one segment each.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lobseq.data.sources.segment import Paths, Segment
from lobseq.errors import LobseqError

ONE_SEGMENT_FORMATS = ("lobster", "fi2010")  # one job → one segment, already in the readers' order


@dataclass(frozen=True)
class ReadJob:
    """Read one LOBSTER file pair (args: ticker, day, levels, message, orderbook) or one file
    (fi2010: path; bars: path, symbol column)."""

    format: str
    args: tuple

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(str(a) for a in self.args if isinstance(a, Path))

    def read(self) -> list[Segment]:
        if self.format == "lobster":
            from lobseq.data.sources.lobster import _read_pair

            return [_read_pair(*self.args)]
        if self.format == "fi2010":
            from lobseq.data.sources.fi2010 import read_file

            return [read_file(*self.args)]
        from lobseq.data.sources.bars import read_file

        return read_file(*self.args)


def plan_reads(paths: Paths, format: str, symbol_column: str = "symbol") -> list[ReadJob]:
    """The jobs that read `paths` as `format`, in the reader's order; the checks a reader makes
    before parsing anything (names, pairs, clashes) run now."""
    fmt = str(format).lower()
    if fmt == "lobster":
        from lobseq.data.sources.lobster import _pair_jobs

        return [ReadJob(fmt, job) for job in _pair_jobs(paths)]
    if fmt == "fi2010":
        from lobseq.data.sources.fi2010 import fi2010_files

        return [ReadJob(fmt, (path,)) for path in fi2010_files(paths)]
    if fmt == "bars":
        from lobseq.data.sources.bars import bar_files

        return [ReadJob(fmt, (path, symbol_column)) for path in bar_files(paths)]
    from lobseq.data.sources import FORMATS

    raise LobseqError(f"unknown format {format!r}", field="format",
                      fix=f"use one of: {', '.join(sorted(FORMATS))}")


def read_job(job: ReadJob) -> list[Segment]:
    """`job.read()` as a plain function (what an engine maps over the jobs)."""
    return job.read()
