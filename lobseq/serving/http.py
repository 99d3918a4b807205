"""HTTP forecasting service around a logged lobseq model (stdlib `ThreadingHTTPServer`).

    POST /invocations   (also /predict)   the `mlflow models serve` payload:
        {"dataframe_split": {"columns": [...], "data": [[...], ...]}, "params": {"instrument": "X"}}
        or {"dataframe_records": [{col: value, ...}, ...]}
      → {"predictions": [{"instrument", "timestamp", "probabilities": {class: p},
                          "direction", "horizon", "model": {"name", "version", "uri", "run_id"}}]}
    GET /health  → 200 while the process is up
    GET /ready   → 200 once the model is loaded (503 before)

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
between requests. Requests run concurrently on the compiled forward pass.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.serving.loader import LoadedModel
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


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)
    timeout = 30  # a client that stalls mid-request frees its thread
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            logger.info("%s %s", self.address_string(), format % args)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        if not isinstance(code, int) or code < 400:  # a rejection has its own line (`_error`)
            super().log_request(code, size)

    def _send(self, status: int, obj: dict) -> None:
        body = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str) -> None:
        # One line per rejected request: who, what, the status and why.
        logger.warning("%s \"%s\" %d %s", self.address_string(), self.requestline, status, message)
        self._send(status, {"error_code": "BAD_REQUEST" if status < 500 else "INTERNAL_ERROR",
                            "message": message})

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        svc = self.server.service
        if path in ("/health", "/ping"):
            self._send(200, {"status": "ok"})
        elif path == "/ready":
            if svc is None:
                self._send(503, {"ready": False})
            else:
                self._send(200, {"ready": True, "model": svc.info()})
        elif path in ("/invocations", "/predict"):
            self._error(405, "use POST with a JSON body")
        else:
            self._error(404, f"no such endpoint {path}; try POST /invocations, GET /health, GET /ready")

    def do_POST(self) -> None:  # noqa: N802
        path = self.path.split("?", 1)[0]
        svc = self.server.service
        if path not in ("/invocations", "/predict"):
            self._error(404, f"no such endpoint {path}; POST to /invocations")
            return
        if svc is None:
            self._error(503, "model not loaded yet")
            return
        ctype = self.headers.get("Content-Type", "application/json").split(";")[0].strip()
        length = self.headers.get("Content-Length")
        if length is None:
            self.close_connection = True
            self._error(411, "Content-Length is required")
            return
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, "bad Content-Length")
            return
        if n > svc.max_bytes:
            self.close_connection = True  # the body is not read
            self._error(413, f"payload of {n} bytes exceeds the limit of {svc.max_bytes} bytes")
            return
        body = self.rfile.read(n)
        if ctype != "application/json":
            self._error(415, f"Content-Type must be application/json, got {ctype}")
            return
        try:
            self._send(200, svc.predict(body))
        except BadRequest as e:
            self._error(e.status, e.message)
        except Exception as e:  # noqa: BLE001 - a bug, not the client's fault; keep serving
            self.server.errors += 1
            logger.exception("internal error on %s", self.requestline)
            self._error(500, f"internal error: {type(e).__name__}: {e}")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128  # listen backlog; the default 5 drops SYNs of a burst of clients (1 s retry)

    def __init__(self, addr, service: ForecastService | None, verbose: bool = False) -> None:
        super().__init__(addr, _Handler)
        self.service = service
        self.verbose = verbose
        self.errors = 0


def make_server(service: ForecastService | None, host: str = "127.0.0.1", port: int = 8080,
                verbose: bool = False) -> _Server:
    """A bound (not yet serving) server; port 0 picks a free one (`server.server_address`)."""
    return _Server((host, port), service, verbose)


def _log_to_stderr() -> None:
    """Service log lines (requests, rejections with their reason) on stderr, once."""
    if not logger.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8080,
          max_bytes: int = DEFAULT_MAX_BYTES, log=print) -> None:
    """Load the model once, then answer requests until Ctrl-C or SIGTERM."""
    import signal

    from lobseq.serving.loader import load_model

    _log_to_stderr()
    server = make_server(None, host, port, verbose=True)  # /health answers while loading
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        server.service = ForecastService(load_model(model_uri), max_bytes=max_bytes)
        info = server.service.info()
        log(f"Serving {server.service.model.label} (window {info['window']}, "
            f"needs {info['min_rows']} rows) on http://{host}:{server.server_address[1]}  "
            "— POST /invocations, GET /health, GET /ready")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
