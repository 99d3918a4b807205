import http.client
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from lobseq.serving.http import ForecastService, make_server


class StandIn:
    name, version, uri = "stand-in", "3", "models:/stand-in/3"
    horizon, window, min_rows = 1, 3, 4
    class_names = ("down", "up")
    columns = ["close", "volume"]
    optional_columns = ["timestamp"]

    def predict_proba(self, frame, all_windows=True):
        close = frame["close"].to_numpy(float)
        up = 0.8 if close[-1] > close[-2] else 0.3
        return np.array([[1 - up, up]]), np.array([len(frame) - 1])


MAX_BYTES = 4096


@pytest.fixture(scope="module")
def server():
    srv = make_server(ForecastService(StandIn(), max_bytes=MAX_BYTES), "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _request(server, method, path, body=None, headers=None):
    conn = http.client.HTTPConnection("127.0.0.1", server.server_address[1], timeout=10)
    try:
        data = body.encode() if isinstance(body, str) else body
        conn.request(method, path, body=data, headers={"Content-Type": "application/json",
                                                       **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def _split(rows=5, columns=("close", "volume"), value=None):
    data = [[100.0 + i, 1000.0] for i in range(rows)]
    if value is not None:
        data[-1][0] = value
    return {"dataframe_split": {"columns": list(columns), "data": [r[:len(columns)] for r in data]}}


def test_health(server):
    assert _request(server, "GET", "/health")[0] == 200


def test_ready_reports_the_model(server):
    assert _request(server, "GET", "/ready")[1]["model"]["version"] == "3"


def test_dataframe_split_gets_probabilities_and_direction(server):
    status, body = _request(server, "POST", "/invocations", json.dumps(_split()))
    p = body["predictions"][0]
    assert (status, p["direction"], p["probabilities"]["up"], p["horizon"]) == (200, "up", 0.8, 1)


def test_dataframe_records_payload_is_accepted(server):
    records = [{"close": 100.0 - i, "volume": 1.0} for i in range(5)]
    status, body = _request(server, "POST", "/invocations", json.dumps({"dataframe_records": records}))
    assert (status, body["predictions"][0]["direction"]) == (200, "down")


def test_instrument_param_is_echoed(server):
    payload = {**_split(), "params": {"instrument": "AAPL"}}
    assert _request(server, "POST", "/invocations", json.dumps(payload))[1]["predictions"][0][
        "instrument"] == "AAPL"


def test_concurrent_requests_all_succeed(server):
    body = json.dumps(_split())
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _request(server, "POST", "/invocations", body)[0], range(32)))
    assert statuses == [200] * 32


@pytest.mark.parametrize("body, status, message", [
    ("{not json", 400, "malformed JSON"),
    ("[1, 2]", 400, "JSON object"),
    (json.dumps({"inputs": []}), 400, "exactly one of"),
    (json.dumps(_split(columns=("close",))), 400, "missing columns: volume"),
    (json.dumps({"dataframe_split": {"columns": ["close", "volume", "x"],
                                     "data": [[1.0, 1.0, 1.0]] * 5}}), 400, "unexpected columns: x"),
    (json.dumps(_split(rows=3)), 400, "too few rows: got 3"),
    (json.dumps(_split()).replace("104.0", "NaN"), 400, "NaN is not allowed"),
    (json.dumps(_split()).replace("104.0", "1e999"), 400, "NaN or infinite"),
    (json.dumps(_split()).replace("104.0", "null"), 400, "NaN or infinite"),
    (json.dumps(_split()).replace("104.0", '"abc"'), 400, "must hold numbers"),
    (json.dumps({"dataframe_split": {"columns": ["close", "volume"], "data": [[1.0]] * 5}}), 400,
     "row 0 must be a list of 2"),
    (json.dumps(_split(rows=1000)), 413, "exceeds the limit"),
])
def test_bad_payload_gets_4xx_with_message(server, body, status, message):
    got, reply = _request(server, "POST", "/invocations", body)
    assert (got, message in reply.get("message", "")) == (status, True), reply


def test_unknown_endpoint_is_404(server):
    assert _request(server, "GET", "/nope")[0] == 404


def test_server_survives_bad_requests(server):
    _request(server, "POST", "/invocations", "{")
    assert _request(server, "POST", "/invocations", json.dumps(_split()))[0] == 200


def test_not_ready_before_the_model_loads():
    srv = make_server(None, "127.0.0.1", 0)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        assert _request(srv, "GET", "/ready")[0] == 503
    finally:
        srv.shutdown()
        srv.server_close()


def test_binds_loopback_by_default():
    srv = make_server(None, port=0)
    try:
        assert srv.server_address[0] == "127.0.0.1"
    finally:
        srv.server_close()


def test_timestamps_with_and_without_fractions_are_accepted(server):
    # str(pd.Timestamp) drops a zero fraction, so one payload can mix both ISO forms.
    stamps = ["2024-01-02 09:30:00", "2024-01-02 09:30:00.250000", "2024-01-02 09:30:01",
              "2024-01-02 09:30:01.500000", "2024-01-02 09:30:02.000001"]
    payload = {"dataframe_split": {"columns": ["timestamp", "close", "volume"],
                                   "data": [[t, 100.0 + i, 1.0] for i, t in enumerate(stamps)]}}
    status, body = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (status, body["predictions"][0]["timestamp"]) == (200, "2024-01-02T09:30:02.000001")


def test_timestamp_with_utc_offset_keeps_it(server):
    payload = {"dataframe_records": [{"timestamp": f"2024-01-02T09:30:0{i}+00:00", "close": 100.0 + i,
                                      "volume": 1} for i in range(5)]}
    status, body = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (status, body["predictions"][0]["timestamp"]) == (200, "2024-01-02T09:30:04+00:00")


def test_bad_timestamp_is_a_400(server):
    payload = {"dataframe_split": {"columns": ["timestamp", "close", "volume"],
                                   "data": [["not a time", 100.0 + i, 1.0] for i in range(5)]}}
    got, reply = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (got, "not dates/times" in reply["message"]) == (400, True)


def test_only_the_last_min_rows_are_checked(server):
    payload = _split(rows=8)
    payload["dataframe_split"]["data"][0][1] = None  # older than the model reads
    assert _request(server, "POST", "/invocations", json.dumps(payload))[0] == 200


def test_integer_and_float_values_mix(server):
    payload = {"dataframe_split": {"columns": ["close", "volume"],
                                   "data": [[100 + i, 1000] for i in range(5)]}}
    status, body = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (status, body["predictions"][0]["direction"]) == (200, "up")


@pytest.mark.parametrize("value", ["true", "[1]", '{"a": 1}', "1e400"])
def test_non_numbers_are_rejected_by_name(server, value):
    body = json.dumps(_split()).replace("104.0", value)
    got, reply = _request(server, "POST", "/invocations", body)
    assert (got, "close" in reply["message"] or "numbers" in reply["message"]) == (400, True), reply
