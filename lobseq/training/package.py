"""Log a trained model as an MLflow pyfunc (models-from-code) over the plain-file package.

The package format is `lobseq.serving.spec`'s (spec.json is built from the
dataset's serving record); the entry point MLflow runs on load is
`lobseq/serving/pyfunc_model.py`, a thin shell over `Forecaster`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq import __version__
from lobseq.serving.forecaster import Forecaster
from lobseq.serving.spec import (
    MODEL_FILE,
    SCALER_FILE,
    SPEC_FILE,
    build_spec,
    example_frame,
    optional_columns,
)

PYFUNC_MODEL_CODE = Path(__file__).parents[1] / "serving" / "pyfunc_model.py"


def save_artifacts(model, dataset, directory: str | Path, head: str = "classification") -> dict[str, str]:
    """Write model.keras, scaler.json and spec.json into `directory`; returns name → path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = build_spec(dataset, head)
    model.save(directory / MODEL_FILE)
    (directory / SCALER_FILE).write_text(json.dumps(dataset.scaler.to_dict()))
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return {"keras_model": str(directory / MODEL_FILE), "scaler": str(directory / SCALER_FILE),
            "spec": str(directory / SPEC_FILE)}


def _signature(example: pd.DataFrame, output: pd.DataFrame, spec: dict):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    def col_type(series: pd.Series) -> str:
        if pd.api.types.is_datetime64_any_dtype(series):
            return "datetime"
        if pd.api.types.is_integer_dtype(series):
            return "long"
        if pd.api.types.is_bool_dtype(series):
            return "boolean"
        if pd.api.types.is_numeric_dtype(series):
            return "double"
        return "string"

    required = spec["input_columns"]
    inputs = [ColSpec(col_type(example[c]), c) for c in required]
    # Other canonical columns are accepted (not dropped with a warning); `halted` is honoured.
    inputs += [ColSpec(col_type(example[c]), c, required=False)
               for c in example.columns if c not in required]
    outputs = [ColSpec(col_type(output[c]), c) for c in output.columns]
    params = ParamSchema([ParamSpec("all_windows", "boolean", False)])
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)


def pip_requirements() -> list[str]:
    import keras
    import mlflow
    import tensorflow as tf

    return [f"mlflow=={mlflow.__version__}", f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]


def log_pyfunc(model, dataset, head: str = "classification", name: str = "model"):
    """Log `model` with its preprocessing as an MLflow pyfunc (models-from-code) in the active run.

    Returns MLflow's ModelInfo (its `model_uri` registers the model).
    """
    import mlflow

    with tempfile.TemporaryDirectory(prefix="lobseq-pyfunc-") as tmp:
        artifacts = save_artifacts(model, dataset, tmp, head)
        forecaster = Forecaster(model, dataset.scaler, json.loads(Path(artifacts["spec"]).read_text()))
        spec = forecaster.spec
        levels = spec["levels"] or 1
        example = example_frame(spec["kind"], levels, rows=spec["min_rows"] + 5, seed=1)
        if spec["kind"] == "book":
            example["halted"] = False
        # only what the model reads: `lobseq serve` rejects other columns (time, order_id, price)
        keep = set(spec["input_columns"]) | set(optional_columns(spec))
        example = example[[c for c in example.columns if c in keep]]
        output = forecaster.predict(example)
        with warnings.catch_warnings():  # int columns in the example are canonical, not a mistake
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(PYFUNC_MODEL_CODE),
                artifacts=artifacts,
                signature=_signature(example, output, spec),
                input_example=example,
                pip_requirements=pip_requirements(),
                metadata={"lobseq_version": __version__, "dataset_hash": dataset.hash,
                          "window": spec["window"], "horizon": spec["horizon"], "kind": spec["kind"]},
            )
