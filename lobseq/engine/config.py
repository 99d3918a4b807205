"""Which engine runs the work, and where its Ray cluster is.

    EngineConfig()                                # local: this process, no Ray
    EngineConfig(name="ray")                      # RAY_ADDRESS, else a local Ray instance
    EngineConfig(name="ray", address="head:6379") # a running cluster
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass

from lobseq.errors import LobseqError

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class EngineConfig:
    name: str = "local"
    address: str | None = None  # a running Ray cluster; None: RAY_ADDRESS, else start one here
    num_cpus: int | None = None  # CPUs of a Ray instance lobseq starts; None: the machine's

    def validate(self) -> None:
        if self.name not in ENGINES:
            raise LobseqError(f"unknown engine {self.name!r}", field="engine",
                              fix=f"use one of {', '.join(ENGINES)}")
        if self.address is not None and (not isinstance(self.address, str) or not self.address.strip()):
            raise LobseqError(f"ray address must be a non-empty string, got {self.address!r}",
                              field="ray.address", fix="write host:port of the head node, or leave it out")
        n = self.num_cpus
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise LobseqError(f"ray num_cpus must be a positive integer, got {n!r}", field="ray.num_cpus")
        if self.name == "local" and (self.address or self.num_cpus):
            raise LobseqError("a Ray address or num_cpus was given but the engine is local",
                              field="engine", fix="add --engine ray (or `engine: ray`), or drop the Ray settings")
        if self.address and self.num_cpus:
            raise LobseqError("num_cpus sizes a Ray instance lobseq starts; a running cluster has its own",
                              field="ray.num_cpus", fix="drop num_cpus when you give an address")

    def cluster_address(self) -> str | None:
        """The cluster to join: `address`, else $RAY_ADDRESS, else None (start a local instance)."""
        return self.address or os.environ.get("RAY_ADDRESS") or None

    def to_dict(self) -> dict:
        return asdict(self)
