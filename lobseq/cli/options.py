"""Click options derived from a stage config (`lobseq.config.stage_config`).

    @config_options(IngestConfig, exclude={"name"})
    def ingest(sources, out, **settings):
        cfg = build(IngestConfig, settings, name=out.name)

One option per field: the flag is the field's user-facing name (`rename`, else its
alias, else its name) with dashes; the type comes from the annotation (a
`Literal` gives choices, a bool a flag, `ge`/`gt`/`le`/`lt` a range, a tuple or
list comma-separated values), the default and help from the field. Nothing is
declared twice: the config is the only place a default or a check lives.
"""

from __future__ import annotations

import dataclasses
import json
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import click

from lobseq.config import base_type, choices_of, default_of, fields_of
from lobseq.engine.config import EngineConfig
from lobseq.errors import LobseqError


class LiteralChoice(click.Choice):
    """`click.Choice` over a `Literal`'s values that returns the value itself (2, not '2')."""

    def __init__(self, values: tuple) -> None:
        self.values = {str(v): v for v in values}
        super().__init__(list(self.values))

    def convert(self, value, param, ctx):
        return self.values[str(super().convert(str(value), param, ctx))]


class CommaSeparated(click.ParamType):
    """'a,b,c' → a tuple of `item` values (blank items dropped)."""

    name = "list"

    def __init__(self, item: type) -> None:
        self.item = item

    def convert(self, value, param, ctx):
        if isinstance(value, (tuple, list)):
            return tuple(value)
        parts = [p.strip() for p in str(value).split(",") if p.strip()]
        try:
            return tuple(self.item(p) for p in parts)
        except ValueError:
            self.fail(f"{value!r} is not a comma-separated list of {self.item.__name__} values",
                      param, ctx)


def _bounds(info) -> dict:
    """click range arguments from a field's `ge`/`gt`/`le`/`lt` constraints."""
    out: dict[str, Any] = {}
    for m in info.metadata:
        if getattr(m, "ge", None) is not None:
            out["min"] = m.ge
        elif getattr(m, "gt", None) is not None:
            out.update(min=m.gt, min_open=True)
        elif getattr(m, "le", None) is not None:
            out["max"] = m.le
        elif getattr(m, "lt", None) is not None:
            out.update(max=m.lt, max_open=True)
    return out


def _param_type(info) -> tuple[Any, bool]:
    """(click type, is_flag) for a field; None type: the field has no command-line form."""
    choices = choices_of(info.annotation)
    if choices is not None:
        return LiteralChoice(choices), False
    t = base_type(info.annotation)
    origin = typing.get_origin(t)
    if t is bool:
        return None, True
    if t is int:
        bounds = _bounds(info)
        if bounds.get("min_open"):  # IntRange's open bounds: x > 0 is x >= 1
            bounds["min"], bounds["min_open"] = bounds["min"] + 1, False
        return (click.IntRange(**bounds) if bounds else click.INT), False
    if t is float:
        bounds = _bounds(info)
        return (click.FloatRange(**bounds) if bounds else click.FLOAT), False
    if t is Path:
        return click.Path(path_type=Path), False
    if t is str:
        return click.STRING, False
    if origin in (tuple, list):
        args = [a for a in typing.get_args(t) if a is not Ellipsis]
        item = args[0] if args and all(a is args[0] for a in args) and args[0] in (int, float) else str
        return CommaSeparated(item), False
    return None, False


def _option(name: str, info, flag_name: str, default: Any, required: bool, dest: str) -> Callable:
    ptype, is_flag = _param_type(info)
    flag = "--" + flag_name.replace("_", "-")
    help_text = info.description or ""
    if is_flag and default is None:  # a tri-state setting: on, off, or the config's default
        off = (info.json_schema_extra or {}).get("cli_off", f"--no-{flag[2:]}")
        return click.option(f"{flag}/{off}", dest, default=None, help=help_text)
    if is_flag:
        decls = [flag if not default else f"{flag}/--no-{flag[2:]}", dest]
        return click.option(*decls, is_flag=True, default=bool(default),
                            show_default=bool(default), help=help_text)
    if ptype is None:
        raise TypeError(f"field {name!r} has no command-line form: exclude it or add an option")
    if required:
        return click.option(flag, dest, type=ptype, required=True, help=help_text)
    if isinstance(default, (tuple, list)):  # shown and parsed as the command line writes it
        default = ",".join(map(str, default))
    return click.option(flag, dest, type=ptype, default=default, show_default=default is not None,
                        help=help_text)


def config_options(*configs: type, rename: Mapping[str, str] | None = None,
                   exclude: set[str] | frozenset[str] = frozenset(),
                   required: set[str] | frozenset[str] = frozenset(),
                   defaults: Mapping[str, Any] | None = None, prefix: str = "") -> Callable:
    """Decorator: one click option per field of `configs` (a field shared by two appears once).

    `rename` maps a field to its flag (`learning_rate` → `lr`), `exclude` drops fields the
    command sets itself, `required` makes a field with a default required on the command
    line, `defaults` overrides a config's default for this command (walk-forward trains shorter).
    `prefix` goes before each parameter's name (not its flag), so two configs of one command
    may share field names: `build(cls, params, prefix=...)` reads them back.
    """
    rename, defaults = dict(rename or {}), dict(defaults or {})
    options, seen = [], set()
    for cls in configs:
        for name, info in fields_of(cls).items():
            if name in exclude or name in seen:
                continue
            seen.add(name)
            default = defaults.get(name, default_of(info))
            need = name in required or default is dataclasses.MISSING
            options.append(_option(name, info, rename.get(name) or info.alias or name,
                                   None if need else default, need, prefix + name))

    def decorate(f: Callable) -> Callable:
        for opt in reversed(options):  # click applies decorators bottom-up
            f = opt(f)
        return f

    return decorate


def build(cls: type, params: Mapping[str, Any], prefix: str = "", **fixed: Any):
    """The config `cls` from a command's parsed `params` (its fields only, named `prefix` +
    field) and `fixed` values."""
    names = fields_of(cls)
    own = {k[len(prefix):]: v for k, v in params.items() if k.startswith(prefix)}
    return cls(**{k: v for k, v in own.items() if k in names and k not in fixed}, **fixed)


ENGINE_PREFIX = "engine_"  # EngineConfig.name must not meet e.g. IngestConfig.name


def engine_options(f: Callable) -> Callable:
    """`--engine local|ray`, `--ray-address`, `--ray-num-cpus` (`EngineConfig`); see `engine_config`."""
    return config_options(EngineConfig, prefix=ENGINE_PREFIX)(f)


def engine_config(params: Mapping[str, Any]) -> EngineConfig:
    """The `EngineConfig` a command's `engine_options` parsed."""
    return build(EngineConfig, params, prefix=ENGINE_PREFIX)


def param_option(f: Callable) -> Callable:
    """`--param KEY=VALUE` (repeatable): hyperparameter overrides; see `parse_params`."""
    return click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
                        help="Override a hyperparameter (repeatable); values are JSON: "
                             "64, 0.2, [64,32].")(f)


def parse_params(pairs: tuple[str, ...]) -> dict:
    """`key=value` pairs → dict; values read as JSON when they parse (8, 0.2, [64,32], true)."""
    out = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.strip():
            raise LobseqError(f"--param {pair!r} is not key=value", field="param",
                              fix="write e.g. --param units=64 or --param units=[64,32]")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        out[key.strip()] = value
    return out
