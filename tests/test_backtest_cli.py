"""`lobseq backtest` / `lobseq evaluate` on the command line, and the backtest's row conventions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two simulated days, a tiny logged GRU, one CLI backtest; a dataset with other features."""
    from conftest import logged_model, mlflow_store_at

    from lobseq.cli import cli
    from lobseq.data.ingest import IngestConfig, ingest

    tmp = tmp_path_factory.mktemp("backtest")
    with mlflow_store_at(tmp):
        m = logged_model(tmp, seed=4)
        ingest(m.raw, tmp / "other", IngestConfig(format="lobster", window=10, horizon=5,
                                                  features=["spread", "returns"]),
               log=lambda _m: None)
        result = CliRunner().invoke(cli, ["backtest", m.run_id, str(tmp / "sim"), "--cost-bps", "1"])
        yield {"ds": m.dataset, "run_id": m.run_id, "result": result, "tmp": tmp, "cli": cli}


def _backtest_run(env):
    from mlflow import MlflowClient

    runs = MlflowClient().search_runs(
        [MlflowClient().get_experiment_by_name("sim").experiment_id],
        filter_string="tags.`lobseq.kind` = 'backtest'")
    assert len(runs) == 1
    return runs[0]


def test_backtest_command_succeeds(env):
    assert env["result"].exit_code == 0, env["result"].output


def test_backtest_prints_buy_and_hold_next_to_the_model(env):
    lines = env["result"].output.splitlines()
    assert any(line.startswith("model") for line in lines) and \
        any(line.startswith("buy_and_hold") for line in lines)


def test_backtest_states_costs_fills_annualization_and_a_verdict(env):
    out = env["result"].output
    assert "costs 1 bps per leg" in out and "fills at the touch" in out
    assert "1-minute" in out or "60s interval" in out
    assert "verdict: Sharpe after costs decided" in out and "buy-and-hold" in out


def test_backtest_run_carries_the_verdict_tag_and_artifact(env):
    from mlflow import MlflowClient

    run = _backtest_run(env)
    assert run.data.tags["lobseq.verdict"].startswith("Sharpe after costs decided")
    files = {f.path for f in MlflowClient().list_artifacts(run.info.run_id)}
    assert "verdict.md" in files


def test_backtest_logs_equity_plot_and_trade_log(env):
    from mlflow import MlflowClient

    files = {Path(f.path).name for f in
             MlflowClient().list_artifacts(_backtest_run(env).info.run_id, "backtest")}
    assert {"equity.png", "trades.csv"} <= files


def test_backtest_run_records_costs_for_model_and_baselines(env):
    metrics = _backtest_run(env).data.metrics
    assert metrics["test_bt_model_total_cost"] > 0 and "test_bt_logistic_total_return" in metrics


def test_backtest_run_is_named_after_the_model_and_nested_under_its_training_run(env):
    import mlflow

    run = _backtest_run(env)
    assert run.info.run_name == "gru · backtest · test"
    assert run.data.tags["mlflow.parentRunId"] == env["run_id"]
    training = mlflow.get_run(env["run_id"]).data.metrics
    assert training["test_bt_model_total_return"] == run.data.metrics["test_bt_model_total_return"]


def test_backtest_run_is_linked_to_the_model_run(env):
    assert _backtest_run(env).data.tags["lobseq.model_run_id"] == env["run_id"]


def test_no_trade_spans_two_segments(env):
    import pandas as pd
    from mlflow.artifacts import download_artifacts

    run_id = _backtest_run(env).info.run_id
    trades = pd.read_csv(download_artifacts(run_id=run_id, artifact_path="backtest/trades.csv"))
    seg = env["ds"].segment
    assert len(trades) > 0
    assert (seg[trades["entry_row"]] == seg[trades["exit_row"]]).all()


def test_signal_is_flat_at_rows_that_end_no_window(env):
    from lobseq.evaluation.backtest.model import backtest_rows, conventions, signal_on_rows

    ds = env["ds"]
    rows = np.flatnonzero(ds.split == 2)
    ends = ds.ends["test"]
    br = backtest_rows(ds, rows, ends, conventions(ds))
    sig = signal_on_rows(br, ends, np.tile([0.1, 0.1, 0.8], (len(ends), 1)), 0.0, "long_short")
    assert not sig[~np.isin(br.rows, ends)].any() and (sig[np.isin(br.rows, ends)] == 1).all()


def test_a_gap_in_rows_starts_a_new_run(env):
    from lobseq.evaluation.backtest.model import backtest_rows, conventions

    ds = env["ds"]
    br = backtest_rows(ds, np.array([100, 101, 102, 200, 201]), ds.ends["test"], conventions(ds))
    assert br.market.run.tolist() == [0, 0, 0, 1, 1]


def test_no_position_is_held_into_the_next_run(env):
    from lobseq.evaluation.backtest.engine import backtest
    from lobseq.evaluation.backtest.model import backtest_rows, conventions

    ds = env["ds"]
    ends = np.concatenate([ds.ends["val"], ds.ends["test"]])
    br = backtest_rows(ds, np.flatnonzero(ds.split >= 1), ends, conventions(ds))  # several runs
    res = backtest(np.ones(len(br.rows), dtype=np.int8), br.market)
    last = np.flatnonzero(np.r_[br.market.run[1:] != br.market.run[:-1], True])
    assert len(last) > 1 and not res.weight[last].any()
    assert (br.market.run[res.trades.entry_row] == br.market.run[res.trades.exit_row]).all()


def test_evaluate_command_prints_model_and_logistic_rows(env):
    result = CliRunner().invoke(env["cli"], ["evaluate", env["run_id"], str(env["tmp"] / "sim"),
                                             "--n-boot", "50"])
    assert result.exit_code == 0 and "logistic" in result.output and "model" in result.output


def test_unknown_model_uri_exits_2_with_a_clear_message(env):
    result = CliRunner().invoke(env["cli"], ["backtest", "f" * 32, str(env["tmp"] / "sim")])
    assert result.exit_code == 2 and "cannot resolve model" in result.output


def test_dataset_with_other_features_exits_2(env):
    result = CliRunner().invoke(env["cli"], ["evaluate", env["run_id"], str(env["tmp"] / "other")])
    assert result.exit_code == 2 and "features differ" in result.output


def test_unknown_split_exits_2(env):
    result = CliRunner().invoke(env["cli"], ["backtest", env["run_id"], str(env["tmp"] / "sim"),
                                             "--split", "holdout"])
    assert result.exit_code == 2 and "holdout" in result.output
