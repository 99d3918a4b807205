"""Shared fixtures: tiny simulated data, one way to make a throw-away MLflow store, and one
way to get a logged model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Under `pytest -n 2 --dist loadgroup` (make test) the tests that share a session's
    PostgreSQL and mlflow server run on one worker, and those that start or join Ray on one
    worker, so each service starts once and two Ray instances never fight for the CPUs."""
    for item in items:
        for group in ("team", "ray"):
            if item.get_closest_marker(group):
                item.add_marker(pytest.mark.xdist_group(group))
                break


@pytest.fixture(scope="session")
def lobster_raw(tmp_path_factory):
    """Paths of one simulated LOBSTER day (3,000 events, 5 levels)."""
    from lobseq.data.simulate import simulate_lobster

    return simulate_lobster(tmp_path_factory.mktemp("raw"), events=3000, levels=5, seed=0)


@pytest.fixture(scope="session")
def lobster_dataset(lobster_raw, tmp_path_factory):
    """A stored dataset from `lobster_raw`: window 10, horizon 5, default features."""
    from lobseq.data.ingest import IngestConfig, ingest

    out = tmp_path_factory.mktemp("processed") / "sim"
    return ingest(lobster_raw, out, IngestConfig(format="lobster", window=10, horizon=5),
                  log=lambda _: None)


# ------------------------------------------------------------------ MLflow stores


@pytest.fixture(scope="session", autouse=True)
def _no_tracking_into_the_checkout(tmp_path_factory):
    """A test that forgets to pick a store writes into a throw-away one, never ./mlruns."""
    mp = pytest.MonkeyPatch()
    root = tmp_path_factory.mktemp("default-store")
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{root / 'mlflow.db'}")
    yield
    mp.undo()


@dataclass(frozen=True)
class Store:
    uri: str    # sqlite:///<root>/mlruns/mlflow.db
    root: Path  # the working directory while the store is active


@contextlib.contextmanager
def mlflow_store_at(root: Path) -> Iterator[Store]:
    """An empty sqlite store under `root`, active for the block: MLFLOW_TRACKING_URI points at
    it and the working directory is `root` (so relative paths such as mlruns/.locks land there)."""
    from lobseq.tracking import configure

    root = Path(root)
    mp = pytest.MonkeyPatch()
    uri = f"sqlite:///{root / 'mlruns' / 'mlflow.db'}"
    mp.setenv("MLFLOW_TRACKING_URI", uri)
    mp.chdir(root)
    try:
        configure()
        _forget_active_experiment()
        yield Store(uri, root)
    finally:
        mp.undo()
        _forget_active_experiment()


def _forget_active_experiment() -> None:
    """MLflow's fluent API keeps an active experiment id per process: an id from another
    store would send the next run into an experiment that does not exist there."""
    import mlflow.tracking.fluent as fluent

    fluent._active_experiment_id = None


@pytest.fixture
def mlflow_store(tmp_path) -> Iterator[Store]:
    """A store of this test's own (creating one costs about a second)."""
    with mlflow_store_at(tmp_path) as store:
        yield store


@pytest.fixture(scope="module")
def module_mlflow_store(tmp_path_factory) -> Iterator[Store]:
    """One store shared by a module's tests."""
    with mlflow_store_at(tmp_path_factory.mktemp("mlflow")) as store:
        yield store


# ------------------------------------------------------------------ logged models


@dataclass(frozen=True)
class LoggedModel:
    raw: list        # raw simulated LOBSTER files
    dataset: object  # lobseq.data.store.Dataset the model was trained on
    run_id: str      # the training run
    model_uri: str   # the run's logged-model URI (models:/m-...)


def logged_model(root: Path, *, seed: int = 0, model: str = "gru", days: int = 2,
                 events: int = 3000, levels: int = 5, window: int = 10, horizon: int = 5,
                 hyper: dict | None = None, max_train_windows: int = 400,
                 register: str | None = None) -> LoggedModel:
    """Simulate `days` LOBSTER days into root/raw, ingest them into root/sim, train a tiny
    model for one epoch and log it into the ACTIVE store (use inside `mlflow_store_at`)."""
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import logged_model_uri, train_and_log

    root = Path(root)
    raw = simulate_lobster(root / "raw", events=events, levels=levels, days=days, seed=seed)
    ds = ingest(raw, root / "sim", IngestConfig(format="lobster", window=window, horizon=horizon),
                log=lambda _m: None)
    cfg = TrainConfig(model=model, hyper=hyper if hyper is not None else {"units": 4}, epochs=1,
                      max_train_windows=max_train_windows)
    run_id = train_and_log(root / "sim", cfg, register=register, log=lambda _m: None)
    return LoggedModel(raw, ds, run_id, logged_model_uri(run_id))


# ------------------------------------------------------------------ Ray (h5-raytrain)
# Real Ray, never mocked. `ray_local` is one local instance for the session; `ray_cluster` a real
# two-node cluster on this machine (`ray start --head` + `ray start --address`). Both use token
# authentication (Ray's default for local instances) with a session token in RAY_AUTH_TOKEN, so
# nothing is written to ~/.ray; each has a short temp dir of its own (Ray's socket paths must stay
# under 108 bytes), is stopped through its own handles, and its teardown fails if any process
# that runs from that temp dir is still alive. Ray tests carry a pytest-timeout.

RAY_MISSING = "Ray is not installed (pip install 'lobseq[ray]')"


def ray_processes(marker: str) -> list[tuple[int, str]]:
    """Live processes whose command line contains `marker` (e.g. a Ray temp dir)."""
    import os

    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmd and int(pid) != os.getpid():
            found.append((int(pid), cmd[:120]))
    return found


def wait_ray_gone(marker: str, timeout: float = 30.0) -> list[tuple[int, str]]:
    """Wait until no process runs from `marker`; returns what is left after `timeout` s."""
    import time

    deadline = time.monotonic() + timeout
    while (left := ray_processes(marker)) and time.monotonic() < deadline:
        time.sleep(0.3)
    return left


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kill_ray_processes(marker: str) -> list[tuple[int, str]]:
    """Wait for the processes that run from `marker` to end; kill (by PID) those that don't."""
    import os
    import signal

    left = wait_ray_gone(marker)
    for pid, _cmd in left:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    return left


@pytest.fixture(scope="session")
def ray_auth():
    """Token authentication with a throw-away token for every Ray process of the session.

    Set before `import ray`: Ray reads RAY_AUTH_MODE into its C++ config on import."""
    import secrets
    import sys

    imported = "ray" in sys.modules
    mp = pytest.MonkeyPatch()
    mp.setenv("RAY_AUTH_MODE", "token")
    mp.setenv("RAY_AUTH_TOKEN", secrets.token_hex(16))
    try:
        pytest.importorskip("ray", reason=RAY_MISSING)
        if imported:  # imported earlier: re-read the mode, as ray.init does when it sets it
            from ray._raylet import Config

            Config.initialize("")
        yield
    finally:
        mp.undo()


@dataclass(frozen=True)
class RayLocal:
    temp_dir: str  # the instance's temp dir (every Ray process's command line names it)
    cpus: int


@pytest.fixture(scope="session")
def ray_local(ray_auth) -> Iterator[RayLocal]:
    """One local Ray instance (2 CPUs, no dashboard) for the session; engines reuse it."""
    import logging
    import shutil
    import tempfile

    ray = pytest.importorskip("ray", reason=RAY_MISSING)
    temp_dir = tempfile.mkdtemp(prefix="lsr-", dir="/tmp")
    try:
        ray.init(address="local", num_cpus=2, include_dashboard=False, _temp_dir=temp_dir,
                 log_to_driver=False, logging_level=logging.WARNING)
        yield RayLocal(temp_dir, 2)
    finally:
        ray.shutdown()
        left = kill_ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes still running after shutdown: {left}"


@dataclass(frozen=True)
class RayCluster:
    address: str   # 127.0.0.1:PORT of the head's GCS
    temp_dir: str  # shared by both nodes' processes
    env: dict      # the environment the nodes run with: no PYTHONPATH, no MLFLOW_TRACKING_URI


def _start_node(args: list[str], env: dict, log: Path, cwd: str):
    import subprocess
    import sys

    ray_cli = str(Path(sys.executable).with_name("ray"))
    return subprocess.Popen([ray_cli, "start", "--block", "--disable-usage-stats", *args], env=env,
                            cwd=cwd, stdout=log.open("w"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)


def _wait_started(proc, log: Path, timeout: float = 120.0) -> None:
    import time

    deadline = time.monotonic() + timeout
    while "Ray runtime started" not in log.read_text(errors="replace"):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"ray start failed ({proc.returncode}):\n{log.read_text()[-2000:]}")
        time.sleep(0.3)


def _wait_nodes(address: str, env: dict, count: int, timeout: float = 120.0) -> None:
    import subprocess
    import sys
    import time

    ray_cli = str(Path(sys.executable).with_name("ray"))
    deadline = time.monotonic() + timeout
    while True:
        out = subprocess.run([ray_cli, "status", f"--address={address}"], env=env, capture_output=True,
                             text=True, timeout=60).stdout
        active = out.split("Active:", 1)[-1].split("Pending:", 1)[0]
        if active.count("node_") >= count:
            return
        if time.monotonic() > deadline:
            raise RuntimeError(f"the cluster never had {count} nodes:\n{out}")
        time.sleep(1)


def _stop_nodes(procs: list) -> None:
    import os
    import signal
    import subprocess

    for proc in reversed(procs):  # the worker node first, then the head
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=45)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)  # the node's own process group, nothing else
            proc.wait(timeout=10)


@pytest.fixture(scope="session")
def ray_cluster(ray_auth, tmp_path_factory) -> Iterator[RayCluster]:
    """A two-node Ray cluster on this machine: a head and a second node, 1 CPU each (session)."""
    import os
    import shutil
    import tempfile

    temp_dir = tempfile.mkdtemp(prefix="lsc-", dir="/tmp")
    logs = tmp_path_factory.mktemp("ray-cluster")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S"] = "0"  # SIGTERM stops a node now, not after 30 s
    address = f"127.0.0.1:{free_port()}"
    procs = []
    try:
        procs.append(_start_node(["--head", f"--port={address.split(':')[1]}", "--num-cpus=1",
                                  f"--temp-dir={temp_dir}", "--include-dashboard=false",
                                  '--resources={"head_node": 1}'], env, logs / "head.log", temp_dir))
        _wait_started(procs[0], logs / "head.log")
        procs.append(_start_node([f"--address={address}", "--num-cpus=1",
                                  '--resources={"second_node": 1}'], env, logs / "second.log", temp_dir))
        _wait_started(procs[1], logs / "second.log")
        _wait_nodes(address, env, 2)
        yield RayCluster(address, temp_dir, env)
    finally:
        _stop_nodes(procs)
        left = kill_ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        assert not left, f"Ray processes still running after the cluster stopped: {left}"


# ------------------------------------------------------------------ team mode (h7-team)
# A real PostgreSQL and a real `mlflow server` (basic-auth app, PostgreSQL backend, proxied
# artifacts), started once per session on loopback ports (tests/team_services.py) and stopped by
# their PIDs. `team_store` points MLflow at the server as its admin for one test (the working
# directory a temp dir, local lock files in it); subprocesses get the same through `.env()`.
# Tests that need them are marked `team`; they skip only when PostgreSQL is not installed.

PG_MISSING = ("PostgreSQL binaries are not under /usr/lib/postgresql/*/bin and `make test` could "
              "not install them (apt-get install -y postgresql)")


@pytest.fixture(scope="session")
def postgres():
    import shutil

    from team_services import postgres_bin, start_postgres

    if postgres_bin() is None:
        pytest.skip(PG_MISSING)
    pg = start_postgres()
    try:
        yield pg
    finally:
        pg.stop()
        shutil.rmtree(pg.root, ignore_errors=True)


@pytest.fixture(scope="session")
def mlflow_server(postgres):
    import shutil
    import tempfile

    from team_services import start_mlflow_server

    root = Path(tempfile.mkdtemp(prefix="lsq-mlflow-", dir="/tmp"))
    server = None
    try:
        server = start_mlflow_server(postgres, root)
        yield server
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(root, ignore_errors=True)


@dataclass(frozen=True)
class TeamStore:
    server: object  # team_services.MlflowServer
    uri: str
    root: Path      # the working directory while the store is active

    def env(self, **extra: str) -> dict:
        """The environment for a lobseq subprocess on this store (as admin unless overridden)."""
        import os

        env = dict(os.environ)
        env.update({k: str(v) for k, v in extra.items()})
        return env


@contextlib.contextmanager
def team_store_at(server, root: Path) -> Iterator[TeamStore]:
    """The tracking server active for the block, as its admin; cwd `root`, lock files in it."""
    import os

    import mlflow
    from team_services import ADMIN

    from lobseq.tracking import configure
    from lobseq.tracking.store import SERVER_DEFAULTS

    root = Path(root)
    mp = pytest.MonkeyPatch()
    for key in (*SERVER_DEFAULTS, "LOBSEQ_LOCK_URI"):
        mp.delenv(key, raising=False)  # lobseq's defaults apply, and are undone after
    mp.setenv("MLFLOW_TRACKING_URI", server.uri)
    mp.setenv("MLFLOW_TRACKING_USERNAME", ADMIN)
    mp.setenv("MLFLOW_TRACKING_PASSWORD", server.admin_password)
    mp.setenv("LOBSEQ_LOCK_DIR", str(root / "locks"))
    mp.chdir(root)
    try:
        configure()
        yield TeamStore(server, server.uri, root)
    finally:
        mp.undo()
        mlflow.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
        mlflow.set_registry_uri(os.environ["MLFLOW_TRACKING_URI"])


@pytest.fixture
def team_store(mlflow_server, tmp_path) -> Iterator[TeamStore]:
    with team_store_at(mlflow_server, tmp_path) as store:
        yield store


@pytest.fixture(scope="module")
def module_team_store(mlflow_server, tmp_path_factory) -> Iterator[TeamStore]:
    with team_store_at(mlflow_server, tmp_path_factory.mktemp("team")) as store:
        yield store


@pytest.fixture(scope="session")
def lock_db(postgres) -> str:
    """A database for advisory locks: its postgresql:// URI (password included)."""
    return postgres.uri(postgres.create_database("locks"))
