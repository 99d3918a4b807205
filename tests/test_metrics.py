import numpy as np
import pytest
from sklearn import metrics as skm

from lobseq.errors import LobseqError
from lobseq.metrics import (
    _boot_cms,
    _cm_metrics,
    block_bootstrap_ci,
    circular_block_indices,
    classification_metrics,
    confusion_matrix,
    default_block,
)


def _random_case(n=300, k=3, seed=1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k)) + 1.5 * np.eye(k)[y] * (rng.random(n) < 0.6)[:, None]
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def test_confusion_matrix_rows_are_true_columns_predicted():
    cm = confusion_matrix([0, 0, 2, 1], [0, 2, 2, 2], 3)
    assert cm.tolist() == [[1, 0, 1], [0, 0, 1], [0, 0, 1]]


@pytest.mark.parametrize("k", [2, 3])
def test_metrics_match_sklearn(k):
    y, p = _random_case(k=k)
    pred = p.argmax(1)
    m = classification_metrics(y, p, k)
    labels = list(range(k))
    assert m["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["weighted_f1"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert m["balanced_accuracy"] == pytest.approx(skm.balanced_accuracy_score(y, pred))
    assert m["mcc"] == pytest.approx(skm.matthews_corrcoef(y, pred))
    assert m["cohen_kappa"] == pytest.approx(skm.cohen_kappa_score(y, pred))
    assert m["log_loss"] == pytest.approx(skm.log_loss(y, p, labels=labels))
    assert m["precision_up"] == pytest.approx(skm.precision_score(y, pred, average=None)[-1])
    assert m["recall_down"] == pytest.approx(skm.recall_score(y, pred, average=None)[0])
    assert (skm.confusion_matrix(y, pred, labels=labels) == confusion_matrix(y, pred, k)).all()


def test_macro_f1_counts_a_never_seen_class_as_zero_like_sklearn():
    y = np.array([0, 0, 2, 2])
    p = np.eye(3)[[0, 2, 2, 2]]
    m = classification_metrics(y, p, 3)
    assert m["macro_f1"] == pytest.approx(
        skm.f1_score(y, p.argmax(1), labels=[0, 1, 2], average="macro", zero_division=0)
    )
    assert m["f1_stationary"] == 0.0


def test_brier_by_hand():
    # row 1: (0.7-1)^2 + 0.2^2 + 0.1^2 = 0.14; row 2: 0.5^2 + 0.5^2 + 0 = 0.5
    p = np.array([[0.7, 0.2, 0.1], [0.0, 0.5, 0.5]])
    m = classification_metrics([0, 2], p, 3)
    assert m["brier"] == pytest.approx((0.14 + 0.5) / 2)


def test_log_loss_is_finite_when_true_class_has_zero_probability():
    m = classification_metrics([1], np.array([[1.0, 0.0]]), 2)
    assert np.isfinite(m["log_loss"]) and m["log_loss"] > 30


def test_log_loss_uses_all_labels_when_a_class_is_absent():
    y, p = np.array([0, 0, 2]), np.array([[0.6, 0.3, 0.1], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]])
    m = classification_metrics(y, p, 3)
    assert m["log_loss"] == pytest.approx(-np.mean(np.log([0.6, 0.5, 0.6])))


def test_keys_are_flat_floats_with_class_names():
    y, p = _random_case(k=2)
    m = classification_metrics(y, p, 2)
    assert {"precision_down", "recall_up", "f1_up", "mcc", "brier"} <= set(m)
    assert "f1_stationary" not in m
    assert all(isinstance(v, (int, float)) for v in m.values())


def test_label_outside_classes_is_a_clear_error():
    with pytest.raises(LobseqError, match="outside 0..2"):
        classification_metrics([0, -1], np.full((2, 3), 1 / 3), 3)


def test_bootstrap_confusion_matrices_match_sklearn_f1_on_a_resample():
    y, p = _random_case(n=200)
    pred = p.argmax(1)
    idx = circular_block_indices(200, 7, 5, np.random.default_rng(3))
    f1 = _cm_metrics(_boot_cms(y, pred, idx, 3))["macro_f1"]
    for b in range(5):
        assert f1[b] == pytest.approx(
            skm.f1_score(y[idx[b]], pred[idx[b]], labels=[0, 1, 2], average="macro")
        )


def test_circular_blocks_are_consecutive_rows_that_wrap():
    idx = circular_block_indices(10, 4, 50, np.random.default_rng(0))
    assert idx.shape == (50, 10)
    steps = np.diff(idx, axis=1)[:, :3]  # inside the first block
    assert ((steps == 1) | (steps == -9)).all()


def test_default_block_is_cube_root_or_horizon():
    assert default_block(1000) == 10
    assert default_block(1000, horizon=50) == 50


def test_bootstrap_interval_contains_point_estimate():
    y, p = _random_case(n=500)
    ci = block_bootstrap_ci(y, p.argmax(1), n_boot=300)
    assert ci["lo"] <= ci["estimate"] <= ci["hi"]
    assert ci["estimate"] == pytest.approx(skm.f1_score(y, p.argmax(1), average="macro"))


def test_bootstrap_interval_narrows_with_more_rows():
    y, p = _random_case(n=4000)
    pred = p.argmax(1)
    small = block_bootstrap_ci(y[:250], pred[:250], n_boot=400)
    large = block_bootstrap_ci(y, pred, n_boot=400)
    assert large["hi"] - large["lo"] < 0.6 * (small["hi"] - small["lo"])


def test_bootstrap_difference_of_identical_predictions_is_exactly_zero():
    # paired resampling: a - b on the same rows, so identical models differ by 0 every time
    y, p = _random_case(n=300)
    ci = block_bootstrap_ci(y, p.argmax(1), p.argmax(1), metric="accuracy", n_boot=200)
    assert ci["diff"] == ci["diff_lo"] == ci["diff_hi"] == 0.0


def test_bootstrap_difference_favours_the_better_model():
    y, p = _random_case(n=600)
    worse = np.where(np.random.default_rng(5).random(600) < 0.5, 1, p.argmax(1))
    ci = block_bootstrap_ci(y, p.argmax(1), worse, metric="accuracy", n_boot=300)
    assert ci["diff_lo"] > 0 and ci["p_diff_le_0"] < 0.05


def test_bootstrap_is_reproducible_and_chunking_does_not_change_it():
    y, p = _random_case(n=300)
    a = block_bootstrap_ci(y, p.argmax(1), n_boot=100, seed=4)
    b = block_bootstrap_ci(y, p.argmax(1), n_boot=100, seed=4, chunk_rows=300 * 7)
    assert a == b


def test_reliability_table_bins_predicted_class_confidence():
    from lobseq.plots import reliability_table

    p = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]])
    y = np.array([0, 1, 1, 1])
    (_, mean_p, freq, count), = reliability_table(y, p, n_bins=5)
    # bins [0.6, 0.8): 0.7, 0.6 both right; [0.8, 1.0]: 0.9 right, 0.8 wrong
    assert mean_p == pytest.approx([0.65, 0.85])
    assert freq.tolist() == [1.0, 0.5] and count.tolist() == [2, 2]


def test_confusion_and_reliability_plots_write_pngs(tmp_path):
    from lobseq.plots import plot_confusion_matrix, plot_reliability

    y, p = _random_case()
    fig = plot_confusion_matrix(confusion_matrix(y, p.argmax(1), 3), ["down", "stat", "up"],
                                tmp_path / "cm.png")
    plot_reliability(y, p, tmp_path / "rel.png", mode="one_vs_rest")
    assert fig.axes and (tmp_path / "cm.png").read_bytes()[:4] == b"\x89PNG"
    assert (tmp_path / "rel.png").stat().st_size > 1000
