import numpy as np
import pytest

from lobseq.errors import LobseqError
from lobseq.evaluation.baselines import (
    GBTBaseline,
    LogisticBaseline,
    PersistenceBaseline,
    PriorBaseline,
    lagged_labels,
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


def test_logistic_uses_the_last_row_of_each_window():
    X, y = _data()
    a = LogisticBaseline().fit(X, y).predict_proba(X)
    b = LogisticBaseline().fit(X[:, -1, :], y).predict_proba(X[:, -1, :])
    assert np.allclose(a, b)


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


def test_lagged_label_at_t_is_label_at_t_minus_horizon():
    y = np.array([0, 1, 2, 2, 0, 1])
    assert lagged_labels(y, 2).tolist() == [-1, -1, 0, 1, 2, 2]


def test_lagged_label_depends_only_on_prices_up_to_t():
    # build labels from mids; changing any mid after t must not change lagged label at t

    rng = np.random.default_rng(0)
    mid = 100 + np.cumsum(rng.normal(size=40))
    k, t = 3, 20

    def labels(m):
        r = np.full(m.size, np.nan)
        r[:-k] = m[k:] / m[:-k] - 1
        return np.where(np.isnan(r), -1, np.where(r > 0, 2, 0))

    mid2 = mid.copy()
    mid2[t + 1:] += rng.normal(size=mid.size - t - 1) * 10
    assert lagged_labels(labels(mid), k)[: t + 1].tolist() == (
        lagged_labels(labels(mid2), k)[: t + 1].tolist()
    )


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
