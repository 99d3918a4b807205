"""The one way to load a logged lobseq model: any model URI → `LoadedModel`.

    model = load_model("models:/lob@champion")
    model.name, model.version, model.run_id   # "lob", "3", "9f1c…"
    model.forecaster.proba_rows(frame)         # `lobseq.serving.forecaster.Forecaster`

The URI is normalized once (`normalize_model_uri`); an alias is resolved to
its version before the files are fetched, so the version reported is the one
loaded. The plain files (model.keras, scaler.json, spec.json) are read
directly: loading never unpickles and never runs code from the model.
"""

from __future__ import annotations

import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

from lobseq.errors import LobseqError
from lobseq.serving.forecaster import Forecaster

_RUN_ID = re.compile(r"[0-9a-f]{32}")
_LOGGED_MODEL_ID = re.compile(r"m-[0-9a-f]{32}")
URI_FORMS = ("a run id, runs:/ID/model, models:/NAME@alias, models:/NAME/VERSION or "
             "models:/m-<logged model id>")


@dataclass(frozen=True)
class LoadedModel:
    """A logged model, loaded once: who it is and the `Forecaster` that runs it."""

    forecaster: Forecaster
    uri: str  # normalized, as asked (an alias URI stays an alias URI)
    name: str | None = None  # registered model name (models:/NAME@alias, models:/NAME/VERSION)
    version: str | None = None  # registered version; an alias is resolved when loading
    run_id: str | None = None  # the run that logged the model

    @property
    def spec(self) -> dict:
        return self.forecaster.spec

    @property
    def label(self) -> str:
        """`NAME vVERSION` for a registered model, else its URI."""
        return f"{self.name} v{self.version}" if self.name and self.version else self.uri


def normalize_model_uri(model: str) -> str:
    """A bare run id becomes `runs:/ID/model`, a bare `m-<id>` `models:/m-<id>`; `runs:/` and
    `models:/` URIs pass through."""
    model = str(model).strip()
    if _RUN_ID.fullmatch(model):
        return f"runs:/{model}/model"
    if _LOGGED_MODEL_ID.fullmatch(model):
        return f"models:/{model}"
    if model.startswith(("runs:/", "models:/")) and len(model.split(":/", 1)[1].strip("/")) > 0:
        return model
    raise LobseqError(f"'{model}' is not a model URI", field="model", fix=f"pass {URI_FORMS}")


def _registered(uri: str) -> tuple[str, str | None, str | None]:
    """(URI to fetch, registered name, version): an alias resolved to its version."""
    if not uri.startswith("models:/"):
        return uri, None, None
    rest = uri[len("models:/"):]
    if "@" in rest:
        from mlflow import MlflowClient

        name, alias = rest.split("@", 1)
        version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
        return f"models:/{name}/{version}", name, version
    if "/" in rest:
        name, version = rest.split("/", 1)
        return uri, name, version
    return uri, None, None  # a logged model id (models:/m-...)


def resolve_model_uri(model: str) -> tuple[str, str | None, str | None]:
    """(normalized URI, registered name, version) without fetching any file: an alias is
    resolved to the version it names now; a wrong name, version or alias is a `LobseqError`."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    from lobseq.tracking import configure

    uri = normalize_model_uri(model)
    configure()
    try:
        _fetch, name, version = _registered(uri)
        if name and version and "@" not in uri:
            MlflowClient().get_model_version(name, version)
    except MlflowException as e:
        raise _fail(model, e) from None
    return uri, name, version


def _fail(model: str, e: Exception) -> LobseqError:
    first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
    return LobseqError(f"cannot resolve model '{model}': {first}", field="model",
                       fix=f"check it with `lobseq models list` or the MLflow UI; pass {URI_FORMS}")


def pin_model_uri(model: str) -> tuple[str, str | None, str | None]:
    """(URI to fetch, registered name, version) without loading anything: an alias pinned to
    the version it points at now, so that many loaders load the same model (unlike
    `resolve_model_uri`, which keeps the alias for a service that follows it)."""
    from mlflow.exceptions import MlflowException

    from lobseq.tracking import configure

    uri = normalize_model_uri(model)
    configure()
    try:
        return _registered(uri)
    except MlflowException as e:
        raise _fail(model, e) from None


def model_identity(model: str) -> tuple[str | None, str | None, str | None]:
    """(registered name, version, run id) of a model URI, as `load_model` would report them,
    without fetching its files (the run id only when there is no registered name)."""
    import mlflow

    fetch, name, version = pin_model_uri(model)
    if name:
        return name, version, None
    if fetch.startswith("runs:/"):
        return None, None, fetch[len("runs:/"):].split("/", 1)[0]
    try:
        return None, None, mlflow.get_logged_model(fetch[len("models:/"):]).source_run_id
    except Exception as e:  # noqa: BLE001 - MLflow raises several types for an unknown id
        raise _fail(model, e) from None


def load_model(model: str) -> LoadedModel:
    """Fetch a logged lobseq model's plain files and load them into a `Forecaster`, once."""
    import mlflow
    import yaml
    from mlflow.exceptions import MlflowException

    from lobseq.tracking import configure
    from lobseq.tracking.server import unreachable

    uri = normalize_model_uri(model)
    configure()
    with tempfile.TemporaryDirectory(prefix="lobseq-model-") as tmp:
        try:
            fetch, name, version = _registered(uri)
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=fetch, dst_path=tmp))
        except (MlflowException, OSError) as e:
            if unreachable(e):  # the server, not the URI: say so (exit 1), do not blame the URI
                raise
            raise _fail(model, e) from None
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
    return LoadedModel(forecaster=forecaster, uri=uri, name=name, version=version,
                       run_id=meta.get("run_id"))
