"""Shared fixtures: a tiny simulated LOBSTER dataset and a throw-away MLflow store."""

from __future__ import annotations

import pytest


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


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """An empty sqlite MLflow store in tmp_path (via MLFLOW_TRACKING_URI); returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri


def tiny_logged_gru(tmp, seed: int):
    """Two simulated days in `tmp`, ingested (window 10, horizon 5), a tiny GRU trained and
    logged into a sqlite store under `tmp`; the cwd moves to `tmp`.

    Returns (monkeypatch to undo, raw paths, dataset, run id).
    """
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import train_and_log

    mp = pytest.MonkeyPatch()
    mp.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp / 'mlruns' / 'mlflow.db'}")
    mp.chdir(tmp)
    raw = simulate_lobster(tmp / "raw", events=3000, levels=5, days=2, seed=seed)
    ds = ingest(raw, tmp / "sim", IngestConfig(format="lobster", window=10, horizon=5),
                log=lambda _m: None)
    run_id = train_and_log(tmp / "sim", TrainConfig(model="gru", hyper={"units": 4}, epochs=1,
                                                    max_train_windows=400), log=lambda _m: None)
    return mp, raw, ds, run_id
