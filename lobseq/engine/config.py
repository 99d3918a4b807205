"""Which engine runs the work, and where its Ray cluster is.

    EngineConfig()                                # local: this process, no Ray
    EngineConfig(name="ray")                      # RAY_ADDRESS, else a local Ray instance
    EngineConfig(name="ray", address="head:6379") # a running cluster

A stage config (`lobseq.config.stage_config`) like every other: the CLI options
`--engine`, `--ray-address` and `--ray-num-cpus` are derived from it
(`lobseq.cli.options.config_options`), and a pipeline file's top-level
`engine:` and `ray: {address:, num_cpus:}` build it. It never changes a result,
so it is part of no dataset manifest and no pipeline stage key.
"""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field, StrictInt, field_validator, model_validator

from lobseq.config import stage_config
from lobseq.errors import LobseqError

ENGINES = ("local", "ray")


@stage_config
class EngineConfig:
    """Where a stage's work runs: in this process, or as Ray tasks (lobseq[ray])."""

    name: Literal["local", "ray"] = Field(
        "local", alias="engine",
        description="local: this process; ray: Ray tasks, trials and actors (pip install "
                    "'lobseq[ray]').")
    address: str | None = Field(
        None, alias="ray_address",
        description="Join this Ray cluster (host:port) [default: $RAY_ADDRESS, else start a local "
                    "Ray instance sized to the machine].")
    num_cpus: StrictInt | None = Field(
        None, alias="ray_num_cpus",
        description="CPUs of the local Ray instance lobseq starts [default: the machine's].")

    @field_validator("name", mode="before")
    @classmethod
    def _known_engine(cls, name):
        if name not in ENGINES:
            raise LobseqError(f"unknown engine {name!r}", field="engine",
                              fix=f"use one of {', '.join(ENGINES)}")
        return name

    @model_validator(mode="after")
    def _consistent(self):
        if self.address is not None and not self.address.strip():
            raise LobseqError(f"ray address must be a non-empty string, got {self.address!r}",
                              field="ray.address", fix="write host:port of the head node, or leave it out")
        n = self.num_cpus
        if n is not None and n < 1:
            raise LobseqError(f"ray num_cpus must be a positive integer, got {n!r}", field="ray.num_cpus")
        if self.name == "local" and (self.address or self.num_cpus):
            raise LobseqError("a Ray address or num_cpus was given but the engine is local",
                              field="engine", fix="add --engine ray (or `engine: ray`), or drop the Ray settings")
        if self.address and self.num_cpus:
            raise LobseqError("num_cpus sizes a Ray instance lobseq starts; a running cluster has its own",
                              field="ray.num_cpus", fix="drop num_cpus when you give an address")
        return self

    def cluster_address(self) -> str | None:
        """The cluster to join: `address`, else $RAY_ADDRESS, else None (start a local instance)."""
        return self.address or os.environ.get("RAY_ADDRESS") or None
