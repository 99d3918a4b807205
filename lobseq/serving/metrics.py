"""The service's Prometheus metrics (`prometheus-client`), correct across worker processes.

    lobseq_requests_total{endpoint, status}          requests answered
    lobseq_request_duration_seconds{endpoint}        latency histogram (server side)
    lobseq_model_served{name, version}               worker processes serving that version
    lobseq_model_switches_total                      versions switched to while following
    lobseq_model_load_failures_total                 new versions that failed to load

With several workers (`lobseq serve --workers N`) every process writes its
values to files in `PROMETHEUS_MULTIPROC_DIR` (set before prometheus_client is
imported) and GET /metrics, whichever worker answers it, adds them up
(prometheus-client's multiprocess mode; `lobseq_model_served` sums live
workers only, and a worker that exits is marked dead). In one process the
default registry answers.
"""

from __future__ import annotations

import functools
import os
import re

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
ENDPOINTS = {"/invocations": "invocations", "/predict": "invocations", "/ready": "ready",
             "/health": "health", "/ping": "health", "/metrics": "metrics"}
# The service answers in ~1-5 ms; a loaded box or a model switch pushes that to 100s of ms.
BUCKETS = (0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)


def served_versions(text: str) -> dict[str, float]:
    """`lobseq_model_served` by version from a /metrics answer (summed over the live workers):
    what a client watching a switch reads."""
    found = re.findall(r'^lobseq_model_served\{name="[^"]*",version="([^"]*)"\} (\S+)$', text, re.M)
    return {version: float(n) for version, n in found}


def endpoint_of(path: str) -> str:
    """A bounded label for a request path (unknown paths share one)."""
    return ENDPOINTS.get(path, "other")


class ServiceMetrics:
    """The metric objects, created once per process."""

    def __init__(self) -> None:
        from prometheus_client import Counter, Gauge, Histogram

        self.requests = Counter("lobseq_requests", "HTTP requests answered",
                                ["endpoint", "status"])
        self.latency = Histogram("lobseq_request_duration_seconds",
                                 "Time from request to response, in the server", ["endpoint"],
                                 buckets=BUCKETS)
        self.served = Gauge("lobseq_model_served", "Worker processes serving this model version",
                            ["name", "version"], multiprocess_mode="livesum")
        self.switches = Counter("lobseq_model_switches",
                                "Model versions switched to while following a registry alias")
        self.load_failures = Counter("lobseq_model_load_failures",
                                     "New model versions that failed to load (the old one kept "
                                     "serving)")

    def observe(self, path: str, status: int, seconds: float) -> None:
        endpoint = endpoint_of(path)
        self.requests.labels(endpoint, str(status)).inc()
        self.latency.labels(endpoint).observe(seconds)

    def now_serving(self, model, previous=None) -> None:
        """This process serves `model` (a `LoadedModel`) instead of `previous`."""
        if previous is not None:
            self.served.labels(previous.name or previous.uri, previous.version or "").set(0)
        self.served.labels(model.name or model.uri, model.version or "").set(1)


@functools.lru_cache(maxsize=1)
def metrics() -> ServiceMetrics:
    return ServiceMetrics()


def render() -> tuple[bytes, str]:
    """(body, content type) of GET /metrics: every worker's values when there are several."""
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

    metrics()  # the families exist (at 0) before the first request
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry), CONTENT_TYPE_LATEST
    return generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def worker_exited(pid: int) -> None:
    """Forget a dead worker's live gauges (multiprocess mode)."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
