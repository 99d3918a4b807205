"""How many CPUs a long-lived Ray actor may take so that the cluster never starves.

Ray schedules by logical CPUs. When training workers (or Ray Data actors, or
Tune trials) hold every CPU, the small tasks they depend on can never start
and the run waits forever ("Cluster resources are not enough to run any
task"). So actors get fractional CPUs that leave a reserve free, and the
share is small enough that they fit on the nodes that exist.
"""

from __future__ import annotations

import math

from lobseq.errors import LobseqError

RESERVE_FRACTION = 0.25  # of the cluster's CPUs, kept free for tasks
MIN_RESERVE = 0.5  # CPUs, however small the cluster
MIN_SHARE = 0.05  # below this an actor would crawl: ask for fewer


def _fits(node_cpus: list[float], share: float, actors: int) -> bool:
    return sum(math.floor(c / share + 1e-9) for c in node_cpus) >= actors


def cpu_share(node_cpus: list[float], actors: int, *, reserve_fraction: float = RESERVE_FRACTION,
              min_reserve: float = MIN_RESERVE, cap: float | None = None) -> float:
    """CPUs per actor for `actors` actors on nodes with `node_cpus` CPUs each.

    The actors together leave max(min_reserve, reserve_fraction × total) CPUs
    free, each takes at most `cap`, and they can all be placed (no actor
    straddles two nodes). Rounded down to 0.01 CPU.
    """
    if isinstance(actors, bool) or not isinstance(actors, int) or actors < 1:
        raise LobseqError(f"the number of workers must be a positive integer, got {actors!r}",
                          field="workers")
    nodes = [float(c) for c in node_cpus if c > 0]
    total = sum(nodes)
    if not nodes:
        raise LobseqError("the Ray cluster has no CPUs", field="ray.address",
                          fix="start the nodes with --num-cpus N (N >= 1)")
    free = total - max(min_reserve, reserve_fraction * total)
    share = free / actors
    if cap is not None:
        share = min(share, cap)
    if share >= MIN_SHARE and not _fits(nodes, share, actors):  # the largest split that places all
        candidates = sorted({c / k for c in nodes for k in range(1, actors + 1) if c / k <= share},
                            reverse=True)
        share = next((s for s in candidates if _fits(nodes, s, actors)), 0.0)
    share = math.floor(share * 100) / 100
    if share < MIN_SHARE:
        most = math.floor(free / MIN_SHARE)
        fix = f"use at most {most} workers or add nodes" if most >= 1 else "add CPUs or nodes"
        raise LobseqError(f"{actors} workers do not fit on a cluster of {total:g} CPUs with room left "
                          "for its tasks", field="workers", fix=fix)
    return share
