import os
import stat

import pytest

from lobseq.io import atomic_dir, atomic_file, canonical_json


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "x.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError), atomic_file(target, "w") as f:
        f.write("new")
        raise RuntimeError("boom")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_atomic_file_gives_a_normal_file_mode(tmp_path):
    old = os.umask(0o022)
    try:
        with atomic_file(tmp_path / "x.bin") as f:
            f.write(b"1")
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "x.bin").stat().st_mode) == 0o644


def test_atomic_dir_keeps_the_previous_directory_on_failure(tmp_path):
    target = tmp_path / "ds"
    with atomic_dir(target) as d:
        (d / "a").write_text("1")
    with pytest.raises(KeyboardInterrupt), atomic_dir(target) as d:
        (d / "a").write_text("2")
        raise KeyboardInterrupt
    assert (target / "a").read_text() == "1"
    assert [p.name for p in tmp_path.iterdir()] == ["ds"]


def test_canonical_json_is_key_order_independent():
    assert canonical_json({"b": 1, "a": [1, 2]}) == canonical_json({"a": [1, 2], "b": 1})
