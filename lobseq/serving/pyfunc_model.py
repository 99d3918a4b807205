"""MLflow models-from-code entry point for lobseq forecasters.

MLflow executes this file when the model is loaded (`mlflow models serve`,
`mlflow.pyfunc.load_model`); it is a thin shell over the one inference path,
`lobseq.serving.forecaster.Forecaster`, built from the logged plain-file
artifacts (model.keras, scaler.json, spec.json). Nothing is unpickled.
lobseq itself loads models with `lobseq.serving.loader.load_model`.

Input: a pandas DataFrame of raw canonical rows (oldest first). Params:
`all_windows` (bool, default false): one output row per complete window
instead of only the last one.
"""

import os

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import mlflow  # noqa: E402
import pandas as pd  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE  # noqa: E402


class LobseqForecaster(mlflow.pyfunc.PythonModel):
    """Raw snapshots or bars → `p_<class>`, `direction`, `horizon` per window."""

    def load_context(self, context):
        from lobseq.serving.forecaster import Forecaster

        a = context.artifacts
        self.forecaster = Forecaster.load(model_path=a["keras_model"], scaler_path=a["scaler"],
                                          spec_path=a["spec"])

    # A DataFrame hint: MLflow validates with the logged signature, not the hint.
    def predict(self, context, model_input: pd.DataFrame, params: dict | None = None) -> pd.DataFrame:
        from lobseq.errors import LobseqError

        all_windows = bool((params or {}).get("all_windows", False))
        try:
            return self.forecaster.predict(model_input, all_windows=all_windows)
        except LobseqError as e:
            raise MlflowException(str(e), error_code=INVALID_PARAMETER_VALUE) from e


mlflow.models.set_model(LobseqForecaster())
