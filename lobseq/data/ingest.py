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
from typing import Literal

import numpy as np
from pydantic import Field, StrictInt, field_validator, model_validator

from lobseq import __version__
from lobseq.config import stage_config
from lobseq.errors import LobseqError
from lobseq.io import sha256_file
from lobseq.data.scaler import StandardScaler
from lobseq.data.splits import SPLIT_NAMES, TRAIN, assign_splits, check_fractions, cut_times_from_fractions, min_embargo, window_ends

from lobseq.data.store import Dataset, load_dataset, write_dataset


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
        None, description="Rows dropped after each split boundary [default: window + horizon - 1].")
    symbol_column: str = Field("symbol", description="Bars: the symbol column.")
    name: str | None = Field(None, description="Dataset name [default: the output folder's name].")

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
        if self.embargo is not None and self.embargo < min_embargo(self.window, self.horizon):
            raise LobseqError(
                f"embargo {self.embargo} is shorter than window + horizon - 1 = "
                f"{min_embargo(self.window, self.horizon)}; windows or labels would leak across splits",
                field="embargo", fix="leave it unset or raise it")
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
    def effective_embargo(self) -> int:
        return self.embargo if self.embargo is not None else min_embargo(self.window, self.horizon)


def _labels_for(segment, cfg: IngestConfig, mid: np.ndarray) -> np.ndarray:
    from lobseq.data import labels

    if cfg.label == "provided":
        lab = labels.fi2010_labels(segment.frame, cfg.horizon)
        if cfg.n_classes == 2:  # stationary has no 2-class meaning: unlabelled
            lab = np.where(lab == 1, -1, np.where(lab == 2, 1, lab)).astype(np.int8)
        return lab
    return labels.direction_labels(mid, cfg.horizon, cfg.threshold, cfg.label, cfg.n_classes)


def _book_prices(frame, kind: str, mid: np.ndarray) -> np.ndarray:
    if kind == "book":
        return np.column_stack([mid, frame["bid_price_1"].to_numpy(float),
                                frame["ask_price_1"].to_numpy(float)])
    return np.column_stack([mid, mid, mid])


def _finite_rows(x: np.ndarray, chunk_rows: int = 65_536) -> np.ndarray:
    """Rows of `x` whose features are all finite, in row chunks (no (n, F) bool temporary)."""
    out = np.empty(len(x), dtype=bool)
    for start in range(0, len(x), chunk_rows):
        out[start : start + chunk_rows] = np.isfinite(x[start : start + chunk_rows]).all(axis=1)
    return out


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


def build_arrays(segments: Iterable, cfg: IngestConfig, log: Callable[[str], None] = print):
    """Featurize and label each segment; concatenate.

    Returns (arrays, feature names, per-segment info, resolved feature specs).

    `segments` may be lazy (`lobseq.sources.lobster.iter_lobster`): each
    segment's frame is dropped once used, so memory holds one raw day plus
    the growing output.
    """
    from lobseq.data import features as feats
    from lobseq.data import labels

    parts: dict[str, list[np.ndarray]] = {k: [] for k in
                                          ("features", "labels", "returns", "prices",
                                           "timestamps", "segment", "usable")}
    names: list[str] | None = None
    resolved: list[dict] = []
    seg_info = []
    first_file = None
    for i, seg in enumerate(segments):
        if first_file is None:
            first_file = seg.files[0]
        frame = seg.frame
        n = len(frame)
        if n < cfg.window:
            raise LobseqError(
                f"{n} rows is too short for one window of {cfg.window}",
                file=seg.files[0], fix="use a shorter --window or more data")
        specs = cfg.features
        if specs is None:
            levels = sum(1 for c in frame.columns if c.startswith("ask_price_")) or None
            specs = feats.default_features(seg.kind, levels, messages="event_type" in frame.columns)
        x, seg_names = feats.compute_features(frame, specs, seg.kind)
        if names is None:
            names = seg_names
            # Full specs (defaults filled in): what a bundled model recomputes from raw rows.
            resolved = [{"name": f.name, **p} for f, p in
                        (feats.resolve_spec(sp, seg.kind) for sp in specs)]
        elif seg_names != names:
            raise LobseqError("features differ from the first file's (different level count?)",
                              file=seg.files[0], fix="ingest files with the same number of levels together")
        mid = feats.mid_price(frame)
        lab = _labels_for(seg, cfg, mid)
        ret = labels.forward_returns(mid, cfg.horizon)
        usable = _finite_rows(x)
        if "halted" in frame.columns:  # no window may include a halted book
            usable &= ~frame["halted"].to_numpy(bool)
        parts["features"].append(x)
        parts["labels"].append(lab.astype(np.int8))
        parts["returns"].append(ret.astype(np.float32))
        parts["prices"].append(_book_prices(frame, seg.kind, mid).astype(np.float64))
        parts["timestamps"].append(frame["timestamp"].to_numpy("datetime64[ns]").astype(np.int64))
        parts["segment"].append(np.full(n, i, dtype=np.int32))
        parts["usable"].append(usable)
        seg_info.append({"instrument": seg.instrument, "day": seg.day, "rows": n,
                         "labelled": int((lab >= 0).sum())})
        log(f"  {seg.instrument} {seg.day or ''}: {n:,} rows, {int((lab >= 0).sum()):,} labelled".rstrip())
        del frame, x, mid, lab, ret, usable
        seg.frame = None  # the raw frame is the largest object: let it go as soon as used
        del seg
    arrays = {k: _concatenate(v) for k, v in parts.items()}
    if not (arrays["labels"] >= 0).any():
        raise LobseqError(
            f"horizon {cfg.horizon} leaves no labelled rows",
            file=first_file, fix="use a shorter --horizon or longer files")
    return arrays, names, seg_info, resolved


def ingest(sources: Sequence[str | Path], out: str | Path, cfg: IngestConfig,
           log: Callable[[str], None] = print) -> Dataset:
    """Read `sources`, build the dataset and write it atomically to `out`."""
    from lobseq.data.sources import read_bars, read_sources
    from lobseq.data.sources.lobster import SegmentStream, iter_lobster

    cfg.validate()
    paths = [str(s) for s in sources]
    if cfg.format == "bars":
        segments = read_bars(paths, symbol_column=cfg.symbol_column)
    elif str(cfg.format).lower() == "lobster":
        segments = iter_lobster(paths)  # names checked now, one day parsed at a time
    else:
        segments = read_sources(paths, cfg.format)
    if not len(segments):
        raise LobseqError("no input files found", file=", ".join(map(str, sources)),
                          fix="pass the files or a folder that holds them")
    # What the manifest needs from the segments, kept apart from their frames.
    kind = "book" if isinstance(segments, SegmentStream) else segments[0].kind
    files = segments.files if isinstance(segments, SegmentStream) else [seg.files for seg in segments]
    log(f"Reading {len(segments)} segment(s) from {len(sources)} source(s)")
    start = time.perf_counter()
    arrays, names, seg_info, specs = build_arrays(segments, cfg, log)
    del segments
    log(f"Features and labels for {len(arrays['labels']):,} rows in {time.perf_counter() - start:.1f} s;"
        " splitting, scaling and writing")

    time_key = arrays["timestamps"]
    if cfg.split_dates:
        cuts = cfg.split_cut_times()
    else:
        cuts = cut_times_from_fractions(time_key, cfg.fractions)
    split = assign_splits(time_key, arrays["segment"], cut_times=cuts, embargo=cfg.effective_embargo)
    ends = window_ends(split, arrays["segment"], arrays["usable"], arrays["labels"] >= 0, cfg.window)
    for name in ("train", "val"):
        if len(ends[name]) == 0:
            raise LobseqError(
                f"the {name} part has no complete window (window {cfg.window}, horizon {cfg.horizon}, "
                f"embargo {cfg.effective_embargo})", field="fractions",
                fix="use more data, a shorter window, or other split fractions/dates")

    train_rows = np.flatnonzero((split == TRAIN) & arrays["usable"])
    scaler = StandardScaler().fit(arrays["features"], rows=train_rows)

    balance = {}
    for name in SPLIT_NAMES:
        y = arrays["labels"][ends[name]]
        counts = np.bincount(y, minlength=cfg.n_classes) if len(y) else np.zeros(cfg.n_classes, int)
        balance[name] = [int(c) for c in counts]
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
        "feature_names": names,
        "feature_specs": specs,
        "n_rows": int(len(split)),
        # Rows no window may contain: non-finite features (warm-up, empty book levels) or halts.
        "unusable_rows": int((~arrays["usable"]).sum()),
        "segments": seg_info,
        "windows": {name: int(len(ends[name])) for name in SPLIT_NAMES},
        "class_balance": balance,
        "split_times": [int(c) for c in cuts],
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
    ]
    if m.get("unusable_rows"):
        lines.append(f"  {m['unusable_rows']:,} rows unusable in windows (feature warm-up, empty book "
                     "levels or halts)")
    lines.append("  windows and class balance:")
    for split in SPLIT_NAMES:
        counts = m["class_balance"][split]
        total = sum(counts) or 1
        bal = "  ".join(f"{n} {c:,} ({c / total:.1%})" for n, c in zip(names, counts, strict=True))
        lines.append(f"    {split:<5} {m['windows'][split]:>9,}   {bal}")
    return "\n".join(lines)
