"""`lobseq tune`: the same seeded trials on the local engine and on Ray Tune (the session's
real local Ray instance), nested trial runs, the parent's record, folds, and --register."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from lobseq.cli import cli

pytestmark = [pytest.mark.slow, pytest.mark.timeout(400)]

SPACE = "units: {choice: [4, 8]}\nlr: {loguniform: [0.001, 0.01]}\n"
BASE = ["--model", "gru", "--epochs", "1", "--max-train-windows", "200", "--max-val-windows", "200",
        "--trials", "2", "--seed", "3"]


def _tune(dataset, space, *args: str) -> str:
    result = CliRunner().invoke(cli, ["tune", str(dataset.path), "--space", str(space), *BASE, *args])
    assert result.exit_code == 0, result.output
    return next(ln.split()[-1] for ln in result.output.splitlines() if ln.startswith("Run id:"))


def _trials(run_id: str) -> pd.DataFrame:
    import mlflow

    text = mlflow.artifacts.load_text(f"runs:/{run_id}/trials.csv")
    return pd.read_csv(io.StringIO(text))


def _children(run_id: str) -> list:
    import mlflow

    parent = mlflow.get_run(run_id)
    return mlflow.search_runs([parent.info.experiment_id], output_format="list",
                              filter_string=f"tags.mlflow.parentRunId = '{run_id}'")


@pytest.fixture(scope="module")
def sweeps(lobster_dataset, module_mlflow_store, tmp_path_factory, request):
    """The same two trials on the local engine and on Ray Tune (FIFO, registered)."""
    request.getfixturevalue("ray_local")
    space = tmp_path_factory.mktemp("space") / "space.yaml"
    space.write_text(SPACE)
    local = _tune(lobster_dataset, space, "--engine", "local")
    remote = _tune(lobster_dataset, space, "--engine", "ray", "--scheduler", "fifo", "--register", "tuned")
    return {"local": local, "ray": remote}


@pytest.mark.ray
def test_ray_tune_runs_the_local_trials_and_scores_them_the_same(sweeps):
    local, remote = _trials(sweeps["local"]), _trials(sweeps["ray"])
    assert list(local["trial"]) == list(remote["trial"]) == [0, 1]
    pd.testing.assert_frame_equal(local[["units", "lr", "val_macro_f1", "best_epoch", "epochs_run", "status"]],
                                  remote[["units", "lr", "val_macro_f1", "best_epoch", "epochs_run", "status"]])


@pytest.mark.ray
def test_trials_are_nested_runs_and_the_parent_records_the_best(sweeps):
    import mlflow

    parent = mlflow.get_run(sweeps["ray"])
    trials = _trials(sweeps["ray"])
    best = trials.loc[trials["val_macro_f1"].idxmax()]
    runs = {r.data.tags.get("trial"): r for r in _children(sweeps["ray"])}
    assert {runs[t].info.run_name for t in ("0", "1")} == {"gru · tune · trial 0", "gru · tune · trial 1"}
    for _, row in trials.iterrows():
        trial_run = runs[str(row["trial"])]
        assert trial_run.info.status == "FINISHED" and trial_run.info.run_id == row["run_id"]
        assert trial_run.data.metrics["val_macro_f1"] == row["val_macro_f1"]
        assert trial_run.data.params["trial.units"] == str(row["units"])
    assert parent.data.metrics["best_val_macro_f1"] == best["val_macro_f1"]
    assert parent.data.params["best.units"] == str(best["units"])
    assert parent.data.tags["lobseq.kind"] == "tune" and parent.data.tags["lobseq.scheduler"] == "fifo"
    artifacts = {a.path for a in mlflow.MlflowClient().list_artifacts(parent.info.run_id)}
    assert {"trials.csv", "space.yaml", "configurations.json", "plots"} <= artifacts


@pytest.mark.ray
def test_register_retrains_the_best_configuration_on_train_and_validation(sweeps, lobster_dataset):
    """The best trial's epochs (its best epoch), no early stopping, a nested run, registered."""
    import mlflow

    from lobseq.registry import list_versions

    trials = _trials(sweeps["ray"])
    best = trials.loc[trials["val_macro_f1"].idxmax()]
    (version,) = list_versions("tuned")
    retrain = mlflow.get_run(version["run_id"])
    assert retrain.data.tags["mlflow.parentRunId"] == sweeps["ray"]
    assert retrain.data.tags["lobseq.trained_on"] == "train+val"
    assert retrain.data.params["train.epochs"] == str(best["best_epoch"])
    assert retrain.data.params["model.units"] == str(best["units"])
    assert retrain.data.metrics["epochs_run"] == best["best_epoch"]
    assert not [k for k in retrain.data.metrics if k.startswith("val_")]  # in-sample: not logged
    assert "test_macro_f1" in retrain.data.metrics


def test_with_folds_a_configuration_scores_its_mean_over_the_folds(lobster_dataset, module_mlflow_store,
                                                                    tmp_path):
    space = tmp_path / "space.yaml"
    space.write_text("units: {choice: [4]}\n")
    result = CliRunner().invoke(cli, ["tune", str(lobster_dataset.path), "--space", str(space), *BASE[:-4],
                                      "--trials", "1", "--folds", "2"])
    assert result.exit_code == 0, result.output
    run_id = result.output.strip().splitlines()[-1].split()[-1]
    (trial,) = _children(run_id)
    folds = [trial.data.metrics[f"fold_{k}_val_macro_f1"] for k in range(2)]
    assert trial.data.metrics["val_macro_f1"] == pytest.approx(np.mean(folds), abs=1e-12)
    assert _trials(run_id)["val_macro_f1"].iloc[0] == pytest.approx(np.mean(folds), abs=1e-12)
    assert "fold_2_val_macro_f1" not in trial.data.metrics


@pytest.mark.ray
def test_sigterm_cancels_the_trials_ends_every_run_killed_and_exits_130(lobster_dataset, tmp_path, ray_local):
    """`lobseq tune --engine ray`, joining the session's Ray instance from a subprocess, stopped by
    SIGTERM once both trials train: exit 130, the parent and trial runs KILLED, the processes that
    ran the trials gone, no Tune scratch left."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import ray
    from mlflow import MlflowClient

    root = Path(__file__).resolve().parents[1]
    uri = f"sqlite:///{tmp_path}/mlruns/mlflow.db"
    (tmp_path / "space.yaml").write_text(SPACE)
    env = {**os.environ, "PYTHONPATH": str(root), "MLFLOW_TRACKING_URI": uri, "TMPDIR": str(tmp_path),
           "RAY_ADDRESS": ray.get_runtime_context().gcs_address}
    cmd = [sys.executable, "-c", "from lobseq.cli import main; main()", "tune", str(lobster_dataset.path),
           "--space", "space.yaml", "--model", "gru", "--trials", "2", "--epochs", "200", "--patience", "200",
           "--engine", "ray"]
    proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    client = MlflowClient(uri)
    try:
        deadline = time.monotonic() + 240
        while len(trials := _running_trials(client, tmp_path)) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the trials never started"
            time.sleep(1)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, stdout[-2000:] + stderr[-4000:]
    assert stderr.strip().splitlines()[-1] == "Interrupted."
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 3 and {r.info.status for r in runs} == {"KILLED"}
    pids = [t.data.tags["lobseq.worker"].rsplit(":", 1)[1] for t in trials]
    deadline = time.monotonic() + 30
    while any(Path(f"/proc/{pid}").exists() for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not [pid for pid in pids if Path(f"/proc/{pid}").exists()], "a trial's process is still running"
    assert not list(tmp_path.glob("lobseq-tune-*"))


def _running_trials(client, tmp_path) -> list:
    if not (tmp_path / "mlruns" / "mlflow.db").exists():
        return []
    exps = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(exps, "tags.`lobseq.kind` = 'tune_trial' and attributes.status = 'RUNNING'") \
        if exps else []
