"""Loading a stored dataset: a damaged or incomplete folder is a clear user error."""

from __future__ import annotations

import shutil

import pytest

from lobseq.data.store import load_dataset
from lobseq.errors import LobseqError


@pytest.fixture
def copy(lobster_dataset, tmp_path):
    out = tmp_path / "ds"
    shutil.copytree(lobster_dataset.path, out)
    return out


def test_an_intact_copy_loads_with_the_same_hash(copy, lobster_dataset):
    assert load_dataset(copy).hash == lobster_dataset.hash


@pytest.mark.parametrize("damage, message", [
    (lambda d: (d / "features.npy").unlink(), "incomplete dataset: features.npy missing"),
    (lambda d: (d / "scaler.json").unlink(), "incomplete dataset: scaler.json missing"),
    (lambda d: (d / "manifest.json").write_text("{not json"), "manifest is not valid JSON"),
    (lambda d: (d / "manifest.json").write_text("[]"), "not a lobseq dataset manifest"),
    (lambda d: (d / "labels.npy").write_bytes(b"garbage"), "damaged dataset file"),
])
def test_a_damaged_dataset_is_a_lobseq_error_naming_it(copy, damage, message):
    damage(copy)
    with pytest.raises(LobseqError, match=message) as e:
        load_dataset(copy)
    assert str(copy) in str(e.value) and "lobseq ingest" in str(e.value)


def test_cli_on_an_incomplete_dataset_exits_2_without_a_traceback(copy):
    from click.testing import CliRunner

    from lobseq.cli import cli

    (copy / "features.npy").unlink()
    result = CliRunner().invoke(cli, ["evaluate", "f" * 32, str(copy)])
    assert result.exit_code == 2 and "incomplete dataset" in result.output
    assert "Traceback" not in result.output
