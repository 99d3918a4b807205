import json
import types

import pytest

from lobseq.errors import LobseqError
from lobseq.workflow import report as pipeline_report
from lobseq.workflow import runner as pipeline_runner
from lobseq.workflow import stages as pipeline_stages
from lobseq.workflow.runner import run_pipeline
from lobseq.workflow.spec import load_pipeline
from lobseq.workflow.stages import StageType

# ------------------------------------------------------------ schema


def _write(tmp_path, text):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    return path


GOOD = """\
name: t
stages:
  - name: sim
    type: simulate
    with: {out: raw, events: 1000}
  - name: ingest
    type: ingest
    with: {format: lobster, out: ds, window: 5, horizon: 2}
"""


def test_valid_file_loads_with_default_needs(tmp_path):
    p = load_pipeline(_write(tmp_path, GOOD))
    assert p.stage("ingest").needs == ["sim"]


def test_unknown_key_names_key_and_line(tmp_path):
    text = GOOD.replace("horizon: 2}", "horizon: 2, windw: 3}")
    with pytest.raises(LobseqError, match=r"line 8, key 'stages\.1\.with\.windw'"):
        load_pipeline(_write(tmp_path, text))


def test_wrong_type_names_key_and_line(tmp_path):
    text = GOOD.replace("events: 1000", "events: many")
    with pytest.raises(LobseqError, match=r"line 5, key 'stages\.0\.with\.events': must be int"):
        load_pipeline(_write(tmp_path, text))


def test_unquoted_yaml_split_dates_are_read_as_iso_strings(tmp_path):
    text = GOOD.replace("horizon: 2}", "horizon: 2, split_dates: [2024-01-03, 2024-01-04]}")
    p = load_pipeline(_write(tmp_path, text))
    assert p.stage("ingest").settings["split_dates"] == ["2024-01-03", "2024-01-04"]


def test_unknown_stage_type_names_line(tmp_path):
    text = GOOD.replace("type: ingest", "type: ingets")
    with pytest.raises(LobseqError, match=r"line 7, key 'stages\.1\.type'"):
        load_pipeline(_write(tmp_path, text))


def test_needs_must_name_an_earlier_stage(tmp_path):
    text = GOOD.replace("    type: simulate\n", "    type: simulate\n    needs: [ingest]\n")
    with pytest.raises(LobseqError, match=r"line 5, key 'stages\.0\.needs\.0'"):
        load_pipeline(_write(tmp_path, text))


def test_missing_required_key_is_named(tmp_path):
    text = GOOD.replace("format: lobster, ", "")
    with pytest.raises(LobseqError, match=r"key 'stages\.1\.with': missing required setting 'format'"):
        load_pipeline(_write(tmp_path, text))


def test_bad_yaml_names_line(tmp_path):
    with pytest.raises(LobseqError, match="line 3"):
        load_pipeline(_write(tmp_path, "name: t\nstages:\n\t- name: a\n"))


def test_set_override_is_validated_and_marked(tmp_path):
    with pytest.raises(LobseqError, match=r"from --set.*must be int"):
        load_pipeline(_write(tmp_path, GOOD), ["ingest.window=wide"])


def test_set_override_changes_the_setting(tmp_path):
    p = load_pipeline(_write(tmp_path, GOOD), ["ingest.window=7"])
    assert p.stage("ingest").settings["window"] == 7


def test_set_unknown_stage_is_an_error(tmp_path):
    with pytest.raises(LobseqError, match="no stage named 'trian'"):
        load_pipeline(_write(tmp_path, GOOD), ["trian.epochs=1"])


def test_train_setting_outside_trainconfig_names_key(tmp_path):
    text = GOOD + "  - name: train\n    type: train\n    with: {models: [rnn], epohcs: 1}\n"
    with pytest.raises(LobseqError, match=r"line 11, key 'stages\.2\.with\.epohcs'"):
        load_pipeline(_write(tmp_path, text))


def test_unknown_model_names_its_list_item(tmp_path):
    text = GOOD + "  - name: train\n    type: train\n    with: {models: [rnn, lstn]}\n"
    with pytest.raises(LobseqError, match=r"key 'stages\.2\.with\.models\.1'.*unknown model"):
        load_pipeline(_write(tmp_path, text))


@pytest.mark.parametrize("override, key, problem", [
    ("ingest.window=0", "window", "must be >= 1, got 0"),
    ("ingest.embargo=2", "embargo", "embargo 2 is shorter than window"),
    ("ingest.label=provided", "label", "only for FI-2010"),
    ('ingest.split_dates=["2024-01-03"]', "split_dates", "two dates"),
])
def test_ingest_settings_are_checked_before_anything_runs(tmp_path, override, key, problem):
    with pytest.raises(LobseqError, match=rf"key 'stages\.1\.with\.{key}' \(from --set\): .*{problem}"):
        load_pipeline(_write(tmp_path, GOOD), [override])


def test_a_config_checked_key_names_key_line_and_fix(tmp_path):
    text = GOOD.replace("horizon: 2}", "horizon: 2, classes: 4}")
    with pytest.raises(LobseqError, match=r"line 8, key 'stages\.1\.with\.classes': 4 is not "
                                          r"allowed\. Fix: use one of 2, 3"):
        load_pipeline(_write(tmp_path, text))


TRAIN = "  - name: train\n    type: train\n    with: {models: [rnn, gru], epochs: 0}\n"


def test_a_train_setting_is_checked_by_trainconfig_with_its_line(tmp_path):
    with pytest.raises(LobseqError, match=r"line 11, key 'stages\.2\.with\.epochs': must be >= 1"):
        load_pipeline(_write(tmp_path, GOOD + TRAIN))


def test_a_models_unknown_hyperparameter_names_its_hyper_key(tmp_path):
    text = GOOD + TRAIN.replace("epochs: 0", "hyper: {gru: {unitz: 2}}")
    with pytest.raises(LobseqError, match=r"key 'stages\.2\.with\.hyper\.gru': unknown hyperparameter"):
        load_pipeline(_write(tmp_path, text))


def test_a_preset_is_checked_for_each_model(tmp_path):
    text = GOOD + TRAIN.replace("epochs: 0", "preset: dixon")
    with pytest.raises(LobseqError, match=r"key 'stages\.2\.with\.preset': unknown preset 'dixon' "
                                          r"for model 'gru'"):
        load_pipeline(_write(tmp_path, text))


def test_settings_hold_every_default_once_loaded(tmp_path):
    s = load_pipeline(_write(tmp_path, GOOD)).stage("ingest").settings
    assert (s["classes"], s["label"], s["fractions"], "name" in s) == (3, "point", [0.7, 0.15, 0.15],
                                                                       False)


NEW_STAGES = GOOD + """\
  - name: train
    type: train
    with: {models: [rnn, gru]}
  - name: wf
    type: walkforward
    needs: [ingest]
    with: {models: [gru], folds: 2, by: periods}
  - name: predict
    type: predict
    needs: [train, sim]
    with: {format: lobster, model: gru}
"""


def test_walkforward_and_predict_stages_validate(tmp_path):
    p = load_pipeline(_write(tmp_path, NEW_STAGES))
    wf = p.stage("wf").settings
    assert (wf["epochs"], wf["patience"], wf["folds"], "head" in wf) == (10, 3, 2, False)
    assert p.stage("predict").settings == {"format": "lobster", "model": "gru"}


@pytest.mark.parametrize("model, problem", [
    (None, "needs 'model': several models are trained upstream"),
    ("lstm", "'lstm' is neither a model URI nor a model trained upstream"),
])
def test_predict_needs_a_model_it_can_resolve(tmp_path, model, problem):
    text = NEW_STAGES.replace(", model: gru", f", model: {model}" if model else "")
    with pytest.raises(LobseqError, match=problem):
        load_pipeline(_write(tmp_path, text))


def test_predict_takes_a_registry_uri(tmp_path):
    text = NEW_STAGES.replace("model: gru", "model: 'models:/live@champion'")
    assert load_pipeline(_write(tmp_path, text)).stage("predict").settings["model"] == \
        "models:/live@champion"


def test_older_backtest_params_mapping_is_still_read(tmp_path):
    text = GOOD + TRAIN.replace("epochs: 0", "epochs: 1") + \
        "  - name: bt\n    type: backtest\n    with: {params: {cost_bps: 2.5}}\n"
    assert load_pipeline(_write(tmp_path, text)).stage("bt").settings["cost_bps"] == 2.5


def test_shipped_pipelines_validate():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1] / "pipelines"
    names = sorted(p.stem for p in root.glob("*.yaml") if load_pipeline(p))
    assert names == ["daily", "demo", "lobster", "retrain", "scaleout"]


def test_require_trading_without_a_backtest_stage_is_refused_before_anything_runs(tmp_path):
    text = GOOD + """\
  - {name: train, type: train, with: {models: [rnn]}}
  - {name: evaluate, type: evaluate}
  - {name: promote, type: promote, with: {model_name: m, require_trading: true}}
"""
    with pytest.raises(LobseqError, match="require_trading.*backtest"):
        load_pipeline(_write(tmp_path, text))


# ------------------------------------------------------------ runner (stand-in stages)


@pytest.fixture()
def store(module_mlflow_store, tmp_path, monkeypatch):
    """The module's MLflow store, run from a folder of the test's own."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture()
def fake_stages(monkeypatch):
    """simulate writes a file; ingest 'reads' it; calls are counted."""
    calls = []

    def sim_run(ctx):
        calls.append("sim")
        from pathlib import Path

        out = Path(ctx.stage.settings["out"])
        out.mkdir(exist_ok=True)
        (out / "a.txt").write_text(str(ctx.stage.settings["events"]))
        return {"raw": str(out)}

    def ingest_inputs(ctx):
        from lobseq.io import sha256_file

        return {"a": sha256_file(f"{ctx.find('raw')}/a.txt")}

    def ingest_run(ctx):
        calls.append("ingest")
        if ctx.stage.settings["window"] == 13:
            raise RuntimeError("stage crashed")
        return {"n": 1}

    monkeypatch.setitem(pipeline_stages.STAGES, "simulate", StageType(lambda ctx: {}, sim_run))
    monkeypatch.setitem(pipeline_stages.STAGES, "ingest", StageType(ingest_inputs, ingest_run))
    return calls


def _name(request):
    return "name=" + request.node.name[:40]


def test_second_run_skips_unchanged_stages(store, fake_stages, request):
    path = _write(store, GOOD)
    run_pipeline(path, [_name(request)], log=lambda m: None)
    result = run_pipeline(path, [_name(request)], log=lambda m: None)
    assert [s.status for s in result.stages] == ["skipped", "skipped"]


def test_force_reruns_every_stage(store, fake_stages, request):
    path = _write(store, GOOD)
    run_pipeline(path, [_name(request)], log=lambda m: None)
    run_pipeline(path, [_name(request)], force=True, log=lambda m: None)
    assert fake_stages == ["sim", "ingest", "sim", "ingest"]


def test_changed_setting_reruns_only_affected_stages(store, fake_stages, request):
    path = _write(store, GOOD)
    run_pipeline(path, [_name(request)], log=lambda m: None)
    result = run_pipeline(path, [_name(request), "ingest.window=6"], log=lambda m: None)
    assert [s.status for s in result.stages] == ["skipped", "ran"]


def test_changed_input_file_reruns_the_stage_that_reads_it(store, fake_stages, request):
    path = _write(store, GOOD)
    run_pipeline(path, [_name(request)], log=lambda m: None)
    result = run_pipeline(path, [_name(request), "sim.events=2000"], log=lambda m: None)
    assert [s.status for s in result.stages] == ["ran", "ran"]


def test_failed_stage_is_not_reused(store, fake_stages, request):
    path = _write(store, GOOD)
    with pytest.raises(RuntimeError):
        run_pipeline(path, [_name(request), "ingest.window=13"], log=lambda m: None)
    with pytest.raises(RuntimeError):
        run_pipeline(path, [_name(request), "ingest.window=13"], log=lambda m: None)
    assert fake_stages.count("ingest") == 2


def test_failed_stage_marks_parent_run_failed(store, fake_stages, request):
    import mlflow

    path = _write(store, GOOD)
    with pytest.raises(RuntimeError):
        run_pipeline(path, [_name(request), "ingest.window=13"], log=lambda m: None)
    exp = mlflow.get_experiment_by_name(request.node.name[:40])
    runs = mlflow.search_runs([exp.experiment_id], filter_string="tags.`lobseq.pipeline` != ''",
                              output_format="list")
    assert [r.info.status for r in runs] == ["FAILED"]


def test_stages_are_nested_under_the_pipeline_run(store, fake_stages, request):
    import mlflow

    result = run_pipeline(_write(store, GOOD), [_name(request)], log=lambda m: None)
    parents = {mlflow.get_run(s.run_id).data.tags["mlflow.parentRunId"] for s in result.stages}
    assert parents == {result.run_id}


def test_missing_source_folder_fails_before_any_run_exists(store, request):
    import mlflow

    text = """\
name: t
stages:
  - name: ingest
    type: ingest
    with: {sources: [no/such/folder], format: lobster, out: ds, window: 5, horizon: 2}
"""
    with pytest.raises(LobseqError, match="no/such/folder.*input not found"):
        run_pipeline(_write(store, text), [_name(request)], log=lambda m: None)
    assert mlflow.get_experiment_by_name(request.node.name[:40]) is None


def test_cli_bad_config_exits_2(store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    result = CliRunner().invoke(cli, ["run", str(_write(store, GOOD.replace("events", "evnts")))])
    assert result.exit_code == 2 and "evnts" in result.output


def test_cli_crashed_stage_exits_1(store, fake_stages):
    from click.testing import CliRunner

    from lobseq.cli import cli

    result = CliRunner().invoke(cli, ["run", str(_write(store, GOOD)), "--set", "ingest.window=13"])
    assert result.exit_code == 1 and "stage crashed" in result.output


# ------------------------------------------------------------ end to end (tiny, real stages)

E2E = """\
name: e2e
stages:
  - name: simulate
    type: simulate
    with: {kind: bars, out: raw, symbols: [AAA], days: 260, seed: 1}
  - name: ingest
    type: ingest
    with: {format: bars, out: ds, window: 5, horizon: 1, classes: 2}
  - name: train
    type: train
    with: {models: [rnn], epochs: 1, max_train_windows: 64, max_val_windows: 32,
           hyper: {rnn: {units: 4}}}
  - name: evaluate
    type: evaluate
  - name: backtest
    type: backtest
  - name: register
    type: promote
    needs: [evaluate, backtest]
    # gate: none: these tests follow the registry mechanics of a 1-epoch model, which the
    # baseline gate would (rightly) keep out; tests/test_registry.py covers the gate.
    with: {model_name: e2e-model, metric: macro_f1, gate: none}
"""


@pytest.fixture(scope="module")
def e2e(tmp_path_factory, module_mlflow_store):
    d = tmp_path_factory.mktemp("e2e")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        path = _write(d, E2E)
        first = run_pipeline(path, log=lambda m: None)
        second = run_pipeline(path, log=lambda m: None)
        yield first, second


def test_e2e_first_run_runs_every_stage(e2e):
    assert [s.status for s in e2e[0].stages] == ["ran"] * 6


def test_e2e_first_run_promotes_the_challenger(e2e):
    from lobseq import registry

    assert registry.champion_version("e2e-model") == "1"


def test_e2e_decision_is_logged_as_an_artifact(e2e):
    import mlflow

    run_id = e2e[0].stages[-1].run_id
    path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path="promotion_decision.json")
    assert json.loads(open(path).read())["promote"] is True


def test_e2e_second_run_skips_every_stage(e2e):
    assert [s.status for s in e2e[1].stages] == ["skipped"] * 6


def test_e2e_summary_table_names_the_decision(e2e):
    assert "PROMOTED" in pipeline_report.summary_table(e2e[0])


def test_e2e_summary_shows_a_verdict_accuracy_next_to_the_majority_and_the_costs(e2e):
    text = pipeline_report.summary_table(e2e[0])
    ev = e2e[0].outputs("evaluate")["evaluations"]["rnn"]
    assert "verdict rnn: macro-F1 decided" in text and "vs majority rate" in text
    assert f"{ev['accuracy']:.3f} / {ev['majority_rate']:.3f}" in text
    assert "backtest convention: costs 1 bps per leg" in text and "buy-and-hold" in text


def test_e2e_summary_table_shows_each_models_score_and_backtest(e2e):
    ev = e2e[0].outputs("evaluate")["evaluations"]["rnn"]
    bt = e2e[0].outputs("backtest")["backtests"]["rnn"]
    row = next(line for line in pipeline_report.summary_table(e2e[0]).splitlines()
               if line.split()[:1] == ["rnn"])
    best = ev["best_baseline"]
    cells = [f"{ev['macro_f1']:.4f} [{ev['macro_f1_ci_low']:.4f}, {ev['macro_f1_ci_high']:.4f}]",
             f"{best} {ev[f'baseline_{best}_macro_f1']:.4f}",
             f"{bt['model_total_return']:+.4f}", f"{bt['model_sharpe']:.2f}"]
    assert [c for c in cells if c not in row] == [], row


WF_PREDICT = """\
name: wfp
stages:
  - name: simulate
    type: simulate
    with: {kind: bars, out: raw, symbols: [AAA], days: 200, seed: 2}
  - name: ingest
    type: ingest
    with: {format: bars, out: ds, window: 5, horizon: 1, classes: 2}
  - name: train
    type: train
    with: {models: [rnn], epochs: 1, max_train_windows: 64, max_val_windows: 32,
           hyper: {rnn: {units: 4}}}
  - name: walkforward
    type: walkforward
    needs: [ingest]
    with: {models: [rnn], by: periods, folds: 2, epochs: 1, max_train_windows: 64, n_boot: 50,
           hyper: {rnn: {units: 4}}}
  - name: predict
    type: predict
    needs: [train, simulate]
    with: {format: bars}
"""


@pytest.fixture(scope="module")
def wf_predict(tmp_path_factory, module_mlflow_store):
    d = tmp_path_factory.mktemp("wfp")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(d)
        path = _write(d, WF_PREDICT)
        first = run_pipeline(path, log=lambda m: None)
        second = run_pipeline(path, log=lambda m: None)
        yield d, first, second


@pytest.mark.slow
def test_walkforward_stage_scores_each_fold(wf_predict):
    out = wf_predict[1].outputs("walkforward")["walkforward"]["rnn"]
    assert out["n_folds"] == 2 and 0 <= out["fold_macro_f1_mean"] <= 1 and out["run_id"]


@pytest.mark.slow
def test_predict_stage_writes_under_data_predictions(wf_predict):
    import pandas as pd

    root, first, _ = wf_predict
    out = first.outputs("predict")
    path = root / out["predictions"]
    assert path.parent == root / "data" / "predictions" and path.suffix == ".parquet"
    assert len(pd.read_parquet(path)) == out["rows"] > 0
    assert not list(root.glob("*.parquet"))  # nothing in the working directory's root


@pytest.mark.slow
def test_walkforward_and_predict_are_skipped_when_unchanged(wf_predict):
    assert [s.status for s in wf_predict[2].stages] == ["skipped"] * 5


def test_demo_prints_one_line_per_stage_then_the_summary(store, monkeypatch):
    from click.testing import CliRunner

    from lobseq.cli import cli

    def stand_in(ctx):
        ctx.log(f"DETAIL of {ctx.stage.name}: a long table")
        return {}

    for kind in ("simulate", "ingest", "train", "evaluate", "backtest", "promote"):
        monkeypatch.setitem(pipeline_stages.STAGES, kind, StageType(lambda ctx: {}, stand_in))
    quiet = CliRunner().invoke(cli, ["demo", "--force"])
    assert quiet.exit_code == 0, quiet.output
    lines = quiet.output.splitlines()
    summary = next(i for i, line in enumerate(lines) if line.startswith("Pipeline demo  (MLflow"))
    assert "DETAIL" not in quiet.output
    assert lines[0].startswith("Pipeline demo: 6 stage(s)") and summary == 7
    assert [line.split("]")[0] for line in lines[1:summary]] == \
        ["[simulate", "[ingest", "[train", "[evaluate", "[backtest", "[register"]
    loud = CliRunner().invoke(cli, ["demo", "--force", "--verbose"])
    assert "DETAIL of train: a long table" in loud.output and loud.exit_code == 0


def test_summary_table_shows_sharpe_as_na_with_one_day(tmp_path):
    from lobseq.workflow.runner import PipelineResult, StageResult
    from lobseq.workflow.spec import Pipeline

    evals = {"lstm": {"macro_f1": 0.41, "macro_f1_ci_low": 0.39, "macro_f1_ci_high": 0.43,
                      "best_baseline": "gbt", "baseline_gbt_macro_f1": 0.40}}
    backs = {"lstm": {"model_total_return": 0.0123, "model_sharpe": float("nan"),
                      "model_n_periods": 1}}
    result = PipelineResult(Pipeline("p", "p", "", [], tmp_path), "r" * 32, [
        StageResult("evaluate", "evaluate", "ran", "a" * 32, 1.0, {"evaluations": evals}),
        StageResult("backtest", "backtest", "ran", "b" * 32, 1.0, {"backtests": backs})])
    row = next(line for line in pipeline_report.summary_table(result).splitlines()
               if line.split()[:1] == ["lstm"])
    assert row.split()[1:] == ["0.4100", "[0.3900,", "0.4300]", "gbt", "0.4000", "-", "+0.0123",
                               "n/a", "n/a"]


def _decision_result(promote: bool, status: str = "ran"):
    decision = {"promote": promote, "reason": "why", "challenger_model": "lstm",
                "challenger": {"name": "live", "version": "2"},
                "champion": {"name": "live", "version": "1"}}
    stage = pipeline_runner.StageResult("promote", "promote", status, "r" * 32, 0.1, {"decision": decision})
    return pipeline_runner.PipelineResult(types.SimpleNamespace(name="retrain"), "p" * 32, [stage])


def test_summary_names_the_kept_champion_not_the_rejected_challenger():
    text = pipeline_report.summary_table(_decision_result(promote=False))
    assert "kept champion: live v1; challenger v2 (lstm) not promoted — why" in text


def test_summary_says_why_nobody_was_crowned_when_the_gate_stops_the_first_challenger():
    result = _decision_result(promote=False)
    result.stages[0].outputs["decision"].update(champion={}, reason="does not beat gbt")
    text = pipeline_report.summary_table(result)
    assert "NOT PROMOTED: no champion yet and none crowned; challenger v2 (lstm)" in text
    assert "does not beat gbt" in text


def test_summary_marks_a_decision_replayed_from_a_skipped_stage():
    assert "PROMOTED: live v2 (lstm) — why" in pipeline_report.summary_table(_decision_result(True))
    text = pipeline_report.summary_table(_decision_result(True, status="skipped"))
    assert "(unchanged, decided by an earlier run) PROMOTED: live v2" in text


def test_summary_columns_fit_the_longest_stage_name_and_type():
    from types import SimpleNamespace

    from lobseq.workflow.runner import PipelineResult, StageResult

    stages = [StageResult("folds-of-the-gru", "walkforward", "ran", "a" * 32, 12.5),
              StageResult("ingest", "ingest", "skipped", "b" * 32, 0.0)]
    table = pipeline_report.summary_table(
        PipelineResult(SimpleNamespace(name="p"), "r" * 32, stages)).splitlines()
    row = next(line for line in table if "folds-of-the-gru" in line)
    assert row.split() == ["folds-of-the-gru", "walkforward", "ran", "12.5", "a" * 12]
