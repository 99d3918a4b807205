"""What a pipeline stage's `with:` mapping may hold, derived from the library's stage configs.

A stage's settings are its wiring keys (where its inputs come from and where its
output goes: `sources`, `out`, `dataset`, `models`, `hyper`, `register`, `model`)
plus the fields of the config(s) its library call takes, under their user-facing
names (`classes` for `IngestConfig.n_classes`). Each config checks its own fields
and cross-field rules; nothing is declared here twice. `StageSchema.settings`
returns every setting with defaults filled in (what the stage key hashes), or
raises a `LobseqError` whose `field` is the key, or a dotted path such as
`models.1`, that is wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import Field

from lobseq.config import as_settings, fields_of, keys_of, pick, stage_config
from lobseq.data.ingest import IngestConfig
from lobseq.data.simulate_config import SimulateConfig
from lobseq.errors import LobseqError
from lobseq.evaluation.config import (
    WALKFORWARD_TRAIN_DEFAULTS,
    BacktestConfig,
    EvaluateConfig,
    WalkForwardConfig,
)
from lobseq.registry.champion import PromoteConfig
from lobseq.serving.config import PredictConfig
from lobseq.training.config import TrainConfig
from lobseq.training.tune import TuneConfig

# ------------------------------------------------------------------ wiring keys


@stage_config
class IngestWiring:
    sources: str | list[str] | None = Field(
        None, description="Raw files or folders [default: the upstream simulate stage's folder].")
    out: str = Field(description="Dataset folder, e.g. data/processed/NAME.")


@stage_config
class DatasetWiring:
    dataset: str | None = Field(
        None, description="Dataset folder [default: the upstream ingest stage's].")


@stage_config
class ModelsWiring(DatasetWiring):
    models: list[str] = Field(min_length=1, description="Model builders, one run each.")
    hyper: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Hyperparameters per model: {model: {name: value}}.")


@stage_config
class TrainWiring(ModelsWiring):
    register: str | None = Field(
        None, description="Register every trained model under this name.")


@stage_config
class TuneWiring(DatasetWiring):
    register: str | None = Field(
        None, description="Retrain the best configuration on train+validation and register it "
                          "under this name (downstream stages then see it as a trained model).")


@stage_config
class PredictWiring:
    sources: str | list[str] | None = Field(
        None, description="Raw files or folders [default: the upstream simulate stage's folder].")
    model: str | None = Field(
        None, description="A model URI (models:/NAME@champion, runs:/ID/model) or a model trained "
                          "upstream [default: the one model trained upstream].")


# ------------------------------------------------------------------ schemas

Binding = list[tuple[dict, dict]]  # (values for excluded config fields, their error paths)


def _one(wiring) -> Binding:
    return [({}, {})]


def _dataset_name(wiring) -> Binding:
    return [({"name": Path(wiring.out).name}, {})]


def _per_model(wiring) -> Binding:
    return [({"model": m, "hyper": dict(wiring.hyper.get(m) or {})},
             {"model": f"models.{j}", "hyper": f"hyper.{m}", "preset": "preset"})
            for j, m in enumerate(wiring.models)]


@dataclass(frozen=True)
class StageSchema:
    """A stage type's settings: its wiring keys and the fields of the configs it calls with."""

    configs: tuple[type, ...]
    wiring: type | None = None
    exclude: frozenset[str] = frozenset()  # config fields the stage sets itself
    defaults: Mapping[str, Any] = field(default_factory=dict)  # this stage's own defaults
    bind: Callable[[Any], Binding] = _one  # values of the excluded fields, per library call

    def keys(self) -> list[str]:
        wiring = keys_of(self.wiring) if self.wiring else []
        return list(dict.fromkeys([*wiring, *(k for cls in self.configs
                                              for k in keys_of(cls, self.exclude))]))

    def settings(self, raw: Mapping[str, Any]) -> dict[str, Any]:
        """`raw` checked by the wiring and the configs; every setting (None ones dropped)."""
        valid = self.keys()
        for key in raw:
            if key not in valid:
                raise LobseqError("unknown key", field=str(key),
                                  fix=f"valid keys here: {', '.join(sorted(valid))}")
        wiring = self.wiring(**pick(self.wiring, raw)) if self.wiring else None
        out = as_settings(wiring) if wiring else {}
        for fixed, paths in self.bind(wiring):
            for cls in self.configs:
                try:
                    cfg = self.config(cls, raw, **{k: v for k, v in fixed.items()
                                                   if k in fields_of(cls)})
                except LobseqError as e:
                    raise LobseqError(e.problem, field=paths.get(e.field, e.field),
                                      fix=e.fix) from None
                for k, v in as_settings(cfg, self.exclude).items():
                    out.setdefault(k, v)
        return {k: v for k, v in out.items() if v is not None}

    def config(self, cls: type, settings: Mapping[str, Any], **fixed: Any):
        """The library config `cls` from a stage's settings (this stage's defaults first)."""
        own = {k: v for k, v in pick(cls, settings).items() if k not in self.exclude}
        defaults = {k: v for k, v in self.defaults.items() if k in fields_of(cls)}
        return cls(**{**defaults, **own}, **fixed)


_TRAIN = dict(exclude=frozenset({"model", "hyper"}), bind=_per_model)

SCHEMAS: dict[str, StageSchema] = {
    "simulate": StageSchema((SimulateConfig,)),
    "ingest": StageSchema((IngestConfig,), IngestWiring, frozenset({"name"}), bind=_dataset_name),
    "train": StageSchema((TrainConfig,), TrainWiring, **_TRAIN),
    "evaluate": StageSchema((EvaluateConfig,), DatasetWiring),
    "backtest": StageSchema((BacktestConfig,), DatasetWiring),
    "walkforward": StageSchema((TrainConfig, WalkForwardConfig), ModelsWiring,
                               exclude=frozenset({"model", "hyper", "head"}),
                               defaults=WALKFORWARD_TRAIN_DEFAULTS, bind=_per_model),
    "tune": StageSchema((TrainConfig, TuneConfig), TuneWiring, exclude=frozenset({"head"})),
    "predict": StageSchema((PredictConfig,), PredictWiring),
    "promote": StageSchema((PromoteConfig,), DatasetWiring),
}
TYPE_ALIASES = {"register": "promote"}


def stage_configs(stage_type: str, settings: Mapping[str, Any], cls: type) -> list:
    """The configs `cls` a stage calls its library function with (one per model for train)."""
    schema = SCHEMAS[stage_type]
    wiring = schema.wiring(**pick(schema.wiring, settings)) if schema.wiring else None
    return [schema.config(cls, settings, **{k: v for k, v in fixed.items() if k in fields_of(cls)})
            for fixed, _paths in schema.bind(wiring)]
