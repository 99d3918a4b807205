import numpy as np
import pytest

from lobseq.errors import LobseqError
from lobseq.evaluation.baselines import (
    GBTBaseline,
    LogisticBaseline,
    PersistenceBaseline,
    PriorBaseline,
    lagged_labels,
    window_summary,
)


def _data(n=400, F=4, T=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, F))
    score = X[:, -1, 0] + 0.3 * rng.normal(size=n)
    y = np.digitize(score, [-0.5, 0.5])  # 0 down, 1 stationary, 2 up
    return X, y


ALL = [
    PriorBaseline,
    PersistenceBaseline,
    LogisticBaseline,
    lambda n_classes=3: GBTBaseline(n_classes=n_classes, max_iter=20, n_threads=1),
]


@pytest.mark.parametrize("make", ALL)
def test_test_labels_do_not_change_predictions(make):
    X, y = _data()
    train, test = slice(0, 300), slice(300, None)
    m = make().fit(X[train], y[train])
    p1 = m.predict_proba(X[test])
    y_shuffled = y.copy()
    y_shuffled[test] = np.random.default_rng(9).integers(0, 3, 100)
    p2 = make().fit(X[train], y_shuffled[train]).predict_proba(X[test])
    assert np.array_equal(p1, p2)


@pytest.mark.parametrize("make", ALL)
def test_all_columns_present_when_a_class_is_missing_from_training(make):
    X, y = _data()
    keep = y != 1
    p = make().fit(X[keep], y[keep]).predict_proba(X[:10])
    assert p.shape == (10, 3)
    assert np.allclose(p.sum(axis=1), 1)


GBT1 = lambda: GBTBaseline(n_threads=1)  # noqa: E731


@pytest.mark.parametrize("make", [LogisticBaseline, GBT1])
def test_missing_class_gets_zero_probability_in_learned_models(make):
    X, y = _data()
    keep = y != 1
    p = make().fit(X[keep], y[keep]).predict_proba(X[:10])
    assert (p[:, 1] == 0).all()


def test_prior_is_training_class_frequencies():
    m = PriorBaseline().fit(np.zeros((4, 2)), [2, 2, 0, 2])
    assert m.predict_proba(np.zeros((2, 2))).tolist() == [[0.25, 0, 0.75]] * 2
    assert m.predict(np.zeros((1, 2))).tolist() == [2]


def test_single_training_class_falls_back_to_prior():
    X, _ = _data()
    p = LogisticBaseline().fit(X[:50], np.full(50, 2)).predict_proba(X[:3])
    assert p.tolist() == [[0, 0, 1]] * 3


@pytest.mark.parametrize("make", [LogisticBaseline, GBT1])
def test_learned_baselines_beat_the_prior_on_a_learnable_signal(make):
    X, y = _data()
    acc = (make().fit(X[:300], y[:300]).predict(X[300:]) == y[300:]).mean()
    prior = (PriorBaseline().fit(X[:300], y[:300]).predict(X[300:]) == y[300:]).mean()
    assert acc > prior + 0.2


def test_window_summary_is_last_row_mean_and_last_minus_first():
    X = np.arange(2 * 3 * 2, dtype=float).reshape(2, 3, 2)
    s = window_summary(X)
    assert s.shape == (2, 6)
    assert s[0].tolist() == [4, 5, 2, 3, 4, 4]


def test_logistic_reads_window_summaries():
    X, y = _data()
    a = LogisticBaseline().fit(X, y).predict_proba(X)
    b = LogisticBaseline().fit(window_summary(X), y).predict_proba(window_summary(X))
    assert np.allclose(a, b)


def test_a_trend_inside_the_window_is_learnable_from_summaries_not_the_last_row():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 6, 2))
    X[:, :, 0] = X[:, -1:, 0] + np.linspace(-1, 0, 6) * rng.choice([-1, 1], (600, 1))  # slope
    y = (X[:, -1, 0] - X[:, 0, 0] > 0).astype(int)
    summ = LogisticBaseline(n_classes=2).fit(X[:400], y[:400]).score(X[400:], y[400:])
    last = LogisticBaseline(n_classes=2).fit(X[:400, -1:, :], y[:400]).score(X[400:, -1:, :], y[400:])
    assert summ > 0.95 and last < 0.7


def test_baselines_are_sklearn_estimators():
    from sklearn.base import clone

    m = clone(GBTBaseline(max_depth=3, class_weight="balanced"))
    assert m.get_params()["max_depth"] == 3 and m.get_params()["class_weight"] == "balanced"


def test_balanced_weights_shift_predictions_toward_a_rare_class():
    rng = np.random.default_rng(2)
    X = rng.normal(size=(800, 3))
    y = ((X[:, 0] + rng.normal(0, 1.0, 800)) > 1.6).astype(int)  # ~10% positives
    plain = LogisticBaseline(n_classes=2).fit(X, y).predict(X).mean()
    weighted = LogisticBaseline(n_classes=2, class_weight="balanced").fit(X, y).predict(X).mean()
    assert weighted > 2 * plain


def test_tuning_fits_on_training_rows_and_picks_by_validation_score():
    from lobseq.evaluation.baselines import tuned

    X, y = _data(n=600)
    best = tuned(LogisticBaseline(), {"C": [1e-4, 1.0]}, X[:400], y[:400], X[400:], y[400:])
    assert best.best_params_ == {"C": 1.0}
    again = LogisticBaseline(C=1.0).fit(X[:400], y[:400])  # the same fit: training rows only
    assert np.allclose(best.predict_proba(X[400:]), again.predict_proba(X[400:]))


def test_logistic_tolerates_nan_features():
    X, y = _data()
    X[::7, -1, 1] = np.nan
    assert np.isfinite(LogisticBaseline().fit(X, y).predict_proba(X)).all()


def test_persistence_from_feature_is_the_sign_of_the_last_row_return():
    X = np.zeros((3, 2, 1))
    X[:, -1, 0] = [0.01, -0.02, 0.0]
    X[:, 0, 0] = [-5, 5, 5]  # older rows must not matter
    m = PersistenceBaseline(smoothing=0.0).fit(X, [0, 0, 0])
    assert m.predict(X).tolist() == [2, 0, 1]


def test_persistence_two_classes_breaks_ties_with_training_majority():
    X = np.array([[0.0], [0.3]])
    m = PersistenceBaseline(n_classes=2).fit(np.zeros((3, 1)), [0, 0, 1])
    assert m.predict(X).tolist() == [0, 1]


def test_persistence_zero_offset_for_standardized_features():
    # raw return 0 scaled with mean 0.1, std 1 -> -0.1; that is "no move", not "down"
    m = PersistenceBaseline(zero=-0.1, smoothing=0.0).fit(np.zeros((1, 1)), [1])
    assert m.predict(np.array([[-0.1], [-0.2]])).tolist() == [1, 0]


def test_persistence_probabilities_are_smoothed_and_finite():
    p = PersistenceBaseline(smoothing=0.3).fit(np.zeros((1, 1)), [1]).predict_proba([[1.0]])
    assert p[0] == pytest.approx([0.1, 0.1, 0.8])


def test_lagged_label_at_t_is_label_at_t_minus_reach():
    y = np.array([0, 1, 2, 2, 0, 1])
    assert lagged_labels(y, 2).tolist() == [-1, -1, 0, 1, 2, 2]


@pytest.mark.parametrize("method", ["point", "smoothed"])
def test_lagged_label_depends_only_on_prices_up_to_t(method):
    # labels of the traded return reach t+1+k: lagging by the reach, not by k, keeps them causal
    from lobseq.data.labels import direction_labels, label_reach

    rng = np.random.default_rng(0)
    mid = 100 + np.cumsum(rng.normal(size=40))
    k, t = 3, 20
    reach = label_reach(k, method)
    mid2 = mid.copy()
    mid2[t + 1:] += rng.normal(size=mid.size - t - 1) * 10
    a = lagged_labels(direction_labels(mid, k, method=method), reach)[: t + 1]
    b = lagged_labels(direction_labels(mid2, k, method=method), reach)[: t + 1]
    assert a.tolist() == b.tolist()
    if method == "point":  # lagging by k alone would read row t+1
        a = lagged_labels(direction_labels(mid, k, method=method), k)[: t + 1]
        b = lagged_labels(direction_labels(mid2, k, method=method), k)[: t + 1]
        assert a.tolist() != b.tolist()


def test_lagged_labels_do_not_cross_segments():
    y = np.array([0, 2, 2, 0, 2])
    seg = np.array([0, 0, 0, 1, 1])
    assert lagged_labels(y, 1, seg).tolist() == [-1, 0, 2, -1, 0]


def test_persistence_from_labels_uses_majority_when_unknown():
    m = PersistenceBaseline(source="label", smoothing=0.0).fit(np.zeros(3), [2, 2, 0])
    assert m.predict(np.array([-1, 0, 1])).tolist() == [2, 0, 1]


def test_predict_before_fit_is_a_clear_error():
    with pytest.raises(LobseqError, match="not fitted"):
        PriorBaseline().predict_proba(np.zeros((1, 1)))


def test_unlabelled_training_rows_are_rejected():
    with pytest.raises(LobseqError, match="0..2"):
        PriorBaseline().fit(np.zeros((2, 1)), [0, -1])


def test_the_same_fit_is_reused_and_other_labels_refit(lobster_dataset):
    from dataclasses import replace

    from lobseq.evaluation.baselines import fit_baselines

    ds = lobster_dataset
    a = fit_baselines(ds, ds.ends["train"], ds.ends["val"])
    assert fit_baselines(ds, ds.ends["train"], ds.ends["val"]) is a
    other = replace(ds, labels=np.where(ds.labels >= 0, 2 - ds.labels, ds.labels).astype(np.int8))
    assert fit_baselines(other, ds.ends["train"], ds.ends["val"]) is not a
    assert fit_baselines(ds, ds.ends["train"], ds.ends["val"], class_weight="balanced") is not a
