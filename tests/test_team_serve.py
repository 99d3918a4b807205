"""`lobseq serve models:/NAME@champion --workers 2` against the real tracking server, following
the alias while a client sends requests in a loop.

Versions: v1 and v2 are tiny GRUs; v3 is registered from a run whose "model" is no lobseq model.
The service starts on v1 (the champion). Promoting v3 must change nothing served (both workers
log why); promoting v2 must switch both workers. The client counts every answer: none may fail.
"""

from __future__ import annotations

import http.client
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from team_services import free_port, wait_for

from lobseq.serving.metrics import served_versions

pytestmark = [pytest.mark.team, pytest.mark.slow, pytest.mark.timeout(900)]

NAME = "team-serve"
WORKERS = 2


def _register_versions(root: Path) -> Path:
    """v1, v2: lobseq models; v3: a registered "model" lobseq cannot load. Returns raw files."""
    import mlflow
    from conftest import logged_model

    first = logged_model(root / "a", seed=0, events=1500, days=1, register=NAME)
    logged_model(root / "b", seed=1, events=1500, days=1, register=NAME)
    from lobseq.tracking import ensure_experiment

    # an explicit experiment id: mlflow.set_experiment would leak into later tests' stores
    with mlflow.start_run(experiment_id=ensure_experiment("team-serve-broken")) as run:
        mlflow.log_text("artifact_path: model\nflavors:\n  python_function: {}\n", "model/MLmodel")
    mlflow.MlflowClient().create_model_version(NAME, f"{run.info.artifact_uri}/model",
                                               run_id=run.info.run_id)
    return Path(first.raw[0]).parent


def _body(raw: Path, info: dict) -> bytes:
    from lobseq.data.sources import read_sources
    from lobseq.serving.payload import split_payload

    return split_payload(read_sources([str(raw)], "lobster")[0].frame, info["columns"], info["min_rows"])


def _get(port: int, path: str) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    except OSError:
        return 0, ""
    finally:
        conn.close()


def _served(port: int) -> dict[str, float]:
    status, text = _get(port, "/metrics")
    return served_versions(text) if status == 200 else {}


class Client(threading.Thread):
    """POST the same forecast request in a loop on one keep-alive connection; log every answer."""

    def __init__(self, port: int, body: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.body = port, body
        self.answers: list[tuple[float, int, str]] = []  # (time, status or 0 = failed, version)
        self.stop = threading.Event()

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set() and len(self.answers) < 200_000:
            try:
                conn.request("POST", "/invocations", body=self.body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = json.loads(resp.read())
                version = payload["predictions"][0]["model"]["version"] if resp.status == 200 else ""
                self.answers.append((time.monotonic(), resp.status, version))
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                self.answers.append((time.monotonic(), 0, ""))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()


@pytest.fixture(scope="module")
def followed(module_team_store, tmp_path_factory):
    from lobseq import registry

    raw = _register_versions(tmp_path_factory.mktemp("serve-models"))
    registry.promote(NAME, "1")
    port, log = free_port(), module_team_store.root / "serve.log"
    cmd = [str(Path(sys.executable).with_name("lobseq")), "serve", f"models:/{NAME}@champion",
           "--port", str(port), "--workers", str(WORKERS), "--follow-every", "1"]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=module_team_store.env(), stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    client = None
    try:
        wait_for(lambda: _served(port).get("1") == WORKERS or proc.poll() is not None, 300,
                 "both workers to serve v1")
        assert proc.poll() is None, log.read_text()
        ready = json.loads(_get(port, "/ready")[1])
        client = Client(port, _body(raw, ready["model"]))
        client.start()
        wait_for(lambda: len(client.answers) >= 20, 60, "the client's first answers")
        t_bad = time.monotonic()
        registry.promote(NAME, "3")  # not loadable: nothing may change
        wait_for(lambda: log.read_text().count("failed to load; still serving v1") >= WORKERS, 120,
                 "both workers to reject v3")
        t_promote = time.monotonic()
        registry.promote(NAME, "2")
        wait_for(lambda: _served(port).get("2") == WORKERS, 180, "both workers to serve v2")
        t_all = time.monotonic()
        time.sleep(1.0)
        client.stop.set()
        client.join(30)
        metrics = _get(port, "/metrics")[1]
        ready_after = json.loads(_get(port, "/ready")[1])
    finally:
        if client is not None:
            client.stop.set()
        proc.terminate()  # SIGTERM: gunicorn stops its workers gracefully
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    first_v2 = next(t for t, status, v in client.answers if v == "2")
    times = {"first_answer_from_v2_s": first_v2 - t_promote, "all_workers_on_v2_s": t_all - t_promote}
    print(f"\nfollow: {len(client.answers)} requests, {times}")
    return {"answers": client.answers, "t_bad": t_bad, "t_promote": t_promote, "times": times,
            "metrics": metrics, "ready": ready_after, "log": log.read_text(), "code": proc.returncode}


def test_no_request_failed_while_the_champion_moved(followed):
    statuses = [status for _t, status, _v in followed["answers"]]
    assert len(statuses) > 50 and set(statuses) == {200}, sorted(set(statuses))


def test_the_service_switched_to_the_new_champion(followed):
    last = [v for _t, _s, v in followed["answers"][-20:]]
    assert last == ["2"] * 20 and followed["times"]["all_workers_on_v2_s"] > 0


def test_a_champion_that_fails_to_load_leaves_the_old_one_serving(followed):
    between = {v for t, _s, v in followed["answers"] if followed["t_bad"] <= t < followed["t_promote"]}
    assert between == {"1"}
    assert "now names v3, which failed to load; still serving v1" in followed["log"]
    assert "is not a lobseq model" in followed["log"]


def test_versions_are_served_in_order_without_going_back(followed):
    versions = [v for _t, _s, v in followed["answers"]]
    switch = versions.index("2")
    assert set(versions[:switch]) == {"1"} and "3" not in versions


def test_ready_names_the_version_served_and_the_alias_followed(followed):
    ready = followed["ready"]
    assert (ready["model"]["version"], ready["model"]["uri"], ready["following"]["alias"]) == (
        "2", f"models:/{NAME}@champion", f"{NAME}@champion")


def test_metrics_add_up_every_worker(followed):
    text = followed["metrics"]
    served = served_versions(text)
    ok = sum(float(n) for n in re.findall(
        r'^lobseq_requests_total\{endpoint="invocations",status="200"\} (\S+)$', text, re.M))
    answered = sum(1 for _t, s, _v in followed["answers"] if s == 200)
    assert (float(served["2"]), float(served.get("1", 0))) == (WORKERS, 0)
    assert ok == answered


def test_the_service_stops_cleanly_on_sigterm(followed):
    assert followed["code"] == 0, followed["log"][-2000:]
