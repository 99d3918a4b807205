"""Batch prediction: raw files → one row per predictable timestamp, written atomically.

Both `predict` and `serve` go through `load_model`, which wraps the logged
model's `lobseq.serving.forecaster.Forecaster` (preprocessing, scaler and the compiled
forward pass travel with the model) behind the small `ForecastModel`
interface below; neither adds preprocessing of its own.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.io import atomic_file


class ForecastModel(Protocol):
    name: str
    version: str
    uri: str
    horizon: int
    window: int
    min_rows: int  # rows of raw input for one prediction (window + feature warm-up)
    class_names: tuple[str, ...]
    columns: list[str]  # raw canonical columns a request must carry
    optional_columns: list[str]  # accepted, not required (e.g. timestamp)

    def predict_proba(self, frame: pd.DataFrame, all_windows: bool = True) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities (m, C), row (m,) of `frame` each is made at): every window, or the last."""


class _ForecasterModel:
    """`ForecastModel` over `lobseq.serving.forecaster.Forecaster` (its spec, features and forward pass)."""

    thread_safe = True  # features are pure functions; the forward pass is a tf.function
    chunk = 4096  # windows per forward call in batch prediction (bounds memory)

    def __init__(self, forecaster, uri: str, name: str, version: str) -> None:
        f = self.forecaster = forecaster
        spec = f.spec
        self.uri, self.name, self.version = uri, name, version
        self.horizon = int(spec["horizon"])
        self.window = int(spec["window"])
        self.min_rows = int(spec["min_rows"])
        self.class_names = tuple(spec["class_names"])
        self.columns = list(spec["input_columns"])
        from lobseq.serving.spec import OPTIONAL_COLUMNS

        self.optional_columns = [c for c in OPTIONAL_COLUMNS if c not in self.columns]
        self._mean = np.asarray(f.scaler.mean_, dtype=np.float32)
        self._scale = np.asarray(f.scaler.scale_, dtype=np.float32)

    def predict_proba(self, frame: pd.DataFrame, all_windows: bool = True) -> tuple[np.ndarray, np.ndarray]:
        from lobseq.data.windows import gather_windows

        f = self.forecaster
        x, usable = f.features(frame)
        ends = f.window_ends(usable, all_windows)
        parts = [f.forward(gather_windows(x, ends[i:i + self.chunk], self.window, self._mean,
                                          self._scale))
                 for i in range(0, len(ends), self.chunk)]
        proba = np.concatenate(parts) if parts else np.zeros((0, len(self.class_names)))
        return proba, ends


def describe_uri(model_uri: str) -> tuple[str, str]:
    """(name, version) for `models:/NAME/VERSION` or `models:/NAME@ALIAS`; else (uri, '')."""
    if model_uri.startswith("runs:/"):
        return model_uri[len("runs:/"):].split("/", 1)[0][:12], ""
    if model_uri.startswith("models:/"):
        rest = model_uri[len("models:/"):]
        try:
            from mlflow import MlflowClient

            c = MlflowClient()
            if "@" in rest:
                name, alias = rest.split("@", 1)
                return name, str(c.get_model_version_by_alias(name, alias).version)
            if "/" in rest:
                name, version = rest.split("/", 1)
                return name, version
        except Exception:  # noqa: BLE001 - logged model ids, unreachable registry
            pass
        return rest, ""
    return model_uri, ""


def load_model(model_uri: str) -> ForecastModel:
    """Load a logged lobseq model once (its artifacts, scaler, compiled forward pass)."""
    import mlflow

    from lobseq import tracking

    tracking.configure()
    name, version = describe_uri(model_uri)
    try:
        loaded = mlflow.pyfunc.load_model(model_uri)
    except mlflow.exceptions.MlflowException as e:
        raise LobseqError(f"cannot load model {model_uri}: {e.message}", field="model_uri",
                          fix="use models:/NAME@champion, models:/NAME/VERSION or runs:/RUN_ID/model "
                              "(see `lobseq models list`)") from None
    forecaster = getattr(loaded.unwrap_python_model(), "forecaster", None)
    if forecaster is None:
        raise LobseqError(f"{model_uri} is not a lobseq forecaster", field="model_uri")
    return _ForecasterModel(forecaster, model_uri, name, version)


def predict_frame(model: ForecastModel, frame: pd.DataFrame, instrument: str = "") -> pd.DataFrame:
    """One row per predictable timestamp of one instrument-day frame."""
    proba, rows = model.predict_proba(frame)
    proba = np.asarray(proba, dtype=np.float64).reshape(len(rows), len(model.class_names))
    out = pd.DataFrame(index=range(len(rows)))
    out["instrument"] = instrument
    if "timestamp" in frame.columns:
        out["timestamp"] = frame["timestamp"].to_numpy()[rows]
    else:
        out["timestamp"] = pd.NaT
    out["row"] = np.asarray(rows, dtype=np.int64)
    for k, c in enumerate(model.class_names):
        out[f"p_{c}"] = proba[:, k]
    out["direction"] = np.asarray(model.class_names, dtype=object)[proba.argmax(axis=1)] \
        if len(rows) else pd.Series(dtype=object)
    out["horizon"] = model.horizon
    out["model_name"] = model.name
    out["model_version"] = model.version
    return out


def predict_files(model: ForecastModel | str, inputs: Sequence[str | Path], format: str,
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
    parts = []
    for seg in segments:
        if len(seg.frame) < model.min_rows:
            raise LobseqError(f"{len(seg.frame)} rows is fewer than the {model.min_rows} the model "
                              f"needs for one prediction", file=seg.files[0])
        missing = [c for c in model.columns if c not in seg.frame.columns]
        if missing:
            raise LobseqError(f"the model needs columns this {format} file lacks: {', '.join(missing)}",
                              file=seg.files[0], fix="use the format the model was trained on")
        parts.append(predict_frame(model, seg.frame, seg.instrument))
    table = pd.concat(parts, ignore_index=True)
    out = Path(out)
    with atomic_file(out, "wb") as f:
        if out.suffix.lower() == ".csv":
            f.write(table.to_csv(index=False).encode())
        else:
            table.to_parquet(f, index=False)
    return table
