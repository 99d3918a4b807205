"""`mlflow models serve` answers the `lobseq serve` payload with the same probabilities.

Starts MLflow's own scoring server (uvicorn, `--env-manager local`) on a
free loopback port as a subprocess, and always stops it.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

START_TIMEOUT_S = 90
CLASSES = ("down", "stationary", "up")


@pytest.fixture(scope="module")
def logged(lobster_dataset, module_mlflow_store):
    """A tiny LSTM logged as the lobseq pyfunc into a temporary sqlite store."""
    import mlflow

    from lobseq.tracking import ensure_experiment
    from lobseq.training.config import TrainConfig
    from lobseq.training.fit import fit
    from lobseq.training.package import log_pyfunc

    result = fit(lobster_dataset, TrainConfig(model="lstm", hyper={"units": 8}, epochs=1,
                                              max_train_windows=300))
    with mlflow.start_run(experiment_id=ensure_experiment("mlflow-serve")):
        info = log_pyfunc(result.model, lobster_dataset)
    return {"tracking_uri": module_mlflow_store.uri, "model_uri": info.model_uri,
            "store": module_mlflow_store.root}


@pytest.fixture(scope="module")
def payload(logged, lobster_raw):
    """The last rows of the simulated day as `dataframe_split`, timestamps as strings."""
    from lobseq.data.sources import read_lobster
    from lobseq.serving.loader import load_model

    model = load_model(logged["model_uri"])
    frame = read_lobster(lobster_raw)[0].frame
    rows = frame[["timestamp", *model.forecaster.input_columns]].iloc[-(model.forecaster.min_rows + 20):].reset_index(drop=True)
    rows = rows.assign(timestamp=rows["timestamp"].astype(str))
    body = json.dumps({"dataframe_split": {"columns": list(rows.columns), "data": rows.values.tolist()}})
    return {"model": model, "body": body.encode(), "frame": frame.iloc[-(model.forecaster.min_rows + 20):]}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _post(port: int, body: bytes, timeout: float = 30) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _pinged(port: int) -> bool:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@pytest.fixture
def mlflow_server(logged, tmp_path):
    """`mlflow models serve` of the logged model; yields its port, kills it afterwards."""
    port = _free_port()
    bindir = str(Path(sys.executable).parent)  # MLflow runs `uvicorn` from PATH
    env = {**os.environ, "MLFLOW_TRACKING_URI": logged["tracking_uri"],
           "MLFLOW_DISABLE_TELEMETRY": "true", "TF_CPP_MIN_LOG_LEVEL": "2",
           "PATH": bindir + os.pathsep + os.environ.get("PATH", "")}
    cmd = [sys.executable, "-m", "mlflow", "models", "serve", "-m", logged["model_uri"],
           "--env-manager", "local", "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    log_path = tmp_path / "mlflow-serve.log"
    with open(log_path, "wb") as log:
        # Own process group: MLflow starts uvicorn as a child; stopping the group stops both.
        proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _pinged(port):
            if proc.poll() is not None:
                pytest.fail(f"mlflow models serve exited with {proc.returncode}:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            if time.monotonic() > deadline:
                pytest.fail(f"mlflow models serve did not answer /ping within {START_TIMEOUT_S} s:\n"
                            + log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.5)
        yield port
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=15)
        except ProcessLookupError:
            pass
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


@pytest.fixture
def lobseq_server(payload):
    from lobseq.serving.http import ForecastService, make_server

    srv = make_server(ForecastService(payload["model"]), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv.server_address[1]
    srv.shutdown()
    srv.server_close()


def test_mlflow_models_serve_matches_lobseq_serve_and_the_forecaster(mlflow_server, lobseq_server,
                                                                    payload):
    status, mlflow_reply = _post(mlflow_server, payload["body"])
    assert status == 200, mlflow_reply
    status, lobseq_reply = _post(lobseq_server, payload["body"])
    assert status == 200, lobseq_reply

    (row,) = mlflow_reply["predictions"]  # one row: the forecast at the last row sent
    served = np.array([row[f"p_{c}"] for c in CLASSES])
    ours = lobseq_reply["predictions"][0]
    np.testing.assert_allclose(served, [ours["probabilities"][c] for c in CLASSES], atol=1e-5)
    direct = payload["model"].forecaster.predict(payload["frame"])
    np.testing.assert_allclose(served, direct[[f"p_{c}" for c in CLASSES]].to_numpy()[0], atol=1e-5)
    assert row["direction"] == ours["direction"] == direct["direction"][0]
    assert row["horizon"] == ours["horizon"] == 5
