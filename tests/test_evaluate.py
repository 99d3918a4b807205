"""evaluate_model: a logged model scored against baselines on the same rows, logged to MLflow."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from lobseq.errors import LobseqError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """Two simulated days, a tiny GRU trained and logged, and one evaluation of it."""
    from conftest import logged_model, mlflow_store_at

    from lobseq.evaluation.evaluate import evaluate_model

    tmp = tmp_path_factory.mktemp("evaluate")
    with mlflow_store_at(tmp):
        m = logged_model(tmp, seed=3)
        scores = evaluate_model(m.run_id, tmp / "sim", "test", n_boot=100, log=None)
        yield {"ds": m.dataset, "run_id": m.run_id, "scores": scores, "tmp": tmp}


def _run(run_id):
    import mlflow

    return mlflow.get_run(run_id)


def test_evaluation_run_is_linked_to_the_model_run(env):
    assert _run(env["scores"]["run_id"]).data.tags["lobseq.model_run_id"] == env["run_id"]


def test_evaluation_run_is_tagged_with_the_dataset_hash(env):
    assert _run(env["scores"]["run_id"]).data.tags["dataset_hash"] == env["ds"].hash


def test_evaluation_logs_model_and_baseline_macro_f1_under_the_splits_name(env):
    metrics = _run(env["scores"]["run_id"]).data.metrics
    assert {"test_macro_f1", "test_macro_f1_ci_low", "test_baseline_logistic_macro_f1",
            "test_diff_macro_f1_vs_best_ci_high", "test_best_baseline_macro_f1"} <= set(metrics)
    assert metrics["test_macro_f1"] == pytest.approx(env["scores"]["macro_f1"])


def test_standalone_evaluation_nests_under_the_models_training_run(env):
    run, training = _run(env["scores"]["run_id"]), _run(env["run_id"])
    assert run.info.run_name == "gru · evaluate · test"
    assert run.data.tags["mlflow.parentRunId"] == env["run_id"]
    assert run.info.experiment_id == training.info.experiment_id


def test_evaluation_headline_is_also_on_the_training_run(env):
    s, metrics = env["scores"], _run(env["run_id"]).data.metrics
    assert metrics["test_macro_f1_ci_low"] == pytest.approx(s["macro_f1_ci_low"])
    assert metrics["test_diff_macro_f1_vs_best"] == pytest.approx(s["diff_macro_f1_vs_best"])
    assert metrics["test_best_baseline_macro_f1"] == pytest.approx(
        s[f"baseline_{s['best_baseline']}_macro_f1"])
    assert _run(env["run_id"]).data.tags["test_best_baseline"] == s["best_baseline"]


def test_evaluation_logs_confusion_matrix_and_reliability_plots(env):
    from mlflow import MlflowClient

    files = {Path(f.path).name for f in MlflowClient().list_artifacts(env["scores"]["run_id"], "plots")}
    assert {"confusion_matrix.png", "reliability.png"} <= files


def test_model_and_every_baseline_are_scored_on_the_test_windows(env):
    s, n = env["scores"], len(env["ds"].ends["test"])
    assert [s["n"], *(s[f"baseline_{b}_n"] for b in ("prior", "persistence", "logistic", "gbt"))] \
        == [n] * 5


def test_macro_f1_interval_brackets_the_estimate(env):
    s = env["scores"]
    assert s["macro_f1_ci_low"] <= s["macro_f1"] <= s["macro_f1_ci_high"]


def test_promotion_rule_finds_the_macro_f1_interval(env):
    from lobseq.registry import ci_of

    assert ci_of(env["scores"], "macro_f1") == (env["scores"]["macro_f1_ci_low"],
                                                env["scores"]["macro_f1_ci_high"])


def test_prior_baseline_learns_train_label_frequencies_only(env):
    from lobseq.evaluation.baselines import fit_baselines

    ds = env["ds"]
    y = ds.labels[ds.ends["train"]]
    prior = fit_baselines(ds, ds.ends["train"])["prior"]
    assert np.allclose(prior.class_prior_, np.bincount(y, minlength=3) / y.size)


def test_baselines_ignore_validation_and_test_labels(env):
    from lobseq.evaluation.baselines import baseline_probas, fit_baselines

    ds = env["ds"]
    labels = np.array(ds.labels)
    scrambled = labels.copy()
    other = np.concatenate([ds.ends["val"], ds.ends["test"]])
    scrambled[other] = (scrambled[other] + 1) % 3
    # persistence reads lagged labels as a feature at prediction time; fit-time labels are train's
    a = baseline_probas(fit_baselines(ds, ds.ends["train"]), ds, ds.ends["test"])
    b = baseline_probas(fit_baselines(replace(ds, labels=scrambled), ds.ends["train"]), ds,
                        ds.ends["test"])
    assert all(np.allclose(a[k], b[k]) for k in ("prior", "logistic", "gbt"))


def test_predictions_use_the_models_scaler_not_the_datasets(env):
    from lobseq.data.scaler import StandardScaler
    from lobseq.evaluation.evaluate import predict_proba
    from lobseq.serving.loader import load_model

    ds = env["ds"]
    model = load_model(env["run_id"])
    bogus = StandardScaler.from_dict({"mean_": [5.0] * ds.n_features,
                                      "scale_": [9.0] * ds.n_features, "n_samples_seen_": 1})
    ends = ds.ends["test"][:50]
    assert np.allclose(predict_proba(model, ds, ends), predict_proba(model, replace(ds, scaler=bogus), ends))


def test_evaluation_inside_an_active_run_is_nested(env):
    import mlflow

    from lobseq.evaluation.evaluate import evaluate_model

    with mlflow.start_run() as parent:
        scores = evaluate_model(env["run_id"], env["ds"], "val", n_boot=20, log=None)
    assert _run(scores["run_id"]).data.tags.get("mlflow.parentRunId") == parent.info.run_id


def test_unknown_run_id_is_a_user_error(env):
    from lobseq.serving.loader import load_model

    with pytest.raises(LobseqError, match="cannot resolve model"):
        load_model("0" * 32)


def test_text_that_is_no_model_uri_is_a_user_error():
    from lobseq.serving.loader import normalize_model_uri

    with pytest.raises(LobseqError, match="not a model URI"):
        normalize_model_uri("my-model")


def test_dataset_with_other_features_is_a_user_error(env):
    from lobseq.evaluation.evaluate import check_compatible
    from lobseq.serving.loader import load_model

    ds = env["ds"]
    other = replace(ds, manifest={**ds.manifest, "feature_names": list(reversed(ds.feature_names))})
    with pytest.raises(LobseqError, match="features differ"):
        check_compatible(load_model(env["run_id"]), other)


def test_unknown_split_is_a_user_error(env):
    from lobseq.evaluation.evaluate import evaluate_model

    with pytest.raises(LobseqError, match="unknown split"):
        evaluate_model(env["run_id"], env["ds"], "holdout", log=None, log_to_mlflow=False)


LOBSTER = Path(__file__).resolve().parents[2] / "shared/data/lobster"


@pytest.mark.skipif(not LOBSTER.is_dir(), reason=f"real LOBSTER sample not found at {LOBSTER}")
def test_amzn_report_shows_deep_model_next_to_baselines_with_intervals(tmp_path, mlflow_store):
    """Acceptance on the real AMZN sample: horizon 10, 3 classes, tiny LSTM, ~1 epoch."""
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.evaluation.evaluate import evaluate_model
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import train_and_log

    ingest([LOBSTER], tmp_path / "amzn", IngestConfig(format="lobster", window=20, horizon=10),
           log=lambda _m: None)
    run_id = train_and_log(tmp_path / "amzn", TrainConfig(model="lstm", hyper={"units": 8},
                                                          epochs=1, max_train_windows=3000,
                                                          max_val_windows=1000),
                           log=lambda _m: None)
    lines = []
    scores = evaluate_model(run_id, tmp_path / "amzn", "test", n_boot=200, log=lines.append)
    print(lines[0])
    rows = {line.split()[0] for line in lines[0].splitlines()[3:8]}
    assert rows == {"model", "prior", "persistence", "logistic", "gbt"} and \
        scores["macro_f1_ci_low"] <= scores["macro_f1"] <= scores["macro_f1_ci_high"]
