"""Pipelines: a YAML file of stages, validated, then run as nested MLflow runs.

    name: demo                     # required; also the default experiment
    experiment: lobseq-demo        # optional MLflow experiment
    lock: mlruns/.locks/demo.lock  # optional lock file (one run at a time)
    stages:                        # required, run in order
      - name: ingest               # unique
        type: ingest               # simulate | ingest | train | evaluate | backtest | promote
        needs: [simulate]          # optional, earlier stages; default: the stage before
        with: {format: lobster, out: data/processed/demo}

The whole file (and every `--set STAGE.KEY=VALUE`) is checked before any
stage runs; an error names the key and its line. A stage's identity
(`lobseq.stage_key` tag) is a hash of its type, its settings and the content
of its inputs (source-file SHA-256s, dataset manifest hash, upstream run
ids); a FINISHED run with the same key is reused instead of re-running
(`force=True` re-runs). Stages only wire library calls together: the same
functions the CLI commands call.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from lobseq.errors import LobseqError

SPLITS = ("train", "val", "test")

# ------------------------------------------------------------------ schema


@dataclass(frozen=True)
class Setting:
    kind: str  # str | int | float | bool | list[str] | list[float] | dict | paths
    required: bool = False
    choices: tuple = ()
    default: Any = None


def _is(value: Any, kind: str) -> bool:
    if kind == "str":
        return isinstance(value, str)
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "dict":
        return isinstance(value, dict)
    if kind == "list[str]":
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
    if kind == "list[float]":
        return isinstance(value, list) and all(_is(v, "float") for v in value)
    if kind == "paths":
        return isinstance(value, str) or _is(value, "list[str]")
    if kind == "list":
        return isinstance(value, list)
    if kind == "dates":  # YAML reads an unquoted 2024-01-03 as a date: accept both spellings
        return isinstance(value, list) and all(isinstance(v, (str, datetime.date)) for v in value)
    raise AssertionError(kind)


SIMULATE = {
    "kind": Setting("str", choices=("lobster", "bars"), default="lobster"),
    "out": Setting("str", required=True),
    "events": Setting("int", default=100_000), "levels": Setting("int", default=10),
    "days": Setting("int"), "seed": Setting("int", default=0),
    "ticker": Setting("str", default="SIM"), "symbols": Setting("list[str]"),
    "file_format": Setting("str", choices=("csv", "parquet"), default="csv"),
}
INGEST = {
    "sources": Setting("paths"),  # default: the upstream simulate stage's folder
    "format": Setting("str", required=True, choices=("lobster", "fi2010", "bars")),
    "out": Setting("str", required=True),
    "window": Setting("int", default=100), "horizon": Setting("int", default=10),
    "threshold": Setting("float", default=0.0),
    "label": Setting("str", choices=("point", "smoothed", "provided"), default="point"),
    "classes": Setting("int", choices=(2, 3), default=3),
    "features": Setting("list"), "fractions": Setting("list[float]"),
    "split_dates": Setting("dates"), "embargo": Setting("int"),
    "symbol_column": Setting("str", default="symbol"),
    "entry": Setting("str", choices=("next_open", "close", "next")),  # execution contract
}
TRAIN = {  # plus every TrainConfig field except `model` (checked at load time)
    "models": Setting("list[str]", required=True),
    "dataset": Setting("str"),
    "hyper": Setting("dict"),  # {model: {hyperparameter: value}}
    "register": Setting("str"),
}
EVALUATE = {"split": Setting("str", choices=SPLITS, default="test"), "dataset": Setting("str"),
            "n_boot": Setting("int"), "max_baseline_train": Setting("int")}
BACKTEST = {"split": Setting("str", choices=SPLITS, default="test"), "dataset": Setting("str"),
            "params": Setting("dict")}
PROMOTE = {
    "model_name": Setting("str", required=True),
    "metric": Setting("str", default="macro_f1"),
    "margin": Setting("float", default=0.0),
    "require_ci": Setting("bool", default=False),
    "greater_is_better": Setting("bool"),
    "split": Setting("str", choices=SPLITS, default="test"),
    "dataset": Setting("str"),
    "gate": Setting("str", choices=("baselines", "none"), default="baselines"),
    "require_trading": Setting("bool", default=False),
}
SCHEMAS: dict[str, dict[str, Setting]] = {
    "simulate": SIMULATE, "ingest": INGEST, "train": TRAIN, "evaluate": EVALUATE,
    "backtest": BACKTEST, "promote": PROMOTE,
}
TYPE_ALIASES = {"register": "promote"}
TOP_KEYS = {"name": Setting("str", required=True), "experiment": Setting("str"),
            "lock": Setting("str"), "description": Setting("str"),
            "stages": Setting("list", required=True)}
STAGE_KEYS = {"name": Setting("str", required=True), "type": Setting("str", required=True),
              "needs": Setting("list[str]"), "with": Setting("dict")}


def _train_fields() -> dict[str, Setting]:
    from dataclasses import MISSING, fields

    from lobseq.training.config import TrainConfig

    out = {}
    for f in fields(TrainConfig):
        if f.name in ("model", "hyper"):
            continue
        default = f.default if f.default is not MISSING else None
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default), "any")
        out[f.name] = Setting(kind, default=default)
    return out


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


class _Lines:
    """Line numbers (1-based) of every key and list item, from yaml's node marks."""

    def __init__(self, text: str, file: Path) -> None:
        self.file = file
        self.lines: dict[tuple, int] = {}
        self.overridden: set[tuple] = set()
        try:
            node = yaml.compose(text)
        except yaml.YAMLError as e:
            mark = getattr(e, "problem_mark", None)
            at = f"line {mark.line + 1}: " if mark else ""
            raise LobseqError(f"{at}not valid YAML: {getattr(e, 'problem', e)}", file=file,
                              fix="check indentation and quoting") from None
        if node is not None:
            self._walk(node, ())

    def _walk(self, node, path: tuple) -> None:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                key = path + (k.value,)
                self.lines[key] = k.start_mark.line + 1
                self._walk(v, key)
        elif isinstance(node, yaml.SequenceNode):
            for i, v in enumerate(node.value):
                self._walk(v, path + (i,))

    def error(self, path: tuple, problem: str, fix: str | None = None) -> LobseqError:
        line = None
        for n in range(len(path), -1, -1):  # nearest enclosing node that has a line
            if path[:n] in self.lines:
                line = self.lines[path[:n]]
                break
        key = ".".join(str(p) for p in path) or "(top)"
        origin = " (from --set)" if path in self.overridden else ""
        at = f"line {line}, " if line else ""
        return LobseqError(f"{at}key '{key}'{origin}: {problem}", file=self.file, fix=fix)


def _check(value: Any, spec: Setting, path: tuple, lines: _Lines) -> None:
    if spec.kind != "any" and value is not None and not _is(value, spec.kind):
        raise lines.error(path, f"must be {spec.kind}, got {type(value).__name__} {value!r}")
    if spec.choices and value is not None and value not in spec.choices:
        raise lines.error(path, f"{value!r} is not allowed",
                          fix=f"use one of {', '.join(map(str, spec.choices))}")


def _check_mapping(data: Mapping, schema: Mapping[str, Setting], path: tuple, lines: _Lines) -> None:
    for key in data:
        if key not in schema:
            raise lines.error(path + (key,), "unknown key",
                              fix=f"valid keys here: {', '.join(sorted(schema))}")
        _check(data[key], schema[key], path + (key,), lines)
    for key, spec in schema.items():
        if spec.required and data.get(key) is None:
            raise lines.error(path, f"missing required key '{key}'")


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
        if len(parts) == 1:
            if parts[0] not in TOP_KEYS or parts[0] == "stages":
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
    _check_mapping(data, TOP_KEYS, (), lines)
    if not data["stages"]:
        raise lines.error(("stages",), "needs at least one stage")
    stages: list[Stage] = []
    for i, raw in enumerate(data["stages"]):
        sp = ("stages", i)
        if not isinstance(raw, dict):
            raise lines.error(sp, "each stage must be a mapping with name, type and with")
        _check_mapping(raw, STAGE_KEYS, sp, lines)
        name, type_ = raw["name"], TYPE_ALIASES.get(raw["type"], raw["type"])
        if type_ not in SCHEMAS:
            raise lines.error(sp + ("type",), f"unknown stage type {raw['type']!r}",
                              fix=f"use one of {', '.join(sorted(SCHEMAS))}")
        if any(s.name == name for s in stages):
            raise lines.error(sp + ("name",), f"duplicate stage name {name!r}")
        needs = raw.get("needs")
        if needs is None:
            needs = [stages[-1].name] if stages else []
        for j, n in enumerate(needs):
            if not any(s.name == n for s in stages):
                raise lines.error(sp + ("needs", j), f"{n!r} is not an earlier stage",
                                  fix="list only stages defined above this one")
        settings = dict(raw.get("with") or {})
        schema = dict(SCHEMAS[type_])
        if type_ == "train":
            schema.update(_train_fields())
        _check_mapping(settings, schema, sp + ("with",), lines)
        for key, spec in schema.items():
            if key not in settings and spec.default is not None:
                settings[key] = spec.default
            if spec.kind == "dates" and settings.get(key):
                settings[key] = [str(d) for d in settings[key]]  # date objects → ISO strings
        stage = Stage(name, type_, list(needs), settings, lines.lines.get(sp))
        _check_semantics(stage, stages, sp, lines)
        stages.append(stage)
    name = data["name"]
    return Pipeline(name=name, experiment=data.get("experiment") or name,
                    lock=data.get("lock") or f"mlruns/.locks/{name}.lock",
                    stages=stages, path=path, description=data.get("description") or "")


def _check_semantics(stage: Stage, earlier: list[Stage], sp: tuple, lines: _Lines) -> None:
    """Inputs must be resolvable from settings or upstream stages; library configs must be valid."""
    tmp = Pipeline("", "", "", earlier + [stage], Path("."))
    up_types = {s.type for s in tmp.ancestors(stage)}
    s, w = stage.settings, sp + ("with",)
    if stage.type == "ingest" and not s.get("sources") and "simulate" not in up_types:
        raise lines.error(w, "needs 'sources' (or an upstream simulate stage)")
    if stage.type == "ingest":
        try:
            _ingest_config(s).validate()
        except LobseqError as e:
            key = "classes" if e.field == "n_classes" else e.field
            raise lines.error(w + ((key,) if key in s else ()), e.problem, fix=e.fix) from None
    if stage.type == "train":
        if not s.get("dataset") and "ingest" not in up_types:
            raise lines.error(w, "needs 'dataset' (or an upstream ingest stage)")
        from lobseq.models import MODELS

        for j, m in enumerate(s["models"]):
            if m not in MODELS:
                raise lines.error(w + ("models", j), f"unknown model {m!r}",
                                  fix=f"use one of {', '.join(MODELS)}")
        hyper = s.get("hyper") or {}
        for m in hyper:
            if m not in s["models"]:
                raise lines.error(w + ("hyper", m), f"{m!r} is not among this stage's models")
        for m in s["models"]:
            try:
                cfg = _train_config(s, m)
                cfg.validate()
                cfg.model_hyperparameters()
            except LobseqError as e:
                key = e.field if e.field in s else ("hyper" if e.field == "param" else None)
                raise lines.error(w + ((key,) if key else ()), e.problem, fix=e.fix) from None
    if stage.type in ("evaluate", "backtest", "promote") and "train" not in up_types:
        raise lines.error(sp + ("needs",), f"a {stage.type} stage needs an upstream train stage")
    if stage.type == "promote" and "evaluate" not in up_types:
        raise lines.error(sp + ("needs",), "a promote stage needs an upstream evaluate stage")
    if stage.type == "promote" and s.get("require_trading") and "backtest" not in up_types:
        raise lines.error(w + ("require_trading",), "needs an upstream backtest stage",
                          fix="add the backtest stage to this stage's needs")
    if any(e.type == "promote" for e in earlier):
        raise lines.error(sp, "no stage may follow a promote stage",
                          fix="make promote the last stage, so a later failure cannot follow a "
                              "moved champion alias")


def _train_config(settings: dict, model: str):
    from dataclasses import fields

    from lobseq.training.config import TrainConfig

    names = {f.name for f in fields(TrainConfig)} - {"model", "hyper"}
    kw = {k: v for k, v in settings.items() if k in names}
    return TrainConfig(model=model, hyper=dict((settings.get("hyper") or {}).get(model) or {}), **kw)


# ------------------------------------------------------------------ stages


# Each stage type: inputs(ctx) -> the content it depends on (hashed into the key);
# run(ctx) -> outputs (JSON); valid(outputs) -> whether a reused result is still on disk.


def _ingest_config(settings: dict):
    from lobseq.data.ingest import IngestConfig

    s = settings
    return IngestConfig(
        format=s["format"], window=s["window"], horizon=s["horizon"], threshold=float(s["threshold"]),
        label=s["label"], n_classes=s["classes"], features=s.get("features"),
        fractions=tuple(s["fractions"]) if s.get("fractions") else (0.7, 0.15, 0.15),
        split_dates=tuple(s["split_dates"]) if s.get("split_dates") else None,
        embargo=s.get("embargo"), symbol_column=s["symbol_column"], name=Path(s["out"]).name,
        entry=s.get("entry"))


# ------------------------------------------------------------------ runner

