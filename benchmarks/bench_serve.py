"""Serving latency and throughput for an LSTM at T=100, F=40 (not a test).

    .venv/bin/python -m benchmarks.bench_serve [--requests 300] [--seconds 20]

Trains a tiny LSTM on a simulated 10-level book (raw `book` features: 40
columns), logs it, loads it once through `lobseq.serving.loader.load_model`, and
measures, all on this machine:

  forward      the forward pass the service uses on one (1, 100, 40) window
               (XLA-compiled for batch 1)
  forward_graph  the plain tf.function graph pass (any batch size) on it
  keras        `model.predict` on the same window, per request (in-process)
  service      `ForecastService.predict` on a JSON body (parse, validate,
               features, window, forward) without HTTP
  http wW xN   `lobseq serve MODEL --workers W` (a subprocess: gunicorn, W
               pre-forked workers, 8 threads each) answering POST /invocations
               over loopback keep-alive connections from N = 1 and 16
               concurrent clients (threads of this process), W = 1 and 2

Requests are bounded in count and time; the server binds 127.0.0.1 only.
Writes benchmarks/results/serve.json and prints a table. The machine is
shared: run it when nothing else runs (the table notes the load average).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

import numpy as np  # noqa: E402


def _percentiles(lat: list[float]) -> dict:
    a = np.asarray(lat) * 1000
    return {"n": len(a), "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
            "mean_ms": float(a.mean())}


def _timed(fn, n: int, budget_s: float) -> list[float]:
    out, stop = [], time.perf_counter() + budget_s
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
        if t > stop:
            break
    return out


def _served(port: int) -> float:
    """Workers serving a model now (lobseq_model_served, summed over live workers)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return 0.0
    from lobseq.serving.metrics import served_versions

    return sum(served_versions(text).values())


def _load(port: int, body: bytes, clients: int, requests: int, seconds: float) -> dict:
    """`clients` keep-alive connections POSTing `body`, bounded in count and time."""

    per_client = max(1, requests // clients)
    deadline = time.perf_counter() + seconds

    def client(_):
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        lat = []
        for _ in range(per_client):
            if time.perf_counter() > deadline:
                break
            t = time.perf_counter()
            conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
            resp = conn.getresponse()
            resp.read()
            lat.append(time.perf_counter() - t)
            assert resp.status == 200, resp.status
        conn.close()
        return lat

    t0 = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        lats = [x for part in pool.map(client, range(clients)) for x in part]
    wall = time.perf_counter() - t0
    return {**_percentiles(lats), "clients": clients, "throughput_rps": len(lats) / wall}


def serve_workers(uri: str, body: bytes, workers: int, args) -> dict:
    """Start `lobseq serve URI --workers W` on a free loopback port, measure 1 and 16 clients."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-c", "from lobseq.cli import main; main()", "serve", uri, "--port",
           str(port), "--workers", str(workers), "--follow-every", "0"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while _served(port) < workers:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"lobseq serve --workers {workers} did not come up")
            time.sleep(0.5)
        _load(port, body, 16, 16 * 20, 10)  # warm up every worker's threads and connections
        return {f"http_w{workers}_x{c}": {**_load(port, body, c, args.requests * (c > 1 and 4 or 1),
                                                  args.seconds), "workers": workers}
                for c in (1, 16)}
    finally:
        proc.terminate()
        proc.wait(60)


def build_model(work: Path):
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.serving.loader import load_model
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import model_uri, train_and_log

    raw = work / "raw"
    simulate_lobster(raw, events=6000, levels=10, days=1, seed=0)
    ingest([raw], work / "ds", IngestConfig(format="lobster", window=100, horizon=10,
                                            features=[{"name": "book", "levels": 10}]),
           log=lambda m: None)
    run_id = train_and_log(work / "ds", TrainConfig(model="lstm", epochs=1, max_train_windows=256,
                                                    max_val_windows=64, hyper={"units": 64}),
                           experiment="bench-serve", log=lambda m: None)
    return load_model(model_uri(run_id)), raw


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=300, help="requests per measurement (bound)")
    ap.add_argument("--seconds", type=float, default=20.0, help="time bound per measurement")
    ap.add_argument("--workers", type=lambda t: [int(w) for w in t.split(",")], default=[1, 2],
                    help="worker counts of `lobseq serve` to measure (comma-separated)")
    args = ap.parse_args(argv)
    load_start = os.getloadavg()[0]

    from lobseq.data.sources import read_sources
    from lobseq.serving.http import ForecastService
    from lobseq.serving.payload import split_payload

    with tempfile.TemporaryDirectory(prefix="lobseq-bench-") as tmp:
        work = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{work}/mlflow.db"
        model, raw = build_model(work)
        f = model.forecaster
        assert (f.window, f.n_features) == (100, 40), (f.window, f.n_features)
        frame = read_sources([str(raw)], "lobster")[0].frame
        body = split_payload(frame, [c for c in frame.columns if c in f.input_columns], f.min_rows)
        window, _ = f.windows(frame.iloc[-f.min_rows:].reset_index(drop=True))
        service = ForecastService(model, max_bytes=len(body) * 4)
        results: dict[str, dict] = {}
        for _ in range(20):  # warm up traced graphs and caches
            f.forward(window)
            getattr(f, "_forward", f.forward)(window)
            service.predict(body)
        results["forward"] = _percentiles(_timed(lambda: f.forward(window), args.requests, args.seconds))
        graph = getattr(f, "_forward", None)
        if graph is not None:
            results["forward_graph"] = _percentiles(
                _timed(lambda: graph(window).numpy(), args.requests, args.seconds))
        n_keras = min(args.requests, 100)
        results["keras_predict"] = _percentiles(
            _timed(lambda: f.model.predict(window, verbose=0), n_keras, args.seconds))
        results["service_inproc"] = _percentiles(
            _timed(lambda: service.predict(body), args.requests, args.seconds))

        for workers in args.workers:
            results.update(serve_workers(model.uri, body, workers, args))

    meta = {"machine": platform.machine(), "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "load_average_start": load_start, "load_average": os.getloadavg()[0], "server": "lobseq serve (gunicorn gthread, 8 threads)",
            "payload_bytes": len(body), "rows_per_request": f.min_rows, "window": 100,
            "features": 40, "model": "lstm(64)"}
    out = Path(__file__).resolve().parent / "results" / "serve.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"meta": meta, "results": results}, indent=2))
    fwd = results["forward"]["p50_ms"]
    print(f"{'measurement':<16}{'n':>6}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>10}{'p50/forward':>13}")
    for k, r in results.items():
        rps = r.get("throughput_rps", 1000 / r["mean_ms"])
        print(f"{k:<16}{r['n']:>6}{r['p50_ms']:>10.2f}{r['p99_ms']:>10.2f}{rps:>10.0f}"
              f"{r['p50_ms'] / fwd:>13.1f}")
    print(f"payload {len(body):,} bytes, {f.min_rows} rows; written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
