"""One segment (instrument-day): read, validate, featurize and label it, the unit of work an
engine task runs. Each segment is worked on alone, so nothing reads across a day boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from lobseq.errors import LobseqError

if TYPE_CHECKING:
    from lobseq.data.ingest import IngestConfig
    from lobseq.data.serving_record import ServingRecorder


def _labels_for(segment, cfg: IngestConfig, mid: np.ndarray, px: np.ndarray) -> np.ndarray:
    from lobseq.data import labels

    if cfg.label == "provided":
        lab = labels.fi2010_labels(segment.frame, cfg.horizon)
        if cfg.n_classes == 2:  # stationary has no 2-class meaning: unlabelled
            lab = np.where(lab == 1, -1, np.where(lab == 2, 1, lab)).astype(np.int8)
        return lab
    if cfg.label == "point":  # the traded return, under the execution contract
        return labels.direction_labels(px, cfg.horizon, cfg.threshold, "point", cfg.n_classes,
                                       lag=cfg.execution.entry_lag)
    return labels.direction_labels(mid, cfg.horizon, cfg.threshold, cfg.label, cfg.n_classes)


def _book_prices(frame, kind: str, px: np.ndarray) -> np.ndarray:
    """(n, 3): the execution price (book: mid; bars: adjusted open or close), bid, ask."""
    if kind == "book":
        return np.column_stack([px, frame["bid_price_1"].to_numpy(float),
                                frame["ask_price_1"].to_numpy(float)])
    return np.column_stack([px, px, px])


PARTS = ("features", "labels", "returns", "prices", "timestamps", "segment", "usable")

@dataclass
class SegmentWork:
    """One segment's work: where it comes from (the `Segment`, or a `ReadJob` that reads it)."""

    index: int
    source: object  # Segment | ReadJob
    cfg: IngestConfig


@dataclass
class SegmentResult:
    """What the driver needs back from one segment's work."""

    index: int
    arrays: dict
    info: dict  # instrument, day, rows, labelled
    files: tuple[str, ...]
    kind: str
    recorder: ServingRecorder  # segment 0's records the serving record; the others are merged in


def segment_work(work: SegmentWork) -> SegmentResult:
    """Read (when given a job), validate, featurize and label one segment: the unit one engine
    task runs. Pure: the same work gives the same bytes in any process."""
    from lobseq.data.serving_record import ServingRecorder

    seg = work.source
    if not hasattr(seg, "frame"):  # a ReadJob of a one-segment format
        (seg,) = seg.read()
    recorder = ServingRecorder(work.cfg.format, record=work.index == 0)
    arrays = _segment_arrays(work.index, seg, work.cfg, recorder)
    n, labelled = len(arrays["labels"]), int((arrays["labels"] >= 0).sum())
    info = {"instrument": seg.instrument, "day": seg.day, "rows": n, "labelled": labelled}
    return SegmentResult(work.index, arrays, info, seg.files, seg.kind, recorder)


def _segment_arrays(i: int, seg, cfg: IngestConfig, recorder: ServingRecorder) -> dict:
    """One segment's features, labels, returns, prices, timestamps, segment ids and usable rows."""
    from lobseq.data import features as feats
    from lobseq.data import labels
    from lobseq.data.windows import usable_rows

    frame = seg.frame
    if len(frame) < cfg.window:
        raise LobseqError(
            f"{len(frame)} rows is too short for one window of {cfg.window}",
            file=seg.files[0], fix="use a shorter --window or more data")
    specs = cfg.features
    if specs is None:
        levels = sum(1 for c in frame.columns if c.startswith("ask_price_")) or None
        specs = feats.default_features(seg.kind, levels, messages="event_type" in frame.columns)
    x, _names = recorder.compute(seg, specs, feats)
    recorder.observe(x)
    mid = feats.mid_price(frame)
    px = cfg.execution.prices(frame)  # what a trade decided at t is filled at
    halted = frame["halted"].to_numpy(bool) if "halted" in frame.columns else None
    return {
        "features": x,
        "labels": _labels_for(seg, cfg, mid, px).astype(np.int8),
        "returns": labels.forward_returns(px, cfg.horizon,
                                          lag=cfg.execution.entry_lag).astype(np.float32),
        "prices": _book_prices(frame, seg.kind, px).astype(np.float64),
        "timestamps": frame["timestamp"].to_numpy("datetime64[ns]").astype(np.int64),
        "segment": np.full(len(frame), i, dtype=np.int32),
        "usable": usable_rows(x, halted),  # the window-end rule's "usable" (serving's too)
    }
