"""Pipelines: a YAML file of stages, validated, then run as nested MLflow runs.

    name: demo                     # required; also the default experiment
    experiment: lobseq-demo        # optional MLflow experiment
    lock: mlruns/.locks/demo.lock  # optional lock file (one run at a time)
    lock_uri: postgresql://lobseq@db:5432/locks  # optional: a lock across hosts (lobseq.locks)
    engine: ray                    # optional: local (default) | ray, for ingest, walkforward,
    ray: {num_cpus: 4}             #   predict and tune; ray: {address: host:port, num_cpus: N}
    stages:                        # required, run in order
      - name: ingest               # unique
        type: ingest               # simulate | ingest | train | evaluate | backtest |
                                   # walkforward | tune | predict | promote
        needs: [simulate]          # optional, earlier stages; default: the stage before
        with: {format: lobster, out: data/processed/demo}

A stage's `with:` keys are the fields of the library config its stage calls
(`IngestConfig`, `TrainConfig`, ...; see `lobseq.workflow.schema`) plus its
wiring keys. The whole file (and every `--set STAGE.KEY=VALUE`) is checked
before any stage runs; an error names the key and its line. A stage's identity
(`lobseq.stage_key` tag) is a hash of its type, its settings (defaults filled
in) and the content of its inputs (source-file SHA-256s, dataset manifest hash,
upstream run ids); a FINISHED run with the same key is reused instead of
re-running (`force=True` re-runs). The engine is no part of any key: it
changes where a stage runs, never what it produces. Stages only wire library calls together:
the same functions the CLI commands call.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import Field

from lobseq.config import keys_of, stage_config
from lobseq.engine.config import EngineConfig
from lobseq.errors import LobseqError
from lobseq.workflow.schema import SCHEMAS, TYPE_ALIASES
from lobseq.yaml_lines import YamlLines as _Lines


@stage_config
class PipelineFile:
    """The top level of a pipeline file."""

    name: str = Field(description="The pipeline's name; also its default experiment.")
    experiment: str | None = Field(None, description="MLflow experiment [default: the name].")
    lock: str | None = Field(None, description="Lock file [default: mlruns/.locks/NAME.lock].")
    lock_uri: str | None = Field(
        None, description="PostgreSQL database whose advisory lock makes the run one at a time "
                          "across hosts (the password in PGPASSWORD or ~/.pgpass) [default: "
                          "$LOBSEQ_LOCK_URI; neither: the lock file].")
    description: str | None = Field(None, description="One line on what the pipeline does.")
    engine: str = Field("local", description="Where the stages that support an engine run (ingest, "
                                             "walkforward, predict, tune): local or ray.")
    ray: dict[str, Any] | None = Field(None, description="Ray settings: address, num_cpus.")
    stages: list[Any] = Field(min_length=1, description="The stages, run in order.")


@stage_config
class RaySettings:
    """The pipeline's `ray:` mapping."""

    address: str | None = Field(None, description="A running Ray cluster (host:port).")
    num_cpus: Any = Field(None, description="CPUs of the local Ray instance lobseq starts.")


@stage_config
class StageEntry:
    """One item of `stages:`."""

    name: str = Field(description="Unique within the file.")
    type: str = Field(description="Stage type.")
    needs: list[str] | None = Field(None, description="Earlier stages [default: the one before].")
    with_: dict[str, Any] | None = Field(None, alias="with", description="The stage's settings.")


@dataclass
class Stage:
    name: str
    type: str
    needs: list[str]
    settings: dict
    line: int | None = None


@dataclass
class Pipeline:
    name: str
    experiment: str
    lock: str
    stages: list[Stage]
    path: Path
    description: str = ""
    engine: EngineConfig = field(default_factory=EngineConfig)
    lock_uri: str | None = None  # a lock database (lobseq.locks); None: $LOBSEQ_LOCK_URI or the file

    def stage(self, name: str) -> Stage:
        return next(s for s in self.stages if s.name == name)

    def ancestors(self, stage: Stage) -> list[Stage]:
        """Every stage `stage` depends on, nearest first."""
        seen: list[str] = []
        todo = list(reversed(stage.needs))
        while todo:
            n = todo.pop(0)
            if n not in seen:
                seen.append(n)
                todo.extend(reversed(self.stage(n).needs))
        order = {s.name: i for i, s in enumerate(self.stages)}
        return sorted((self.stage(n) for n in seen), key=lambda s: -order[s.name])


def _parse_override(text: str) -> tuple[list[str], Any]:
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise LobseqError(f"--set {text!r} is not KEY=VALUE", fix="e.g. --set train.epochs=3")
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError:
        value = raw
    return key.strip().split("."), value


def _apply_overrides(data: dict, overrides: list[str], lines: _Lines) -> None:
    """`name=x`, `experiment=x`, or `STAGE.KEY=VALUE` (KEY inside the stage's `with`)."""
    for text in overrides:
        parts, value = _parse_override(text)
        if len(parts) == 2 and parts[0] == "ray":  # --set ray.num_cpus=4
            data["ray"] = {**(data.get("ray") or {}), parts[1]: value}
            lines.overridden.add(tuple(parts))
            continue
        if len(parts) == 1:
            if parts[0] not in keys_of(PipelineFile) or parts[0] == "stages":
                raise LobseqError(f"--set {text!r}: unknown top-level key '{parts[0]}'",
                                  fix="use name, experiment, lock or STAGE.KEY=VALUE")
            data[parts[0]] = value
            lines.overridden.add((parts[0],))
            continue
        stages = data.get("stages") or []
        idx = next((i for i, s in enumerate(stages) if isinstance(s, dict) and s.get("name") == parts[0]),
                   None)
        if idx is None:
            names = [s.get("name") for s in stages if isinstance(s, dict)]
            raise LobseqError(f"--set {text!r}: no stage named '{parts[0]}'",
                              fix=f"stages are: {', '.join(map(str, names))}")
        target = stages[idx].setdefault("with", {}) or {}
        stages[idx]["with"] = target
        for p in parts[1:-1]:
            target = target.setdefault(p, {})
        target[parts[-1]] = value
        lines.overridden.add(("stages", idx, "with", *parts[1:]))



def _at(lines: _Lines, path: tuple, e: LobseqError, data: dict) -> LobseqError:
    """`e` (its field a key of `data` or a dotted path such as models.1) at its place in the file."""
    key = tuple(int(p) if p.isdigit() else p for p in e.field.split(".")) if e.field else ()
    return lines.error(path + key if key and key[0] in data else path, e.problem, e.fix)


def _checked(cls: type, data: dict, path: tuple, lines: _Lines):
    try:
        return cls(**data)
    except LobseqError as e:
        raise _at(lines, path, e, data) from None


def load_pipeline(path: str | Path, overrides: list[str] | tuple = ()) -> Pipeline:
    """Read and validate a pipeline file; raise `LobseqError` naming key and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LobseqError(f"cannot read pipeline file: {e.strerror}", file=path) from None
    lines = _Lines(text, path)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise lines.error((), "a pipeline file must be a mapping with 'name' and 'stages'")
    _apply_overrides(data, list(overrides), lines)
    top = _checked(PipelineFile, data, (), lines)
    stages: list[Stage] = []
    for i, raw in enumerate(top.stages):
        sp = ("stages", i)
        if not isinstance(raw, dict):
            raise lines.error(sp, "each stage must be a mapping with name, type and with")
        stages.append(_stage(_checked(StageEntry, raw, sp, lines), stages, sp, lines))
    return Pipeline(name=top.name, experiment=top.experiment or top.name,
                    lock=top.lock or f"mlruns/.locks/{top.name}.lock",
                    stages=stages, path=path, description=top.description or "",
                    engine=_engine(top, data, lines), lock_uri=top.lock_uri or None)


ENGINE_STAGES = ("ingest", "walkforward", "predict", "tune")  # the stage types an engine runs


def _engine(top: PipelineFile, data: dict, lines: _Lines) -> EngineConfig:
    """`engine:` and `ray:` as an EngineConfig; an error names the key (ray.num_cpus) and line."""
    ray = _checked(RaySettings, top.ray or {}, ("ray",), lines) if top.ray is not None else RaySettings()
    try:
        return EngineConfig(name=top.engine, address=ray.address, num_cpus=ray.num_cpus)
    except LobseqError as e:
        where = {"ray_address": "ray.address", "ray_num_cpus": "ray.num_cpus"}.get(e.field, e.field)
        path = tuple(where.split(".")) if where else ()
        if path and path[0] not in data:  # e.g. `ray:` without `engine: ray`: point at what is there
            path = ("ray",) if "ray" in data else ()
        raise lines.error(path, e.problem, e.fix) from None


def _stage(entry: StageEntry, earlier: list[Stage], sp: tuple, lines: _Lines) -> Stage:
    type_ = TYPE_ALIASES.get(entry.type, entry.type)
    if type_ not in SCHEMAS:
        raise lines.error(sp + ("type",), f"unknown stage type {entry.type!r}",
                          fix=f"use one of {', '.join(sorted(SCHEMAS))}")
    if any(s.name == entry.name for s in earlier):
        raise lines.error(sp + ("name",), f"duplicate stage name {entry.name!r}")
    needs = entry.needs if entry.needs is not None else ([earlier[-1].name] if earlier else [])
    for j, n in enumerate(needs):
        if not any(s.name == n for s in earlier):
            raise lines.error(sp + ("needs", j), f"{n!r} is not an earlier stage",
                              fix="list only stages defined above this one")
    raw = dict(entry.with_ or {})
    if type_ == "backtest" and isinstance(raw.get("params"), dict):  # older files nest them
        raw = {**raw.pop("params"), **raw}
    try:
        settings = SCHEMAS[type_].settings(raw)
    except LobseqError as e:
        raise _at(lines, sp + ("with",), e, raw) from None
    stage = Stage(entry.name, type_, list(needs), settings, lines.lines.get(sp))
    _check_semantics(stage, earlier, sp, lines)
    return stage


def _check_semantics(stage: Stage, earlier: list[Stage], sp: tuple, lines: _Lines) -> None:
    """Inputs must be resolvable from settings or upstream stages."""
    ups = Pipeline("", "", "", earlier + [stage], Path(".")).ancestors(stage)
    up_types = {s.type for s in ups}
    s, w = stage.settings, sp + ("with",)
    if stage.type in ("ingest", "predict") and not s.get("sources") and "simulate" not in up_types:
        raise lines.error(w, "needs 'sources' (or an upstream simulate stage)")
    if stage.type in ("train", "walkforward", "tune"):
        if not s.get("dataset") and "ingest" not in up_types:
            raise lines.error(w, "needs 'dataset' (or an upstream ingest stage)")
        for m in s.get("hyper") or {}:
            if m not in s["models"]:
                raise lines.error(w + ("hyper", m), f"{m!r} is not among this stage's models")
    if stage.type in ("evaluate", "backtest", "promote") and not _trained(ups):
        raise lines.error(sp + ("needs",), f"a {stage.type} stage needs an upstream train stage "
                                           "(or a tune stage that registers its best model)")
    if stage.type == "promote" and "evaluate" not in up_types:
        raise lines.error(sp + ("needs",), "a promote stage needs an upstream evaluate stage")
    if stage.type == "promote" and s.get("require_trading") and "backtest" not in up_types:
        raise lines.error(w + ("require_trading",), "needs an upstream backtest stage",
                          fix="add the backtest stage to this stage's needs")
    if stage.type == "predict":
        _check_predict_model(s.get("model"), ups, w, lines)
    if any(e.type == "promote" for e in earlier):
        raise lines.error(sp, "no stage may follow a promote stage",
                          fix="make promote the last stage, so a later failure cannot follow a "
                              "moved champion alias")


def is_model_uri(text: str) -> bool:
    """A URI MLflow resolves (models:/..., runs:/...) or a bare 32-hex run id."""
    return ":/" in text or re.fullmatch(r"[0-9a-f]{32}", text) is not None


def _trained(ups: list[Stage]) -> list[str]:
    """The models upstream stages train: a train stage's, a registering tune stage's."""
    return [m for a in ups for m in (a.settings["models"] if a.type == "train" else
                                     [a.settings["model"]] if a.type == "tune" and
                                     a.settings.get("register") else [])]


def _check_predict_model(model: str | None, ups: list[Stage], w: tuple, lines: _Lines) -> None:
    trained = _trained(ups)
    fix = ("set 'model' to a URI such as models:/NAME@champion"
           + (f", or to one of {', '.join(trained)}" if trained else ""))
    if model is None and len(trained) != 1:
        raise lines.error(w, "needs 'model': "
                          + ("several models are trained upstream" if trained else
                             "no model is trained upstream"), fix=fix)
    if model is not None and not is_model_uri(model) and model not in trained:
        raise lines.error(w + ("model",), f"{model!r} is neither a model URI nor a model "
                                          "trained upstream", fix=fix)
