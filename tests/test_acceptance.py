"""The issue's acceptance criterion, end to end on simulated data."""

from __future__ import annotations

import pytest

# Order flow only: no book levels, no touch imbalance (see the test's docstring).
ORDER_FLOW_FEATURES = [{"name": "ofi", "windows": [1]}, {"name": "returns", "lags": [1]},
                       {"name": "spread"}]


@pytest.mark.slow
def test_a_deep_model_beats_logistic_regression_beyond_its_interval(tmp_path, mlflow_store):
    """On simulated data a deep model beats logistic regression beyond the interval: the
    95% block-bootstrap interval of the paired macro-F1 difference (model - logistic,
    same test rows) lies above 0.

    Why order-flow features only: the simulator's market orders hit the thin side of
    the touch more often (`lobseq.simulate`), so the touch imbalance itself predicts the
    next move. With the default features the one-row logistic baseline reads that
    imbalance directly and the deep model has nothing left to add. Here each row only
    carries the one-event order-flow imbalance e_n (Cont, Kukanov & Stoikov: the change
    in the touch queues), the last return and the spread. The queue imbalance that
    drives the price is, while the quotes stand, the *sum* of those e_n, which a
    sequence model can integrate over its window and a model of the last row cannot.

    Since issue 8 the logistic baseline is as strong as the model's inputs allow: it sees
    the window mean and last-minus-first of each feature (the window mean of e_n IS a
    scaled sum of the order flow), is tuned on validation and labels are the traded
    return (entered at t+1). The gap has shrunk accordingly. Sized for a 2-core CPU
    (~30 s): 3 days x 20,000 events, window 20, horizon 10, GRU with 16 units, 2 epochs
    on an even 15,000-window subsample. Measured (seed 0): model 0.394 [0.372, 0.418],
    logistic 0.374 [0.352, 0.397], difference +0.020 [+0.002, +0.037] (before issue 8,
    against the last-row logistic: +0.068 [+0.046, +0.089]). The margin is now thin.
    """
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.evaluation.evaluate import evaluate_model
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import train_and_log

    raw = simulate_lobster(tmp_path / "raw", events=20_000, levels=10, days=3, seed=0)
    ingest(raw, tmp_path / "sim", IngestConfig(format="lobster", window=20, horizon=10,
                                               features=ORDER_FLOW_FEATURES), log=lambda _m: None)
    run_id = train_and_log(tmp_path / "sim", TrainConfig(model="gru", hyper={"units": 16}, epochs=2,
                                                         max_train_windows=15_000,
                                                         max_val_windows=2_000, seed=0),
                           log=lambda _m: None)
    s = evaluate_model(run_id, tmp_path / "sim", "test", n_boot=1000, seed=0, log=None)
    figures = (f"model {s['macro_f1']:.3f} [{s['macro_f1_ci_low']:.3f}, {s['macro_f1_ci_high']:.3f}], "
               f"logistic {s['baseline_logistic_macro_f1']:.3f} "
               f"[{s['baseline_logistic_macro_f1_ci_low']:.3f}, "
               f"{s['baseline_logistic_macro_f1_ci_high']:.3f}], "
               f"difference {s['diff_macro_f1_vs_logistic']:+.3f} "
               f"[{s['diff_macro_f1_vs_logistic_ci_low']:+.3f}, "
               f"{s['diff_macro_f1_vs_logistic_ci_high']:+.3f}]")
    print(figures)
    assert s["diff_macro_f1_vs_logistic_ci_low"] > 0, figures
