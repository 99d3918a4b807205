"""Training throughput per model, input-pipeline overhead, and peak memory.

    .venv/bin/python -m benchmarks.bench_train [--events 200000] [--big-events 2000000]

1. windows/s for one epoch of each model on a simulated 10-level book
   (T = 100, F = 40: the raw book, so DeepLOB runs too), fed lazily;
2. the input pipeline's overhead: the same LSTM epoch fed from lobseq's lazy
   windows vs from a pre-built in-memory tensor (target ≤ 10%);
3. peak RSS of a child process that trains on a simulated 2,000,000-event
   10-level dataset with T = 100 (all windows materialized would be ~32 GB;
   target < 2 GB). It runs a bounded number of steps over windows drawn from
   the whole dataset: memory, not convergence, is measured.
Results: benchmarks/results/train.json. The machine is shared: compare the
ratios within one run, not absolute figures across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import peak_rss_mb

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]



def make_dataset(tmp: Path, events: int, window: int = 100):
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster

    raw = tmp / "raw"
    simulate_lobster(raw, events=events, levels=10, seed=0)
    return ingest([raw], tmp / "ds", IngestConfig(format="lobster", window=window, horizon=10,
                                                  features=[{"name": "book", "levels": 10}]),
                  log=lambda m: None)


def _compiled(name, ds):
    import keras

    from lobseq.models import build

    keras.utils.set_random_seed(0)
    model = build(name, (ds.window, ds.n_features), ds.n_classes)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    return model


def throughput(ds, names, n_windows: int, batch: int = 64) -> list[dict]:
    from dataclasses import replace

    from lobseq.training.fit import evenly_spaced

    ends = evenly_spaced(ds.ends["train"], n_windows)
    sub = replace(ds, ends={**ds.ends, "train": ends})
    rows = []
    for name in names:
        model = _compiled(name, sub)
        seq = sub.windows("train", batch_size=batch, shuffle=True)
        model.fit(seq, epochs=1, steps_per_epoch=3, verbose=0)  # compile/warm-up
        t0 = time.perf_counter()
        model.fit(seq, epochs=1, verbose=0)
        secs = time.perf_counter() - t0
        rows.append({"model": name, "windows": len(ends), "seconds": round(secs, 2),
                     "windows_per_s": round(len(ends) / secs)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def overhead(ds, n_windows: int, batch: int = 64, repeats: int = 2) -> dict:
    from dataclasses import replace

    from lobseq.training.fit import evenly_spaced

    ends = evenly_spaced(ds.ends["train"], n_windows)
    sub = replace(ds, ends={**ds.ends, "train": ends})
    x, y = sub.arrays("train")
    model = _compiled("lstm", sub)
    seq = sub.windows("train", batch_size=batch, shuffle=True)
    model.fit(x[: batch * 3], y[: batch * 3], batch_size=batch, epochs=1, verbose=0)
    model.fit(seq, epochs=1, steps_per_epoch=3, verbose=0)
    lazy, eager = [], []
    for _ in range(repeats):  # interleaved, so drift on a shared machine hits both
        t0 = time.perf_counter()
        model.fit(x, y, batch_size=batch, epochs=1, shuffle=True, verbose=0)
        eager.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        model.fit(seq, epochs=1, verbose=0)
        lazy.append(time.perf_counter() - t0)
    res = {"windows": len(ends), "in_memory_s": round(min(eager), 2), "lazy_s": round(min(lazy), 2),
           "overhead": round(min(lazy) / min(eager) - 1, 3), "in_memory_tensor_mb": round(x.nbytes / 2**20)}
    print(json.dumps(res), flush=True)
    return res


def child_peak(path: str, steps: int) -> None:
    """Train in a fresh process on a dataset already on disk: its peak RSS is training's."""
    from lobseq.data.store import load_dataset

    ds = load_dataset(path)
    model = _compiled("lstm", ds)
    seq = ds.windows("train", batch_size=64, shuffle=True)
    model.fit(seq, epochs=1, steps_per_epoch=steps, verbose=0)
    peak = peak_rss_mb()
    n = len(ds.ends["train"])
    print(json.dumps({"events": ds.manifest["n_rows"], "train_windows": n, "steps": steps,
                      "peak_rss_mb": round(peak),
                      "all_windows_would_be_mb": round(n * ds.window * ds.n_features * 4 / 2**20),
                      "feature_matrix_mb": round(ds.features.nbytes / 2**20)}))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--events", type=int, default=200_000)
    ap.add_argument("--windows", type=int, default=20_000)
    ap.add_argument("--big-events", type=int, default=2_000_000)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--models", default="rnn,lstm,gru,cnn,deeplob")
    ap.add_argument("--child-peak", metavar="DATASET")
    args = ap.parse_args()
    if args.child_peak:
        child_peak(args.child_peak, args.steps)
        return
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        ds = make_dataset(Path(tmp), args.events)
        results["throughput"] = throughput(ds, args.models.split(","), args.windows)
        results["input_overhead"] = overhead(ds, args.windows)
    with tempfile.TemporaryDirectory() as tmp:
        big = make_dataset(Path(tmp), args.big_events)
        out = subprocess.run([sys.executable, "-m", "benchmarks.bench_train", "--child-peak",
                              str(big.path), "--steps", str(args.steps)],
                             cwd=ROOT, capture_output=True, text=True, check=True)
    results["peak_memory"] = json.loads(out.stdout.strip().splitlines()[-1])
    print(json.dumps(results["peak_memory"]))
    res_dir = ROOT / "benchmarks" / "results"
    res_dir.mkdir(parents=True, exist_ok=True)
    (res_dir / "train.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
