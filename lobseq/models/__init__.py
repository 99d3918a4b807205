"""Model builders by name: many-to-one sequence classifiers over `(T, F)` windows.

    model = build("lstm", (T, F), n_classes=3, units=[64, 32])

Every builder returns an uncompiled `keras.Model` mapping `(batch, T, F)`
float32 windows to class probabilities `(batch, n_classes)` (layer
"probabilities"), or with `head="regression"` to the next return `(batch, 1)`
(layer "next_return"). Builders take no seed: the trainer seeds Keras.

The registry is declarative: names, hyperparameters and one-line docs are read
from the builders' source without importing them, so listing models (`lobseq
models`, config checks) never imports TensorFlow; `build` and `MODELS[name]`
do.
"""

from __future__ import annotations

import ast
import importlib
import inspect
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path

from lobseq.errors import LobseqError
from lobseq.models.presets import PRESETS

# name -> "module:builder" inside lobseq.models
_BUILDERS = {
    "rnn": "recurrent:build_rnn",
    "lstm": "recurrent:build_lstm",
    "gru": "recurrent:build_gru",
    "cnn": "cnn:build_cnn",
    "deeplob": "deeplob:build_deeplob",
}

_NOT_HYPER = ("input_shape", "n_classes", "head")

__all__ = ["MODELS", "MODEL_NAMES", "PRESETS", "build", "hyperparameters", "describe",
           "preset_window"]

MODEL_NAMES = tuple(_BUILDERS)


class _Builders(Mapping):
    """`MODELS[name]` imports the builder (and Keras) on first use; listing names is free."""

    def __getitem__(self, name: str):
        from lobseq.quiet import quiet_tensorflow

        module, func = _BUILDERS[name].split(":")
        quiet_tensorflow()
        return getattr(importlib.import_module(f"lobseq.models.{module}"), func)

    def __iter__(self) -> Iterator[str]:
        return iter(_BUILDERS)

    def __len__(self) -> int:
        return len(_BUILDERS)


MODELS = _Builders()


def _check_name(name: str) -> None:
    if name not in _BUILDERS:
        raise LobseqError(f"unknown model {name!r}", field="model",
                          fix=f"use one of {', '.join(_BUILDERS)}")


@cache
def _declared(name: str) -> tuple[str, tuple[tuple[str, object], ...]]:
    """(first docstring line, hyperparameter defaults) of a builder, read from its source."""
    module, func = _BUILDERS[name].split(":")
    tree = ast.parse(Path(__file__).with_name(f"{module}.py").read_text())
    fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == func)
    a = fn.args
    positional = [*a.posonlyargs, *a.args]
    pairs = [*zip(positional[len(positional) - len(a.defaults):], a.defaults, strict=True),
             *((k, d) for k, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)
               if d is not None)]
    try:
        defaults = tuple((arg.arg, ast.literal_eval(d)) for arg, d in pairs
                         if arg.arg not in _NOT_HYPER)
    except ValueError:  # a default that is not a literal: ask the imported builder
        params = inspect.signature(MODELS[name]).parameters
        defaults = tuple((k, p.default) for k, p in params.items() if k not in _NOT_HYPER)
    return (ast.get_docstring(fn) or "").partition("\n")[0], defaults


def _preset(name: str, preset: str) -> dict:
    known = PRESETS.get(name, {})
    if preset not in known:
        choices = ", ".join(known) if known else "none"
        raise LobseqError(f"unknown preset {preset!r} for model {name!r}", field="preset",
                          fix=f"presets for {name}: {choices}")
    return known[preset]


def hyperparameters(name: str, preset: str | None = None) -> dict:
    """Default hyperparameters of model `name` (or of one of its presets)."""
    _check_name(name)
    defaults = dict(_declared(name)[1])
    if preset is not None:
        defaults.update(_preset(name, preset)["hyper"])
    return {k: list(v) if isinstance(v, tuple) else v for k, v in defaults.items()}


def preset_window(name: str, preset: str) -> int | None:
    """The window length T the preset was designed for (e.g. 10 for rnn/dixon)."""
    return _preset(name, preset).get("window")


def build(
    name: str,
    input_shape: tuple[int, int],
    n_classes: int,
    head: str = "classification",
    preset: str | None = None,
    **hyper,
):
    """Build model `name` (a `keras.Model`) for windows of shape `input_shape = (T, F)`.

    `hyper` overrides the defaults (or the preset's); unknown names are an error.
    """
    valid = hyperparameters(name)
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise LobseqError(f"unknown hyperparameter(s) {', '.join(unknown)} for model {name!r}",
                          field="hyper", fix=f"valid for {name}: {', '.join(valid)}")
    chosen = hyperparameters(name, preset) if preset is not None else {}
    chosen.update(hyper)
    return MODELS[name](input_shape, n_classes, head=head, **chosen)


def describe() -> list[tuple[str, str, dict]]:
    """`(name, one-line doc, defaults)` per model, for `lobseq models`."""
    return [(name, _declared(name)[0], hyperparameters(name)) for name in _BUILDERS]
