"""A sweep's search space, read from YAML, and lobseq's own seeded sampler.

    units: {choice: [16, 32, 64]}       # any of the listed values
    dropout: {uniform: [0.0, 0.4]}      # low <= x < high
    lr: {loguniform: [0.0001, 0.01]}    # log-uniform between the bounds
    batch_size: {randint: [32, 129]}    # an integer, low <= x < high (as Ray Tune's randint)

Keys are the model's hyperparameters (the names `--param` takes; see `lobseq
models`) plus `lr`, `batch_size` and `epochs`. Every error names the key and its
line. The configurations are drawn here, with `numpy.random.default_rng(seed)`,
key by key in file order, before any trial runs: the same space, seed and
number of trials give the same configurations on every engine (Ray Tune then
only schedules them), so a Ray sweep can be checked against a local one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from lobseq.errors import LobseqError
from lobseq.yaml_lines import YamlLines

DISTRIBUTIONS = ("choice", "uniform", "loguniform", "randint")
TRAINING_KEYS = {"lr": "learning_rate", "batch_size": "batch_size", "epochs": "epochs"}
FORM = "write e.g. units: {choice: [16, 32]} or lr: {loguniform: [0.0001, 0.01]}"


@dataclass(frozen=True)
class Dimension:
    name: str  # as written: a hyperparameter, or lr / batch_size / epochs
    kind: str  # one of DISTRIBUTIONS
    values: tuple  # choice: the options; the others: (low, high)

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        low, high = self.values
        if self.kind == "uniform":
            return float(rng.uniform(low, high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(low), math.log(high))))
        return int(rng.integers(low, high))


@dataclass(frozen=True)
class Space:
    dimensions: tuple[Dimension, ...]
    file: str | None = None
    text: str = ""  # the file as read (logged with the sweep)

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.dimensions]

    def sample(self, n: int, seed: int) -> list[dict[str, Any]]:
        """`n` configurations ({name: value}, file order), drawn with `seed`."""
        rng = np.random.default_rng(seed)
        return [{d.name: d.draw(rng) for d in self.dimensions} for _ in range(n)]

    def apply(self, train_cfg, values: dict[str, Any]):
        """`train_cfg` with `values` set: lr/batch_size/epochs on the config, the rest in `hyper`."""
        settings = {TRAINING_KEYS[k]: v for k, v in values.items() if k in TRAINING_KEYS}
        hyper = {**train_cfg.hyper, **{k: v for k, v in values.items() if k not in TRAINING_KEYS}}
        return replace(train_cfg, hyper=hyper, **settings)


def load_space(path: str | Path, train_cfg) -> Space:
    """Read and check a space file for `train_cfg`'s model; errors name the key and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LobseqError(f"cannot read the space file: {e.strerror}", file=path) from None
    return parse_space(text, train_cfg, path)


def parse_space(text: str, train_cfg, file: str | Path | None = None) -> Space:
    import yaml

    lines = YamlLines(text, Path(file or "space.yaml"))
    data = yaml.safe_load(text)
    if not isinstance(data, dict) or not data:
        raise lines.error((), "a space file maps hyperparameter names to distributions", fix=FORM)
    valid = [*train_cfg.model_hyperparameters(), *TRAINING_KEYS]
    dims = []
    for name, spec in data.items():
        if name not in valid:
            raise lines.error((name,), f"not a hyperparameter of {train_cfg.model} nor lr, batch_size, "
                                       "epochs", fix=f"use one of {', '.join(valid)}")
        dims.append(_dimension(str(name), spec, lines))
    space = Space(tuple(dims), str(file) if file else None, text)
    _check_values(space, train_cfg, lines)
    return space


def _dimension(name: str, spec: Any, lines: YamlLines) -> Dimension:
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in DISTRIBUTIONS:
        raise lines.error((name,), f"needs exactly one of {', '.join(DISTRIBUTIONS)}", fix=FORM)
    kind, values = next(iter(spec.items()))
    where = (name, kind)
    if not isinstance(values, list) or not values:
        raise lines.error(where, "needs a non-empty list", fix=FORM)
    if kind == "choice":
        return Dimension(name, kind, tuple(values))
    if len(values) != 2 or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                   for v in values):
        raise lines.error(where, f"needs two numbers [low, high], got {values}", fix=FORM)
    low, high = values
    if not low < high:
        raise lines.error(where, f"low {low} must be below high {high}")
    if kind == "loguniform" and low <= 0:
        raise lines.error(where, f"log-uniform bounds must be positive, got {low}")
    if kind == "randint" and not all(isinstance(v, int) for v in values):
        raise lines.error(where, f"randint bounds must be whole numbers, got {values}")
    return Dimension(name, kind, (low, high))


def _check_values(space: Space, train_cfg, lines: YamlLines) -> None:
    """Every value a dimension can give must make a valid training config (types, ranges)."""
    for d in space.dimensions:
        options = d.values if d.kind == "choice" else d.values[:1]
        if d.kind == "uniform" and d.name in ("batch_size", "epochs"):
            raise lines.error((d.name, d.kind), f"{d.name} takes whole numbers",
                              fix="use randint or choice")
        for value in options:
            try:
                space.apply(train_cfg, {d.name: value}).validate()
            except LobseqError as e:
                raise lines.error((d.name, d.kind), f"{value!r}: {e.problem}", fix=e.fix) from None
