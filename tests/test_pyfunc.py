"""The packaged model: raw rows in, the same probabilities as the Keras model out."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lobseq.data.windows import gather_windows

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def logged(lobster_dataset, lobster_raw, module_mlflow_store):
    """A tiny model trained on the simulated day, logged as a pyfunc into a temporary store."""
    import mlflow

    from lobseq.data.sources import read_lobster
    from lobseq.tracking import ensure_experiment
    from lobseq.training.config import TrainConfig
    from lobseq.training.fit import fit
    from lobseq.training.package import log_pyfunc

    result = fit(lobster_dataset, TrainConfig(model="lstm", hyper={"units": 8}, epochs=1,
                                              max_train_windows=500))
    with mlflow.start_run(experiment_id=ensure_experiment("pyfunc")):
        info = log_pyfunc(result.model, lobster_dataset)
    model = mlflow.pyfunc.load_model(info.model_uri)
    frame = read_lobster(lobster_raw)[0].frame
    return {"info": info, "pyfunc": model, "keras": result.model, "frame": frame}


def test_pyfunc_matches_keras_on_the_datasets_windows(logged, lobster_dataset):
    frame, model = logged["frame"], logged["pyfunc"]
    x, _ = lobster_dataset.arrays("test")
    ends = lobster_dataset.ends["test"]
    expected = logged["keras"].predict(x, verbose=0)
    # The dataset's row numbers are the day's frame rows (one segment).
    for i in (0, len(ends) // 2, len(ends) - 1):
        out = model.predict(frame.iloc[: ends[i] + 1])
        assert len(out) == 1
        got = out[["p_down", "p_stationary", "p_up"]].to_numpy()[0]
        np.testing.assert_allclose(got, expected[i], atol=1e-5)
        assert out["direction"][0] == ("down", "stationary", "up")[int(np.argmax(got))]
        assert out["horizon"][0] == 5
        assert out["timestamp"][0] == frame["timestamp"].iloc[ends[i]]


def test_all_windows_param_scores_every_complete_window(logged, lobster_dataset):
    frame, model = logged["frame"], logged["pyfunc"]
    ends = lobster_dataset.ends["test"]
    x, _ = lobster_dataset.arrays("test")
    expected = logged["keras"].predict(x, verbose=0)
    rows = frame.iloc[: ends[-1] + 1]
    out = model.predict(rows, params={"all_windows": True})
    _, out_ends = model.unwrap_python_model().forecaster.windows(rows, all_windows=True)
    assert len(out) == len(out_ends) and set(ends) <= set(out_ends)  # every dataset window, and more
    got = out[["p_down", "p_stationary", "p_up"]].to_numpy()[np.isin(out_ends, ends)]
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_missing_column_is_a_clear_error(logged):
    from mlflow.exceptions import MlflowException

    frame = logged["frame"].drop(columns=["bid_size_2"])
    with pytest.raises(MlflowException, match="bid_size_2"):
        logged["pyfunc"].predict(frame.iloc[-300:])


def test_forecaster_names_missing_columns_and_the_fix(logged):
    from lobseq.errors import LobseqError

    fc = logged["pyfunc"].unwrap_python_model().forecaster
    with pytest.raises(LobseqError, match="lacks column.*ask_price_3.*Fix"):
        fc.predict(logged["frame"].drop(columns=["ask_price_3"]).iloc[-300:])


def test_too_few_rows_is_a_clear_error(logged):
    from mlflow.exceptions import MlflowException

    spec = logged["pyfunc"].unwrap_python_model().forecaster.spec
    with pytest.raises(MlflowException, match=f"too few rows: 20 given, at least {spec['min_rows']}"):
        logged["pyfunc"].predict(logged["frame"].iloc[-20:])


def test_signature_input_example_and_plain_file_artifacts(logged):
    import mlflow

    info = logged["info"]
    sig = info.signature
    required = {c.name for c in sig.inputs.inputs if c.required}
    assert {"ask_price_1", "bid_size_5"} <= required and "timestamp" not in required
    assert [c.name for c in sig.outputs.inputs][-4:] == ["p_stationary", "p_up", "direction", "horizon"]
    assert sig.params.params[0].name == "all_windows"
    assert info.saved_input_example_info is not None
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    from pathlib import Path

    files = {p.name for p in Path(local).rglob("*") if p.is_file()}
    assert {"model.keras", "scaler.json", "spec.json", "pyfunc_model.py", "input_example.json"} <= files
    assert not any(f.endswith((".pkl", ".pickle", ".cloudpickle")) for f in files)
    spec = json.loads(next(Path(local).rglob("spec.json")).read_text())
    assert spec["window"] == 10 and spec["levels"] == 5 and spec["class_names"][-1] == "up"
    # The logged example is a valid input.
    example = mlflow.models.Model.load(info.model_uri).load_input_example(local)
    assert len(logged["pyfunc"].predict(example)) == 1


def test_logged_example_is_accepted_by_lobseq_serve(logged):
    # users copy serving_input_example.json; it carried time/order_id/price and got a 400
    import mlflow

    from lobseq.serving.http import ForecastService
    from lobseq.serving.loader import load_model

    info = logged["info"]
    local = mlflow.artifacts.download_artifacts(info.model_uri)
    body = (Path(local) / "serving_input_example.json").read_bytes()
    out = ForecastService(load_model(info.model_uri)).predict(body)
    assert len(out["predictions"]) == 1


def test_forecaster_forward_pass_matches_predict(logged):
    fc = logged["pyfunc"].unwrap_python_model().forecaster
    x, ends = fc.windows(logged["frame"].iloc[-400:], all_windows=True)
    np.testing.assert_allclose(fc.forward(x), logged["keras"].predict(x, verbose=0), atol=1e-5)


def test_one_window_goes_through_the_compiled_xla_pass_and_matches_the_graph(logged):
    fc = logged["pyfunc"].unwrap_python_model().forecaster
    x, _ = fc.windows(logged["frame"].iloc[-400:])
    assert fc._forward_one is not None  # warmed up and checked at load
    np.testing.assert_allclose(fc.forward(x), fc._forward(x).numpy(), atol=1e-6)


def test_last_window_needs_only_the_last_min_rows(logged):
    fc = logged["pyfunc"].unwrap_python_model().forecaster
    frame = logged["frame"].iloc[:2000]
    full, tail = fc.predict(frame), fc.predict(frame.iloc[-fc.spec["min_rows"]:])
    assert full["timestamp"][0] == tail["timestamp"][0] == frame["timestamp"].iloc[-1]
    np.testing.assert_allclose(full[["p_down", "p_up"]].to_numpy(), tail[["p_down", "p_up"]].to_numpy(),
                               atol=1e-6)


def test_features_from_the_stored_names_equal_a_fresh_computation(logged):
    from lobseq.data.features import compute_features

    fc = logged["pyfunc"].unwrap_python_model().forecaster
    rows = logged["frame"][fc.spec["input_columns"]].iloc[:500]
    x, usable = fc.features(rows)
    fresh, names = compute_features(rows, fc.spec["features"], fc.spec["kind"])
    assert names == fc.spec["feature_names"] and np.array_equal(x, fresh, equal_nan=True)


@pytest.fixture(scope="module")
def two_day_run(tmp_path_factory):
    """Two simulated days ingested, a tiny model trained and logged by `train_and_log`."""
    from conftest import mlflow_store_at

    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.data.sources import read_lobster
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import train_and_log

    root = tmp_path_factory.mktemp("two_days")
    raw = simulate_lobster(root / "raw", events=1500, levels=3, days=2, seed=3)
    ds = ingest(raw, root / "ds", IngestConfig(format="lobster", window=10, horizon=5),
                log=lambda _: None)
    with mlflow_store_at(root):
        run_id = train_and_log(ds.path, TrainConfig(model="gru", hyper={"units": 4}, epochs=1,
                                                    max_train_windows=300), log=lambda _: None)
        from lobseq.serving.loader import load_model

        forecaster = load_model(run_id).forecaster
    yield {"dataset": ds, "frames": [s.frame for s in read_lobster(raw)], "forecaster": forecaster}


def test_served_prediction_equals_the_model_on_the_stored_window(two_day_run):
    """Raw rows up to t through the Forecaster (features recomputed from the stored specs,
    warm-up, the model's scaler) give what the model gives on the dataset's window at t."""
    ds, fc, frames = two_day_run["dataset"], two_day_run["forecaster"], two_day_run["frames"]
    starts = np.concatenate([[0], np.cumsum([len(f) for f in frames])])
    seg = np.asarray(ds.segment)
    checked = set()
    for split in ("train", "val", "test"):
        ends = ds.ends[split]
        for t in (ends[0], ends[len(ends) // 2], ends[-1]):
            s = int(seg[t])
            frame = frames[s].iloc[: t - starts[s] + 1]
            served = fc.predict(frame)
            x = gather_windows(ds.features, np.array([t]), fc.window, fc.scaler.mean_,
                               fc.scaler.scale_)
            expected = fc.model.predict(x, verbose=0)[0]
            got = served[["p_down", "p_stationary", "p_up"]].to_numpy()[0]
            np.testing.assert_allclose(got, expected, atol=1e-5)
            assert served["timestamp"][0] == pd.Timestamp(int(ds.timestamps[t]))
            checked.add(s)
    assert checked == {0, 1}  # a window of each day, the second one off the dataset's row 0
