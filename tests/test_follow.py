"""Following a registry alias (`lobseq.serving.follow.Follower`) and the service's /metrics and
model headers, in this process with stand-in models (no TensorFlow, no server).

The real thing (a promote while a client sends requests to `lobseq serve --workers 2`) is in
test_team_serve.py.
"""

import dataclasses
import http.client
import json
import logging
import threading

import pytest
from standin_models import bars_model

from lobseq.errors import LobseqError
from lobseq.serving.follow import Follower, alias_of
from lobseq.serving.http import ForecastService, make_server

ALIAS_URI = "models:/stand-in@champion"


def _model(version: str):
    return dataclasses.replace(bars_model(), uri=ALIAS_URI, version=version)


def _follower(current="3", names="3", load=None):
    service = ForecastService(_model(current))
    state = {"names": names, "loads": []}

    def resolve(name, alias):
        if isinstance(state["names"], Exception):
            raise state["names"]
        return state["names"]

    def default_load(name, version, uri):
        state["loads"].append(version)
        return dataclasses.replace(_model(version), uri=uri)

    return service, Follower(service, 1.0, resolve=resolve, load=load or default_load), state


def test_alias_of_reads_name_and_alias():
    assert [alias_of(u) for u in (ALIAS_URI, "models:/m/3", "runs:/abc/model")] == [
        ("stand-in", "champion"), None, None]


def test_a_uri_without_an_alias_cannot_be_followed():
    with pytest.raises(LobseqError, match="names no alias"):
        Follower(ForecastService(bars_model()), 60)


def test_nothing_happens_while_the_alias_stays():
    service, follower, state = _follower(names="3")
    assert (follower.check(), service.model.version, state["loads"]) == ("same", "3", [])


def test_a_moved_alias_loads_the_new_version_then_swaps_it_in():
    service, follower, state = _follower(names="4")
    assert (follower.check(), service.model.version, service.model.uri, state["loads"]) == (
        "switched", "4", ALIAS_URI, ["4"])


def test_a_version_that_fails_to_load_leaves_the_old_one_serving_and_says_why(caplog):
    def broken(name, version, uri):
        raise LobseqError(f"'models:/{name}/{version}' is not a lobseq model")

    service, follower, _ = _follower(names="5", load=broken)
    with caplog.at_level(logging.WARNING, logger="lobseq.serving.follow"):
        outcome = follower.check()
    assert (outcome, service.model.version) == ("failed", "3")
    assert any("v5, which failed to load; still serving v3" in r.getMessage()
               and "not a lobseq model" in r.getMessage() for r in caplog.records)


def test_a_broken_version_is_not_retried_until_the_alias_moves_again():
    calls = []

    def broken(name, version, uri):
        calls.append(version)
        raise LobseqError("not a lobseq model")

    _service, follower, state = _follower(names="5", load=broken)
    follower.check()
    follower.check()
    state["names"] = "6"
    follower.check()
    assert calls == ["5", "6"]


def test_an_unreachable_registry_keeps_the_model_and_is_reported():
    service, follower, state = _follower(names=RuntimeError("connection refused"))
    assert (follower.check(), service.model.version) == ("unreachable", "3")
    assert "connection refused" in follower.state()["last_error"]


# ------------------------------------------------------------------ /metrics, model headers


@pytest.fixture(scope="module")
def server():
    srv = make_server(ForecastService(bars_model()), "127.0.0.1", 0)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    yield srv
    srv.shutdown()
    srv.server_close()


def _get(srv, method, path, body=None):
    conn = http.client.HTTPConnection("127.0.0.1", srv.server_address[1], timeout=10)
    try:
        conn.request(method, path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read().decode()
    finally:
        conn.close()


BODY = json.dumps({"dataframe_split": {"columns": ["adj_close"],
                                       "data": [[100.0 + i] for i in range(5)]}})


def test_every_response_names_the_model_version(server):
    versions = [_get(server, m, p, b)[1].get("X-Model-Version")
                for m, p, b in (("GET", "/health", None), ("GET", "/ready", None),
                                ("GET", "/nope", None), ("POST", "/invocations", BODY))]
    assert versions == ["3"] * 4


def _sample(text: str, name: str, **labels) -> float:
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    line = next(line for line in text.splitlines() if line.startswith(f"{name}{{{want}}}"))
    return float(line.rsplit(" ", 1)[1])


def test_metrics_count_the_requests_by_endpoint_and_status(server):
    before = _get(server, "GET", "/metrics")[2]
    ok0 = _sample(before, "lobseq_requests_total", endpoint="invocations", status="200") \
        if 'endpoint="invocations",status="200"' in before else 0.0
    for _ in range(3):
        _get(server, "POST", "/invocations", BODY)
    _get(server, "POST", "/invocations", "{")
    status, headers, text = _get(server, "GET", "/metrics")
    assert (status, headers["Content-Type"].startswith("text/plain")) == (200, True)
    assert _sample(text, "lobseq_requests_total", endpoint="invocations", status="200") == ok0 + 3
    assert _sample(text, "lobseq_requests_total", endpoint="invocations", status="400") >= 1
    assert "lobseq_request_duration_seconds_bucket" in text
