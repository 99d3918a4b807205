"""Walk-forward folds (chronology, embargo, per-fold scaler) and the logged parent/fold runs."""

from __future__ import annotations

import numpy as np
import pytest

from lobseq.errors import LobseqError
from lobseq.evaluation.folds import WalkForwardConfig, fold_view, make_folds


@pytest.fixture(scope="module")
def ds(tmp_path_factory):
    """Four simulated days of 1,500 events: window 10, horizon 5."""
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster

    tmp = tmp_path_factory.mktemp("wf")
    raw = simulate_lobster(tmp / "raw", events=1500, levels=3, days=4, seed=5)
    return ingest(raw, tmp / "sim4", IngestConfig(format="lobster", window=10, horizon=5),
                  log=lambda _m: None)


def _first_rows(ends, window):
    return ends - window + 1


def test_folds_by_days_test_whole_days(ds):
    folds, by = make_folds(ds, WalkForwardConfig(by="days", train_size=2, test_size=1))
    day = ds.timestamps // (86_400 * 10**9)
    assert by == "days" and all(np.unique(day[slice(*f.test_rows)]).size == 1 for f in folds)


def test_no_training_row_comes_after_a_test_row(ds):
    folds, _ = make_folds(ds, WalkForwardConfig(by="periods", folds=3))
    assert all(f.train_rows[1] <= f.test_rows[0] for f in folds)


def test_test_windows_start_an_embargo_after_the_last_training_window(ds):
    embargo = ds.window + ds.horizon - 1
    folds, _ = make_folds(ds, WalkForwardConfig(by="periods", folds=3))
    gaps = [_first_rows(f.ends["test"], ds.window).min() - f.ends["val"].max() for f in folds]
    assert min(gaps) > embargo


def test_validation_tail_is_embargoed_from_inner_training(ds):
    embargo = ds.window + ds.horizon - 1
    folds, _ = make_folds(ds, WalkForwardConfig(by="periods", folds=3))
    gaps = [_first_rows(f.ends["val"], ds.window).min() - f.ends["train"].max() for f in folds]
    assert min(gaps) > embargo


def test_no_training_label_reads_a_test_row(ds):
    folds, _ = make_folds(ds, WalkForwardConfig(by="days", train_size=2, test_size=1))
    assert all(f.ends["val"].max() + ds.horizon < f.test_rows[0] for f in folds)


def test_expanding_folds_all_train_from_the_first_row(ds):
    folds, _ = make_folds(ds, WalkForwardConfig(by="days", train_size=1, test_size=1,
                                                mode="expanding"))
    assert len(folds) == 3 and all(f.train_rows[0] == 0 for f in folds)


def test_rolling_folds_move_their_training_start(ds):
    folds, _ = make_folds(ds, WalkForwardConfig(by="days", train_size=1, test_size=1))
    starts = [f.train_rows[0] for f in folds]
    assert starts == sorted(starts) and len(set(starts)) == len(folds)


def test_test_blocks_do_not_overlap(ds):
    folds, _ = make_folds(ds, WalkForwardConfig(by="periods", folds=3))
    assert all(a.test_rows[1] <= b.test_rows[0] for a, b in zip(folds, folds[1:], strict=False))


def test_fold_scaler_is_fitted_on_the_folds_training_rows(ds):
    folds, _ = make_folds(ds, WalkForwardConfig(by="days", train_size=1, test_size=1))
    view = fold_view(ds, folds[1])
    rows = folds[1].scaler_rows
    assert rows.max() < folds[1].val_rows[0] and \
        np.allclose(view.scaler.mean_, np.asarray(ds.features[rows], np.float64).mean(axis=0))


def test_short_embargo_is_a_user_error(ds):
    with pytest.raises(LobseqError, match="embargo"):
        make_folds(ds, WalkForwardConfig(by="periods", folds=2, embargo=3))


def test_too_many_folds_is_a_user_error(ds):
    with pytest.raises(LobseqError, match="fold"):
        make_folds(ds, WalkForwardConfig(by="days", folds=9))


def test_no_fold_trains_on_rows_dated_after_its_test_rows(tmp_path):
    """Two symbols' bars are stored symbol after symbol: folds over rows would train on the
    first symbol's later dates and test on the second's earlier ones."""
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_bars

    raw = simulate_bars(tmp_path / "raw", symbols=("AAA", "BBB"), days=200, seed=0)
    bars = ingest(raw, tmp_path / "bars", IngestConfig(format="bars", window=5, horizon=1,
                                                       n_classes=2), log=lambda _m: None)
    with pytest.raises(LobseqError, match="fold 1 would train on rows dated after its test rows"):
        make_folds(bars, WalkForwardConfig(by="periods", folds=3))


@pytest.fixture(scope="module")
def logged(ds, module_mlflow_store):
    from lobseq.evaluation.walkforward import walk_forward
    from lobseq.training.config import TrainConfig

    return walk_forward(ds, TrainConfig(model="gru", hyper={"units": 4}, epochs=1,
                                        max_train_windows=300),
                        WalkForwardConfig(by="days", train_size=2, test_size=1, n_boot=50), log=None)


@pytest.mark.slow
def test_each_fold_is_a_nested_run_of_the_parent(logged):
    import mlflow

    parent = mlflow.get_run(logged["run_id"])
    children = mlflow.search_runs([parent.info.experiment_id], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{logged['run_id']}'")
    assert len(children) == logged["n_folds"] == 2


@pytest.mark.slow
def test_parent_holds_oos_and_fold_aggregates(logged):
    import mlflow

    metrics = mlflow.get_run(logged["run_id"]).data.metrics
    assert {"oos_macro_f1", "oos_macro_f1_ci_low", "oos_baseline_logistic_macro_f1",
            "fold_macro_f1_mean", "fold_macro_f1_sd", "oos_bt_model_total_return"} <= set(metrics)


@pytest.mark.slow
def test_parent_logs_aggregates_and_folds_the_detail(logged):
    import mlflow

    parent = mlflow.get_run(logged["run_id"])
    names = set(parent.data.metrics)
    # every baseline's full metric set and every backtest of a baseline stay out of the parent
    assert not [k for k in names if k.startswith("oos_baseline_") and not k.endswith("_macro_f1")]
    assert not [k for k in names if k.startswith("oos_bt_") and not k.startswith(("oos_bt_model_",
                                                                                  "oos_bt_buy_and_hold_"))]
    assert len(names) < 50
    assert parent.info.run_name == "gru · walkforward"
    children = mlflow.search_runs([parent.info.experiment_id], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{logged['run_id']}'")
    fold = children[0].data.metrics
    assert {"test_macro_f1", "test_baseline_logistic_macro_f1", "best_epoch", "epoch_loss"} <= set(fold)
    assert fold["best_epoch"] == 1  # one epoch, counted from 1
    assert sorted(c.info.run_name for c in children) == ["gru · walkforward · fold 0",
                                                          "gru · walkforward · fold 1"]


@pytest.mark.slow
def test_oos_predictions_are_the_concatenated_fold_test_windows(logged):
    assert logged["oos_n"] == sum(f["test_windows"] for f in logged["folds"])


@pytest.mark.slow
def test_parent_logs_the_stitched_equity_curve(logged):
    from mlflow import MlflowClient

    files = {f.path for f in MlflowClient().list_artifacts(logged["run_id"], "backtest")}
    assert "backtest/equity.png" in files


@pytest.mark.slow
def test_parent_carries_the_oos_verdict_with_costs_and_buy_and_hold(logged):
    import mlflow
    from mlflow import MlflowClient

    run = mlflow.get_run(logged["run_id"])
    assert run.data.tags["lobseq.verdict"] == logged["verdict"]
    assert logged["verdict"].startswith("macro-F1 decided") and "buy-and-hold" in logged["verdict"]
    assert "fills at the touch" in logged["verdict"]  # a book: half the spread by default
    assert "verdict.md" in {f.path for f in MlflowClient().list_artifacts(logged["run_id"])}


@pytest.mark.slow
def test_model_baselines_and_buy_and_hold_cover_the_same_periods(logged):
    n = logged["bt_model_n_periods"]
    assert n > 1 and all(logged[f"bt_{w}_n_periods"] == n
                         for w in ("buy_and_hold", "prior", "logistic", "gbt"))


@pytest.mark.slow
@pytest.mark.ray
@pytest.mark.timeout(300)
def test_folds_on_ray_score_exactly_as_the_local_engine_and_nest_under_the_parent(ds, logged, ray_local):
    """The same folds, settings and seeds as `logged`, as parallel Ray tasks: every score equal
    (seeded, op-deterministic training: bit for bit on one machine), each fold's run nested under
    the walk-forward's parent, logged by the worker into the driver's store."""
    import mlflow

    from lobseq.engine import EngineConfig
    from lobseq.evaluation.walkforward import walk_forward
    from lobseq.training.config import TrainConfig

    lines = []
    remote = walk_forward(ds, TrainConfig(model="gru", hyper={"units": 4}, epochs=1, max_train_windows=300),
                          WalkForwardConfig(by="days", train_size=2, test_size=1, n_boot=50),
                          log=lines.append, engine=EngineConfig(name="ray"))
    assert "folds as Ray tasks" in lines[0]
    assert {k: v for k, v in remote.items() if k != "run_id"} == {k: v for k, v in logged.items() if k != "run_id"}
    parent = mlflow.get_run(remote["run_id"])
    children = mlflow.search_runs([parent.info.experiment_id], output_format="list",
                                  filter_string=f"tags.mlflow.parentRunId = '{remote['run_id']}'")
    assert sorted(c.info.run_name for c in children) == ["gru · walkforward · fold 0", "gru · walkforward · fold 1"]
    assert {c.info.status for c in children} == {"FINISHED"} and parent.info.status == "FINISHED"
    for child in children:
        fold = remote["folds"][int(child.data.tags["fold"])]
        assert child.data.metrics["test_macro_f1"] == fold["test_macro_f1"]
        assert child.data.tags["dataset_hash"] == ds.hash
