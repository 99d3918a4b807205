"""The predict stage: its settings, where its output goes, and the one call that writes it.

    table, out = predict_to_file("models:/lob@champion", ["data/raw/live"],
                                 PredictConfig(format="lobster"))
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Literal

from pydantic import Field

from lobseq.config import stage_config

PREDICTIONS_DIR = Path("data/predictions")  # git-ignored, like data/raw and data/processed


@stage_config
class PredictConfig:
    """Batch prediction over raw files: one row per timestamp that has a full window."""

    format: Literal["lobster", "fi2010", "bars"] = Field(description="Raw file format.")
    out: Path | None = Field(
        None, description="Output file (.parquet, or .csv) "
                          "[default: data/predictions/<model>-<version>-<date>.parquet].")


def default_output(name: str, version: str = "", when: datetime.date | None = None) -> Path:
    """`data/predictions/<model>[-v<version>]-<YYYY-MM-DD>.parquet` (name made file-safe)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("_") or "model"
    if version:
        stem += f"-v{version}"
    return PREDICTIONS_DIR / f"{stem}-{(when or datetime.date.today()).isoformat()}.parquet"


def predict_to_file(model_uri: str, inputs: Sequence[str | Path], cfg: PredictConfig, engine=None,
                    log=lambda _m: None):
    """Load the model, predict every full window of `inputs`, write the table atomically.

    Returns (table, path written). `engine` (an `EngineConfig`; default local):
    on Ray, the files are scored by a Ray Data actor pool
    (`lobseq.serving.batch_ray`), each actor loading the model once; the table
    written equals the local engine's.
    """
    if engine is not None and engine.name == "ray":
        return _predict_on_ray(model_uri, inputs, cfg, engine, log)
    from lobseq.serving.predict import load_model, predict_files

    model = load_model(model_uri)
    out = cfg.out or default_output(model.name or model.run_id or "model", model.version or "")
    return predict_files(model, inputs, cfg.format, out), Path(out)


def _predict_on_ray(model_uri: str, inputs, cfg: PredictConfig, engine, log):
    from lobseq.engine import open_engine
    from lobseq.serving.batch_ray import predict_files_ray
    from lobseq.serving.loader import model_identity
    from lobseq.tracking import tracking_uri

    name, version, run_id = model_identity(model_uri)
    out = cfg.out or default_output(name or run_id or "model", version or "")
    with open_engine(engine, env_vars={"MLFLOW_TRACKING_URI": tracking_uri()}) as eng:
        table, stats = predict_files_ray(model_uri, inputs, cfg.format, out, eng)
    log(f"Scored {stats['jobs']} file job(s) on Ray Data: {stats['actors']} actor(s) x "
        f"{stats['cpus_per_actor']:g} CPU, each loading the model once")
    return table, Path(out)
