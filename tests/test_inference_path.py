"""One loader and one forecaster: evaluation, batch predict, the MLflow pyfunc and the HTTP
service give the same probabilities for the same rows."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from conftest import logged_model, mlflow_store_at

pytestmark = pytest.mark.slow

CLASSES = ["p_down", "p_stationary", "p_up"]


@pytest.fixture(scope="module")
def logged(tmp_path_factory):
    root = tmp_path_factory.mktemp("inference")
    with mlflow_store_at(root):
        yield logged_model(root, register="lob")


def test_one_forecaster_gives_the_same_probabilities_on_every_path(logged, tmp_path):
    import mlflow

    from lobseq.data.sources import read_lobster
    from lobseq.evaluation.evaluate import predict_proba
    from lobseq.serving.http import ForecastService
    from lobseq.serving.loader import load_model
    from lobseq.serving.predict import predict_files

    ds = logged.dataset
    model = load_model(logged.model_uri)
    frames = [s.frame for s in read_lobster(logged.raw)]
    day0 = len(frames[0])
    ends = ds.ends["test"][[0, len(ds.ends["test"]) // 2, -1]]
    assert (ds.segment[ends] == 1).all()  # the test split lies in the second day
    rows = ends - day0

    evaluation = predict_proba(model, ds, ends)
    table = predict_files(model, logged.raw, "lobster", tmp_path / "p.parquet")
    day2 = table[table["timestamp"].dt.normalize() == frames[1]["timestamp"].iloc[0].normalize()]
    batch = day2.set_index("row").loc[rows, CLASSES].to_numpy()
    pyfunc = mlflow.pyfunc.load_model(logged.model_uri)
    service = ForecastService(model)
    cols = model.forecaster.input_columns
    for i, t in enumerate(rows):
        upto = frames[1].iloc[: t + 1]
        via_pyfunc = pyfunc.predict(upto)[CLASSES].to_numpy()[0]
        recent = upto[["timestamp", *cols]].iloc[-model.forecaster.min_rows:]
        body = json.dumps({"dataframe_split": {
            "columns": list(recent.columns),
            "data": recent.assign(timestamp=recent["timestamp"].astype(str)).values.tolist()}})
        answer = service.predict(body.encode())["predictions"][0]
        via_service = [answer["probabilities"][c[2:]] for c in CLASSES]
        for got in (batch[i], via_pyfunc, via_service):
            np.testing.assert_allclose(got, evaluation[i], atol=1e-5)
        assert answer["timestamp"] == pd.Timestamp(frames[1]["timestamp"].iloc[t]).isoformat()


def test_every_uri_form_loads_the_same_model_and_knows_who_it_is(logged):
    from mlflow import MlflowClient

    from lobseq.serving.loader import load_model

    version = MlflowClient().search_model_versions("name='lob'")[0].version
    MlflowClient().set_registered_model_alias("lob", "champion", version)
    forms = [logged.run_id, f"runs:/{logged.run_id}/model", logged.model_uri,
             logged.model_uri[len("models:/"):], "models:/lob@champion", f"models:/lob/{version}"]
    loaded = [load_model(uri) for uri in forms]
    assert {m.run_id for m in loaded} == {logged.run_id}
    assert [(m.name, m.version) for m in loaded[-2:]] == [("lob", str(version))] * 2
    assert loaded[-2].uri == "models:/lob@champion" and loaded[-2].label == f"lob v{version}"
    assert loaded[0].uri == f"runs:/{logged.run_id}/model" and loaded[0].name is None
    specs = {json.dumps(m.spec, sort_keys=True) for m in loaded}
    assert len(specs) == 1


def test_a_uri_of_another_kind_is_a_user_error():
    from lobseq.errors import LobseqError
    from lobseq.serving.loader import normalize_model_uri

    with pytest.raises(LobseqError, match="not a model URI.*models:/NAME@alias"):
        normalize_model_uri("s3://bucket/model")
