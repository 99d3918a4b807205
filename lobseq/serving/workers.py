"""`lobseq serve`: the forecasting app in N gunicorn worker processes on one port.

gunicorn's master binds the port and forks the workers (pre-fork: they accept
from one listening socket), restarts a worker that dies, and stops them
gracefully on SIGTERM or Ctrl-C. The master never imports TensorFlow: each
worker loads the model itself, in a thread, while it already answers
/health (and /ready with 503), then follows the registry alias
(`lobseq.serving.follow`) when the URI names one. Each worker runs the
`gthread` worker class: `threads` request threads over one compiled model.

Measured against the stdlib server this replaces (benchmarks/bench_serve.py):
the same p50 for one client; see the README for requests/s with 1 and 2 workers.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

from lobseq.errors import LobseqError

logger = logging.getLogger("lobseq.serving.workers")
WORKER_BOOT_ERROR = 3  # gunicorn's: a worker exiting with it halts the master


def _load_in_worker(app, model_uri: str, max_bytes: int, follow_every: float) -> None:
    """Worker thread: load the model, start serving it, then follow its alias."""
    from lobseq.serving.follow import Follower, alias_of
    from lobseq.serving.http import ForecastService
    from lobseq.serving.loader import load_model
    from lobseq.serving.metrics import metrics

    try:
        model = load_model(model_uri)
    except Exception as e:  # noqa: BLE001 - say why, then stop the whole service
        app.load_error = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        logger.error("cannot load %s: %s", model_uri, app.load_error)
        os._exit(WORKER_BOOT_ERROR)
    service = ForecastService(model, max_bytes=max_bytes)
    m = metrics()
    m.now_serving(model)
    if follow_every > 0 and alias_of(model.uri):
        app.follower = Follower(service, follow_every, on_switch=m.now_serving,
                                on_failure=m.load_failures.inc)
    app.service = service  # from here on requests are answered
    f = model.forecaster
    logger.info("serving %s (window %d, needs %d rows)%s", model.label, f.window, f.min_rows,
                f"; following {app.follower.name}@{app.follower.alias} every {follow_every:g} s"
                if app.follower else "")
    if app.follower is not None:
        app.follower.start()


def _prometheus_dir() -> tuple[str, bool]:
    """The multiprocess metrics folder, emptied: $PROMETHEUS_MULTIPROC_DIR, else a new temp one
    (True: ours to remove)."""
    from lobseq.serving.metrics import MULTIPROC_ENV

    given = os.environ.get(MULTIPROC_ENV)
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for old in Path(given).glob("*.db"):  # values of an earlier run would be added in
            old.unlink()
        return given, False
    return tempfile.mkdtemp(prefix="lobseq-metrics-"), True


def _gunicorn_app(options: dict, make_app):
    from gunicorn.app.base import BaseApplication

    class _App(BaseApplication):
        def load_config(self) -> None:
            for key, value in options.items():
                self.cfg.set(key, value)

        def load(self):  # in each worker, after the fork
            return make_app()

    return _App()


def serve(model_uri: str, host: str = "127.0.0.1", port: int = 8080, *, workers: int = 1,
          threads: int = 8, follow_every: float = 60.0, max_bytes: int = 8 * 1024 * 1024,
          log=print) -> None:
    """Serve `model_uri` from `workers` processes on host:port until SIGTERM or Ctrl-C.

    `follow_every` seconds between registry polls when the URI names an alias (0: never).
    """
    from lobseq.serving.loader import resolve_model_uri
    from lobseq.serving.metrics import MULTIPROC_ENV

    if workers < 1 or threads < 1 or follow_every < 0:
        raise LobseqError("workers and threads must be >= 1 and follow_every >= 0",
                          field="workers")
    uri, name, version = resolve_model_uri(model_uri)  # a wrong URI fails here, before forking
    prom_dir, ours = _prometheus_dir()
    os.environ[MULTIPROC_ENV] = prom_dir  # before any worker imports prometheus_client

    def make_app():
        from lobseq.serving.http import ForecastApp, log_to_stderr

        log_to_stderr()
        app = ForecastApp(None)
        threading.Thread(target=_load_in_worker, args=(app, uri, max_bytes, follow_every),
                         name="lobseq-load", daemon=True).start()
        return app

    def when_ready(server) -> None:
        bound = server.LISTENERS[0].sock.getsockname()
        now = f" ({name} v{version} now)" if name and version and "@" in uri else ""
        log(f"Serving {uri}{now} on http://{bound[0]}:{bound[1]} with {workers} "
            f"worker(s) — POST /invocations, GET /health, /ready, /metrics"
            + (f"; following the alias every {follow_every:g} s" if follow_every and "@" in uri
               else ""), )

    def child_exit(_server, worker) -> None:
        from lobseq.serving.metrics import worker_exited

        worker_exited(worker.pid)

    options = {"bind": f"{host}:{port}", "workers": workers, "worker_class": "gthread",
               "threads": threads, "timeout": 120, "graceful_timeout": 10, "keepalive": 30,
               "backlog": 256, "proc_name": "lobseq-serve", "accesslog": None, "errorlog": "-",
               "loglevel": "warning", "when_ready": when_ready, "child_exit": child_exit}
    try:
        _gunicorn_app(options, make_app).run()
    except SystemExit as e:
        if e.code == WORKER_BOOT_ERROR:
            raise LobseqError(f"no worker could load {model_uri} (the reason is in the log above)",
                              field="model_uri", fix="check it with `lobseq models list`") from None
        if e.code not in (0, None):
            raise
    finally:
        if ours:
            shutil.rmtree(prom_dir, ignore_errors=True)
