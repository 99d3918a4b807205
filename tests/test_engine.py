"""The engine layer: local loop vs Ray tasks, on a real local Ray instance and a real two-node
cluster on this machine (fixtures in conftest.py). Ray tests skip when Ray is not installed."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lobseq.engine import EngineConfig, LocalEngine, cpu_share, open_engine, sigterm_as_interrupt
from lobseq.errors import LobseqError

ROOT = Path(__file__).resolve().parents[1]


def ray_test(fn):
    """A test that uses Ray: marked `ray`, with a timeout."""
    return pytest.mark.ray(pytest.mark.timeout(120)(fn))


def _python(code: str, env: dict | None = None, timeout: float = 120, cwd=ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=timeout)


def _alive(pid: str) -> bool:
    try:
        return "\tZ" not in Path(f"/proc/{pid}/status").read_text().split("State:")[1].split("\n")[0]
    except (OSError, IndexError):
        return False


def _all_ended(pids: list[str], within: float = 30.0) -> bool:
    """True once none of `pids` runs (a killed process takes a moment to go)."""
    deadline = time.monotonic() + within
    while any(_alive(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    return not any(_alive(pid) for pid in pids)


# ------------------------------------------------------------------ without Ray


def test_engine_config_rejects_unknown_engines_and_ray_settings_on_the_local_engine():
    with pytest.raises(LobseqError, match="unknown engine 'spark'"):
        EngineConfig(name="spark").validate()
    with pytest.raises(LobseqError, match="--engine ray"):
        EngineConfig(name="local", address="head:6379").validate()
    with pytest.raises(LobseqError, match="num_cpus"):
        EngineConfig(name="ray", num_cpus=0).validate()
    with pytest.raises(LobseqError, match="running cluster has its own"):
        EngineConfig(name="ray", address="head:6379", num_cpus=2).validate()
    EngineConfig(name="ray", num_cpus=2).validate()


def test_cluster_address_is_the_argument_then_ray_address_then_none(monkeypatch):
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert EngineConfig(name="ray").cluster_address() is None
    monkeypatch.setenv("RAY_ADDRESS", "env-head:6379")
    assert EngineConfig(name="ray").cluster_address() == "env-head:6379"
    assert EngineConfig(name="ray", address="arg-head:6379").cluster_address() == "arg-head:6379"


@settings(max_examples=200, deadline=None)
@given(nodes=st.lists(st.sampled_from([0.5, 1, 2, 4, 8, 16, 64]), min_size=1, max_size=6),
       actors=st.integers(1, 40))
def test_cpu_share_leaves_a_reserve_and_places_every_actor(nodes, actors):
    total = sum(nodes)
    try:
        share = cpu_share(nodes, actors)
    except LobseqError as e:
        assert e.field == "workers" and "fit" in e.problem
        return
    assert share >= 0.05
    assert total - share * actors >= max(0.5, 0.25 * total) - 1e-9  # headroom for tasks
    assert sum(int(c / share + 1e-9) for c in nodes) >= actors  # no actor straddles two nodes


def test_cpu_share_on_this_two_core_box_and_on_two_one_cpu_nodes():
    assert cpu_share([2], 2) == 0.75
    assert cpu_share([1, 1], 2) == 0.75  # one worker per node, a quarter CPU free on each
    assert cpu_share([1, 1], 1) == 1.0  # not 1.5: no node has 1.5 CPUs


def test_local_engine_runs_in_order_and_stops_at_the_first_error():
    seen = []

    def work(x):
        seen.append(x)
        if x == 2:
            raise LobseqError("bad day", file=f"day{x}.csv", row=7)
        return x * 10

    assert LocalEngine().map(work, [0, 1]) == [0, 10]
    with pytest.raises(LobseqError, match="day2.csv, row 7: bad day"):
        LocalEngine().map(work, [3, 2, 4])
    assert seen == [0, 1, 3, 2]


def test_worker_env_makes_relative_stores_absolute(monkeypatch, tmp_path):
    from lobseq.engine.ray_engine import absolute_uri, worker_env

    monkeypatch.chdir(tmp_path)
    assert absolute_uri("sqlite:///mlruns/mlflow.db") == f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    assert absolute_uri("sqlite:////abs/mlflow.db") == "sqlite:////abs/mlflow.db"
    assert absolute_uri("http://tracking:5000") == "http://tracking:5000"
    assert absolute_uri("mlruns") == str(tmp_path / "mlruns")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///store/mlflow.db")
    env = worker_env({"EXTRA": "1"})
    assert env["MLFLOW_TRACKING_URI"] == f"sqlite:///{tmp_path}/store/mlflow.db" and env["EXTRA"] == "1"


def test_sigterm_is_ctrl_c_inside_the_block_only_and_a_chosen_handler_is_kept():
    previous = signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with pytest.raises(KeyboardInterrupt), sigterm_as_interrupt():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)  # the handler raises before this ends
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

        def mine(signum, frame):
            pass

        signal.signal(signal.SIGTERM, mine)
        with sigterm_as_interrupt():
            assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.slow
def test_lobseq_and_its_local_commands_work_without_ray(lobster_dataset, tmp_path):
    """Ray hidden from the interpreter: imports, --help and the local engine work; asking for the
    ray engine (library or CLI) is one clean error that says how to install it, exit 2."""
    out = _python(f"""
        import sys
        sys.modules["ray"] = None  # import ray -> ImportError
        import lobseq, lobseq.engine, lobseq.training.distributed, lobseq.training.data_parallel
        from lobseq.engine import open_engine
        with open_engine("local") as engine:
            print("LOCAL", engine.map(abs, [-1, 2]))
        try:
            with open_engine("ray"):
                pass
        except lobseq.errors.LobseqError as e:
            print("ERROR", e)
        from lobseq.cli import main
        sys.argv = ["lobseq", "train", {str(lobster_dataset.path)!r}, "--model", "gru", "--engine", "ray"]
        main()
    """, env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db"})
    assert "LOCAL [1, 2]" in out.stdout
    assert "ERROR field 'engine': the ray engine needs Ray" in out.stdout and "lobseq[ray]" in out.stdout
    assert out.returncode == 2, out.stderr[-2000:]
    assert out.stderr.strip().splitlines()[-1].startswith("Error: field 'engine': the ray engine needs Ray")
    assert not (tmp_path / "mlflow.db").exists()  # failed before any run


# ------------------------------------------------------------------ a local Ray instance


@ray_test
def test_map_runs_one_task_per_item_and_keeps_input_order(ray_local):
    def slow_square(x):
        time.sleep(0.3 * (3 - x))  # later items finish first
        return x * x, os.getpid()

    with open_engine("ray") as engine:
        out = engine.map(slow_square, [0, 1, 2, 3], cpus=0.5)
    assert [v for v, _pid in out] == [0, 1, 4, 9]
    assert os.getpid() not in {pid for _v, pid in out}


@ray_test
def test_map_raises_the_first_failure_in_input_order_unchanged_and_cancels_the_rest(ray_local, tmp_path):
    def work(x):
        if x == 1:
            time.sleep(1.0)  # fails after item 2 has failed
            raise LobseqError("crossed book", file="b.csv", row=3, field="ask_price_1", fix="drop it")
        if x == 2:
            raise LobseqError("other", file="c.csv")
        if x == 3:
            (tmp_path / "3.pid").write_text(str(os.getpid()))
            time.sleep(600)
        return x

    with pytest.raises(LobseqError) as local:
        LocalEngine().map(work, [0, 1, 2])
    with open_engine("ray") as engine, pytest.raises(LobseqError) as remote:
        engine.map(work, [0, 1, 2, 3], cpus=0.25)
    assert type(remote.value) is LobseqError and str(remote.value) == str(local.value)
    assert (remote.value.file, remote.value.row, remote.value.field) == ("b.csv", 3, "ask_price_1")
    pid_file = tmp_path / "3.pid"
    if pid_file.exists():  # it had started: its worker process was killed
        assert _all_ended([pid_file.read_text()])


@ray_test
def test_ctrl_c_cancels_every_outstanding_task(ray_local, tmp_path):
    def sleeper(i):
        (tmp_path / f"{i}.pid").write_text(str(os.getpid()))
        time.sleep(600)

    def interrupt_when_running():
        deadline = time.monotonic() + 60
        while len(list(tmp_path.glob("*.pid"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_when_running, daemon=True).start()
    with open_engine("ray") as engine, pytest.raises(KeyboardInterrupt):
        engine.map(sleeper, [0, 1], cpus=0.5)
    pids = [p.read_text() for p in tmp_path.glob("*.pid")]
    assert len(pids) == 2 and _all_ended(pids)


@ray_test
def test_an_engine_uses_an_open_session_leaves_it_open_and_forwards_the_store(ray_local, monkeypatch,
                                                                              tmp_path):
    import ray

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///mlruns/mlflow.db")
    with open_engine("ray") as engine:
        assert not engine.owned and engine.node_cpus() == [2.0]
        seen = engine.map(lambda _: os.environ.get("MLFLOW_TRACKING_URI"), [0], cpus=0.1)
    assert seen == [f"sqlite:///{tmp_path}/mlruns/mlflow.db"]
    assert ray.is_initialized()


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_an_engine_starts_a_local_instance_with_token_auth_and_stops_only_it(tmp_path):
    """No address, no RAY_ADDRESS: a local instance sized as asked, token authentication on by
    default (Ray writes the token under HOME), shut down on close, RAY_AUTH_MODE restored."""
    from conftest import RAY_MISSING, kill_ray_processes

    pytest.importorskip("ray", reason=RAY_MISSING)
    temp_dir = f"/tmp/lse-{os.getpid()}"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_AUTH", "RAY_ADDRESS"))}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    code = f"""
        import os, ray
        from lobseq.engine import EngineConfig, open_engine
        with open_engine(EngineConfig(name="ray", num_cpus=1), temp_dir={temp_dir!r}) as engine:
            print("OWNED", engine.owned, engine.node_cpus(), os.environ.get("RAY_AUTH_MODE"))
            print("MAP", engine.map(lambda x: x + 1, [1, 2], cpus=0.5))
        print("AFTER", ray.is_initialized(), os.environ.get("RAY_AUTH_MODE"))
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=150)
    try:
        assert "OWNED True [1.0] token" in out.stdout, out.stderr[-3000:]
        assert "MAP [2, 3]" in out.stdout and "AFTER False None" in out.stdout
        assert (tmp_path / ".ray" / "auth_token").is_file()
    finally:
        left = kill_ray_processes(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
    assert not left


# ------------------------------------------------------------------ a two-node cluster


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_map_on_a_two_node_cluster_ships_the_code_and_env_and_leaves_the_cluster_up(ray_cluster, tmp_path):
    """Joined through RAY_ADDRESS: each 1-CPU task lands on its own node, imports lobseq from the
    shipped copy (the nodes have no PYTHONPATH), sees the driver's store; a task's LobseqError is
    the driver's one-line error; closing the engine leaves the cluster running."""
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    code = """
        import os
        BARRIER = "@BARRIER@"
        import lobseq
        from lobseq.engine import EngineConfig, open_engine
        from lobseq.errors import LobseqError

        def where(i):  # both hold their 1 CPU until both run: on one node they could not
            import ray, time, lobseq
            open(os.path.join(BARRIER, str(i)), "w").close()
            deadline = time.monotonic() + 60
            while len(os.listdir(BARRIER)) < 2 and time.monotonic() < deadline:
                time.sleep(0.1)
            return ray.get_runtime_context().get_node_id(), lobseq.__file__, os.environ["MLFLOW_TRACKING_URI"]

        def bad(i):
            raise LobseqError("negative size", file=f"day{i}.csv", row=i + 1, field="bid_size_1")

        with open_engine(EngineConfig(name="ray")) as engine:
            print("NODES", engine.node_cpus())
            for node, path, uri in engine.map(where, [0, 1], cpus=1):
                print("TASK", node, path.startswith(os.path.dirname(lobseq.__file__)), uri)
            try:
                engine.map(bad, [4, 5], cpus=0.5)
            except LobseqError as e:
                print("ERROR", type(e).__name__, e)
    """
    code = code.replace("@BARRIER@", str(barrier))
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    # Ray puts the driver's working directory on the workers' path: run it from one without lobseq.
    out = _python(code, env={"RAY_ADDRESS": ray_cluster.address, "MLFLOW_TRACKING_URI": uri}, timeout=150,
                  cwd=tmp_path)
    assert "NODES [1.0, 1.0]" in out.stdout, out.stderr[-3000:]
    tasks = [line.split() for line in out.stdout.splitlines() if line.startswith("TASK")]
    assert len({t[1] for t in tasks}) == 2  # two nodes
    assert all(t[2] == "False" and t[3] == uri for t in tasks), out.stdout  # shipped code, driver store
    assert "ERROR LobseqError day4.csv, row 5, field 'bid_size_1': negative size" in out.stdout
    still_up = _python(f"import ray; ray.init(address={ray_cluster.address!r}); print(len(ray.nodes()))",
                       timeout=60)
    assert still_up.stdout.strip().endswith("2"), still_up.stderr[-2000:]


@pytest.mark.ray
@pytest.mark.timeout(120)
def test_joining_a_token_cluster_without_the_token_is_one_error_with_the_fix(ray_cluster, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH")}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(ROOT), RAY_gcs_server_port_wait_time_s="2")
    code = f"""
        from lobseq.engine import EngineConfig, open_engine
        from lobseq.errors import LobseqError
        try:
            with open_engine(EngineConfig(name="ray", address={ray_cluster.address!r})):
                print("CONNECTED")
        except LobseqError as e:
            print("ERROR", e)
    """
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=tmp_path,
                         capture_output=True, text=True, timeout=100)
    assert f"ERROR field 'ray.address': cannot connect to the Ray cluster at {ray_cluster.address}" in out.stdout, \
        out.stderr[-3000:]
    assert "RAY_AUTH_MODE=token and RAY_AUTH_TOKEN" in out.stdout
