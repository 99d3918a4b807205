"""Peak memory of the current process, for the benchmarks."""

from __future__ import annotations


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM). Not ru_maxrss: after fork+exec Linux carries the
    parent's high-water mark into the child's ru_maxrss, which inflated earlier figures."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
