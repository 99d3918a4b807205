"""Run every benchmark in turn (`make bench`); each writes benchmarks/results/<name>.json.

The machine is shared and noisy: read the ratios each benchmark measures
within one run (lobseq vs its floor or baseline), not absolute times.
"""

from __future__ import annotations

import subprocess
import sys

BENCHMARKS = ("bench_ingest", "bench_train", "bench_serve", "bench_follow", "bench_ray")


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        print(f"\n=== {name} ===", flush=True)
        if subprocess.run([sys.executable, "-m", f"benchmarks.{name}"]).returncode != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
