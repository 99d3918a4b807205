"""Ingest: raw files → features, labels, splits, scaler → a stored dataset.

Each segment (instrument-day) is featurized and labelled on its own, so no
feature, label or window ever reads across an instrument or day boundary.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np
from pydantic import Field, StrictInt, field_validator, model_validator

from lobseq import __version__
from lobseq.config import stage_config
from lobseq.data.segment import PARTS, SegmentWork, segment_work
from lobseq.data.splits import (
    SPLIT_NAMES,
    TRAIN,
    assign_splits,
    check_fractions,
    cut_times_from_fractions,
    min_embargo,
    window_ends,
)
from lobseq.errors import LobseqError
from lobseq.io import sha256_file

if TYPE_CHECKING:  # the heavy modules load when ingest runs, not when the CLI lists options
    from lobseq.data.store import Dataset


@stage_config
class IngestConfig:
    """How raw files become a dataset; checked on construction, before any file is read."""

    format: Literal["lobster", "fi2010", "bars"] = Field(description="Raw file format.")
    window: StrictInt = Field(100, ge=1, description="Sequence length T.")
    horizon: StrictInt = Field(10, ge=1, description="Label horizon k (events for books, days for "
                                                     "bars).")
    threshold: float = Field(0.0, description="Moves within ±threshold (relative) are 'stationary'.")
    label: Literal["point", "smoothed", "provided"] = Field(
        "point", description="'provided' uses FI-2010's own labels.")
    n_classes: Literal[2, 3] = Field(3, alias="classes", description="3: down/stationary/up; "
                                                                     "2: down/up.")
    features: list[str | dict] | None = Field(
        None, description="Feature names or specs [default: the format's default set].")
    fractions: tuple[float, float, float] = Field(
        (0.7, 0.15, 0.15), description="Train, validation, test fractions (chronological).")
    split_dates: tuple[str, ...] | None = Field(
        None, description="VAL_START,TEST_START dates instead of fractions.")
    embargo: StrictInt | None = Field(
        None, description="Rows dropped after each split boundary [default: window + label reach "
                          "- 1].")
    symbol_column: str = Field("symbol", description="Bars: the symbol column.")
    name: str | None = Field(None, description="Dataset name [default: the output folder's name].")
    entry: Literal["next_open", "close", "next"] | None = Field(
        None, description="Execution contract: bars enter at the next open (next_open) or at the "
                          "close (close); books at the next event (next) [default: next_open for "
                          "bars, next for books].")

    @field_validator("split_dates", mode="before")
    @classmethod
    def _dates_as_text(cls, value):  # YAML reads an unquoted 2024-01-03 as a date
        if isinstance(value, (list, tuple)):
            return tuple(v.isoformat() if isinstance(v, datetime.date) else v for v in value)
        return value

    @model_validator(mode="after")
    def _consistent(self):
        if not self.split_dates:
            check_fractions(self.fractions)
        if self.label == "provided" and self.format != "fi2010":
            raise LobseqError("label 'provided' exists only for FI-2010 files", field="label",
                              fix="use point or smoothed")
        need = min_embargo(self.window, self.execution.label_reach)
        if self.embargo is not None and self.embargo < need:
            raise LobseqError(
                f"embargo {self.embargo} is shorter than window + label reach - 1 = {need}; "
                "windows or labels would leak across splits", field="embargo",
                fix="leave it unset or raise it")
        if self.split_dates:
            self.split_cut_times()
        return self

    def split_cut_times(self) -> tuple[int, int]:
        """`split_dates` as (validation start, test start) in ns since the epoch."""
        import pandas as pd

        fix = "use --split-dates VAL_START,TEST_START, e.g. 2024-01-03,2024-01-04"
        dates = tuple(self.split_dates)
        if len(dates) != 2:
            raise LobseqError(f"split dates must be two dates, got {len(dates)}: {dates}",
                              field="split_dates", fix=fix)
        try:
            cuts = tuple(int(pd.Timestamp(d).value) for d in dates)
        except (ValueError, TypeError) as e:
            raise LobseqError(f"bad split date: {e}", field="split_dates", fix=fix) from None
        if not cuts[0] < cuts[1]:
            raise LobseqError(f"the validation start {dates[0]} must come before the test "
                              f"start {dates[1]}", field="split_dates", fix=fix)
        return cuts

    @property
    def execution(self):
        """The execution contract the labels follow (`lobseq.data.execution`)."""
        from lobseq.data.execution import execution_for

        return execution_for(self.format, self.entry, self.horizon, self.label)

    @property
    def effective_embargo(self) -> int:
        if self.embargo is not None:
            return self.embargo
        return min_embargo(self.window, self.execution.label_reach)


def _concatenate(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate, freeing each part once copied (peak: the result plus one part)."""
    if len(parts) == 1:  # one segment needs no concatenation, nor a second copy
        return parts.pop()
    out = np.empty((sum(len(p) for p in parts), *parts[0].shape[1:]), dtype=parts[0].dtype)
    start = 0
    while parts:
        part = parts.pop(0)
        out[start : start + len(part)] = part
        start += len(part)
        del part
    return out


# `mapper(fn, items)` runs fn on each item and yields the results in input order: the builtin
# `map` (lazy, in this process) or an engine's `imap` (e.g. one Ray task per item).
Mapper = Callable[[Callable, Iterable], Iterable]


def build_arrays(segments: Iterable, cfg: IngestConfig, log: Callable[[str], None] = print,
                 mapper: Mapper = map):
    """Featurize and label each segment (`segment_work`, through `mapper`); concatenate in order.

    Returns (arrays, feature names, per-segment info, `ServingRecorder`), the
    recorder holding the resolved feature specs (`.specs`) and the serving record.

    `segments` are `Segment`s or `ReadJob`s of one segment each, and may be lazy
    (`lobseq.sources.lobster.iter_lobster`): with the builtin `map` each segment's
    frame is dropped once used, so memory holds one raw day plus the growing output.
    """
    return _gather(segments, cfg, log, mapper)[:4]


def _gather(segments: Iterable, cfg: IngestConfig, log: Callable[[str], None], mapper: Mapper):
    """`build_arrays`, plus each segment's source files and the first segment's kind."""
    parts: dict[str, list[np.ndarray]] = {k: [] for k in PARTS}
    recorder, kind, seg_info, files = None, None, [], []
    results = mapper(segment_work, (SegmentWork(i, seg, cfg) for i, seg in enumerate(segments)))
    try:
        for res in results:
            if recorder is None:
                recorder, kind = res.recorder, res.kind
            elif res.recorder.names != recorder.names:
                raise LobseqError("features differ from the first file's (different level count?)",
                                  file=res.files[0],
                                  fix="ingest files with the same number of levels together")
            else:
                recorder.merge(res.recorder)
            for key, value in res.arrays.items():
                parts[key].append(value)
            seg_info.append(res.info)
            files.append(res.files)
            name = " ".join(filter(None, (res.info["instrument"], res.info["day"])))  # bars: no day
            log(f"  {name}: {res.info['rows']:,} rows, {res.info['labelled']:,} labelled")
            del res
    finally:  # an engine's iterator cancels its outstanding tasks when closed early
        getattr(results, "close", lambda: None)()
    arrays = {k: _concatenate(v) for k, v in parts.items()}
    if not (arrays["labels"] >= 0).any():
        raise LobseqError(
            f"horizon {cfg.horizon} leaves no labelled rows",
            file=files[0][0], fix="use a shorter --horizon or longer files")
    return arrays, recorder.names, seg_info, recorder, files, kind


def _open_sources(sources: Sequence[str | Path], cfg: IngestConfig, mapper: Mapper = map):
    """(segments or read jobs, their count): LOBSTER days and FI-2010 files are read inside
    `segment_work` (one job each); bar files are read first (`mapper`, one job per file), since a
    file holds many symbols and the symbols are sorted across files."""
    from lobseq.data.sources.bars import merge_symbols
    from lobseq.data.sources.jobs import ONE_SEGMENT_FORMATS, plan_reads, read_job

    paths = [str(s) for s in sources]
    jobs = plan_reads(paths, cfg.format, symbol_column=cfg.symbol_column)
    if str(cfg.format).lower() in ONE_SEGMENT_FORMATS:
        segments = jobs
    else:
        per_file = mapper(read_job, jobs)
        try:
            segments = merge_symbols(per_file)
        finally:
            getattr(per_file, "close", lambda: None)()
    if not len(segments):
        raise LobseqError("no input files found", file=", ".join(map(str, sources)),
                          fix="pass the files or a folder that holds them")
    return segments


def _split(arrays: dict, cfg: IngestConfig) -> tuple[np.ndarray, dict, tuple[int, int]]:
    """(split code per row, window ends per split, cut times); train and val need windows."""
    time_key = arrays["timestamps"]
    cuts = cfg.split_cut_times() if cfg.split_dates else cut_times_from_fractions(time_key, cfg.fractions)
    split = assign_splits(time_key, arrays["segment"], cut_times=cuts, embargo=cfg.effective_embargo)
    ends = window_ends(split, arrays["segment"], arrays["usable"], arrays["labels"] >= 0, cfg.window)
    for name in ("train", "val"):
        if len(ends[name]) == 0:
            raise LobseqError(
                f"the {name} part has no complete window (window {cfg.window}, horizon {cfg.horizon}, "
                f"embargo {cfg.effective_embargo})", field="fractions",
                fix="use more data, a shorter window, or other split fractions/dates")
    return split, ends, cuts


def _class_balance(labels: np.ndarray, ends: dict, n_classes: int) -> dict:
    balance = {}
    for name in SPLIT_NAMES:
        y = labels[ends[name]]
        counts = np.bincount(y, minlength=n_classes) if len(y) else np.zeros(n_classes, int)
        balance[name] = [int(c) for c in counts]
    return balance


def ingest(sources: Sequence[str | Path], out: str | Path, cfg: IngestConfig,
           log: Callable[[str], None] = print, mapper: Mapper = map) -> Dataset:
    """Read `sources`, build the dataset and write it atomically to `out`.

    `mapper` runs the per-segment work (read, validate, features, labels) and
    yields the results in segment order: the builtin `map` runs it here, one
    segment after another; an engine's `imap` runs one task per segment
    (`lobseq.engine`). The driver then splits, fits the scaler and writes, so
    every mapper gives the same bytes. Nothing is written when any segment fails.
    """
    from lobseq.data.scaler import StandardScaler
    from lobseq.data.serving_record import KEY as SERVING_KEY
    from lobseq.data.store import load_dataset, write_dataset

    cfg.validate()
    segments = _open_sources(sources, cfg, mapper)
    log(f"Reading {len(segments)} segment(s) from {len(sources)} source(s)")
    start = time.perf_counter()
    arrays, names, seg_info, recorder, files, kind = _gather(segments, cfg, log, mapper)
    del segments
    log(f"Features and labels for {len(arrays['labels']):,} rows in {time.perf_counter() - start:.1f} s;"
        " splitting, scaling and writing")
    split, ends, cuts = _split(arrays, cfg)
    train_rows = np.flatnonzero((split == TRAIN) & arrays["usable"])
    scaler = StandardScaler().fit(arrays["features"], rows=train_rows)
    manifest = {
        "name": cfg.name or Path(out).name,
        "lobseq_version": __version__,
        "format": cfg.format,
        "kind": kind,
        "sources": sorted(
            ({"file": Path(f).name, "sha256": sha256_file(f)} for pair in files for f in pair),
            key=lambda d: d["file"]),
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "embargo": cfg.effective_embargo,
        "execution": cfg.execution.record(),
        "feature_names": names,
        "feature_specs": recorder.specs,
        "n_rows": int(len(split)),
        # Rows no window may contain: non-finite features (warm-up, empty book levels) or halts.
        "unusable_rows": int((~arrays["usable"]).sum()),
        "segments": seg_info,
        "windows": {name: int(len(ends[name])) for name in SPLIT_NAMES},
        "class_balance": _class_balance(arrays["labels"], ends, cfg.n_classes),
        "split_times": [int(c) for c in cuts],
        SERVING_KEY: recorder.record(),
    }
    arrays.pop("usable")
    arrays["split"] = split
    write_dataset(out, arrays, ends, scaler, manifest)
    return load_dataset(out)


def summary(ds: Dataset) -> str:
    from lobseq.data.labels import class_names

    m = ds.manifest
    names = class_names(ds.n_classes)
    lines = [
        f"Dataset {m['name']}  ({ds.path})",
        f"  rows {m['n_rows']:,}   features {len(m['feature_names'])}   window {ds.window}   "
        f"horizon {ds.horizon}   embargo {m['embargo']}",
        f"  manifest sha256 {ds.hash[:16]}…",
        f"  execution: {m['execution']['describe']}",
    ]
    if m.get("unusable_rows"):
        why = ("feature warm-up or undefined values" if m.get("kind") == "bars"
               else "feature warm-up, empty book levels or halts")
        lines.append(f"  {m['unusable_rows']:,} rows unusable in windows ({why})")
    lines.append("  windows and class balance:")
    for split in SPLIT_NAMES:
        counts = m["class_balance"][split]
        total = sum(counts) or 1
        bal = "  ".join(f"{n} {c:,} ({c / total:.1%})" for n, c in zip(names, counts, strict=True))
        lines.append(f"    {split:<5} {m['windows'][split]:>9,}   {bal}")
    return "\n".join(lines)
