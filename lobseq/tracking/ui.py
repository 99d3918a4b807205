"""The MLflow UI on the project's store: start the server, wait until it answers, stop it.

MLflow 3.17's UI opens on its GenAI view by default (a per-browser switch, not
a server setting); the `workflowType=machine_learning` query parameter opens
the classic training view (runs, params, metrics, charts), so that is the
address `lobseq ui` prints.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from lobseq.errors import LobseqError
from lobseq.tracking.store import artifact_root, configure

CLASSIC_VIEW = "#/experiments?workflowType=machine_learning"


def ui_url(host: str, port: int, experiment_id: str | None = None) -> str:
    page = f"#/experiments/{experiment_id}?workflowType=machine_learning" if experiment_id \
        else CLASSIC_VIEW
    return f"http://{host}:{port}/{page}"


def _port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def start_ui(host: str = "127.0.0.1", port: int = 5000, workers: int = 1,
             log_path: str | Path = "mlruns/ui.log") -> subprocess.Popen:
    """Start `mlflow ui` on the store (its output goes to `log_path`); returns the process."""
    if not _port_free(host, port):
        raise LobseqError(f"port {port} is already in use", field="port",
                          fix=f"pick another one (--port {port + 1}) or stop the server using it")
    uri = configure()  # creates mlruns/ so the UI starts on an empty store too
    cmd = [sys.executable, "-m", "mlflow", "ui", "--backend-store-uri", uri, "--host", host,
           "--port", str(port), "--workers", str(workers)]
    root = artifact_root(uri)
    if root:
        cmd += ["--default-artifact-root", root]
    Path(log_path).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:  # the environment (telemetry off: lobseq/__init__.py) is inherited
        return subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)


def wait_until_up(proc: subprocess.Popen, host: str, port: int, timeout_s: float = 180.0,
                  log_path: str | Path = "mlruns/ui.log") -> None:
    """Return once the server answers /health; raise if it exits or never answers."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = Path(log_path).read_text(errors="replace").strip().splitlines()[-3:]
            raise LobseqError(f"the MLflow UI exited with code {proc.returncode}: "
                              + " / ".join(tail), file=str(log_path))
        try:
            with urllib.request.urlopen(f"http://{host}:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    stop_ui(proc)
    raise LobseqError(f"the MLflow UI did not answer within {timeout_s:.0f} s", file=str(log_path))


def stop_ui(proc: subprocess.Popen, grace_s: float = 10.0) -> None:
    """SIGTERM the server (it stops its workers), SIGKILL if it lingers."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
