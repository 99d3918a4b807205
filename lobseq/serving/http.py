"""HTTP forecasting service around a logged lobseq model: one WSGI app, two ways to run it.

    POST /invocations   (also /predict)   the `mlflow models serve` payload:
        {"dataframe_split": {"columns": [...], "data": [[...], ...]}, "params": {"instrument": "X"}}
        or {"dataframe_records": [{col: value, ...}, ...]}
      → {"predictions": [{"instrument", "timestamp", "probabilities": {class: p},
                          "direction", "horizon", "model": {"name", "version", "uri", "run_id"}}]}
    GET /health  → 200 while the process is up
    GET /ready   → 200 once the model is loaded (503 before), with the model and how it is
                   followed (the registry alias, how often, the last check)
    GET /metrics → Prometheus text format (`lobseq.serving.metrics`)

Every response carries the headers `X-Model-Name` and `X-Model-Version`: the
model that answered (a prediction also names it in its body).

The request carries the most recent raw snapshots (or bars) of one
instrument, oldest first, at least `min_rows` of them; the answer is the
forecast at the last row. Only the last `min_rows` rows are read; they pass
the row checks ingest applied to the model's source files
(`lobseq.data.validate`: finite values, sizes >= 0, an uncrossed book, and
timestamps in order when a `timestamp` column is sent). Every bad request
gets a 4xx with a message naming the row (its 0-based position in `data`)
and the column; the log has one line per rejected request (status, reason).

`"instrument"` is `params.instrument` when the request names one, else the
model's instrument when it was trained on exactly one, else null.

The model is loaded once into `ForecastService.model` (a `LoadedModel`);
each request reads that attribute once, so assigning a new model swaps it
between requests (`lobseq.serving.follow` does that when the registry alias
moves). Requests run concurrently on the compiled forward pass.

`ForecastApp` is the WSGI app. `lobseq serve` runs it in gunicorn worker
processes (`lobseq.serving.workers`); `make_server` runs it in this process
on a threaded stdlib server (tests, notebooks).
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.serving.loader import LoadedModel
from lobseq.serving.metrics import metrics, render
from lobseq.serving.payload import BadRequest, numeric_block, parse_payload, parse_timestamps

DEFAULT_MAX_BYTES = 8 * 1024 * 1024

logger = logging.getLogger("lobseq.serving.http")


def served_instrument(params: dict, spec: dict) -> str | None:
    """`params.instrument`, else the model's only instrument, else None."""
    given = params.get("instrument")
    if given is not None and not isinstance(given, str):
        raise BadRequest(400, "params.instrument must be a string")
    if given:
        return given
    known = spec.get("instruments") or []
    return known[0] if len(known) == 1 else None


@dataclass
class ForecastService:
    """Validation and prediction, independent of HTTP (what the handler calls)."""

    model: LoadedModel  # assign another LoadedModel to swap models between requests
    max_bytes: int = DEFAULT_MAX_BYTES

    def info(self) -> dict:
        m, f = self.model, self.model.forecaster
        return {"name": m.name, "version": m.version, "uri": m.uri, "run_id": m.run_id,
                "horizon": f.horizon, "window": f.window, "min_rows": f.min_rows,
                "classes": list(f.class_names), "columns": f.input_columns,
                "instruments": f.spec.get("instruments")}

    @staticmethod
    def rows_of(f, columns: list[str], rows: list[list]) -> tuple[pd.DataFrame, Any, int]:
        """Request rows → (float64 frame of the model's columns, timestamps or None, the
        position of the frame's first row in `data`).

        Only the last `min_rows` rows are converted (all the model reads), into
        one float64 block in the model's column order.
        """
        missing = [c for c in f.input_columns if c not in columns]
        if missing:
            raise BadRequest(400, f"missing columns: {', '.join(missing)}")
        extra = [c for c in columns if c not in f.input_columns and c not in f.optional_columns]
        if extra:
            raise BadRequest(400, f"unexpected columns: {', '.join(map(str, extra))} "
                                  f"(the model takes {', '.join(f.input_columns)})")
        if len(rows) < f.min_rows:
            raise BadRequest(400, f"too few rows: got {len(rows)}, the model needs at least "
                                  f"{f.min_rows} (window {f.window} plus feature warm-up)")
        first = len(rows) - f.min_rows
        rows = rows[first:]  # bound the work
        numeric = f.input_columns + [c for c in columns
                                     if c != "timestamp" and c not in f.input_columns]
        frame = pd.DataFrame(numeric_block(columns, rows, numeric), columns=numeric)
        stamps = None
        if "timestamp" in columns:
            k = columns.index("timestamp")
            stamps = parse_timestamps([r[k] for r in rows])
        return frame, stamps, first

    def predict(self, body: bytes) -> dict:
        model = self.model  # one model for the whole request, even if swapped meanwhile
        f = model.forecaster
        columns, rows, params = parse_payload(body)
        instrument = served_instrument(params, f.spec)
        frame, stamps, first = self.rows_of(f, columns, rows)
        try:  # the row checks, features and window rule ingest applied
            proba, ends = f.proba_rows(frame, all_windows=False, first_row=first, timestamps=stamps)
        except LobseqError as e:
            raise BadRequest(400, str(e)) from None
        p, row = proba[-1], int(ends[-1])
        ts = pd.Timestamp(stamps[row]).isoformat() if stamps is not None else None
        names = f.class_names
        return {"predictions": [{
            "instrument": instrument, "timestamp": ts,
            "probabilities": {n: float(v) for n, v in zip(names, p, strict=True)},
            "direction": names[int(np.argmax(p))], "horizon": f.horizon,
            "model": {"name": model.name, "version": model.version, "uri": model.uri,
                      "run_id": model.run_id},
        }]}


_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
            411: "Length Required", 413: "Payload Too Large", 415: "Unsupported Media Type",
            500: "Internal Server Error", 503: "Service Unavailable"}


class ForecastApp:
    """The WSGI app: routes, 4xx with their reasons (one log line each), metrics, model headers.

    `service` is None until the model is loaded (503 meanwhile); `follower` (a
    `lobseq.serving.follow.Follower`, or None) is reported by /ready.
    """

    def __init__(self, service: ForecastService | None = None, follower=None,
                 verbose: bool = False) -> None:
        self.service = service
        self.follower = follower
        self.verbose = verbose
        self.errors = 0  # internal errors (bugs) answered with a 500
        self.load_error: str | None = None  # why the model is not loaded, for /ready

    def __call__(self, environ: dict, start_response) -> list[bytes]:
        t0 = time.perf_counter()
        method = environ.get("REQUEST_METHOD", "GET")
        path = environ.get("PATH_INFO") or "/"
        svc = self.service
        model = svc.model if svc is not None else None
        who = (model.name or model.uri, model.version or "") if model is not None else ("", "")
        if method == "POST":
            status, obj = self._predict(environ, path, svc)
            if status == 200:  # the model that answered, even if swapped meanwhile
                answered = obj["predictions"][0]["model"]
                who = (answered["name"] or answered["uri"], answered["version"] or "")
            ctype, body = "application/json", json.dumps(obj).encode()
        elif path == "/metrics":
            body, ctype = render()
            status = 200
        else:
            status, obj = self._get(environ, path, svc)
            ctype, body = "application/json", json.dumps(obj).encode()
        headers = [("Content-Type", ctype), ("Content-Length", str(len(body))),
                   ("X-Model-Name", str(who[0])), ("X-Model-Version", str(who[1]))]
        start_response(f"{status} {_REASONS.get(status, 'Error')}", headers)
        metrics().observe(path, status, time.perf_counter() - t0)
        return [body]

    def _get(self, environ: dict, path: str, svc) -> tuple[int, dict]:
        if path in ("/health", "/ping"):
            return 200, {"status": "ok"}
        if path == "/ready":
            if svc is None:
                return 503, {"ready": False, "error": self.load_error}
            info = {"ready": True, "model": svc.info()}
            if self.follower is not None:
                info["following"] = self.follower.state()
            return 200, info
        if path in ("/invocations", "/predict"):
            return self._error(environ, 405, "use POST with a JSON body")
        return self._error(environ, 404, f"no such endpoint {path}; try POST /invocations, "
                                         "GET /health, GET /ready, GET /metrics")

    def _predict(self, environ: dict, path: str, svc) -> tuple[int, dict]:
        if path not in ("/invocations", "/predict"):
            return self._error(environ, 404, f"no such endpoint {path}; POST to /invocations")
        if svc is None:
            return self._error(environ, 503, "model not loaded yet")
        length = environ.get("CONTENT_LENGTH")
        if not length:
            return self._error(environ, 411, "Content-Length is required")
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            return self._error(environ, 400, "bad Content-Length")
        if n > svc.max_bytes:  # the body is not read
            return self._error(environ, 413, f"payload of {n} bytes exceeds the limit of "
                                             f"{svc.max_bytes} bytes")
        body = environ["wsgi.input"].read(n)
        ctype = (environ.get("CONTENT_TYPE") or "application/json").split(";")[0].strip()
        if ctype != "application/json":
            return self._error(environ, 415, f"Content-Type must be application/json, got {ctype}")
        try:
            return 200, svc.predict(body)
        except BadRequest as e:
            return self._error(environ, e.status, e.message)
        except Exception as e:  # noqa: BLE001 - a bug, not the client's fault; keep serving
            self.errors += 1
            logger.exception("internal error on %s %s", environ.get("REQUEST_METHOD"), path)
            return self._error(environ, 500, f"internal error: {type(e).__name__}: {e}")

    @staticmethod
    def _error(environ: dict, status: int, message: str) -> tuple[int, dict]:
        # One line per rejected request: who, what, the status and why.
        line = " ".join(filter(None, (environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"),
                                      environ.get("SERVER_PROTOCOL"))))
        logger.warning("%s \"%s\" %d %s", environ.get("REMOTE_ADDR", "-"), line, status, message)
        return status, {"error_code": "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR",
                        "message": message}


class _Handler(WSGIRequestHandler):
    timeout = 30  # a client that stalls mid-request frees its thread

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.app.verbose:
            logger.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not str(code).startswith(("4", "5")):  # a rejection has its own line (`_error`)
            super().log_request(code, size)


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog; the default 5 drops SYNs of a burst of clients (1 s retry)

    def __init__(self, addr, app: ForecastApp) -> None:
        super().__init__(addr, _Handler)
        self.app = app
        self.set_app(app)

    @property
    def service(self) -> ForecastService | None:
        return self.app.service

    @service.setter
    def service(self, value: ForecastService | None) -> None:
        self.app.service = value


def make_server(service: ForecastService | None, host: str = "127.0.0.1", port: int = 8080,
                verbose: bool = False) -> _Server:
    """The app on a threaded stdlib server in this process, bound (not yet serving); port 0
    picks a free one (`server.server_address`). `lobseq serve` uses gunicorn workers instead."""
    return _Server((host, port), ForecastApp(service, verbose=verbose))


def log_to_stderr() -> None:
    """Service log lines (requests, rejections with their reason, model switches) on stderr, once."""
    for name in ("lobseq.serving", "lobseq.tracking"):
        log = logging.getLogger(name)
        if not log.handlers:
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("%(asctime)s [%(process)d] %(levelname)s "
                                                   "%(message)s"))
            log.addHandler(handler)
            log.setLevel(logging.INFO)
            log.propagate = False


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8080,
          max_bytes: int = DEFAULT_MAX_BYTES, log=print, **options) -> None:
    """Serve `model_uri` until Ctrl-C or SIGTERM (`lobseq.serving.workers.serve`: gunicorn
    workers, following the registry alias)."""
    from lobseq.serving.workers import serve as serve_with_workers

    serve_with_workers(model_uri, host=host, port=port, max_bytes=max_bytes, log=log, **options)
