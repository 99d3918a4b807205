"""HTTP forecasting service around a logged lobseq model (stdlib `ThreadingHTTPServer`).

    POST /invocations   (also /predict)   the `mlflow models serve` payload:
        {"dataframe_split": {"columns": [...], "data": [[...], ...]}, "params": {"instrument": "X"}}
        or {"dataframe_records": [{col: value, ...}, ...]}
      → {"predictions": [{"instrument", "timestamp", "probabilities": {class: p},
                          "direction", "horizon", "model": {"name", "version", "uri"}}]}
    GET /health  → 200 while the process is up
    GET /ready   → 200 once the model is loaded (503 before)

The request carries the most recent raw snapshots (or bars) of one
instrument, oldest first, at least `min_rows` of them; the answer is the
forecast at the last row. Every bad request gets a 4xx with a message.
The model is loaded once; requests run concurrently on the compiled
forward pass (a lock serializes models that say they are not thread-safe).
"""

from __future__ import annotations

import json
import operator
import threading
import warnings
from contextlib import nullcontext
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import chain
from typing import Any

import numpy as np
import pandas as pd

from lobseq.errors import LobseqError
from lobseq.serving.predict import ForecastModel

DEFAULT_MAX_BYTES = 8 * 1024 * 1024


class BadRequest(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def _reject_constant(name: str):
    raise BadRequest(400, f"{name} is not allowed: every value must be a finite number")


def parse_payload(body: bytes) -> tuple[list[str], list[list], dict]:
    """The two `mlflow models serve` JSON layouts → (columns, rows, params).

    Rows stay the parsed JSON lists: the service converts only the rows and
    columns it uses, in one step, instead of building an object DataFrame.
    """
    try:
        doc = json.loads(body, parse_constant=_reject_constant)
    except BadRequest:
        raise
    except (ValueError, UnicodeDecodeError) as e:
        raise BadRequest(400, f"malformed JSON: {e}") from None
    if not isinstance(doc, dict):
        raise BadRequest(400, "the body must be a JSON object with 'dataframe_split' or "
                              "'dataframe_records'")
    keys = [k for k in ("dataframe_split", "dataframe_records") if k in doc]
    unknown = sorted(set(doc) - {"dataframe_split", "dataframe_records", "params"})
    if len(keys) != 1 or unknown:
        raise BadRequest(400, "give exactly one of 'dataframe_split' or 'dataframe_records' "
                              "(and optionally 'params')" + (f"; unknown keys: {unknown}" if unknown else ""))
    params = doc.get("params") or {}
    if not isinstance(params, dict):
        raise BadRequest(400, "'params' must be an object")
    if keys[0] == "dataframe_split":
        split = doc["dataframe_split"]
        if not isinstance(split, dict) or not isinstance(split.get("columns"), list) \
                or not isinstance(split.get("data"), list):
            raise BadRequest(400, "'dataframe_split' needs 'columns' (list) and 'data' (list of rows)")
        columns, rows = split["columns"], split["data"]
        if not all(isinstance(c, str) for c in columns) or len(set(columns)) != len(columns):
            raise BadRequest(400, "'columns' must be distinct strings")
        width = len(columns)
        for i, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != width:
                raise BadRequest(400, f"row {i} must be a list of {width} values")
    else:
        records = doc["dataframe_records"]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequest(400, "'dataframe_records' must be a list of objects")
        columns = list(records[0]) if records else []
        keys0 = set(columns)
        if any(r.keys() != keys0 for r in records):
            raise BadRequest(400, "every record must have the same columns")
        rows = [[r[c] for c in columns] for r in records]
    return columns, rows, params


_NUMBER = {float, int}


def _float_block(rows: list[list], idx: list[int]) -> np.ndarray | None:
    """float64 (len(rows), len(idx)) of the chosen columns, or None unless every value is a JSON number."""
    if not rows:
        return np.zeros((0, len(idx)))
    pick = operator.itemgetter(*idx)
    picked = [pick(r) for r in rows] if len(idx) > 1 else [(r[idx[0]],) for r in rows]
    if not set(map(type, chain.from_iterable(picked))) <= _NUMBER:  # bool, str, null, ...
        return None
    try:
        return np.array(picked, dtype=np.float64)
    except OverflowError:  # an integer beyond float range
        return None


def _timestamps(values: list):
    """Parse a timestamp column: ISO strings in C via numpy, anything else through pandas."""
    if all(type(v) is str for v in values):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # numpy only warns on a UTC offset; pandas keeps it
                return np.array(values, dtype="datetime64[ns]")
        except (ValueError, TypeError, Warning):
            pass
    for fmt in (None, "ISO8601"):  # pandas infers one format from the first value; ISO may vary
        try:
            with warnings.catch_warnings():  # "could not infer format": a 400 below if it fails
                warnings.simplefilter("ignore", UserWarning)
                return pd.to_datetime(values, format=fmt)
        except (ValueError, TypeError, OverflowError):
            continue
    raise BadRequest(400, "column 'timestamp' has values that are not dates/times")


@dataclass
class ForecastService:
    """Validation and prediction, independent of HTTP (what the handler calls)."""

    model: ForecastModel
    max_bytes: int = DEFAULT_MAX_BYTES

    def __post_init__(self) -> None:
        self._lock = nullcontext() if getattr(self.model, "thread_safe", True) else threading.Lock()

    def info(self) -> dict:
        m = self.model
        return {"name": m.name, "version": m.version, "uri": m.uri, "horizon": m.horizon,
                "window": m.window, "min_rows": m.min_rows, "classes": list(m.class_names),
                "columns": m.columns}

    def validate(self, columns: list[str], rows: list[list]) -> tuple[pd.DataFrame, Any]:
        """Checked request rows → (float64 frame of the model's columns, timestamps or None).

        Only the last `min_rows` rows are converted and checked (all the model
        reads); the frame is one float64 block in the model's column order.
        """
        m = self.model
        missing = [c for c in m.columns if c not in columns]
        if missing:
            raise BadRequest(400, f"missing columns: {', '.join(missing)}")
        extra = [c for c in columns if c not in m.columns and c not in m.optional_columns]
        if extra:
            raise BadRequest(400, f"unexpected columns: {', '.join(map(str, extra))} "
                                  f"(the model takes {', '.join(m.columns)})")
        if len(rows) < m.min_rows:
            raise BadRequest(400, f"too few rows: got {len(rows)}, the model needs at least "
                                  f"{m.min_rows} (window {m.window} plus feature warm-up)")
        rows = rows[len(rows) - m.min_rows:]  # bound the work
        numeric = list(m.columns) + [c for c in columns if c != "timestamp" and c not in m.columns]
        position = {c: i for i, c in enumerate(columns)}
        values = _float_block(rows, [position[c] for c in numeric])
        if values is None:  # not all plain numbers: the column-wise checks say which and where
            values = self._slow_block(columns, rows, numeric)
        bad = ~np.isfinite(values)
        if bad.any():
            row, col = (int(i) for i in np.argwhere(bad)[0])
            raise BadRequest(400, f"column '{numeric[col]}' row {row}: value is missing, NaN or infinite")
        frame = pd.DataFrame(values, columns=numeric)
        stamps = None
        if "timestamp" in position:
            k = position["timestamp"]
            stamps = _timestamps([r[k] for r in rows])
        return frame, stamps

    @staticmethod
    def _slow_block(columns: list[str], rows: list[list], numeric: list[str]) -> np.ndarray:
        part = pd.DataFrame(rows, columns=columns)[numeric]
        for c in part.columns:
            if part[c].dtype == object and part[c].map(
                    lambda v: isinstance(v, (bool, str, list, dict))).any():
                raise BadRequest(400, f"column '{c}' must hold numbers")
        try:
            return part.to_numpy(dtype=np.float64, na_value=np.nan)  # one block, one conversion
        except (ValueError, TypeError, OverflowError):
            raise BadRequest(400, "every column except timestamp must hold numbers") from None

    def predict(self, body: bytes) -> dict:
        columns, rows, params = parse_payload(body)
        instrument = params.get("instrument", "")
        if not isinstance(instrument, str):
            raise BadRequest(400, "params.instrument must be a string")
        frame, stamps = self.validate(columns, rows)
        try:
            with self._lock:
                proba, ends = self.model.predict_proba(frame, all_windows=False)
        except LobseqError as e:  # the forecaster's own input checks
            raise BadRequest(400, str(e)) from None
        proba = np.asarray(proba, dtype=np.float64)
        if len(proba) == 0:
            raise BadRequest(422, f"no prediction possible from these rows (need {self.model.min_rows} "
                                  "consecutive finite rows)")
        p, row = proba[-1], int(np.asarray(ends)[-1])
        ts = pd.Timestamp(stamps[row]).isoformat() if stamps is not None else None
        names = self.model.class_names
        return {"predictions": [{
            "instrument": instrument, "timestamp": ts,
            "probabilities": {n: float(v) for n, v in zip(names, p, strict=True)},
            "direction": names[int(np.argmax(p))], "horizon": self.model.horizon,
            "model": {"name": self.model.name, "version": self.model.version, "uri": self.model.uri},
        }]}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: clients reuse one connection
    disable_nagle_algorithm = True  # headers and body go out at once (no 40 ms delayed-ACK stall)
    timeout = 30  # a client that stalls mid-request frees its thread
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        if self.server.verbose:
            super().log_message(format, *args)

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


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8080,
          max_bytes: int = DEFAULT_MAX_BYTES, log=print) -> None:
    """Load the model once, then answer requests until Ctrl-C or SIGTERM."""
    import signal

    from lobseq.serving.predict import load_model

    server = make_server(None, host, port, verbose=True)  # /health answers while loading
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        server.service = ForecastService(load_model(model_uri), max_bytes=max_bytes)
        info = server.service.info()
        log(f"Serving {info['name']} v{info['version']} (window {info['window']}, "
            f"needs {info['min_rows']} rows) on http://{host}:{server.server_address[1]}  "
            "— POST /invocations, GET /health, GET /ready")
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *a: stop.set())
        while not stop.wait(0.5):
            pass
    finally:
        server.shutdown()
        server.server_close()
