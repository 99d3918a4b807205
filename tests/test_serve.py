"""The HTTP service: payloads, 4xx answers with their reasons in the log, and the row checks
ingest applies (over the real `Forecaster` with a numpy forward pass; no TensorFlow)."""

import http.client
import json
import logging
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from standin_models import bars_model, book_model

from lobseq.serving.http import ForecastService, make_server

MAX_BYTES = 4096
MIN_ROWS = 4  # bars_model(): warm-up 1 + window 3


def _start(service):
    srv = make_server(service, "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture(scope="module")
def server():
    srv = _start(ForecastService(bars_model(), max_bytes=MAX_BYTES))
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def book_server():
    srv = _start(ForecastService(book_model()))
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


def _split(rows=5, columns=("adj_close",), value=None):
    data = [[100.0 + i, 1000.0] for i in range(rows)]
    if value is not None:
        data[-1][0] = value
    return {"dataframe_split": {"columns": list(columns), "data": [r[:len(columns)] for r in data]}}


def test_health(server):
    assert _request(server, "GET", "/health")[0] == 200


def test_ready_reports_the_model(server):
    model = _request(server, "GET", "/ready")[1]["model"]
    assert (model["version"], model["min_rows"], model["columns"]) == ("3", MIN_ROWS, ["adj_close"])


def test_dataframe_split_gets_probabilities_and_direction(server):
    status, body = _request(server, "POST", "/invocations", json.dumps(_split()))
    p = body["predictions"][0]
    assert (status, p["direction"], p["probabilities"]["up"], p["horizon"]) == (200, "up", 0.8, 1)


def test_dataframe_records_payload_is_accepted(server):
    records = [{"adj_close": 100.0 - i} for i in range(5)]
    status, body = _request(server, "POST", "/invocations", json.dumps({"dataframe_records": records}))
    assert (status, body["predictions"][0]["direction"]) == (200, "down")


def test_the_answer_names_the_model_and_its_run(server):
    model = _request(server, "POST", "/invocations", json.dumps(_split()))[1]["predictions"][0]["model"]
    assert model == {"name": "stand-in", "version": "3", "uri": "models:/stand-in/3",
                     "run_id": "f" * 32}


def test_instrument_param_is_echoed(server):
    payload = {**_split(), "params": {"instrument": "AAPL"}}
    assert _request(server, "POST", "/invocations", json.dumps(payload))[1]["predictions"][0][
        "instrument"] == "AAPL"


def test_instrument_defaults_to_the_models_only_instrument(server):
    assert _request(server, "POST", "/invocations", json.dumps(_split()))[1]["predictions"][0][
        "instrument"] == "AAA"


def test_instrument_is_null_when_the_model_has_several_and_the_request_names_none(book_server):
    status, body = _request(book_server, "POST", "/invocations", json.dumps(_book()))
    assert (status, body["predictions"][0]["instrument"]) == (200, None)


def test_concurrent_requests_all_succeed(server):
    body = json.dumps(_split())
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda _: _request(server, "POST", "/invocations", body)[0], range(32)))
    assert statuses == [200] * 32


@pytest.mark.parametrize("body, status, message", [
    ("{not json", 400, "malformed JSON"),
    ("[1, 2]", 400, "JSON object"),
    (json.dumps({"inputs": []}), 400, "exactly one of"),
    (json.dumps(_split(columns=("close",))), 400, "missing columns: adj_close"),
    (json.dumps({"dataframe_split": {"columns": ["adj_close", "x"],
                                     "data": [[1.0, 1.0]] * 5}}), 400, "unexpected columns: x"),
    (json.dumps(_split(rows=3)), 400, "too few rows: got 3"),
    (json.dumps(_split()).replace("104.0", "NaN"), 400, "NaN is not allowed"),
    (json.dumps(_split()).replace("104.0", "1e999"), 400, "row 4, field 'adj_close': value inf"),
    (json.dumps(_split()).replace("104.0", "null"), 400, "row 4, field 'adj_close': missing or NaN"),
    (json.dumps(_split()).replace("104.0", '"abc"'), 400, "must hold numbers"),
    (json.dumps({"dataframe_split": {"columns": ["adj_close"], "data": [[1.0, 2.0]] * 5}}), 400,
     "row 0 must be a list of 1"),
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
    srv = _start(None)
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


def _stamped(stamps, closes=None):
    closes = closes or [100.0 + i for i in range(len(stamps))]
    return {"dataframe_split": {"columns": ["timestamp", "adj_close"],
                                "data": [[t, c] for t, c in zip(stamps, closes, strict=True)]}}


def test_timestamps_with_and_without_fractions_are_accepted(server):
    # str(pd.Timestamp) drops a zero fraction, so one payload can mix both ISO forms.
    stamps = ["2024-01-02 09:30:00", "2024-01-02 09:30:00.250000", "2024-01-02 09:30:01",
              "2024-01-02 09:30:01.500000", "2024-01-02 09:30:02.000001"]
    status, body = _request(server, "POST", "/invocations", json.dumps(_stamped(stamps)))
    assert (status, body["predictions"][0]["timestamp"]) == (200, "2024-01-02T09:30:02.000001")


def test_timestamp_with_utc_offset_keeps_it(server):
    payload = {"dataframe_records": [{"timestamp": f"2024-01-02T09:30:0{i}+00:00",
                                      "adj_close": 100.0 + i} for i in range(5)]}
    status, body = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (status, body["predictions"][0]["timestamp"]) == (200, "2024-01-02T09:30:04+00:00")


def test_bad_timestamp_is_a_400(server):
    payload = _stamped(["not a time"] * 5)
    got, reply = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (got, "not dates/times" in reply["message"]) == (400, True)


def test_only_the_last_min_rows_are_checked(server):
    payload = _split(rows=8)
    payload["dataframe_split"]["data"][0][0] = None  # older than the model reads
    assert _request(server, "POST", "/invocations", json.dumps(payload))[0] == 200


def test_integer_and_float_values_mix(server):
    payload = {"dataframe_split": {"columns": ["adj_close"], "data": [[100 + i] for i in range(5)]}}
    status, body = _request(server, "POST", "/invocations", json.dumps(payload))
    assert (status, body["predictions"][0]["direction"]) == (200, "up")


@pytest.mark.parametrize("value", ["true", "[1]", '{"a": 1}', "1e400"])
def test_non_numbers_are_rejected_by_name(server, value):
    body = json.dumps(_split()).replace("104.0", value)
    got, reply = _request(server, "POST", "/invocations", body)
    assert (got, "adj_close" in reply["message"] or "numbers" in reply["message"]) == (400, True), reply


# ------------------------------------------------------------------ the rows ingest rejects


def _book(rows=6, changes=None):
    """One-level book rows, oldest first; `changes[(row, column)] = value` (row counts from 0)."""
    columns = ["timestamp", "ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]
    data = [[f"2024-01-02T09:30:0{i}", 10.01 + 0.01 * i, 100.0, 10.00 + 0.01 * i, 200.0 + i]
            for i in range(rows)]
    for (row, column), value in (changes or {}).items():
        data[row][columns.index(column)] = value
    return {"dataframe_split": {"columns": columns, "data": data}}


def _newest_first():
    payload = _book()
    payload["dataframe_split"]["data"].reverse()
    return payload


def _inf(row, column):
    return json.dumps(_book(changes={(row, column): 7.5})).replace("7.5", "1e999")


@pytest.mark.parametrize("payload, message", [
    (_newest_first(), "row 4, field 'timestamp': timestamp goes backwards "
                      "(2024-01-02T09:30:01.000000000 after 2024-01-02T09:30:02.000000000)"),
    (_book(changes={(4, "timestamp"): "2024-01-02T09:29:00"}),
     "row 4, field 'timestamp': timestamp goes backwards"),
    (_book(changes={(5, "ask_price_1"): 9.0}),
     "row 5, field 'ask_price_1': crossed book: best ask 9.0 < best bid 10.05"),
    (_book(changes={(4, "bid_size_1"): -5}), "row 4, field 'bid_size_1': bid_size_1 -5 is negative"),
    (_book(changes={(3, "ask_size_1"): None}), "row 3, field 'ask_size_1': missing or NaN value"),
    (_inf(5, "bid_price_1"), "row 5, field 'bid_price_1': value inf is not a finite number"),
], ids=["newest-first", "non-monotone", "crossed", "negative-size", "nan", "inf"])
def test_rows_ingest_rejects_get_a_400_with_the_reason_and_a_log_line(book_server, caplog, payload,
                                                                      message):
    with caplog.at_level(logging.WARNING, logger="lobseq.serving.http"):
        body = payload if isinstance(payload, str) else json.dumps(payload)
        status, reply = _request(book_server, "POST", "/invocations", body)
    assert (status, message in reply["message"]) == (400, True), reply
    lines = [r.getMessage() for r in caplog.records if r.name == "lobseq.serving.http"]
    assert len(lines) == 1 and " 400 " in lines[0] and message in lines[0], lines


def test_rows_ingest_accepts_are_served(book_server):
    locked = _book(changes={(5, "ask_price_1"): 10.05})  # ask == bid: locked, not crossed
    assert [_request(book_server, "POST", "/invocations", json.dumps(p))[0]
            for p in (_book(), locked)] == [200, 200]


def test_an_empty_level_is_no_bad_value_but_no_window_may_hold_it(book_server):
    # As in ingest: an empty side (price null, size 0) is a valid row whose features are NaN.
    empty = _book(changes={(4, "ask_price_1"): None, (4, "ask_size_1"): 0.0})
    status, reply = _request(book_server, "POST", "/invocations", json.dumps(empty))
    assert (status, "not all usable" in reply["message"]) == (400, True), reply


def test_every_rejection_is_logged_with_its_status(server, caplog):
    with caplog.at_level(logging.WARNING, logger="lobseq.serving.http"):
        _request(server, "GET", "/nope")
        _request(server, "POST", "/invocations", json.dumps(_split(rows=1000)))
    lines = [r.getMessage() for r in caplog.records if r.name == "lobseq.serving.http"]
    assert [(" 404 " in lines[0]), (" 413 " in lines[1] and "exceeds" in lines[1])] == [True, True]


def test_the_model_can_be_swapped_between_requests(server):
    svc = server.service
    before = svc.model
    try:
        svc.model = bars_model(instruments=("ZZZ",))
        reply = _request(server, "POST", "/invocations", json.dumps(_split()))[1]
    finally:
        svc.model = before
    assert reply["predictions"][0]["instrument"] == "ZZZ"


def test_a_payload_in_the_models_order_needs_no_column_shuffle():
    m = book_model()
    frame, stamps, first = ForecastService.rows_of(
        m.forecaster, _book()["dataframe_split"]["columns"], _book(rows=9)["dataframe_split"]["data"])
    assert (list(frame.columns), len(frame), first, frame.dtypes.unique().tolist()) == (
        m.forecaster.input_columns, 3, 6, [np.dtype("float64")])
