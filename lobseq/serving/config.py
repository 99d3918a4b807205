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


def predict_to_file(model_uri: str, inputs: Sequence[str | Path], cfg: PredictConfig):
    """Load the model, predict every full window of `inputs`, write the table atomically.

    Returns (table, path written).
    """
    from lobseq.serving.predict import load_model, predict_files

    model = load_model(model_uri)
    out = cfg.out or default_output(model.name or model.run_id or "model", model.version or "")
    return predict_files(model, inputs, cfg.format, out), Path(out)
