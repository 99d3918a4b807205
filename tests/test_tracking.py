"""MLflow tracking: store location, what a run records, KILLED/FAILED runs, registration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lobseq.tracking import run_name, tracking_uri
from lobseq.training.config import TrainConfig
from lobseq.training.run import flatten

TINY = dict(model="gru", hyper={"units": 8}, epochs=2, batch_size=128, max_train_windows=600)


def test_default_store_is_sqlite_under_mlruns(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert tracking_uri() == "sqlite:///mlruns/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:///elsewhere.db")
    assert tracking_uri() == "sqlite:///elsewhere.db"


@pytest.mark.parametrize("user, expected", [(None, "true"), ("false", "false")])
def test_telemetry_is_off_unless_the_user_turned_it_on(user, expected):
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_DISABLE_TELEMETRY"}
    if user is not None:
        env["MLFLOW_DISABLE_TELEMETRY"] = user
    code = "import os, lobseq.tracking; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == expected


def test_flatten_nests_with_dots_and_writes_lists_as_json():
    assert flatten("data", {"window": 10, "features": None, "fractions": [0.7, 0.3],
                            "x": {"y": "z"}}) == {
        "data.window": "10", "data.features": "null", "data.fractions": "[0.7,0.3]", "data.x.y": "z"}


def test_run_names_read_model_then_step_then_detail():
    assert run_name("gru", "evaluate", "test") == "gru · evaluate · test"
    assert run_name("gru", "train", None, "") == "gru · train"


@pytest.mark.slow
def test_run_records_config_metrics_dataset_and_artifacts(lobster_dataset, tmp_path, monkeypatch):
    import mlflow

    from lobseq.training.run import train_and_log

    monkeypatch.chdir(tmp_path)  # the default store: ./mlruns
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    run_id = train_and_log(lobster_dataset.path, TrainConfig(**TINY), register="tiny", log=lambda _: None)

    assert (tmp_path / "mlruns" / "mlflow.db").is_file()
    run = mlflow.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.info.run_name == "gru · train"
    assert run.data.tags["lobseq.kind"] == "train"
    exp = mlflow.get_experiment(run.info.experiment_id)
    assert exp.name == "sim"
    assert Path(exp.artifact_location.removeprefix("file://")).is_relative_to(tmp_path / "mlruns")

    p, m, t = run.data.params, run.data.metrics, run.data.tags
    assert p["data.window"] == "10" and p["data.horizon"] == "5" and p["model.units"] == "8"
    assert p["model.name"] == "gru" and p["train.epochs"] == "2" and p["train.seed"] == "0"
    assert t["dataset"] == "sim" and t["dataset_hash"] == lobster_dataset.hash
    assert t["lobseq_version"] and "git_commit" in t  # the test runs inside the repo
    for split in ("val", "test"):
        for key in ("accuracy", "macro_f1", "mcc", "cohen_kappa", "log_loss", "precision_up",
                    "recall_down", "f1_stationary"):
            assert f"{split}_{key}" in m
    history = mlflow.MlflowClient().get_metric_history(run_id, "epoch_val_loss")
    assert [h.step for h in history] == [1, 2]  # epochs counted from 1, as on the console
    assert {"epoch_loss", "epoch_accuracy", "epoch_val_accuracy"} <= set(m)
    assert not [k for k in m if k.startswith("validation_")]  # no second name for val curves
    assert m["best_epoch"] in (1, 2) and m["epochs_run"] == 2

    inputs = run.inputs.dataset_inputs
    assert len(inputs) == 1 and inputs[0].dataset.name == "sim"
    assert inputs[0].dataset.digest == lobster_dataset.hash[:36]

    files = {a.path for a in mlflow.MlflowClient().list_artifacts(run_id)}
    files |= {a.path for d in ("plots", "dataset") for a in mlflow.MlflowClient().list_artifacts(run_id, d)}
    assert {"plots/confusion_matrix_val.png", "plots/confusion_matrix_test.png",
            "plots/learning_curves.png", "classification_report.json",
            "dataset/manifest.json", "model_summary.txt"} <= files
    report = mlflow.artifacts.load_dict(f"{run.info.artifact_uri}/classification_report.json")
    assert report["class_names"] == ["down", "stationary", "up"]
    assert sum(map(sum, report["test"]["confusion_matrix"])) == m["test_n"]
    manifest = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="dataset/manifest.json")
    assert json.loads(Path(manifest).read_text())["name"] == "sim"

    versions = mlflow.MlflowClient().search_model_versions("name='tiny'")
    assert [v.run_id for v in versions] == [run_id]
    assert "**gru** trained on **sim**" in versions[0].description
    assert f"macro-F1 {m['test_macro_f1']:.4f}" in versions[0].description


class _Boom(Exception):
    pass


def _raising(exc):
    import keras

    class Raise(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            raise exc

    return Raise()


@pytest.fixture(scope="module")
def shared_store(module_mlflow_store):
    """One store for several tests (creating a sqlite store costs seconds)."""
    return module_mlflow_store.uri


@pytest.mark.slow
@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "KILLED"), (_Boom("crash"), "FAILED")])
def test_interrupted_or_crashed_run_ends_killed_or_failed_and_registers_nothing(
        lobster_dataset, shared_store, exc, status):
    import mlflow

    from lobseq.training.run import train_and_log

    with pytest.raises(type(exc)):
        train_and_log(lobster_dataset.path, TrainConfig(**{**TINY, "epochs": 1}), experiment=status,
                      register="never", callbacks=[_raising(exc)], log=lambda _: None)
    assert mlflow.active_run() is None
    runs = mlflow.search_runs(experiment_names=[status], output_format="list")
    assert [r.info.status for r in runs] == [status]
    assert mlflow.MlflowClient().search_registered_models() == []


def test_unknown_hyperparameter_fails_before_a_run_exists(lobster_dataset, mlflow_store):
    from lobseq.errors import LobseqError
    from lobseq.training.run import train_and_log

    with pytest.raises(LobseqError, match="unknown hyperparameter"):
        train_and_log(lobster_dataset.path, TrainConfig(model="gru", hyper={"unitz": 1}),
                      log=lambda _: None)
    assert not Path(mlflow_store.uri.removeprefix("sqlite:///")).exists()


def test_a_model_that_cannot_take_the_dataset_fails_before_a_run_exists(lobster_dataset, mlflow_store):
    from lobseq.errors import LobseqError
    from lobseq.training.run import train_and_log

    assert lobster_dataset.n_features != 40
    with pytest.raises(LobseqError, match="deeplob needs the 40 columns of a 10-level book.*--features levels_rel"):
        train_and_log(lobster_dataset.path, TrainConfig(model="deeplob"), log=lambda _: None)
    assert not Path(mlflow_store.uri.removeprefix("sqlite:///")).exists()


def test_cli_models_lists_builders_and_defaults():
    from click.testing import CliRunner

    from lobseq.cli import cli

    out = CliRunner().invoke(cli, ["models"])
    assert out.exit_code == 0, out.output
    assert "lstm" in out.output and "units = 64" in out.output and "preset dixon" in out.output


def test_cli_train_user_errors_exit_2(lobster_dataset, mlflow_store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    out = CliRunner().invoke(cli, ["train", str(lobster_dataset.path), "--model", "nope"])
    assert out.exit_code == 2 and "unknown model 'nope'" in out.output
    out = CliRunner().invoke(cli, ["train", str(lobster_dataset.path), "--model", "gru",
                                   "--param", "units"])
    assert out.exit_code == 2 and "not key=value" in out.output


def test_a_preset_designed_for_another_window_is_noted(lobster_raw, tmp_path, mlflow_store):
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.training.run import train_and_log

    ds = ingest(lobster_raw, tmp_path / "w12", IngestConfig(format="lobster", window=12, horizon=5),
                log=lambda _: None)
    said: list[str] = []
    train_and_log(ds.path, TrainConfig(model="rnn", preset="dixon", epochs=1, max_train_windows=128,
                                       max_val_windows=64), log=said.append)
    assert any("designed for windows of 10" in s and "window is 12" in s for s in said)


# ------------------------------------------------------------------ one run lifecycle


def _status(run_id: str) -> str:
    import mlflow

    return mlflow.get_run(run_id).info.status


def test_a_tracked_run_ends_finished(mlflow_store):
    from lobseq.tracking import tracked_run

    with tracked_run("ok", "test", experiment="lifecycle") as run:
        pass
    assert _status(run.info.run_id) == "FINISHED"


@pytest.mark.parametrize("exc, status", [(KeyboardInterrupt(), "KILLED"), (_Boom("x"), "FAILED")])
def test_a_tracked_run_ends_killed_on_ctrl_c_and_failed_on_an_error(mlflow_store, exc, status):
    import mlflow

    from lobseq.tracking import tracked_run

    with pytest.raises(type(exc)), tracked_run("stopped", "test", experiment="lifecycle") as run:
        raise exc
    assert _status(run.info.run_id) == status
    assert mlflow.active_run() is None


def test_runs_left_open_inside_a_stopped_run_end_with_it(mlflow_store):
    import mlflow

    from lobseq.tracking import tracked_run

    with pytest.raises(KeyboardInterrupt), tracked_run("outer", "test", experiment="lifecycle") as outer:
        inner = mlflow.start_run(run_name="left open", nested=True)
        raise KeyboardInterrupt
    assert [_status(outer.info.run_id), _status(inner.info.run_id)] == ["KILLED", "KILLED"]


def test_a_run_nests_under_the_active_run_in_its_experiment(mlflow_store):
    import mlflow

    from lobseq.tracking import tracked_run

    with tracked_run("parent", "test", experiment="outer") as parent:
        with tracked_run("child", "test", experiment="ignored") as child:
            pass
    got = mlflow.get_run(child.info.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert got.info.experiment_id == parent.info.experiment_id
    assert mlflow.get_experiment_by_name("ignored") is None


def test_a_run_nests_under_a_given_finished_parent(mlflow_store):
    import mlflow

    from lobseq.tracking import tracked_run

    with tracked_run("model's training", "test", experiment="models") as parent:
        pass
    with tracked_run("later evaluation", "test", experiment="fallback", parent=parent.info.run_id) as child:
        pass
    got = mlflow.get_run(child.info.run_id)
    assert got.data.tags["mlflow.parentRunId"] == parent.info.run_id
    assert got.info.experiment_id == parent.info.experiment_id
    assert mlflow.get_experiment_by_name("fallback") is None


def test_common_tags_are_set_once_on_every_run(mlflow_store, lobster_dataset):
    import mlflow

    from lobseq.tracking import tracked_run

    with tracked_run("tagged", "evaluation", experiment="tags", dataset=lobster_dataset,
                     tags={"split": "test", "skipped": None}) as run:
        pass
    tags = mlflow.get_run(run.info.run_id).data.tags
    assert {k: tags[k] for k in ("lobseq.kind", "dataset", "dataset_hash", "split")} == {
        "lobseq.kind": "evaluation", "dataset": "sim", "dataset_hash": lobster_dataset.hash,
        "split": "test"}
    assert tags["lobseq_version"] and "git_commit" in tags and "skipped" not in tags


def test_experiments_are_created_as_classic_ml_and_default_stays_empty(mlflow_store):
    import mlflow

    from lobseq.tracking import tracked_run

    with tracked_run("r", "test", experiment="kinds"):
        pass
    exp = mlflow.get_experiment_by_name("kinds")
    assert exp.tags["mlflow.experimentKind"] == "custom_model_development"
    assert mlflow.search_runs(experiment_ids=["0"], output_format="list") == []


@pytest.mark.slow
def test_sigterm_mid_training_ends_the_run_killed_with_exit_130(lobster_dataset, mlflow_store):
    """A scheduler's SIGTERM behaves like Ctrl-C: the training run ends KILLED, exit code 130."""
    import os
    import signal
    import subprocess
    import sys
    import time

    import mlflow

    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    cmd = [sys.executable, "-c", "from lobseq.cli import main; main()", "train",
           str(lobster_dataset.path), "--model", "gru", "--param", "units=4", "--epochs", "500",
           "--patience", "500", "--max-train-windows", "64", "--experiment", "sigterm"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    deadline = time.monotonic() + 300  # a safety net, not a timing assert
    for line in proc.stdout:
        seen.append(line)
        if line.startswith("epoch 2/500") or time.monotonic() > deadline:
            break
    proc.send_signal(signal.SIGTERM)
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert any(s.startswith("epoch 2/500") for s in seen), out[-2000:]
    assert proc.returncode == 130, out[-2000:]
    assert "Interrupted." in rest
    runs = mlflow.search_runs(experiment_names=["sigterm"], output_format="list")
    assert [r.info.status for r in runs] == ["KILLED"]
