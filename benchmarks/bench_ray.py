"""Scale-out on Ray against the local engine, measured in one run: read the ratios.

    .venv/bin/python -m benchmarks.bench_ray [--cpus 2] [--events 40000] [--repeat 3] [--trials 6]
                                              [--files 8]

1. Ingest of 16 simulated ticker-days (4 tickers x 4 days): the local engine against a
   Ray instance of `--cpus` CPUs (one task per day), the speed-up, and the costs a
   scaling estimate needs: each day's task time (read, check, features, labels), the
   driver's own time (plan, gather, split, scaler, hash, write), which no worker shares,
   and Ray's cost per task (shipping the result back, scheduling). Ray runs once cold
   (its worker processes import lobseq on their first task, as a fresh
   `lobseq ingest --engine ray` pays), then local and warm Ray take turns `--repeat`
   times and each keeps its fastest run (the load of a shared machine drifts).
2. Tune: trials per minute of the same seeded sweep on the local engine (one after
   another) and on Ray Tune (FIFO, `--cpus` at once), and the overhead per trial against a
   bare `fit` of the same configurations.
3. Batch scoring: windows per second of `predict` on the local engine and on Ray Data (an
   actor per CPU, each loading the model once), end to end (the actors' start and model
   load included). Ray Data also scores a single day, so that its fixed cost (plan, actor
   start, model load) and its rate per window can be told apart.

The Ray instance is started once, before anything is timed (its start is reported). The
machine is shared and noisy: compare the figures of one run; the load average before and
after is recorded with them. Results: benchmarks/results/ray.json.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
TICKERS = ("AAA", "BBB", "CCC", "DDD")


def _timed(fn, *args, **kwargs):
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def _timing(mapper, seconds: list[float]):
    """`mapper`, timing each task inside the process that runs it (a Ray worker, or here)."""
    def mapped(fn, items):
        for out, secs in mapper(functools.partial(_timed, fn), items):
            seconds.append(secs)
            yield out
    return mapped


def bench_ingest(tmp: Path, engine, events: int, repeat: int) -> dict:
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster

    raw = tmp / "raw16"
    for k, ticker in enumerate(TICKERS):
        simulate_lobster(raw, events=events, levels=10, days=4, seed=k, ticker=ticker)
    cfg = IngestConfig(format="lobster", window=100, horizon=10, name="bench")
    quiet = {"log": lambda m: None}
    warmup = simulate_lobster(tmp / "warmup", events=2000, levels=10, seed=99)
    ingest(warmup, tmp / "warmup-ds", cfg, **quiet)  # imports and first calls, before any clock
    cold, cold_s = _timed(ingest, [raw], tmp / "ray-cold", cfg,
                          mapper=engine.mapper(label="lobseq-ingest"), **quiet)
    runs = []  # local and warm Ray in turn, `repeat` times: the machine's load drifts
    for k in range(repeat):
        local_tasks: list[float] = []
        local, local_s = _timed(ingest, [raw], tmp / f"local{k}", cfg, mapper=_timing(map, local_tasks),
                                **quiet)
        ray_tasks: list[float] = []
        warm, ray_s = _timed(ingest, [raw], tmp / f"ray{k}", cfg,
                             mapper=_timing(engine.mapper(label="lobseq-ingest"), ray_tasks), **quiet)
        assert cold.hash == warm.hash == local.hash, "the Ray dataset differs from the local one"
        runs.append((local_s, local_tasks, ray_s, ray_tasks))
    local_s, local_tasks, _, _ = min(runs, key=lambda r: r[0])  # each path's fastest run
    _, _, ray_s, ray_tasks = min(runs, key=lambda r: r[2])
    days, task = len(local_tasks), sum(local_tasks) / len(local_tasks)
    driver = local_s - sum(local_tasks)
    workers = min(days, int(sum(engine.node_cpus())))
    # ray_s = driver + ceil(days / workers) x (task + per-task cost): the per-task cost
    rounds = -(-days // workers)
    return {"days": days, "events_per_day": events, "rows": local.manifest["n_rows"], "workers": workers,
            "repeat": repeat, "local_s_runs": [round(r[0], 2) for r in runs],
            "ray_s_runs": [round(r[2], 2) for r in runs], "local_s": round(local_s, 2),
            "ray_cold_s": round(cold_s, 2), "ray_s": round(ray_s, 2),
            "speedup": round(local_s / ray_s, 2), "speedup_cold": round(local_s / cold_s, 2),
            "task_s_per_day": round(task, 3), "driver_s": round(driver, 2),
            "ray_task_s_per_day_in_worker": round(sum(ray_tasks) / len(ray_tasks), 3),
            "ray_cost_s_per_task": round(max(0.0, (ray_s - driver) / rounds - task), 3),
            "same_manifest_sha256": True, "manifest_sha256": local.hash}


def _sweep_dataset(tmp: Path, events: int):
    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster

    raw = simulate_lobster(tmp / "raw1", events=events, levels=5, seed=11)
    return ingest(raw, tmp / "sweep", IngestConfig(format="lobster", window=20, horizon=5),
                  log=lambda m: None)


def bench_tune(tmp: Path, engine_cfg, events: int, trials: int, cpus: int) -> dict:
    from dataclasses import replace

    from lobseq.training.config import TrainConfig
    from lobseq.training.fit import fit
    from lobseq.training.tune import TuneConfig, tune_model
    from lobseq.training.tune_space import load_space

    ds = _sweep_dataset(tmp, events)
    space = tmp / "space.yaml"
    space.write_text("units: {choice: [8, 16]}\nlr: {loguniform: [0.001, 0.01]}\n")
    base = TrainConfig(model="gru", epochs=2, max_train_windows=3000, max_val_windows=1000)
    values = load_space(space, base).sample(trials, base.seed)
    configs = [load_space(space, base).apply(base, v) for v in values]
    fit(ds, replace(configs[0], epochs=1))  # warm-up: TensorFlow and the first graph
    bare = [_timed(fit, ds, c)[1] for c in configs]
    cfg = TuneConfig(space=space, trials=trials, scheduler="fifo")
    local, local_s = _timed(tune_model, ds, base, cfg, log=lambda m: None)
    remote, ray_s = _timed(tune_model, ds, base, cfg, engine=engine_cfg, log=lambda m: None)
    same = [r["val_macro_f1"] for r in local["trials"]] == [r["val_macro_f1"] for r in remote["trials"]]
    bare_s = sum(bare) / trials
    # overhead: seconds of one trial slot (local: the process; Ray: one of the concurrent trials)
    # beyond a bare fit of the same configuration (MLflow runs, Tune, trial process start)
    return {"trials": trials, "concurrent_on_ray": min(trials, cpus),
            "bare_fit_s_per_trial": round(bare_s, 2),
            "local_trials_per_min": round(60 * trials / local_s, 2),
            "ray_trials_per_min": round(60 * trials / ray_s, 2),
            "speedup": round(local_s / ray_s, 2),
            "local_overhead_s_per_trial": round(local_s / trials - bare_s, 2),
            "ray_overhead_s_per_trial": round(ray_s * min(trials, cpus) / trials - bare_s, 2),
            "same_scores": same}


def bench_scoring(tmp: Path, engine, events: int, files: int) -> dict:
    import mlflow

    from lobseq.data.ingest import IngestConfig, ingest
    from lobseq.data.simulate import simulate_lobster
    from lobseq.serving.batch_ray import predict_files_ray
    from lobseq.serving.predict import load_model, predict_files
    from lobseq.training.config import TrainConfig
    from lobseq.training.run import logged_model_uri, train_and_log

    raw = simulate_lobster(tmp / "train-raw", events=5000, levels=5, seed=21)
    ingest(raw, tmp / "scoring", IngestConfig(format="lobster", window=20, horizon=5), log=lambda m: None)
    run_id = train_and_log(tmp / "scoring", TrainConfig(model="gru", hyper={"units": 8}, epochs=1,
                                                        max_train_windows=500), log=lambda m: None)
    uri = logged_model_uri(run_id)
    live, one = tmp / "live", tmp / "live1"
    simulate_lobster(live, events=events, levels=5, days=files, seed=22)
    simulate_lobster(one, events=events, levels=5, days=1, seed=22)
    table, local_s = _timed(lambda: predict_files(load_model(uri), [live], "lobster", tmp / "l.parquet"))
    (remote, stats), ray_s = _timed(predict_files_ray, uri, [live], "lobster", tmp / "r.parquet", engine)
    assert (tmp / "l.parquet").read_bytes() == (tmp / "r.parquet").read_bytes()
    (small, _), small_s = _timed(predict_files_ray, uri, [one], "lobster", tmp / "r1.parquet", engine)
    mlflow.end_run()
    # two sizes on Ray Data: seconds = fixed + windows x per_window
    per_window = (ray_s - small_s) / max(1, len(remote) - len(small))
    return {"files": files, "windows": len(table), "actors": stats["actors"],
            "cpus_per_actor": stats["cpus_per_actor"], "local_s": round(local_s, 2), "ray_s": round(ray_s, 2),
            "local_windows_per_s": round(len(table) / local_s),
            "ray_windows_per_s": round(len(remote) / ray_s),
            "speedup": round(local_s / ray_s, 2), "same_file": True,
            "ray_one_file_s": round(small_s, 2), "ray_one_file_windows": len(small),
            "ray_fixed_s": round(small_s - len(small) * per_window, 2),
            "ray_marginal_windows_per_s": round(1 / per_window) if per_window > 0 else None}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cpus", type=int, default=2, help="CPUs of the Ray instance (its workers)")
    ap.add_argument("--events", type=int, default=40_000, help="events per simulated ticker-day")
    ap.add_argument("--repeat", type=int, default=3, help="ingest runs of each engine (fastest kept)")
    ap.add_argument("--trials", type=int, default=6)
    ap.add_argument("--files", type=int, default=8, help="days to score")
    args = ap.parse_args()

    import ray
    import tensorflow as tf

    from lobseq.engine import EngineConfig, open_engine

    results: dict = {"cpus": os.cpu_count(), "ray_version": ray.__version__,
                     "tensorflow_version": tf.__version__,
                     "args": vars(args), "load_avg_before": [round(x, 2) for x in os.getloadavg()]}
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp}/mlruns/mlflow.db"
        engine_cfg = EngineConfig(name="ray", num_cpus=args.cpus)
        cm = open_engine(engine_cfg, env_vars={"MLFLOW_TRACKING_URI": os.environ["MLFLOW_TRACKING_URI"]})
        engine, start_s = _timed(cm.__enter__)
        results["ray_start_s"] = round(start_s, 1)
        try:
            for name, run in (("ingest", lambda: bench_ingest(tmp, engine, args.events, args.repeat)),
                              ("tune", lambda: bench_tune(tmp, EngineConfig(name="ray"), args.events // 2,
                                                          args.trials, args.cpus)),
                              ("scoring", lambda: bench_scoring(tmp, engine, args.events // 2, args.files))):
                results[name] = run()
                print(name, json.dumps(results[name]), flush=True)
        finally:
            cm.__exit__(None, None, None)
    results["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "ray.json").write_text(json.dumps(results, indent=2))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
