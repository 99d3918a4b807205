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

import contextlib
import datetime
import json
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from lobseq.errors import LobseqError
from lobseq.io import canonical_json, sha256_bytes, sha256_file

STAGE_KEY_TAG = "lobseq.stage_key"
OUTPUTS_TAG = "lobseq.stage_outputs"
SPLITS = ("train", "val", "test")
KEY_VERSION = 1  # bump when the meaning of a stage's settings changes

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

    from lobseq.train import TrainConfig

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
    if any(e.type == "promote" for e in earlier):
        raise lines.error(sp, "no stage may follow a promote stage",
                          fix="make promote the last stage, so a later failure cannot follow a "
                              "moved champion alias")


def _check_inputs_exist(pipe: Pipeline) -> None:
    """Sources no upstream stage creates must be on disk before the pipeline starts."""
    for stage in pipe.stages:
        if "simulate" in {a.type for a in pipe.ancestors(stage)}:
            continue
        paths = _as_list(stage.settings.get("sources")) if stage.type == "ingest" else []
        if stage.type in ("train", "evaluate", "backtest", "promote") and stage.settings.get("dataset") \
                and "ingest" not in {a.type for a in pipe.ancestors(stage)}:
            paths = [stage.settings["dataset"]]
        for p in paths:
            if not Path(p).exists():
                raise LobseqError(f"stage {stage.name!r}: input not found", file=p,
                                  fix="create it first (e.g. `lobseq simulate --out " + p + "`) "
                                      "or set the stage's 'sources'/'dataset'")


def _train_config(settings: dict, model: str):
    from dataclasses import fields

    from lobseq.train import TrainConfig

    names = {f.name for f in fields(TrainConfig)} - {"model", "hyper"}
    kw = {k: v for k, v in settings.items() if k in names}
    return TrainConfig(model=model, hyper=dict((settings.get("hyper") or {}).get(model) or {}), **kw)


# ------------------------------------------------------------------ stages


@dataclass
class StageContext:
    pipeline: Pipeline
    stage: Stage
    upstream: list[dict]  # outputs of ancestor stages, nearest first
    log: Callable[[str], None]
    run_id: str = ""  # this stage's MLflow run

    def find(self, key: str) -> Any:
        for out in self.upstream:
            if key in out:
                return out[key]
        return None

    def dataset(self) -> str:
        path = self.stage.settings.get("dataset") or self.find("dataset")
        if not path:
            raise LobseqError("no dataset: set 'dataset' or add an ingest stage", field="dataset")
        return path


def _dataset_hash(path: str) -> str:
    manifest = Path(path) / "manifest.json"
    if not manifest.exists():
        raise LobseqError("no dataset here (manifest.json missing)", file=path,
                          fix="run the ingest stage first")
    return sha256_file(manifest)


def _source_files(sources: list[str]) -> list[str]:
    files: list[str] = []
    for s in sources:
        p = Path(s)
        if p.is_dir():
            files.extend(str(f) for f in sorted(p.rglob("*")) if f.is_file() and not f.name.startswith("."))
        elif p.exists():
            files.append(str(p))
        else:
            raise LobseqError("source not found", file=s, fix="check the 'sources' paths")
    return files


def _as_list(v) -> list[str]:
    return [v] if isinstance(v, str) else list(v or [])


def _candidates(ctx: StageContext) -> dict[str, dict]:
    models = ctx.find("models")
    if not models:
        raise LobseqError("no trained models upstream", field="needs")
    return models


# Each stage type: inputs(ctx) -> the content it depends on (hashed into the key);
# run(ctx) -> outputs (JSON); valid(outputs) -> whether a reused result is still on disk.


def _simulate_inputs(ctx: StageContext) -> dict:
    return {}


def _simulate_run(ctx: StageContext) -> dict:
    from lobseq.simulate import simulate_bars, simulate_lobster

    s = ctx.stage.settings
    if s["kind"] == "lobster":
        paths = simulate_lobster(s["out"], events=s["events"], levels=s["levels"], days=s.get("days") or 1,
                                 seed=s["seed"], ticker=s["ticker"])
    else:
        paths = simulate_bars(s["out"], symbols=tuple(s.get("symbols") or ("AAA", "BBB", "CCC")),
                              days=s.get("days") or 750, seed=s["seed"], fmt=s["file_format"])
    ctx.log(f"  wrote {len(paths)} file(s) to {s['out']}")
    return {"raw": s["out"], "files": {str(p): sha256_file(p) for p in paths}}


def _simulate_valid(out: dict) -> bool:
    return all(Path(p).exists() and sha256_file(p) == h for p, h in out.get("files", {}).items())


def _ingest_sources(ctx: StageContext) -> list[str]:
    return _as_list(ctx.stage.settings.get("sources")) or [ctx.find("raw")]


def _ingest_inputs(ctx: StageContext) -> dict:
    return {f: sha256_file(f) for f in _source_files(_ingest_sources(ctx))}


def _ingest_config(settings: dict):
    from lobseq.ingest import IngestConfig

    s = settings
    return IngestConfig(
        format=s["format"], window=s["window"], horizon=s["horizon"], threshold=float(s["threshold"]),
        label=s["label"], n_classes=s["classes"], features=s.get("features"),
        fractions=tuple(s["fractions"]) if s.get("fractions") else (0.7, 0.15, 0.15),
        split_dates=tuple(s["split_dates"]) if s.get("split_dates") else None,
        embargo=s.get("embargo"), symbol_column=s["symbol_column"], name=Path(s["out"]).name)


def _ingest_run(ctx: StageContext) -> dict:
    from lobseq.ingest import ingest, summary

    s = ctx.stage.settings
    ds = ingest(_ingest_sources(ctx), s["out"], _ingest_config(s), log=ctx.log)
    ctx.log(summary(ds))
    return {"dataset": s["out"], "dataset_hash": ds.hash}


def _ingest_valid(out: dict) -> bool:
    try:
        return _dataset_hash(out["dataset"]) == out["dataset_hash"]
    except LobseqError:
        return False


def _train_inputs(ctx: StageContext) -> dict:
    return {"dataset": _dataset_hash(ctx.dataset())}


def _train_run(ctx: StageContext) -> dict:
    from mlflow import MlflowClient

    from lobseq.tracking import logged_model_uri, train_and_log

    s = ctx.stage.settings
    dataset = ctx.dataset()
    models = {}
    for m in s["models"]:
        ctx.log(f"  training {m}")
        run_id = train_and_log(dataset, _train_config(s, m), experiment=ctx.pipeline.experiment,
                               register=s.get("register"), log=ctx.log)
        if ctx.run_id:
            _adopt(MlflowClient(), run_id, ctx.run_id)
        models[m] = {"run_id": run_id, "model_uri": logged_model_uri(run_id)}
    return {"dataset": dataset, "models": models}


def _models_inputs(ctx: StageContext) -> dict:
    return {"dataset": _dataset_hash(ctx.dataset()),
            "models": {m: v["run_id"] for m, v in _candidates(ctx).items()}}


def _evaluate_run(ctx: StageContext) -> dict:
    from lobseq.evaluate import evaluate_model

    s, dataset = ctx.stage.settings, ctx.dataset()
    evaluations = {}
    for m, info in _candidates(ctx).items():
        metrics = evaluate_model(info["model_uri"], dataset, split=s["split"], **_eval_options(s))
        evaluations[m] = _jsonable(metrics)
        ctx.log(f"  {m}: " + ", ".join(f"{k} {v:.4f}" for k, v in evaluations[m].items()
                                       if isinstance(v, float) and "_ci" not in k)[:200])
    return {"evaluations": evaluations, "split": s["split"]}


def _eval_options(settings: dict) -> dict:
    return {k: settings[k] for k in ("n_boot", "max_baseline_train") if settings.get(k) is not None}


def _backtest_run(ctx: StageContext) -> dict:
    from lobseq.evaluate import backtest_model

    s, dataset = ctx.stage.settings, ctx.dataset()
    results = {}
    for m, info in _candidates(ctx).items():
        results[m] = _jsonable(backtest_model(info["model_uri"], dataset, split=s["split"],
                                              **(s.get("params") or {})))
    return {"backtests": results}


def _promote_run(ctx: StageContext) -> dict:
    from mlflow import MlflowClient

    from lobseq import registry
    from lobseq.evaluate import evaluate_model

    s, dataset = ctx.stage.settings, ctx.dataset()
    rule = registry.PromotionRule(metric=s["metric"], margin=float(s["margin"]),
                                  require_ci=s["require_ci"], greater_is_better=s.get("greater_is_better"))
    evaluations = ctx.find("evaluations") or {}
    if ctx.find("split") not in (None, s["split"]):
        raise LobseqError(f"the evaluate stage scored split '{ctx.find('split')}', promote compares "
                          f"on '{s['split']}'", field="split", fix="use the same split in both")
    # the champion is scored exactly as the challengers were (same options, same split)
    evaluate_settings = next((a.settings for a in ctx.pipeline.ancestors(ctx.stage)
                              if a.type == "evaluate"), {})
    candidates = _candidates(ctx)
    scored = {m: evaluations[m] for m in candidates if m in evaluations}
    if not scored:
        raise LobseqError("no evaluated models to promote", field="needs")
    higher = rule.better_is_higher()
    best = (max if higher else min)(scored, key=lambda m: registry.score_of(scored[m], rule.metric))
    ctx.log(f"  challenger: {best} ({rule.metric} {registry.score_of(scored[best], rule.metric):.4f})")

    def record(decision: registry.Decision) -> None:  # before the alias moves
        if ctx.run_id:
            MlflowClient().log_dict(ctx.run_id, {**decision.to_dict(), "challenger_model": best},
                                    "promotion_decision.json")

    decision = registry.champion_challenger(
        s["model_name"], candidates[best]["model_uri"], scored[best],
        evaluate=lambda uri: _jsonable(evaluate_model(uri, dataset, split=s["split"],
                                                      **_eval_options(evaluate_settings))),
        rule=rule, log=ctx.log, on_decision=record)
    out = {"decision": {**decision.to_dict(), "challenger_model": best}}
    verdict = "PROMOTED" if decision.promote else "kept the champion"
    ctx.log(f"  {verdict}: {decision.reason}")
    return out


def _always_valid(out: dict) -> bool:
    return True


@dataclass(frozen=True)
class StageType:
    inputs: Callable[[StageContext], dict]
    run: Callable[[StageContext], dict]
    valid: Callable[[dict], bool] = _always_valid


STAGES: dict[str, StageType] = {
    "simulate": StageType(_simulate_inputs, _simulate_run, _simulate_valid),
    "ingest": StageType(_ingest_inputs, _ingest_run, _ingest_valid),
    "train": StageType(_train_inputs, _train_run),
    "evaluate": StageType(_models_inputs, _evaluate_run),
    "backtest": StageType(_models_inputs, _backtest_run),
    # promote's key leaves out the current champion: an unchanged challenger is judged once
    # (re-judging it would register the same model again).
    "promote": StageType(_models_inputs, _promote_run),
}


def _jsonable(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, Mapping):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        return float(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    return obj


# ------------------------------------------------------------------ runner


@dataclass
class StageResult:
    name: str
    type: str
    status: str  # ran | skipped
    run_id: str
    seconds: float
    outputs: dict = field(default_factory=dict)
    reused_from: str | None = None


@dataclass
class PipelineResult:
    pipeline: Pipeline
    run_id: str
    stages: list[StageResult]

    def outputs(self, stage: str) -> dict:
        return next(s.outputs for s in self.stages if s.name == stage)


def stage_key(stage: Stage, inputs: dict) -> str:
    return sha256_bytes(canonical_json({"v": KEY_VERSION, "type": stage.type,
                                        "settings": _jsonable(stage.settings), "inputs": inputs}))


def _previous_run(experiment_id: str, key: str):
    import mlflow

    runs = mlflow.search_runs(experiment_ids=[experiment_id],
                              filter_string=f"tags.`{STAGE_KEY_TAG}` = '{key}' and "
                                            "attributes.status = 'FINISHED'",
                              order_by=["attributes.start_time DESC"], max_results=5,
                              output_format="list")
    for run in runs:
        text = run.data.tags.get(OUTPUTS_TAG)
        try:
            if text:
                return run, json.loads(text)
            # outputs too large for a tag live only in the run's artifact
            path = mlflow.artifacts.download_artifacts(run_id=run.data.tags.get(
                "lobseq.reused_from", run.info.run_id), artifact_path="stage_outputs.json")
            return run, json.loads(Path(path).read_text())
        except (ValueError, OSError, mlflow.exceptions.MlflowException):
            continue
    return None, None


def _flat_params(settings: dict) -> dict[str, str]:
    flat: dict[str, str] = {}

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, dict):
            for k, x in v.items():
                walk(f"{prefix}.{k}" if prefix else str(k), x)
        else:
            flat[prefix] = str(v)[:500]

    walk("", settings)
    return dict(list(flat.items())[:100])


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """systemd and cron stop jobs with SIGTERM: treat it like Ctrl-C (runs end KILLED)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def run_pipeline(path_or_pipeline: str | Path | Pipeline, overrides: list[str] | tuple = (),
                 force: bool = False, log: Callable[[str], None] = print,
                 lock: bool = True) -> PipelineResult:
    """Validate, take the lock, run each stage as a nested MLflow run (or reuse an unchanged one)."""
    from lobseq.lock import run_lock

    pipe = path_or_pipeline if isinstance(path_or_pipeline, Pipeline) \
        else load_pipeline(path_or_pipeline, overrides)
    ctx_lock = run_lock(pipe.lock, what=f"run of pipeline '{pipe.name}'") if lock \
        else contextlib.nullcontext()
    with ctx_lock, _sigterm_as_interrupt():
        return _run(pipe, force, log)


def _adopt(client, child_run_id: str, parent_run_id: str) -> None:
    """Show a run a library call started (e.g. training) under the stage's run in the UI."""
    client.set_tag(child_run_id, "mlflow.parentRunId", parent_run_id)


def _run(pipe: Pipeline, force: bool, log: Callable[[str], None]) -> PipelineResult:
    # Runs are driven through the client, never the fluent "active run": the
    # library calls a stage makes (train_and_log, evaluate) start their own runs.
    from mlflow import MlflowClient
    from mlflow.entities import Param

    from lobseq import tracking

    _check_inputs_exist(pipe)  # a missing input folder fails before any MLflow run exists
    tracking.configure()
    exp_id = tracking.ensure_experiment(pipe.experiment)
    c = MlflowClient()
    results: list[StageResult] = []
    outputs: dict[str, dict] = {}
    parent = c.create_run(exp_id, run_name=f"pipeline:{pipe.name}",
                          tags={"lobseq.pipeline": pipe.name, "lobseq.pipeline_file": str(pipe.path)})
    parent_id = parent.info.run_id
    status = "FAILED"
    log(f"Pipeline {pipe.name}: {len(pipe.stages)} stage(s), MLflow run {parent_id}")
    try:
        for stage in pipe.stages:
            ctx = StageContext(pipe, stage, [outputs[a.name] for a in pipe.ancestors(stage)], log)
            kind = STAGES[stage.type]
            key = stage_key(stage, kind.inputs(ctx))
            t0 = time.perf_counter()
            prev, prev_out = (None, None) if force else _previous_run(exp_id, key)
            tags = {STAGE_KEY_TAG: key, "lobseq.stage": stage.name, "lobseq.stage_type": stage.type,
                    "mlflow.parentRunId": parent_id}
            if prev is not None and kind.valid(prev_out):
                r = c.create_run(exp_id, run_name=stage.name,
                                 tags={**tags, "lobseq.reused_from": prev.info.run_id,
                                       OUTPUTS_TAG: prev.data.tags[OUTPUTS_TAG]})
                c.set_terminated(r.info.run_id, "FINISHED")
                log(f"[{stage.name}] unchanged since run {prev.info.run_id[:8]}: skipped")
                res = StageResult(stage.name, stage.type, "skipped", r.info.run_id,
                                  time.perf_counter() - t0, prev_out, prev.info.run_id)
            else:
                log(f"[{stage.name}] running ({stage.type})")
                r = c.create_run(exp_id, run_name=stage.name, tags=tags)
                ctx.run_id = r.info.run_id
                flat = _flat_params(stage.settings)
                if flat:
                    c.log_batch(r.info.run_id, params=[Param(k, v) for k, v in flat.items()])
                try:
                    out = _jsonable(kind.run(ctx))
                    text = json.dumps(out, sort_keys=True)
                    c.log_dict(r.info.run_id, out, "stage_outputs.json")
                    c.set_tag(r.info.run_id, OUTPUTS_TAG, text if len(text) < 7500 else "")
                except KeyboardInterrupt:
                    c.set_terminated(r.info.run_id, "KILLED")
                    raise
                except BaseException:
                    c.set_terminated(r.info.run_id, "FAILED")
                    raise
                c.set_terminated(r.info.run_id, "FINISHED")
                res = StageResult(stage.name, stage.type, "ran", r.info.run_id,
                                  time.perf_counter() - t0, out)
                log(f"[{stage.name}] done in {res.seconds:.1f}s")
            outputs[stage.name] = res.outputs
            results.append(res)
        c.log_dict(parent_id, {s.name: {"status": s.status, "run_id": s.run_id, "seconds": s.seconds,
                                        "outputs": s.outputs} for s in results},
                   "pipeline_summary.json")
        status = "FINISHED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        c.set_terminated(parent_id, status)
    return PipelineResult(pipe, parent_id, results)


def summary_table(result: PipelineResult) -> str:
    """Stages; then per trained model its macro-F1 [95% CI], the best baseline's macro-F1
    and the backtest's total return and Sharpe; then the promotion decision.

    Reads `evaluate_model`'s flat keys (`macro_f1`, `macro_f1_ci_low/high`, `best_baseline`,
    `baseline_<name>_macro_f1`) and `backtest_model`'s (`model_total_return`,
    `model_sharpe`, `model_n_periods`). Sharpe is "n/a" when undefined (fewer than two
    daily P&L periods, or zero variance); "-" marks a stage the pipeline did not run.
    """
    lines = [f"Pipeline {result.pipeline.name}  (MLflow run {result.run_id})",
             f"  {'stage':<14}{'type':<10}{'status':<9}{'seconds':>8}  run"]
    for s in result.stages:
        lines.append(f"  {s.name:<14}{s.type:<10}{s.status:<9}{s.seconds:>8.1f}  {s.run_id[:12]}")
    evals: dict[str, dict] = {}
    backs: dict[str, dict] = {}
    decision, decision_skipped = None, False
    for s in result.stages:
        evals.update(s.outputs.get("evaluations") or {})
        backs.update(s.outputs.get("backtests") or {})
        if s.outputs.get("decision"):
            decision, decision_skipped = s.outputs["decision"], s.status == "skipped"
    models = list(dict.fromkeys([*evals, *backs]))
    if models:
        lines.append("")
        lines.append(f"  {'model':<10}{'macro-F1 [95% CI]':<26}{'best baseline':<20}"
                     f"{'total return':>14}{'Sharpe':>10}")
        for m in models:
            e, b = evals.get(m), backs.get(m)
            lines.append(f"  {m:<10}{_f1_cell(e):<26}{_best_baseline_cell(e):<20}"
                         f"{_backtest_cell(b, 'total_return', '+.4f'):>14}"
                         f"{_backtest_cell(b, 'sharpe', '.2f'):>10}")
        if any(b and _number(b.get("model_n_periods")) is not None and b["model_n_periods"] < 2
               for b in backs.values()):
            lines.append("  (Sharpe is annualized from daily P&L: undefined with one day)")
    if decision:
        ch = decision.get("challenger") or {}
        champ = decision.get("champion") or {}
        lines.append("")
        if decision["promote"]:
            head = f"PROMOTED: {ch.get('name')} v{ch.get('version')} ({decision.get('challenger_model')})"
        else:  # name the champion that stays, not the challenger's new version
            head = (f"kept champion: {champ.get('name', ch.get('name'))} v{champ.get('version', '?')};"
                    f" challenger v{ch.get('version')} ({decision.get('challenger_model')})"
                    " not promoted")
        if decision_skipped:
            head = f"(unchanged, decided by an earlier run) {head}"
        lines.append(f"  {head} — {decision['reason']}")
    return "\n".join(lines)


def _number(v: Any) -> float | None:
    """A finite float, or None (missing, NaN, infinite, not a number)."""
    import math

    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _f1_cell(e: dict | None) -> str:
    if not e:
        return "-"
    f1 = _number(e.get("macro_f1"))
    if f1 is None:
        return "n/a"
    lo, hi = _number(e.get("macro_f1_ci_low")), _number(e.get("macro_f1_ci_high"))
    return f"{f1:.4f}" + (f" [{lo:.4f}, {hi:.4f}]" if lo is not None and hi is not None else "")


def _best_baseline_cell(e: dict | None) -> str:
    best = (e or {}).get("best_baseline")
    if not best:
        return "-"
    f1 = _number(e.get(f"baseline_{best}_macro_f1"))
    return f"{best} " + (f"{f1:.4f}" if f1 is not None else "n/a")


def _backtest_cell(b: dict | None, metric: str, fmt: str) -> str:
    if not b:
        return "-"
    if metric == "sharpe" and (_number(b.get("model_n_periods")) or 0) < 2:
        return "n/a"
    v = _number(b.get(f"model_{metric}"))
    return "n/a" if v is None else format(v, fmt)
