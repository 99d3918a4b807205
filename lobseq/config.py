"""Typed stage configs: one pydantic dataclass per stage holds its defaults and checks once.

    @stage_config
    class IngestConfig:
        window: int = Field(100, ge=1, description="Sequence length T.")

A stage config is a plain dataclass (`dataclasses.asdict`, `fields`, `replace`
work) validated by pydantic on construction and on assignment: unknown
settings are rejected, types are strict for ints and bools, and every
`pydantic.ValidationError` surfaces as ONE `LobseqError` line naming the
setting and the fix (`config_error`). Field descriptions are the CLI's help
(`lobseq.cli.options`) and the pipeline schema's (`lobseq.workflow.spec`).
A field's `alias` is its user-facing name where it differs (`classes` for
`n_classes`); both spellings are accepted.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from pathlib import PurePath
from typing import Any, Literal

from pydantic import ConfigDict, ValidationError
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic.fields import FieldInfo

from lobseq.errors import LobseqError

CONFIG = ConfigDict(extra="forbid", validate_assignment=True, validate_by_name=True,
                    validate_by_alias=True)

_TYPE_WORDS = {"int": ("int", "use a whole number"), "float": ("float", "use a number"),
               "bool": ("bool", "use true or false"), "string": ("str", "use text"),
               "list": ("a list", "use a list, e.g. [a, b]"),
               "tuple": ("a list", "use a list, e.g. [a, b]"),
               "dict": ("a mapping", "use a mapping, e.g. {key: value}"),
               "path": ("a path", "use a file or folder path")}
_BOUNDS = {"greater_than_equal": (">=", "ge"), "greater_than": (">", "gt"),
           "less_than_equal": ("<=", "le"), "less_than": ("<", "lt")}


def stage_config(cls: type) -> type:
    """Make `cls` a validated, keyword-only dataclass whose errors are `LobseqError`s."""
    cls = _pydantic_dataclass(config=CONFIG, kw_only=True)(cls)
    init, setattr_ = cls.__init__, cls.__setattr__

    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        try:
            init(self, *args, **kwargs)
        except ValidationError as e:
            raise config_error(e, cls) from None

    def __setattr__(self, name, value):
        try:
            setattr_(self, name, value)
        except ValidationError as e:
            raise config_error(e, cls) from None

    cls.__init__, cls.__setattr__ = __init__, __setattr__
    if "validate" not in cls.__dict__:
        cls.validate = _revalidate
    return cls


def _revalidate(self) -> None:
    """Check the config again (e.g. after its `hyper` dict was changed in place)."""
    type(self)(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


def fields_of(cls: type) -> dict[str, FieldInfo]:
    """The pydantic fields of a stage config, in declaration order."""
    return dict(cls.__pydantic_fields__)


def key_of(cls: type, name: str) -> str:
    """The user-facing name of field `name` (its alias, else the name)."""
    info = fields_of(cls).get(name)
    return (info.alias if info is not None and info.alias else name)


def keys_of(cls: type, exclude: frozenset[str] | set[str] = frozenset()) -> list[str]:
    return [key_of(cls, n) for n in fields_of(cls) if n not in exclude]


def pick(cls: type, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of `settings` that are fields of `cls` (by name or alias)."""
    names = {n for n in fields_of(cls)} | {key_of(cls, n) for n in fields_of(cls)}
    return {k: v for k, v in settings.items() if k in names}


def as_settings(cfg: Any, exclude: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """A config as `{user-facing key: value}` (tuples as lists, paths as text), e.g. for a pipeline."""
    out = {}
    for f in dataclasses.fields(cfg):
        if f.name not in exclude:
            value = getattr(cfg, f.name)
            if isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, PurePath):
                value = str(value)
            out[key_of(type(cfg), f.name)] = value
    return out


def default_of(info: FieldInfo) -> Any:
    """A field's default (calling its factory), or `dataclasses.MISSING` when it is required."""
    if info.default_factory is not None:
        return info.default_factory()
    if info.is_required():
        return dataclasses.MISSING
    return info.default


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    """(`X`, True) for `X | None`, else (annotation, False)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) < len(typing.get_args(annotation)):
            return (args[0] if len(args) == 1 else typing.Union[tuple(args)]), True
    return annotation, False


def base_type(annotation: Any) -> Any:
    """The annotation without `Annotated[...]` and without `| None`."""
    annotation, _ = unwrap_optional(annotation)
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return annotation


def choices_of(annotation: Any) -> tuple | None:
    """The allowed values of a `Literal[...]` annotation (also inside `| None`), else None."""
    t = base_type(annotation)
    return typing.get_args(t) if typing.get_origin(t) is Literal else None


def config_error(err: ValidationError, cls: type | None = None) -> LobseqError:
    """The first error of a pydantic `ValidationError` as one `LobseqError` line."""
    e = err.errors(include_url=False)[0]
    inner = (e.get("ctx") or {}).get("error")
    if isinstance(inner, LobseqError):  # a check inside the config raised it: keep it as is
        return inner
    loc = [p for p in e.get("loc", ()) if p != "__root__"]
    key = str(loc[0]) if loc else None
    if cls is not None and key is not None:
        name = next((n for n in fields_of(cls) if key in (n, key_of(cls, n))), key)
        key = key_of(cls, name)
    problem, fix = _explain(e, cls, key, loc)
    return LobseqError(problem, field=key, fix=fix)


def _explain(e: dict, cls: type | None, key: str | None, loc: list) -> tuple[str, str | None]:
    kind, value = e["type"], e.get("input")
    shown = f"{type(value).__name__} {value!r}"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        valid = ", ".join(keys_of(cls)) if cls is not None else ""
        return "unknown setting", (f"valid settings: {valid}" if valid else None)
    if kind in ("missing", "missing_argument", "missing_keyword_only_argument"):
        if len(loc) > 1:  # a fixed-length list is one short
            return f"needs more values (item {loc[1]} is missing)", _length_fix(cls, key)
        return f"missing required setting '{key}'", f"set {key}"
    if kind == "too_short" and len(loc) == 1:
        need = (e.get("ctx") or {}).get("min_length", 1)
        return f"needs at least {need} item{'s' if need != 1 else ''}", None
    if kind in ("too_long", "too_short"):
        return e["msg"].lower(), _length_fix(cls, key)
    if kind == "literal_error":
        allowed = _choices(cls, key)
        return f"{value!r} is not allowed", f"use one of {allowed}" if allowed else None
    if kind in _BOUNDS:
        op, ctx_key = _BOUNDS[kind]
        bound = (e.get("ctx") or {}).get(ctx_key)
        return f"must be {op} {bound}, got {value!r}", f"use a value {op} {bound}"
    head = kind.split("_")[0]
    if head in _TYPE_WORDS and kind.endswith(("_type", "_parsing", "_from_float", "_fraction")):
        what, fix = _TYPE_WORDS[head]
        where = f" (item {loc[1]})" if len(loc) > 1 else ""
        return f"must be {what}{where}, got {shown}", fix
    return e["msg"], None


def _choices(cls: type | None, key: str | None) -> str:
    if cls is None or key is None:
        return ""
    for name, info in fields_of(cls).items():
        if key in (name, key_of(cls, name)):
            values = choices_of(info.annotation)
            return ", ".join(map(str, values)) if values else ""
    return ""


def _length_fix(cls: type | None, key: str | None) -> str | None:
    if cls is None or key is None:
        return None
    for name, info in fields_of(cls).items():
        if key in (name, key_of(cls, name)):
            t = base_type(info.annotation)
            args = typing.get_args(t)
            if typing.get_origin(t) is tuple and args and Ellipsis not in args:
                return f"give {len(args)} values"
    return None
