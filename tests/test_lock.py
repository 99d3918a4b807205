import json
import os
import subprocess
import sys
import time

import pytest

from lobseq.errors import LockHeld
from lobseq.locks import run_lock


def test_second_holder_gets_lock_held(tmp_path):
    path = tmp_path / "x.lock"
    with run_lock(path):
        with pytest.raises(LockHeld):
            with run_lock(path):
                pass


def test_lock_is_free_again_after_the_block(tmp_path):
    path = tmp_path / "x.lock"
    with run_lock(path):
        pass
    with run_lock(path):
        pass


def test_stale_lock_file_of_a_dead_process_does_not_block(tmp_path):
    path = tmp_path / "x.lock"
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    path.write_text(json.dumps({"pid": proc.pid, "started": "2000-01-01T00:00:00"}))
    with run_lock(path):
        assert json.loads(path.read_text())["pid"] == os.getpid()


def test_lock_held_by_another_process_names_its_pid(tmp_path):
    path = tmp_path / "x.lock"
    code = ("import sys, time; from lobseq.locks import run_lock\n"
            f"with run_lock({str(path)!r}):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "held"
        with pytest.raises(LockHeld, match=f"pid {proc.pid}"):
            with run_lock(path):
                pass
    finally:
        proc.kill()
        proc.wait()


def test_lock_of_a_killed_holder_is_released(tmp_path):
    path = tmp_path / "x.lock"
    code = ("import time; from lobseq.locks import run_lock\n"
            f"with run_lock({str(path)!r}):\n    print('held', flush=True); time.sleep(30)\n")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    proc.kill()
    proc.wait()
    time.sleep(0.05)
    with run_lock(path):
        pass


def test_cli_run_exits_75_while_the_pipeline_lock_is_held(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from lobseq.cli import cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.yaml").write_text(
        "name: p\nlock: p.lock\nstages:\n  - name: sim\n    type: simulate\n"
        "    with: {out: raw, events: 1000}\n")
    with run_lock(tmp_path / "p.lock"):
        result = CliRunner().invoke(cli, ["run", "p.yaml"])
    assert result.exit_code == 75, result.output
