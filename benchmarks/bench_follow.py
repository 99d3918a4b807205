"""Following a promotion: how long until the service answers with the new champion, and how
many requests fail meanwhile (not a test).

    .venv/bin/python -m benchmarks.bench_follow [--workers 2] [--follow-every 1] [--switches 4]

The store is a local sqlite one (no tracking server: this measures the follower
and the switch, not the network; tests/test_team_serve.py does the same against
a real `mlflow server`). Two versions of the bench_serve model (LSTM(64),
T=100, F=40) are registered; `lobseq serve models:/NAME@champion --workers W
--follow-every S` runs as a subprocess on 127.0.0.1 while client threads POST
forecasts in a loop on keep-alive connections. The champion then moves back and
forth (`lobseq.registry.promote`) `--switches` times; for each move:

  first_answer_s   end of the promote call -> first answer from the new version
  all_workers_s    ... -> every worker serves it (/metrics lobseq_model_served)
  last_old_s       ... -> last answer from the old version (workers switch apart)
  load_s           each worker's "loaded and warmed up beside it in X s" (its log)

A poll comes on average S/2 after the move (at most S); the rest is loading and
warming up the new version beside the old one. Every request that did not get a
200 counts as failed. Writes benchmarks/results/follow.json and prints a summary
with the load average (the machine is shared).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

NAME = "bench-follow"
LOADED = re.compile(r"following \S+: v(\S+) -> v(\S+) \(loaded and warmed up beside it in ([\d.]+) s\)")


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
    """Workers serving each version now (lobseq_model_served, summed over live workers)."""
    from lobseq.serving.metrics import served_versions

    status, text = _get(port, "/metrics")
    return served_versions(text) if status == 200 else {}


def _wait(condition, timeout: float, what: str, every: float = 0.05) -> float:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
    return time.monotonic()


class Client(threading.Thread):
    """POSTs one forecast request in a loop; logs (done, status or 0 = failed, version, latency)."""

    def __init__(self, port: int, body: bytes) -> None:
        super().__init__(daemon=True)
        self.port, self.body, self.stop = port, body, threading.Event()
        self.answers: list[tuple[float, int, str, float]] = []

    def run(self) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        while not self.stop.is_set():
            t = time.monotonic()
            try:
                conn.request("POST", "/invocations", body=self.body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                payload = json.loads(resp.read())
                version = payload["predictions"][0]["model"]["version"] if resp.status == 200 else ""
                self.answers.append((time.monotonic(), resp.status, version, time.monotonic() - t))
            except (OSError, ValueError, KeyError, http.client.HTTPException):
                self.answers.append((time.monotonic(), 0, "", time.monotonic() - t))
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        conn.close()


def register_versions(work: Path) -> Path:
    """Two registered LSTM(64) versions on one simulated 10-level book; returns the raw folder."""
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.registry import promote
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import train_and_log

    raw = work / "raw"
    simulate_lobster(raw, events=6000, levels=10, days=1, seed=0)
    ingest([raw], work / "ds", IngestConfig(format="lobster", window=100, horizon=10,
                                            features=[{"name": "book", "levels": 10}]),
           log=lambda m: None)
    for seed in (0, 1):
        train_and_log(work / "ds", TrainConfig(model="lstm", epochs=1, max_train_windows=256,
                                               max_val_windows=64, hyper={"units": 64}, seed=seed),
                      experiment="bench-follow", register=NAME, log=lambda m: None)
    promote(NAME, "1")
    return raw


def request_body(raw: Path, ready: dict) -> bytes:
    from lobseq.data.sources import read_sources
    from lobseq.serving.payload import split_payload

    return split_payload(read_sources([str(raw)], "lobster")[0].frame, ready["columns"],
                         ready["min_rows"])


def switch(port: int, target: str, workers: int, log: Path, settle_s: float) -> dict:
    """Promote `target`, wait until every worker serves it; times from the promote's end."""
    from lobseq.registry import promote

    loads_before = len(LOADED.findall(log.read_text()))
    t0 = time.monotonic()
    promote(NAME, target)
    moved = time.monotonic()
    done = _wait(lambda: _served(port).get(target) == workers, 300, f"every worker on v{target}")
    _wait(lambda: len(LOADED.findall(log.read_text())) >= loads_before + workers, 30,
          "the workers' switch lines")
    time.sleep(settle_s)  # answers after the switch, before the next one
    loads = [float(s) for *_v, s in LOADED.findall(log.read_text())[loads_before:]]
    return {"to": target, "promote_call_s": moved - t0, "moved": moved,
            "all_workers_s": done - moved, "load_s": loads}


def measure(uri_env: dict, raw: Path, args, work: Path) -> tuple[list[dict], list]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    log = work / "serve.log"
    cmd = [sys.executable, "-c", "from lobseq.cli import main; main()", "serve",
           f"models:/{NAME}@champion", "--port", str(port), "--workers", str(args.workers),
           "--follow-every", str(args.follow_every)]
    with log.open("w") as out:
        proc = subprocess.Popen(cmd, env=uri_env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    clients: list[Client] = []
    try:
        _wait(lambda: _served(port).get("1") == args.workers or proc.poll() is not None, 300,
              "every worker to serve v1", every=0.5)
        if proc.poll() is not None:
            raise RuntimeError(f"lobseq serve exited:\n{log.read_text()[-3000:]}")
        body = request_body(raw, json.loads(_get(port, "/ready")[1])["model"])
        clients = [Client(port, body) for _ in range(args.clients)]
        for c in clients:
            c.start()
        time.sleep(args.settle)
        switches = [switch(port, "2" if i % 2 == 0 else "1", args.workers, log, args.settle)
                    for i in range(args.switches)]
    finally:
        for c in clients:
            c.stop.set()
        for c in clients:
            c.join(30)
        proc.terminate()
        proc.wait(60)
    return switches, sorted(a for c in clients for a in c.answers)


def summarize(switches: list[dict], answers: list) -> list[dict]:
    for i, sw in enumerate(switches):
        end = switches[i + 1]["moved"] if i + 1 < len(switches) else float("inf")
        after = [a for a in answers if sw["moved"] <= a[0] < end]
        new = [t for t, status, v, _lat in after if status == 200 and v == sw["to"]]
        old = [t for t, status, v, _lat in after if status == 200 and v != sw["to"]]
        lat = sorted(lat for t, _s, _v, lat in after if t - sw["moved"] <= sw["all_workers_s"] + 1)
        sw.update(first_answer_s=new[0] - sw["moved"] if new else None,
                  last_old_s=old[-1] - sw["moved"] if old else 0.0,
                  failed=sum(1 for a in after if a[1] != 200), answered=len(after),
                  max_latency_during_switch_ms=1000 * lat[-1] if lat else None)
        del sw["moved"]
    return switches


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--follow-every", type=float, default=1.0)
    ap.add_argument("--switches", type=int, default=4, help="alias moves (v1 -> v2 -> v1 ...)")
    ap.add_argument("--clients", type=int, default=4, help="client threads looping meanwhile")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds of answers around moves")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="lobseq-bench-follow-") as tmp:
        work = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
        raw = register_versions(work)
        env = {k: v for k, v in os.environ.items()}
        switches, answers = measure(env, raw, args, work)
    switches = summarize(switches, answers)
    failed = sum(1 for a in answers if a[1] != 200)
    first = [s["first_answer_s"] for s in switches if s["first_answer_s"] is not None]
    loads = [x for s in switches for x in s["load_s"]]
    summary = {"requests": len(answers), "failed": failed,
               "first_answer_s_mean": sum(first) / len(first),
               "first_answer_s_max": max(first),
               "all_workers_s_mean": sum(s["all_workers_s"] for s in switches) / len(switches),
               "load_s_mean": sum(loads) / len(loads),
               "poll_wait_s_expected": args.follow_every / 2}
    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "load_average_before": load_before, "load_average_after": os.getloadavg()[0],
            "store": "sqlite (local)", "model": "lstm(64), window 100, 40 features",
            "workers": args.workers, "follow_every_s": args.follow_every, "clients": args.clients}
    out = Path(__file__).resolve().parent / "results" / "follow.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "summary": summary, "switches": switches}, indent=2))
    print(f"{'switch':<8}{'first s':>9}{'all s':>8}{'last old s':>12}{'load s':>14}{'failed':>8}"
          f"{'answers':>9}{'max ms':>9}")
    for s in switches:
        loads_txt = "/".join(f"{x:.1f}" for x in s["load_s"])
        print(f"{'v' + s['to']:<8}{s['first_answer_s']:>9.2f}{s['all_workers_s']:>8.2f}"
              f"{s['last_old_s']:>12.2f}{loads_txt:>14}{s['failed']:>8}{s['answered']:>9}"
              f"{s['max_latency_during_switch_ms'] or 0:>9.0f}")
    print(f"{summary['requests']} requests, {failed} failed; first answer from the new version "
          f"{summary['first_answer_s_mean']:.2f} s after the move on average (poll wait ~"
          f"{args.follow_every / 2:g} s, loading {summary['load_s_mean']:.2f} s); load average "
          f"{load_before:.2f} -> {meta['load_average_after']:.2f}; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
