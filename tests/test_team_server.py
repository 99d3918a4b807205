"""lobseq unchanged against a real `mlflow server` (PostgreSQL backend, proxied artifacts, basic
auth): every command, and what a user without the right permission or password sees.

One module-scoped sequence of CLI calls (tiny bars data, 1-epoch RNNs) as the server's admin;
pipelines against the server are in test_team_concurrency.py and test_team_faults.py, serving
from models:/NAME@champion in test_team_serve.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from click.testing import CliRunner

pytestmark = [pytest.mark.team, pytest.mark.slow]

MODEL = "team-cli"
TINY = ["--model", "rnn", "--epochs", "1", "--param", "units=4", "--max-train-windows", "64",
        "--max-val-windows", "32"]


def _lobseq(*args, env=None):
    from lobseq.cli import cli

    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    return result


def _ok(*args):
    result = _lobseq(*args)
    assert result.exit_code == 0, (args, result.output, result.exception)
    return result.output


@dataclass
class Session:
    runs: dict
    outputs: dict
    root: Path


def _run_id(output: str) -> str:
    return next(line.split()[-1] for line in output.splitlines() if line.startswith("Run id:"))


@pytest.fixture(scope="module")
def session(module_team_store):
    """simulate + ingest (local), then train x2 (registered), evaluate, backtest, walkforward,
    promote 1, promote 2, rollback, promote 2, list and predict, all against the server."""
    out = {}
    _ok("simulate", "--kind", "bars", "--symbols", "AAA", "--days", "200", "--seed", "1",
        "--out", "raw")
    _ok("ingest", "raw", "--format", "bars", "--out", "ds", "--window", "5", "--horizon", "1",
        "--classes", "2")
    out["train1"] = _ok("train", "ds", *TINY, "--register", MODEL)
    out["train2"] = _ok("train", "ds", *TINY, "--seed", "1", "--register", MODEL)
    out["evaluate"] = _ok("evaluate", f"models:/{MODEL}/1", "ds", "--n-boot", "50")
    out["backtest"] = _ok("backtest", f"models:/{MODEL}/1", "ds")
    out["walkforward"] = _ok("walkforward", "ds", *TINY, "--folds", "2", "--n-boot", "50")
    out["promote1"] = _ok("models", "promote", MODEL, "1")
    out["promote2"] = _ok("models", "promote", MODEL, "2")
    out["rollback"] = _ok("models", "rollback", MODEL)
    out["promote2again"] = _ok("models", "promote", MODEL, "2")
    out["list"] = _ok("models", "list", MODEL)
    out["predict"] = _ok("predict", f"models:/{MODEL}@champion", "raw", "--format", "bars",
                         "--out", "preds.csv")
    runs = {"train1": _run_id(out["train1"]), "train2": _run_id(out["train2"])}
    return Session(runs, out, module_team_store.root)


def _runs_of_kind(experiment_id: str, kind: str):
    import mlflow

    return mlflow.search_runs([experiment_id], filter_string=f"tags.`lobseq.kind` = '{kind}'",
                              output_format="list")


def test_training_runs_finish_on_the_server_with_their_metrics(session):
    import mlflow

    run = mlflow.get_run(session.runs["train1"])
    assert (run.info.status, "test_accuracy" in run.data.metrics,
            run.data.tags["lobseq.kind"]) == ("FINISHED", True, "train")


def test_artifacts_go_through_the_servers_proxy(session, module_team_store):
    import mlflow

    run = mlflow.get_run(session.runs["train1"])
    names = {a.path for a in mlflow.MlflowClient().list_artifacts(run.info.run_id)}
    stored = list((module_team_store.server.root / "artifacts").rglob("model.keras"))
    assert run.info.artifact_uri.startswith("mlflow-artifacts:/") and names and len(stored) >= 2


def test_evaluate_and_backtest_runs_sit_under_the_training_run(session):
    import mlflow

    train = mlflow.get_run(session.runs["train1"])
    parents = {r.data.tags.get("mlflow.parentRunId")
               for kind in ("evaluation", "backtest")
               for r in _runs_of_kind(train.info.experiment_id, kind)}
    assert session.runs["train1"] in parents


def test_walkforward_logs_its_folds(session):
    import mlflow

    exp = mlflow.get_run(session.runs["train1"]).info.experiment_id
    parent = _runs_of_kind(exp, "walkforward")
    folds = _runs_of_kind(exp, "walkforward_fold")
    assert (len(parent), len(folds), {f.info.status for f in folds}) == (1, 2, {"FINISHED"})


def test_promote_and_rollback_move_the_champion_on_the_server(session):
    from lobseq import registry

    moves = [session.outputs[k].strip() for k in ("promote1", "promote2", "rollback", "promote2again")]
    assert [m.split(": ", 1)[1] for m in moves] == ["no champion → v1", "v1 → v2", "v2 → v1",
                                                     "v1 → v2"]
    assert registry.champion_version(MODEL) == "2"


def test_models_list_shows_both_versions_and_their_aliases(session):
    lines = [line.split() for line in session.outputs["list"].splitlines()[1:]]
    assert [(line[1], line[2]) for line in lines] == [("1", "previous_champion"), ("2", "champion")]


def test_predict_reads_the_champion_from_the_server(session):
    import pandas as pd

    table = pd.read_csv(session.root / "preds.csv")
    assert len(table) > 0 and "Wrote" in session.outputs["predict"]


def test_lobseq_ui_names_the_server_instead_of_starting_one(session, module_team_store):
    assert f"MLflow UI on {module_team_store.uri}/" in _ok("ui")


# ------------------------------------------------------------------ access control


@pytest.fixture(scope="module")
def reader(session, module_team_store):
    """A user with READ on the registered model (created by the admin)."""
    from mlflow.server.auth.client import AuthServiceClient

    auth = AuthServiceClient(module_team_store.uri)
    auth.create_user("reader", "reader-password-123")
    auth.grant_user_permission("reader", "registered_model", MODEL, "READ")
    return {"MLFLOW_TRACKING_USERNAME": "reader", "MLFLOW_TRACKING_PASSWORD": "reader-password-123"}


@pytest.fixture(scope="module")
def refused(session, reader):
    """The registry before, the reader's promote and rollback, a wrong password, the registry after."""
    from lobseq import registry

    before = registry.list_versions(MODEL)
    results = {"read": _lobseq("models", "list", MODEL, env=reader),
               "promote": _lobseq("models", "promote", MODEL, "1", env=reader),
               "rollback": _lobseq("models", "rollback", MODEL, env=reader),
               "wrong": _lobseq("models", "list", env={**reader,
                                                       "MLFLOW_TRACKING_PASSWORD": "wrong"})}
    return before, results, registry.list_versions(MODEL)


def test_a_reader_can_list_the_registry(refused):
    assert refused[1]["read"].exit_code == 0, refused[1]["read"].output


@pytest.mark.parametrize("case", ["promote", "rollback"])
def test_a_reader_cannot_move_the_champion_one_line_exit_2(refused, case):
    result = refused[1][case]
    lines = result.output.strip().splitlines()
    assert (result.exit_code, len(lines), "has no permission" in lines[0],
            "Traceback" in result.output) == (2, 1, True, False), result.output


def test_a_wrong_password_is_one_clear_line_exit_2(refused):
    result = refused[1]["wrong"]
    lines = result.output.strip().splitlines()
    assert (result.exit_code, len(lines), "rejected the credentials of user 'reader'" in lines[0]) \
        == (2, 1, True), result.output


def test_the_registry_is_unchanged_after_the_refusals(refused):
    before, _results, after = refused
    assert after == before and [r["aliases"] for r in after] == ["previous_champion", "champion"]
