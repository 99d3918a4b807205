"""Ingest throughput and peak memory vs. the pyarrow parse floor.

    .venv/bin/python -m benchmarks.bench_ingest [--events 1000000] [--levels 10]

For the real AMZN sample (when ../shared is present) and a simulated day:
events/s end to end (read → features → labels → splits → scaler → atomic
write), the time pyarrow alone takes to parse the same CSVs, their ratio
(target ≤ 2×), and the peak RSS growth of the ingest process relative to
the final feature matrix's size (target ≤ 3×). Each measurement runs in a
fresh child process so peaks don't mix. Results: benchmarks/results/ingest.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.memory import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "lobster"



def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(mode: str, src: str, out: str, window: int, horizon: int) -> None:
    import pandas  # noqa: F401  (imports are not ingest work: load them before the clock)
    import pyarrow.csv as pc

    import lobseq.data.features  # noqa: F401
    import lobseq.data.sources  # noqa: F401
    from lobseq.data.ingest import IngestConfig, ingest

    files = sorted(Path(src).glob("*.csv"))
    base = _rss_mb()
    t0 = time.perf_counter()
    if mode == "parse":
        opts = pc.ReadOptions(autogenerate_column_names=True)
        rows = sum(pc.read_csv(f, read_options=opts).num_rows for f in files) // 2
        feat_mb = 0.0
    else:
        ds = ingest([src], out, IngestConfig(format="lobster", window=window, horizon=horizon),
                    log=lambda m: None)
        rows = ds.manifest["n_rows"]
        feat_mb = ds.features.nbytes / 2**20
    secs = time.perf_counter() - t0
    peak = peak_rss_mb()
    print(json.dumps({"seconds": secs, "events": rows, "peak_growth_mb": peak - base,
                      "feature_mb": feat_mb}))


def measure(mode: str, src: Path, window: int, horizon: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.bench_ingest", "--child", mode, str(src),
             str(Path(tmp) / "ds"), str(window), str(horizon)],
            cwd=ROOT, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench(label: str, src: Path, window: int, horizon: int) -> dict:
    parse = measure("parse", src, window, horizon)
    full = measure("ingest", src, window, horizon)
    row = {
        "case": label,
        "events": full["events"],
        "parse_s": round(parse["seconds"], 3),
        "ingest_s": round(full["seconds"], 3),
        "ratio_to_parse": round(full["seconds"] / parse["seconds"], 2),
        "events_per_s": round(full["events"] / full["seconds"]),
        "feature_matrix_mb": round(full["feature_mb"], 1),
        "peak_growth_mb": round(full["peak_growth_mb"], 1),
        "peak_over_features": round(full["peak_growth_mb"] / max(full["feature_mb"], 1e-9), 2),
    }
    print(json.dumps(row))
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child", nargs=5, metavar=("MODE", "SRC", "OUT", "WINDOW", "HORIZON"))
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--levels", type=int, default=10)
    args = ap.parse_args()
    if args.child:
        mode, src, out, w, h = args.child
        child(mode, src, out, int(w), int(h))
        return
    from lobseq.data.simulate import simulate_lobster

    rows = []
    if SHARED.is_dir():
        rows.append(bench("AMZN sample (level 1)", SHARED, 50, 10))
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        simulate_lobster(tmp, events=args.events, levels=args.levels, seed=0)
        print(f"(simulated {args.events:,} events in {time.perf_counter() - t0:.1f} s)")
        rows.append(bench(f"simulated {args.events:,} × {args.levels} levels", Path(tmp), 100, 10))
    results = ROOT / "benchmarks" / "results"
    results.mkdir(parents=True, exist_ok=True)
    (results / "ingest.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{'case':<34}{'events':>10}{'parse s':>9}{'ingest s':>10}{'ratio':>7}"
          f"{'ev/s':>10}{'feat MB':>9}{'peak MB':>9}{'peak/feat':>10}")
    for r in rows:
        print(f"{r['case']:<34}{r['events']:>10,}{r['parse_s']:>9}{r['ingest_s']:>10}"
              f"{r['ratio_to_parse']:>7}{r['events_per_s']:>10,}{r['feature_matrix_mb']:>9}"
              f"{r['peak_growth_mb']:>9}{r['peak_over_features']:>10}")


if __name__ == "__main__":
    main()
