"""Batch scoring on Ray Data (an actor pool, one model load per actor) against the local
`predict`, on the session's real local Ray instance (conftest `ray_local`)."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from lobseq.cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def scored(module_mlflow_store, tmp_path_factory):
    """A registered tiny model (champion v1) and new days of two tickers (3 instrument-days)."""
    from conftest import logged_model

    from lobseq.data.simulate import simulate_lobster
    from lobseq.registry import promote

    root = tmp_path_factory.mktemp("score")
    logged_model(root, register="lob")
    promote("lob", 1)
    simulate_lobster(root / "live", events=1200, levels=5, days=2, seed=7, ticker="AAA")
    simulate_lobster(root / "live", events=1200, levels=5, days=1, seed=8, ticker="BBB")
    return root


@pytest.mark.ray
def test_ray_data_scoring_writes_the_local_predict_file_loading_the_model_once_per_actor(
        ray_local, scored, tmp_path):
    """Three instrument-days on two actors: the Parquet file equals the local `predict`'s byte
    for byte; one actor scored at least two days with its single load; the alias was resolved
    once on the driver, so every actor loaded the same version."""
    from lobseq.engine import open_engine
    from lobseq.serving.batch_ray import predict_files_ray

    local = tmp_path / "local.parquet"
    result = CliRunner().invoke(cli, ["predict", "models:/lob@champion", str(scored / "live"),
                                      "--format", "lobster", "--out", str(local)])
    assert result.exit_code == 0, result.output
    with open_engine("ray") as engine:
        table, stats = predict_files_ray("models:/lob@champion", [scored / "live"], "lobster",
                                         tmp_path / "ray" / "p.parquet", engine)
    assert (tmp_path / "ray" / "p.parquet").read_bytes() == local.read_bytes()
    assert [p.name for p in (tmp_path / "ray").iterdir()] == ["p.parquet"]  # atomic: no temp left
    assert stats["jobs"] == 3 and stats["actors"] == 2 and stats["cpus_per_actor"] <= 0.75
    jobs = [n for n, _loads in stats["batches_by_actor"].values()]
    assert sum(jobs) == 3 and max(jobs) >= 2
    assert {loads for _n, loads in stats["batches_by_actor"].values()} == {1}
    assert list(table["instrument"].unique()) == ["AAA", "BBB"] and set(table["model_version"]) == {"1"}


def test_a_scorer_returns_a_bad_files_error_for_the_driver_to_raise_in_file_order(scored, tmp_path):
    """The actor class, in this process: a bad day comes back as its LobseqError (pickled in the
    row, not lost in Ray Data's wrappers), a good day as its predictions."""
    from lobseq.data.sources.jobs import plan_reads
    from lobseq.errors import LobseqError
    from lobseq.serving.batch_ray import Scorer

    bad = tmp_path / "live"
    shutil.copytree(scored / "live", bad)
    message = sorted(bad.glob("BBB_*_message_*.csv"))[0]
    lines = message.read_text().splitlines()
    lines[4] = lines[4].replace(",", ",-", 3)  # event type -1 on line 5
    message.write_text("\n".join(lines) + "\n")
    jobs = plan_reads([bad], "lobster")
    scorer = Scorer("models:/lob/1", jobs, "lobster")
    out = scorer({"job": np.arange(len(jobs))})
    errors = [pickle.loads(e) for e in out["error"]]
    assert [type(e).__name__ for e in errors] == ["NoneType", "LobseqError", "NoneType"]
    with pytest.raises(LobseqError) as local:
        jobs[1].read()
    assert str(errors[1]) == str(local.value) and errors[1].row == 5
    assert [len(pickle.loads(s)) for s in out["scored"]] == [1, 0, 1] and set(out["loads"]) == {1}
