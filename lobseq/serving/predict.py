"""Batch prediction: raw files → one row per predictable timestamp, written atomically.

The files are read by ingest's readers (the same row checks), and every
instrument-day goes through the model's `Forecaster` (`proba_rows`): the
stored feature specs, ingest's window-end rule, the model's scaler and the
compiled forward pass, in batches.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.io import atomic_file
from lobseq.serving.loader import LoadedModel, load_model

__all__ = ["load_model", "predict_files", "predict_frame"]


def predict_frame(model: LoadedModel, frame: pd.DataFrame, instrument: str = "") -> pd.DataFrame:
    """One row per predictable timestamp of one instrument-day frame."""
    f = model.forecaster
    proba, rows = f.proba_rows(frame, all_windows=True)
    out = pd.DataFrame(index=range(len(rows)))
    out["instrument"] = instrument
    if "timestamp" in frame.columns:
        out["timestamp"] = frame["timestamp"].to_numpy()[rows]
    else:
        out["timestamp"] = pd.NaT
    out["row"] = np.asarray(rows, dtype=np.int64)
    for k, c in enumerate(f.class_names):
        out[f"p_{c}"] = proba[:, k]
    out["direction"] = np.asarray(f.class_names, dtype=object)[proba.argmax(axis=1)] \
        if len(rows) else pd.Series(dtype=object)
    out["horizon"] = f.horizon
    out["model_name"] = model.name or model.uri
    out["model_version"] = model.version or ""
    return out


def predict_files(model: LoadedModel | str, inputs: Sequence[str | Path], format: str,
                  out: str | Path) -> pd.DataFrame:
    """Read raw files, predict every timestamp that has a full window, write `out` atomically.

    `out` ending in `.csv` is written as CSV, anything else as Parquet.
    """
    from lobseq.data.sources import read_sources

    if isinstance(model, str):
        model = load_model(model)
    segments = read_sources([str(p) for p in inputs], format)
    if not segments:
        raise LobseqError("no input files found", file=", ".join(map(str, inputs)),
                          fix="pass the files or a folder that holds them")
    table = pd.concat([score_segment(model, seg, format) for seg in segments], ignore_index=True)
    write_table(table, out)
    return table


def score_segment(model: LoadedModel, seg, format: str) -> pd.DataFrame:
    """One instrument-day's predictions, after checking the model can read it."""
    fc = model.forecaster
    if len(seg.frame) < fc.min_rows:
        raise LobseqError(f"{len(seg.frame)} rows is fewer than the {fc.min_rows} the model "
                          f"needs for one prediction", file=seg.files[0])
    missing = [c for c in fc.input_columns if c not in seg.frame.columns]
    if missing:
        raise LobseqError(f"the model needs columns this {format} file lacks: {', '.join(missing)}",
                          file=seg.files[0], fix="use the format the model was trained on")
    return predict_frame(model, seg.frame, seg.instrument)


def write_table(table: pd.DataFrame, out: str | Path) -> None:
    """`table` to `out` atomically: CSV when it ends in .csv, else Parquet."""
    out = Path(out)
    with atomic_file(out, "wb") as f:
        if out.suffix.lower() == ".csv":
            f.write(table.to_csv(index=False).encode())
        else:
            table.to_parquet(f, index=False)
