"""Runs that read well in the MLflow UI: one small pipeline, run twice, and what the store holds.

One experiment per pipeline and nothing in Default; train/evaluate/backtest runs nested
under the pipeline and its stage runs and named after model and stage; evaluation scores
also on the training runs and the evaluate stage run; the pipeline run's params, summary,
verdict, decision and name; no child runs for a re-run that reuses every stage; model
version descriptions; walk-forward aggregates on the parent; `lobseq ui`.
"""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.slow

PIPELINE = """\
name: ui-check
experiment: lobseq-ui-check
stages:
  - name: simulate
    type: simulate
    with: {kind: lobster, out: raw, events: 3000, levels: 5, days: 2, seed: 0}
  - name: ingest
    type: ingest
    with: {format: lobster, out: ds, window: 10, horizon: 5}
  - name: train
    type: train
    with: {models: [gru, rnn], epochs: 1, max_train_windows: 200, max_val_windows: 200,
           hyper: {gru: {units: 4}, rnn: {units: 4}}}
  - name: evaluate
    type: evaluate
    with: {n_boot: 50}
  - name: backtest
    type: backtest
  - name: register
    type: promote
    needs: [evaluate, backtest]
    with: {model_name: ui-check-model, metric: macro_f1, gate: none}  # the UI of a promotion
"""


def _store_counts() -> dict[str, int]:
    from mlflow import MlflowClient

    c = MlflowClient()
    return {e.name: len(c.search_runs([e.experiment_id], max_results=1000))
            for e in c.search_experiments()}


@pytest.fixture(scope="module")
def piped(tmp_path_factory):
    """The pipeline run twice in a store of its own; the store's counts after each run."""
    from conftest import mlflow_store_at

    from lobseq.workflow.runner import run_pipeline

    root = tmp_path_factory.mktemp("ui-check")
    with mlflow_store_at(root) as store:
        (root / "p.yaml").write_text(PIPELINE)
        first = run_pipeline(root / "p.yaml", log=lambda _m: None)
        after_first = _store_counts()
        second = run_pipeline(root / "p.yaml", log=lambda _m: None)
        after_second = _store_counts()
        yield {"first": first, "second": second, "after_first": after_first,
               "after_second": after_second, "store": store}


def _runs(filter_string: str = "") -> list:
    import mlflow

    exp = mlflow.get_experiment_by_name("lobseq-ui-check")
    return mlflow.search_runs([exp.experiment_id], filter_string=filter_string, output_format="list",
                              max_results=1000)


def _by_name(name: str):
    found = [r for r in _runs() if r.info.run_name == name]
    assert len(found) == 1, [r.info.run_name for r in _runs()]
    return found[0]


def _parent(run) -> str:
    return run.data.tags.get("mlflow.parentRunId", "")


# ------------------------------------------------------------------ experiments


def test_one_experiment_per_pipeline_and_default_stays_empty(piped):
    assert piped["after_first"] == {"lobseq-ui-check": 13, "Default": 0}  # 1 + 6 stages + 3 x 2


def test_evaluate_and_backtest_runs_land_in_the_pipelines_experiment(piped):
    kinds = sorted(r.data.tags.get("lobseq.kind") for r in _runs("tags.`lobseq.kind` != 'stage'"))
    assert kinds.count("evaluation") == 2 and kinds.count("backtest") == 2


# ------------------------------------------------------------------ nesting and names


@pytest.mark.parametrize("name, stage", [("gru · train", "train"), ("rnn · train", "train"),
                                         ("gru · evaluate · test", "evaluate"),
                                         ("rnn · backtest · test", "backtest")])
def test_model_runs_are_named_after_model_and_stage_under_the_stage_run(piped, name, stage):
    run = _by_name(name)
    stage_run = next(s for s in piped["first"].stages if s.name == stage)
    assert _parent(run) == stage_run.run_id
    assert _parent(_by_name(stage)) == piped["first"].run_id


# ------------------------------------------------------------------ metrics for comparison


def test_evaluation_scores_are_also_on_each_training_run(piped):
    evaluations = piped["first"].outputs("evaluate")["evaluations"]
    for model in ("gru", "rnn"):
        m, e = _by_name(f"{model} · train").data.metrics, evaluations[model]
        assert m["test_macro_f1_ci_low"] == pytest.approx(e["macro_f1_ci_low"])
        assert m["test_diff_macro_f1_vs_best"] == pytest.approx(e["diff_macro_f1_vs_best"])
        assert m["test_best_baseline_macro_f1"] == pytest.approx(
            e[f"baseline_{e['best_baseline']}_macro_f1"])
        assert "test_bt_model_total_return" in m


def test_the_evaluate_stage_run_carries_each_models_scores(piped):
    m = _by_name("evaluate").data.metrics
    evaluations = piped["first"].outputs("evaluate")["evaluations"]
    assert m["gru/test_macro_f1"] == pytest.approx(evaluations["gru"]["macro_f1"])
    assert m["rnn/test_diff_macro_f1_vs_best_ci_high"] == pytest.approx(
        evaluations["rnn"]["diff_macro_f1_vs_best_ci_high"])


# ------------------------------------------------------------------ the pipeline run


def test_pipeline_run_carries_its_flattened_settings_as_params(piped):
    import mlflow

    p = mlflow.get_run(piped["first"].run_id).data.params
    assert p["pipeline.name"] == "ui-check" and p["train.epochs"] == "1"
    assert p["train.hyper.gru.units"] == "4" and p["evaluate.n_boot"] == "50"


def test_pipeline_run_carries_the_summary_table(piped):
    import mlflow

    from lobseq.workflow.report import summary_table

    run_id = piped["first"].run_id
    text = mlflow.artifacts.load_text(f"runs:/{run_id}/summary.txt")
    assert text == summary_table(piped["first"])


def test_pipeline_run_carries_verdict_and_decision_as_tags(piped):
    import mlflow

    tags = mlflow.get_run(piped["first"].run_id).data.tags
    decision = piped["first"].outputs("register")["decision"]
    assert tags["lobseq.decision"] == ("promoted" if decision["promote"] else "kept_champion")
    assert tags["lobseq.champion"] == "ui-check-model v1"
    assert tags["lobseq.verdict_outcome"] in ("beats", "within", "worse")
    assert "best baseline" in tags["lobseq.verdict"] and "majority rate" in tags["lobseq.verdict"]


def test_pipeline_run_names_differ_and_tell_the_outcome(piped):
    import mlflow

    first = mlflow.get_run(piped["first"].run_id).info.run_name
    second = mlflow.get_run(piped["second"].run_id).info.run_name
    model = piped["first"].outputs("register")["decision"]["challenger_model"]
    assert first.startswith(f"ui-check · {model} promoted v1 · 20")
    assert second.startswith("ui-check · unchanged · 20")
    assert "ui-check-model v1 is champion" in mlflow.get_run(piped["first"].run_id).data.tags[
        "mlflow.note.content"]


# ------------------------------------------------------------------ a re-run with nothing to do


def test_a_rerun_that_reuses_every_stage_adds_only_its_own_run(piped):
    assert [s.status for s in piped["second"].stages] == ["skipped"] * 6
    assert piped["after_second"] == {"lobseq-ui-check": 14, "Default": 0}
    assert _runs(f"tags.mlflow.parentRunId = '{piped['second'].run_id}'") == []


def test_the_rerun_records_which_runs_it_reused(piped):
    import mlflow

    tags = mlflow.get_run(piped["second"].run_id).data.tags
    first = {s.name: s.run_id for s in piped["first"].stages}
    assert tags["lobseq.stage.train"] == f"reused {first['train']}"
    assert tags["lobseq.outcome"] == "unchanged: reused all 6 stages"


# ------------------------------------------------------------------ registry


def test_registered_version_describes_architecture_dataset_and_scores(piped):
    from mlflow import MlflowClient

    decision = piped["first"].outputs("register")["decision"]
    version = MlflowClient().get_model_version("ui-check-model", "1")
    assert f"**{decision['challenger_model']}** trained on **ds**" in version.description
    assert "best baseline" in version.description and "Hyperparameters: " in version.description


# ------------------------------------------------------------------ walk-forward


def test_walkforward_parent_logs_aggregates_and_each_fold_its_detail(piped):
    import mlflow

    from lobseq.evaluation.folds import WalkForwardConfig
    from lobseq.evaluation.walkforward import walk_forward
    from lobseq.training.config import TrainConfig

    out = walk_forward(piped["store"].root / "ds", TrainConfig(model="gru", hyper={"units": 4},
                                                               epochs=1, max_train_windows=200),
                       WalkForwardConfig(by="periods", folds=2, n_boot=20), log=None)
    parent = mlflow.get_run(out["run_id"])
    names = set(parent.data.metrics)
    assert {"oos_macro_f1", "oos_macro_f1_ci_low", "fold_macro_f1_mean", "oos_bt_model_sharpe"} <= names
    assert not [k for k in names if k.startswith("oos_baseline_") and not k.endswith("macro_f1")]
    folds = mlflow.search_runs([parent.info.experiment_id], output_format="list",
                               filter_string=f"tags.mlflow.parentRunId = '{out['run_id']}'")
    assert len(folds) == 2 and all("test_f1_up" in f.data.metrics for f in folds)


# ------------------------------------------------------------------ lobseq ui


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_lobseq_ui_prints_a_classic_view_address_only_once_it_answers(piped):
    import os
    import signal
    import subprocess
    import sys
    import urllib.request

    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", "from lobseq.cli import main; main()", "ui",
                             "--port", str(port)], cwd=piped["store"].root, env=dict(os.environ),
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = proc.stdout.readline()
        url = line.split()[3]
        assert url.startswith(f"http://127.0.0.1:{port}/") and "workflowType=machine_learning" in url
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as r:
            assert r.status == 200  # answering already when the address was printed
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
    assert code == 130


def test_a_first_run_stopped_by_the_gate_tags_no_champion():
    """The gate can leave a pipeline without any champion: the tags say so, not 'v?'."""
    from types import SimpleNamespace

    from lobseq.workflow.records import outcome

    decision = {"promote": False, "reason": "macro_f1 0.41 does not beat gbt 0.45",
                "challenger": {"name": "m", "version": "1"}, "champion": {},
                "gate": {"passed": False}, "challenger_model": "gru"}
    stages = [SimpleNamespace(name="register", status="ran", reused_from=None,
                              outputs={"decision": decision})]
    tags, short = outcome(SimpleNamespace(stages=stages))
    assert tags["lobseq.decision"] == "below_baseline"
    assert tags["lobseq.champion"] == "none"
    assert short == "no champion (gate not passed)"
