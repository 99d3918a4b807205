"""Shared fixtures: tiny simulated data, one way to make a throw-away MLflow store, and one
way to get a logged model."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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
        yield Store(uri, root)
    finally:
        mp.undo()


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
