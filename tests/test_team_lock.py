"""The lock across hosts: a PostgreSQL advisory lock (real PostgreSQL), held by one connection.

Two "hosts" are two processes with different lock folders and working directories but the
same lock database. The pipeline-level test (two runs of one pipeline, exactly one decision)
is in test_team_concurrency.py, where it runs beside the four concurrent pipelines.
"""

import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner

from lobseq.errors import LobseqError, LockHeld
from lobseq.locks import lock_database, lock_key, lock_uri, redact, run_lock

pytestmark = pytest.mark.team

HOLD = ("import sys, time\nfrom lobseq.locks import run_lock\n"
        "with run_lock(sys.argv[1], 'run of pipeline p', name=sys.argv[2], uri=sys.argv[3]):\n"
        "    print('held', flush=True)\n    time.sleep(120)\n")


def _holder(tmp_path, name, uri):
    """Another 'host': a process holding lock `name` (its own lock folder), until killed."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "hostA" / "p.lock"), name,
                             uri], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "held":
        proc.kill()
        raise AssertionError(f"the holder did not take the lock: {line} {proc.stderr.read()}")
    return proc


def _stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait(10)


def test_a_second_host_gets_lock_held_naming_the_holder(lock_db, tmp_path):
    proc = _holder(tmp_path, "pipeline:p", lock_db)
    try:
        with pytest.raises(LockHeld, match=f"pid {proc.pid}@"):
            with run_lock(tmp_path / "hostB" / "p.lock", name="pipeline:p", uri=lock_db):
                pass
    finally:
        _stop(proc)


def test_the_lock_file_of_a_host_plays_no_part(lock_db, tmp_path):
    # Same lock folder, different lock names: both are taken (the database decides).
    with run_lock(tmp_path / "p.lock", name="pipeline:one", uri=lock_db):
        with run_lock(tmp_path / "p.lock", name="pipeline:two", uri=lock_db):
            pass


def test_killing_the_holder_with_sigkill_frees_the_lock(lock_db, tmp_path):
    proc = _holder(tmp_path, "pipeline:killed", lock_db)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    deadline = time.monotonic() + 20  # the server ends the dead client's session on EOF
    while True:
        try:
            with run_lock(tmp_path / "hostB" / "p.lock", name="pipeline:killed", uri=lock_db):
                break
        except LockHeld:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_the_lock_is_free_again_after_the_block(lock_db, tmp_path):
    for _ in range(2):
        with run_lock(tmp_path / "p.lock", name="pipeline:again", uri=lock_db):
            pass


def test_the_key_does_not_depend_on_the_process_or_host():
    code = "from lobseq.locks import lock_key; print(lock_key('pipeline:retrain'))"
    keys = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                           env={**os.environ, "PYTHONHASHSEED": seed}).stdout.strip()
            for seed in ("1", "2")}
    assert keys == {str(lock_key("pipeline:retrain"))}
    assert -2**63 <= lock_key("pipeline:retrain") < 2**63


def test_an_unreachable_lock_database_is_one_error_without_the_password(tmp_path):
    uri = "postgresql://u:secret-pw@127.0.0.1:1/locks"
    with pytest.raises(LobseqError) as e:
        with run_lock(tmp_path / "p.lock", uri=uri):
            pass
    assert "cannot reach the lock database" in str(e.value) and "secret-pw" not in str(e.value)
    assert redact(uri) == "postgresql://u:***@127.0.0.1:1/locks"


def test_a_non_postgresql_lock_uri_is_refused(tmp_path):
    with pytest.raises(LobseqError, match="not a PostgreSQL URI"):
        with run_lock(tmp_path / "p.lock", uri="sqlite:///x.db"):
            pass


def test_a_pipeline_file_lock_uri_holds_for_the_block_only(monkeypatch):
    monkeypatch.delenv("LOBSEQ_LOCK_URI", raising=False)
    with lock_database("postgresql://h/locks"):
        inside = lock_uri()
    assert (inside, lock_uri()) == ("postgresql://h/locks", None)


@pytest.mark.parametrize("command", [["models", "promote", "team-lock", "1"],
                                     ["models", "rollback", "team-lock"]])
def test_promote_and_rollback_exit_75_while_another_host_changes_the_registry(
        team_store, lock_db, tmp_path, monkeypatch, command):
    from lobseq.cli import cli

    proc = _holder(tmp_path, "registry:team-lock", lock_db)  # e.g. a promote stage on another host
    try:
        monkeypatch.setenv("LOBSEQ_LOCK_URI", lock_db)
        result = CliRunner().invoke(cli, command)
    finally:
        _stop(proc)
    assert result.exit_code == 75 and f"pid {proc.pid}@" in result.output, result.output
