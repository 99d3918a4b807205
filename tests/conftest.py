"""Shared fixtures: a tiny simulated LOBSTER dataset and a throw-away MLflow store."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def lobster_raw(tmp_path_factory):
    """Paths of one simulated LOBSTER day (3,000 events, 5 levels)."""
    from lobseq.simulate import simulate_lobster

    return simulate_lobster(tmp_path_factory.mktemp("raw"), events=3000, levels=5, seed=0)


@pytest.fixture(scope="session")
def lobster_dataset(lobster_raw, tmp_path_factory):
    """A stored dataset from `lobster_raw`: window 10, horizon 5, default features."""
    from lobseq.ingest import IngestConfig, ingest

    out = tmp_path_factory.mktemp("processed") / "sim"
    return ingest(lobster_raw, out, IngestConfig(format="lobster", window=10, horizon=5),
                  log=lambda _: None)


@pytest.fixture
def mlflow_store(tmp_path, monkeypatch):
    """An empty sqlite MLflow store in tmp_path (via MLFLOW_TRACKING_URI); returns its URI."""
    uri = f"sqlite:///{tmp_path / 'mlruns' / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    return uri
