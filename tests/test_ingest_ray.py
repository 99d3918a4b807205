"""Ingest on the Ray engine (one task per instrument-day) against the local engine, on the
session's real local Ray instance (conftest `ray_local`): the same bytes, the same error."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from lobseq.cli import cli

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    """LOBSTER days of two tickers, and bars: a long table of two symbols plus a one-symbol file."""
    from lobseq.data.simulate import simulate_bars, simulate_lobster

    root = tmp_path_factory.mktemp("raw-ray")
    simulate_lobster(root / "lob", events=1500, levels=3, days=2, seed=1, ticker="AAA")
    simulate_lobster(root / "lob", events=1500, levels=3, days=2, seed=2, ticker="BBB")
    simulate_bars(root / "single", symbols=("XX", "YY", "ZZ"), days=150, seed=3)
    (root / "bars").mkdir()
    long = pd.concat([pd.read_csv(root / "single" / f"{s}.csv").assign(symbol=s) for s in ("YY", "XX")])
    long.to_csv(root / "bars" / "universe.csv", index=False)
    shutil.copy(root / "single" / "ZZ.csv", root / "bars" / "ZZ.csv")
    return root


def _ingest(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["ingest", *args])
    return result.exit_code, result.output


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir())}


@pytest.mark.parametrize("source, options", [
    ("lob", ["--format", "lobster", "--window", "10", "--horizon", "5"]),
    ("bars", ["--format", "bars", "--window", "5", "--horizon", "1"]),
], ids=["lobster-2-tickers-2-days", "bars-multi-symbol"])
def test_ray_ingest_writes_the_local_engines_bytes(ray_local, raw, tmp_path, source, options):
    from lobseq.data.store import load_dataset

    code, out = _ingest(str(raw / source), *options, "--out", str(tmp_path / "local" / "ds"))
    assert code == 0, out
    code, out = _ingest(str(raw / source), *options, "--out", str(tmp_path / "ray" / "ds"),
                        "--engine", "ray")
    assert code == 0, out
    local, remote = load_dataset(tmp_path / "local" / "ds"), load_dataset(tmp_path / "ray" / "ds")
    assert remote.hash == local.hash
    assert _files(remote.path) == _files(local.path)
    segments = remote.manifest["segments"]
    assert len(segments) == 4 if source == "lob" else [s["instrument"] for s in segments] == ["XX", "YY", "ZZ"]


def _running_ingest_tasks() -> list[str]:
    """Ray workers running an ingest task now (Ray titles a busy worker `ray::<task name>`)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if cmd.startswith("ray::lobseq-ingest"):
            found.append(pid)
    return found


def test_a_bad_file_on_ray_is_the_local_error_exit_2_nothing_written_no_task_left(ray_local, raw, tmp_path):
    """The first day (in reading order) has a crossed book: the same one-line error and exit 2
    as the local engine, no dataset, and every later day's task is cancelled."""
    bad = tmp_path / "raw"
    shutil.copytree(raw / "lob", bad)
    book = sorted(bad.glob("AAA_2024-01-02_*_orderbook_*.csv"))[0]
    lines = book.read_text().splitlines()
    cells = lines[99].split(",")
    cells[0] = str(int(cells[2]) - 100)  # ask 1 below bid 1
    lines[99] = ",".join(cells)
    book.write_text("\n".join(lines) + "\n")
    args = [str(bad), "--format", "lobster", "--window", "10", "--horizon", "5"]
    code_local, out_local = _ingest(*args, "--out", str(tmp_path / "local"))
    code_ray, out_ray = _ingest(*args, "--out", str(tmp_path / "ray"), "--engine", "ray")
    assert code_local == code_ray == 2
    error = out_local.strip().splitlines()[-1]
    assert error.startswith(f"Error: {book}, row 100") and "crossed" in error, out_local
    assert out_ray.strip().splitlines()[-1] == error
    assert not (tmp_path / "ray").exists() and not list(tmp_path.glob("ray*"))
    deadline = time.monotonic() + 30
    while _running_ingest_tasks() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _running_ingest_tasks()
