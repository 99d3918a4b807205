"""The manifest's serving record: what a model needs to turn raw rows into its inputs.

Ingest knows all of it while it builds the features, so it writes it down
(`manifest["serving"]`) instead of serving guessing it later:

    kind            "book" | "bars"
    format          the source format ("lobster", "fi2010", "bars")
    levels          book levels of the source files (None for bars)
    instruments     the instruments (tickers, symbols) in the dataset, sorted
    input_columns   the raw canonical columns the features read, in frame order
    optional_columns  canonical columns used when present (timestamp, halted)
    warmup_rows     rows of history the slowest feature needs before its first value
    features        the resolved feature specs (defaults filled in)
    row_checks      the `lobseq.data.validate` rules the source rows passed
    window_end      the window-end rule (`lobseq.data.windows.complete_windows`)

The input columns are the columns the feature functions actually read on
the first segment (recorded while ingest computes them; book columns come
in whole levels 1..L, as in every canonical book frame), checked by
recomputing a prefix of that segment from those columns alone. The warm-up
is measured on the longest stretch of the first segment whose input values
are all finite (an empty book level makes NaN features that are no warm-up);
a feature that never turns finite there falls back to the earliest finite
row seen in any segment, which can only overstate it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.data.validate import ROW_CHECKS
from lobseq.data.windows import WINDOW_END_RULE
from lobseq.errors import LobseqError

KEY = "serving"
BOOK_COLUMN = re.compile(r"(ask|bid)_(price|size)_(\d+)")
OPTIONAL_COLUMNS = ("timestamp", "halted")  # used when present, never required
_CHECK_ROWS = 2_000  # prefix of the first segment recomputed from the recorded columns
_RUN_ROWS = 50_000  # at most this many clean rows are featurized again to measure the warm-up


class _ReadColumns:
    """A frame stand-in that notes which columns are read (`frame[name]`); else the frame."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self._frame = frame
        self.read: set[str] = set()

    def __getitem__(self, key):
        for name in [key] if isinstance(key, str) else list(key):
            self.read.add(name)
        return self._frame[key]

    def __len__(self) -> int:
        return len(self._frame)

    def __getattr__(self, name: str):
        return getattr(self._frame, name)


class ServingRecorder:
    """Collects the serving record while ingest featurizes segment after segment."""

    def __init__(self, fmt: str, record: bool = True) -> None:
        self.format = str(fmt).lower()
        self.record_first = record  # False: only names, instruments and first finite rows (`merge`)
        self.kind: str | None = None
        self.levels: int | None = None
        self.specs: list[dict] = []
        self.names: list[str] | None = None
        self.input_columns: list[str] = []
        self.optional_columns: list[str] = []
        self.instruments: set[str] = set()
        self._first_finite: np.ndarray | None = None
        self._clean_warmup: np.ndarray | None = None

    def compute(self, seg, specs: Sequence, feats) -> tuple[np.ndarray, list[str]]:
        """`feats.compute_features` on `seg.frame`; the first segment's column reads are noted."""
        frame = seg.frame
        self.instruments.add(seg.instrument)
        if self.names is not None or not self.record_first:
            x, names = feats.compute_features(frame, specs, seg.kind)
            self.names = self.names or names
            return x, names
        probe = _ReadColumns(frame)
        x, names = feats.compute_features(probe, specs, seg.kind)
        self.kind, self.names = seg.kind, names
        self.specs = [{"name": f.name, **p} for f, p in
                      (feats.resolve_spec(sp, seg.kind) for sp in specs)]
        self.levels = sum(1 for c in frame.columns if c.startswith("ask_price_")) or None
        read = probe.read | _whole_levels(probe.read)
        self.input_columns = [c for c in frame.columns if c in read and c not in OPTIONAL_COLUMNS]
        self.optional_columns = [c for c in OPTIONAL_COLUMNS if c in frame.columns]
        self._check_columns(frame, x, feats)
        self._clean_warmup = self._warmup_on_clean_rows(frame, feats)
        return x, names

    def _check_columns(self, frame: pd.DataFrame, x: np.ndarray, feats) -> None:
        rows = min(len(frame), _CHECK_ROWS)
        part = frame[self.input_columns].iloc[:rows]
        try:
            again, _ = feats.compute_features(part, self.specs, self.kind, names=self.names)
        except (KeyError, LobseqError) as e:
            raise RuntimeError(f"a feature reads columns other than through frame[name] "
                               f"({e}); the serving record cannot list them") from None
        if not np.array_equal(again, x[:rows], equal_nan=True):
            raise RuntimeError("features recomputed from the recorded input columns differ: "
                               "a feature reads a column other than through frame[name]")

    def _warmup_on_clean_rows(self, frame: pd.DataFrame, feats) -> np.ndarray:
        """Each feature column's warm-up measured on the longest stretch of rows whose inputs
        are all finite (empty book levels make NaN features that are not warm-up);
        `_RUN_ROWS` where the stretch is too short to tell."""
        clean = np.ones(len(frame), dtype=bool)
        for col in self.input_columns:
            values = frame[col].to_numpy()
            if values.dtype.kind == "f":
                clean &= np.isfinite(values)
        start, length = _longest_run(clean)
        part = frame[self.input_columns].iloc[start : start + min(length, _RUN_ROWS)]
        if len(part) == 0:
            return np.full(len(self.names), _RUN_ROWS, dtype=np.int64)
        x, _ = feats.compute_features(part, self.specs, self.kind, names=self.names)
        first = _first_finite(x)
        first[first >= len(part)] = _RUN_ROWS
        return first

    def observe(self, x: np.ndarray) -> None:
        """Note each feature column's first finite row in this segment (for the warm-up)."""
        first = _first_finite(x)
        self._first_finite = first if self._first_finite is None else np.minimum(
            self._first_finite, first)

    def merge(self, other: ServingRecorder) -> None:
        """Add what a recorder of later segments saw (in another process): their instruments and
        first finite rows. Their feature names must equal these (the caller checks)."""
        self.instruments |= other.instruments
        if other._first_finite is not None:
            self._first_finite = other._first_finite if self._first_finite is None else \
                np.minimum(self._first_finite, other._first_finite)

    def record(self) -> dict:
        """The manifest's serving record (see the module docstring)."""
        # Exact on clean rows; else the earliest finite row any segment had (an upper bound).
        warmup = 0
        if self._first_finite is not None:
            per_column = np.where(self._clean_warmup < _RUN_ROWS, self._clean_warmup,
                                  self._first_finite)
            warmup = int(per_column.max())
        return {
            "kind": self.kind,
            "format": self.format,
            "levels": self.levels,
            "instruments": sorted(self.instruments),
            "input_columns": self.input_columns,
            "optional_columns": self.optional_columns,
            "warmup_rows": warmup,
            "features": self.specs,
            "row_checks": list(ROW_CHECKS.get(self.format, ("finite",))),
            "window_end": WINDOW_END_RULE,
        }


def _whole_levels(read: set[str]) -> set[str]:
    """A canonical book holds whole levels 1..L (features check that): reading any column of
    level i needs all four columns of levels 1..i."""
    levels = [int(m[3]) for m in map(BOOK_COLUMN.fullmatch, read) if m]
    return {f"{side}_{what}_{i}" for i in range(1, max(levels, default=0) + 1)
            for side in ("ask", "bid") for what in ("price", "size")}


def _first_finite(x: np.ndarray, chunk_rows: int = 4_096) -> np.ndarray:
    """int64 (F,): each column's first finite row (len(x) when it has none), in row chunks."""
    n, width = x.shape
    out = np.full(width, n, dtype=np.int64)
    open_ = np.ones(width, dtype=bool)
    for start in range(0, n, chunk_rows):
        finite = np.isfinite(x[start : start + chunk_rows][:, open_])
        hit = finite.any(axis=0)
        cols = np.flatnonzero(open_)[hit]
        out[cols] = start + finite[:, hit].argmax(axis=0)
        open_[cols] = False
        if not open_.any():
            break
    return out


def _longest_run(mask: np.ndarray) -> tuple[int, int]:
    """(start, length) of the longest stretch of True in `mask` ((0, 0) when none)."""
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
    if not len(starts):
        return 0, 0
    k = int(np.argmax(ends - starts))
    return int(starts[k]), int(ends[k] - starts[k])


def serving_record(manifest: dict, path: str | Path | None = None) -> dict:
    """The dataset's serving record, or a clear error for a dataset ingested before it existed."""
    record = manifest.get(KEY)
    if not isinstance(record, dict):
        raise LobseqError("the dataset has no serving record (it was ingested by an older lobseq)",
                          file=path, field=KEY,
                          fix="re-ingest it with `lobseq ingest` (same files and options), then train")
    return record
