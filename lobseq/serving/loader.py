"""Load a logged lobseq model from any MLflow model URI into a `Forecaster`."""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lobseq.errors import LobseqError

_RUN_ID = re.compile(r"[0-9a-f]{32}")


@dataclass
class LoadedModel:
    forecaster: object  # lobseq.serving.forecaster.Forecaster
    uri: str
    run_id: str | None  # the run that logged the model

    @property
    def spec(self) -> dict:
        return self.forecaster.spec


def normalize_model_uri(model: str) -> str:
    """A bare run id becomes `runs:/ID/model`; `runs:/` and `models:/` URIs pass through."""
    model = str(model).strip()
    if _RUN_ID.fullmatch(model):
        return f"runs:/{model}/model"
    if model.startswith(("runs:/", "models:/")):
        return model
    raise LobseqError(f"'{model}' is not a model URI", field="model",
                      fix="pass a run id, runs:/ID/model, models:/NAME@alias or models:/NAME/VERSION")


def load_logged_model(model: str) -> LoadedModel:
    """Download a logged lobseq model's plain files and load them into a `Forecaster`."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from lobseq.serving.forecaster import Forecaster
    from lobseq.tracking import configure

    uri = normalize_model_uri(model)
    configure()
    with tempfile.TemporaryDirectory(prefix="lobseq-eval-") as tmp:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=tmp))
        except (MlflowException, OSError) as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise LobseqError(f"cannot resolve model '{model}': {first}", field="model",
                              fix="check the id with `mlflow ui` / `lobseq models`; use a run id, "
                                  "runs:/ID/model, models:/NAME@alias or models:/NAME/VERSION") from None
        mlmodel = local / "MLmodel"
        if not mlmodel.is_file():
            raise LobseqError(f"'{model}' is not a logged model (no MLmodel file)", field="model",
                              fix="point at the model a `lobseq train` run logged (runs:/ID/model)")
        meta = yaml.safe_load(mlmodel.read_text())
        artifacts = (meta.get("flavors", {}).get("python_function", {}) or {}).get("artifacts") or {}
        paths = {k: local / v["path"] for k, v in artifacts.items() if isinstance(v, dict)}
        if not all(k in paths and paths[k].is_file() for k in ("keras_model", "scaler", "spec")):
            raise LobseqError(f"'{model}' is not a lobseq model (no model.keras/scaler.json/spec.json)",
                              field="model", fix="point at a model logged by `lobseq train`")
        forecaster = Forecaster.load(model_path=paths["keras_model"], scaler_path=paths["scaler"],
                                     spec_path=paths["spec"])
    return LoadedModel(forecaster=forecaster, uri=uri, run_id=meta.get("run_id"))
