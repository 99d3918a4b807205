"""The verdict in plain words: which figure decided, the outcome, accuracy vs majority, Sharpe."""

from __future__ import annotations

import numpy as np
import pytest

from lobseq.evaluation.verdict import (
    majority_rate,
    outcome_of,
    sharpe_difference,
    trading_verdict,
    verdict,
)

SCORES = {"macro_f1": 0.52, "best_baseline": "gbt", "baseline_gbt_macro_f1": 0.55,
          "diff_macro_f1_vs_best": -0.03, "diff_macro_f1_vs_best_ci_low": -0.05,
          "diff_macro_f1_vs_best_ci_high": -0.01, "accuracy": 0.521, "majority_rate": 0.539,
          "majority_class": "up"}
BACKTEST = {"model_sharpe": 0.41, "buy_and_hold_sharpe": 0.69, "costs": "costs 1 bps per leg"}


@pytest.mark.parametrize("lo, hi, want", [(0.01, 0.2, "beats"), (-0.1, 0.1, "within"),
                                          (-0.2, -0.01, "worse"), (None, 0.1, "n/a")])
def test_the_outcome_follows_the_interval_of_the_difference(lo, hi, want):
    assert outcome_of(lo, hi) == want


def test_a_model_below_the_best_baseline_beyond_the_interval_reads_worse():
    v = verdict(SCORES, BACKTEST)
    assert v.outcome == "worse" and v.decided_by == "macro_f1"
    assert v.line.startswith("macro-F1 decided: the model (0.5200) is worse than the best "
                             "baseline, gbt (0.5500)")


def test_the_line_puts_accuracy_next_to_the_majority_and_sharpe_next_to_buy_and_hold():
    line = verdict(SCORES, BACKTEST).line
    assert "accuracy 0.521 vs majority rate 0.539 (always 'up')" in line
    assert "Sharpe after costs 0.41 vs buy-and-hold 0.69 (costs 1 bps per leg)" in line


def test_without_a_backtest_the_line_says_so():
    assert "not backtested here" in verdict(SCORES).line


def test_a_walk_forward_reads_its_prefixed_figures():
    flat = {**{f"oos_{k}": v for k, v in SCORES.items()},
            **{f"bt_{k}": v for k, v in BACKTEST.items()}}
    assert verdict(flat, flat, scores_prefix="oos_", backtest_prefix="bt_").line == \
        verdict(SCORES, BACKTEST).line


def test_a_backtest_alone_is_decided_by_sharpe_against_the_best_trading_baseline():
    bt = {**BACKTEST, "best_trading_baseline": "buy_and_hold", "diff_sharpe_vs_best": -0.28,
          "diff_sharpe_vs_best_ci_low": -1.1, "diff_sharpe_vs_best_ci_high": 0.5}
    v = trading_verdict(bt)
    assert v.decided_by == "sharpe" and v.outcome == "within"
    assert v.line.startswith("Sharpe after costs decided: the model (0.41) is within the interval "
                             "of the best trading baseline, buy_and_hold (0.69)")


def test_the_sharpe_difference_interval_is_paired_and_brackets_the_estimate():
    rng = np.random.default_rng(0)
    common = rng.normal(0, 0.01, 500)
    a, b = common + 0.002, common  # same noise: a is better on every period
    d = sharpe_difference(a, b, 252)
    assert d["lo"] > 0 and d["lo"] <= d["diff"] <= d["hi"]


def test_majority_rate_is_the_share_of_the_training_majority_in_the_split(lobster_dataset):
    name, rate = majority_rate(lobster_dataset, "test")
    train = lobster_dataset.labels[lobster_dataset.ends["train"]]
    k = int(np.bincount(train).argmax())
    assert name == ("down", "stationary", "up")[k]
    assert rate == pytest.approx((lobster_dataset.labels[lobster_dataset.ends["test"]] == k).mean())


@pytest.mark.slow
def test_train_prints_accuracy_next_to_the_majority_rate(lobster_dataset, mlflow_store):
    from click.testing import CliRunner

    from lobseq.cli import cli

    out = CliRunner().invoke(cli, ["train", str(lobster_dataset.path), "--model", "gru",
                                   "--param", "units=4", "--epochs", "1",
                                   "--max-train-windows", "200"])
    assert out.exit_code == 0, out.output
    assert "vs majority rate" in out.output and "the training majority" in out.output
