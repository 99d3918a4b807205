"""Acceptance figures: a deep model's macro-F1 next to the baselines, with block-bootstrap CIs.

    .venv/bin/python benchmarks/bench_evaluate.py sim  [--events N --days D --epochs E --model M]
    .venv/bin/python benchmarks/bench_evaluate.py amzn

tests/test_acceptance.py runs `sim --window 20 --epochs 2 --model gru --units 16
--max-train-windows 15000 --max-val-windows 2000` with order-flow-only features
(`--features '[{"name": "ofi", "windows": [1]}, {"name": "returns", "lags": [1]},
{"name": "spread"}]'`).

Writes everything under a temporary folder (MLflow store included) and prints
the evaluation table; the numbers are what the final report quotes.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared/data/lobster"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["sim", "amzn"])
    ap.add_argument("--events", type=int, default=20_000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--window", type=int, default=50)
    ap.add_argument("--horizon", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--model", default="lstm")
    ap.add_argument("--units", type=int, default=32)
    ap.add_argument("--max-train-windows", type=int, default=None)
    ap.add_argument("--max-val-windows", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0, help="simulator seed")
    ap.add_argument("--features", default=None,
                    help='JSON spec list, e.g. [{"name": "ofi", "windows": [1]}]')
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lobseq-bench-eval-"))
    os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlflow.db"
    os.chdir(tmp)
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.evaluation.evaluate import evaluate_model
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import train_and_log

    t0 = time.perf_counter()
    if args.which == "sim":
        src = simulate_lobster(tmp / "raw", events=args.events, levels=10, days=args.days,
                               seed=args.seed)
    else:
        src = [DATA]
    feats = json.loads(args.features) if args.features else None
    ingest(src, tmp / "data", IngestConfig(format="lobster", window=args.window,
                                           horizon=args.horizon, features=feats),
           log=lambda _m: None)
    hyper = {"units": args.units} if args.model in ("lstm", "gru", "rnn") else {}
    cfg = TrainConfig(model=args.model, hyper=hyper, epochs=args.epochs, patience=2,
                      max_train_windows=args.max_train_windows,
                      max_val_windows=args.max_val_windows)
    run_id = train_and_log(tmp / "data", cfg, log=lambda _m: None)
    t1 = time.perf_counter()
    scores = evaluate_model(run_id, tmp / "data", "test", n_boot=1000)
    print(f"ingest+train {t1 - t0:.1f} s, evaluate {time.perf_counter() - t1:.1f} s; store {tmp}")
    print(f"model beats logistic beyond its interval: "
          f"{scores['macro_f1'] > scores['baseline_logistic_macro_f1_ci_high']}; "
          f"paired diff CI low > 0: {scores['diff_macro_f1_vs_logistic_ci_low'] > 0}")


if __name__ == "__main__":
    main()
