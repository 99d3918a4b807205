"""Real services for the team-mode tests: a PostgreSQL cluster and an `mlflow server` on it.

No mocks, no sqlite stand-in. PostgreSQL 15 binaries come from
/usr/lib/postgresql/*/bin (`make test` installs them when missing); as root,
initdb and pg_ctl run as the `postgres` user (runuser), with the data folder in
a temp dir of its own owned by that user. Both bind 127.0.0.1 on free ports and
are stopped through their own PIDs (the server's process group), also when a
test fails. The tracking server runs MLflow's basic-auth app; the admin
password and the Flask secret are random per session and live only in a temp
dir (the auth config file) and in this process.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ADMIN = "admin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def postgres_bin() -> Path | None:
    """The newest /usr/lib/postgresql/*/bin holding initdb, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    return Path(found[-1]).parent if found else None


def _as_postgres() -> list[str]:
    """initdb and the server refuse to run as root: run them as `postgres` when we are root."""
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


@dataclass
class Postgres:
    bin: Path
    root: Path  # temp dir: data/, the socket, the log
    port: int
    password: str  # of role `lobseq`, which owns the databases
    user: str = "lobseq"

    @property
    def data(self) -> Path:
        return self.root / "data"

    def uri(self, db: str, driver: str = "") -> str:
        """`postgresql[+driver]://lobseq:PASSWORD@127.0.0.1:PORT/db`."""
        return f"postgresql{driver}://{self.user}:{self.password}@127.0.0.1:{self.port}/{db}"

    def psql(self, sql: str, db: str = "postgres") -> str:
        out = subprocess.run([*_as_postgres(), str(self.bin / "psql"), "-h", str(self.root),
                              "-p", str(self.port), "-U", "postgres", "-d", db, "-v",
                              "ON_ERROR_STOP=1", "-Atc", sql],
                             capture_output=True, text=True, timeout=60, check=True)
        return out.stdout.strip()

    def create_database(self, name: str) -> str:
        self.psql(f'CREATE DATABASE "{name}" OWNER {self.user}')
        return name

    def stop(self) -> None:
        subprocess.run([*_as_postgres(), str(self.bin / "pg_ctl"), "-D", str(self.data), "-m",
                        "fast", "-w", "-t", "30", "stop"], capture_output=True, timeout=60)
        pid_file = self.data / "postmaster.pid"
        if pid_file.exists():  # pg_ctl could not stop it: the postmaster, by its PID
            try:
                os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
            except (ValueError, ProcessLookupError, PermissionError):
                pass


def start_postgres() -> Postgres:
    """initdb + pg_ctl start on a free loopback port (fsync off: test data)."""
    binary = postgres_bin()
    if binary is None:
        raise FileNotFoundError("no PostgreSQL binaries under /usr/lib/postgresql/*/bin")
    root = Path(tempfile.mkdtemp(prefix="lsq-pg-", dir="/tmp"))  # short: the socket path
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    pg = Postgres(binary, root, free_port(), secrets.token_hex(12))
    run = {"capture_output": True, "text": True, "timeout": 120, "check": True}
    subprocess.run([*_as_postgres(), str(binary / "initdb"), "-D", str(pg.data), "-U", "postgres",
                    "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8"], **run)
    options = (f"-p {pg.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off "
               "-c synchronous_commit=off -c full_page_writes=off -c max_connections=200")
    subprocess.run([*_as_postgres(), str(binary / "pg_ctl"), "-D", str(pg.data), "-l",
                    str(root / "postgres.log"), "-w", "-t", "60", "-o", options, "start"], **run)
    pg.psql(f"CREATE ROLE {pg.user} LOGIN PASSWORD '{pg.password}'")
    return pg


@dataclass
class MlflowServer:
    """`mlflow server --app-name basic-auth` on PostgreSQL, artifacts proxied to a local folder."""

    postgres: Postgres
    root: Path
    port: int
    admin_password: str
    log: Path
    proc: subprocess.Popen | None = None
    env: dict = field(default_factory=dict)
    boots: list[float] = field(default_factory=list)  # seconds each start took

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def command(self) -> list[str]:
        return [str(Path(sys.executable).with_name("mlflow")), "server", "--app-name", "basic-auth",
                "--backend-store-uri", self.postgres.uri("mlflow", "+psycopg2"),
                "--artifacts-destination", str(self.root / "artifacts"),
                "--host", "127.0.0.1", "--port", str(self.port), "--workers", "2"]

    def start(self, timeout: float = 240.0) -> None:
        t0 = time.monotonic()
        with self.log.open("a") as out:
            self.proc = subprocess.Popen(self.command(), env=self.env, cwd=self.root, stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)  # its own group, stopped whole
        self.wait_up(timeout)
        self.boots.append(time.monotonic() - t0)

    def answering(self) -> bool:
        try:
            with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                return r.status == 200
        except OSError:
            return False

    def wait_up(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not self.answering():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                tail = self.log.read_text(errors="replace")[-3000:]
                self.stop()
                raise RuntimeError(f"mlflow server did not come up ({self.proc.returncode}):\n{tail}")
            time.sleep(0.5)

    def stop(self, sig: int = signal.SIGTERM, grace: float = 30.0) -> None:
        """Stop the server's process group (the CLI, uvicorn and its workers) by its PID."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            self.proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # leftovers of the group
        except ProcessLookupError:
            pass
        self.proc.wait(10)

    def restart(self) -> None:
        self.stop()
        self.start()


def start_mlflow_server(pg: Postgres, root: Path) -> MlflowServer:
    pg.create_database("mlflow")
    pg.create_database("mlflow_auth")
    password = secrets.token_urlsafe(16)
    (root / "auth.ini").write_text(
        "[mlflow]\ndefault_permission = READ\n"
        f"database_uri = {pg.uri('mlflow_auth', '+psycopg2')}\n"
        f"admin_username = {ADMIN}\nadmin_password = {password}\n"
        "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
        # A password check (scrypt) costs ~0.15 s of server CPU per request; cache good ones.
        "auth_cache_ttl_seconds = 60\n")
    os.chmod(root / "auth.ini", 0o600)
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("MLFLOW_", "PYTHONPATH", "LOBSEQ_"))}
    env.update(MLFLOW_AUTH_CONFIG_PATH=str(root / "auth.ini"),
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
               MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false",  # no GenAI job runner processes
               MLFLOW_DISABLE_TELEMETRY="true")
    server = MlflowServer(pg, root, free_port(), password, root / "server.log", env=env)
    server.start()
    return server


def tiny_pipeline(name: str, model_name: str, seed: int = 0, n_boot: int = 50) -> str:
    """A whole retraining pipeline in ~15 s of CPU: bars, a 4-unit RNN for one epoch, evaluate,
    promote (gate none: these tests follow registry mechanics, not model quality). A larger
    `n_boot` holds the evaluate stage longer (its bootstrap), for a fault to land inside it."""
    return f"""\
name: {name}
stages:
  - name: simulate
    type: simulate
    with: {{kind: bars, out: raw, symbols: [AAA], days: 200, seed: {seed}}}
  - name: ingest
    type: ingest
    with: {{format: bars, out: ds, window: 5, horizon: 1, classes: 2}}
  - name: train
    type: train
    with: {{models: [rnn], epochs: 1, max_train_windows: 64, max_val_windows: 32,
           hyper: {{rnn: {{units: 4}}}}, seed: {seed}}}
  - name: evaluate
    type: evaluate
    with: {{n_boot: {n_boot}}}
  - name: promote
    type: promote
    with: {{model_name: {model_name}, metric: macro_f1, gate: none}}
"""


def lobseq_run(cwd: Path, pipeline: str, env: dict, *args: str) -> subprocess.Popen:
    """`lobseq run p.yaml` in `cwd` (its own "host": working directory and lock files)."""
    cwd.mkdir(parents=True, exist_ok=True)
    (cwd / "p.yaml").write_text(pipeline)
    lobseq = str(Path(sys.executable).with_name("lobseq"))
    with (cwd / "stdout.txt").open("w") as out, (cwd / "stderr.txt").open("w") as err:
        return subprocess.Popen([lobseq, "run", "p.yaml", *args], cwd=cwd, env=env, text=True,
                                stdout=out, stderr=err, stdin=subprocess.DEVNULL)


def wait_for(condition, timeout: float, what: str, every: float = 0.3):
    """Poll `condition()` until it returns something truthy (returned) or fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(every)
