"""Model builders by name: many-to-one sequence classifiers over `(T, F)` windows.

    model = build("lstm", (T, F), n_classes=3, units=[64, 32])

Every builder returns an uncompiled `keras.Model` mapping `(batch, T, F)`
float32 windows to class probabilities `(batch, n_classes)` (layer
"probabilities"), or with `head="regression"` to the next return `(batch, 1)`
(layer "next_return"). Builders take no seed: the trainer seeds Keras.
"""

from __future__ import annotations

import inspect

from lobseq.quiet import quiet_tensorflow

quiet_tensorflow()

import keras  # noqa: E402

from lobseq.errors import LobseqError  # noqa: E402
from lobseq.models.cnn import build_cnn  # noqa: E402
from lobseq.models.deeplob import build_deeplob  # noqa: E402
from lobseq.models.recurrent import RNN_PRESETS, build_gru, build_lstm, build_rnn  # noqa: E402

MODELS = {
    "rnn": build_rnn,
    "lstm": build_lstm,
    "gru": build_gru,
    "cnn": build_cnn,
    "deeplob": build_deeplob,
}

# name -> preset -> {"hyper": builder kwargs, "window": intended T, "doc": one line}
PRESETS = {"rnn": RNN_PRESETS}

_NOT_HYPER = ("input_shape", "n_classes", "head")

__all__ = ["MODELS", "PRESETS", "build", "hyperparameters", "describe", "preset_window"]


def _builder(name: str):
    if name not in MODELS:
        raise LobseqError(f"unknown model {name!r}", field="model",
                          fix=f"use one of {', '.join(MODELS)}")
    return MODELS[name]


def _preset(name: str, preset: str) -> dict:
    known = PRESETS.get(name, {})
    if preset not in known:
        choices = ", ".join(known) if known else "none"
        raise LobseqError(f"unknown preset {preset!r} for model {name!r}", field="preset",
                          fix=f"presets for {name}: {choices}")
    return known[preset]


def hyperparameters(name: str, preset: str | None = None) -> dict:
    """Default hyperparameters of model `name` (or of one of its presets)."""
    params = inspect.signature(_builder(name)).parameters
    defaults = {k: p.default for k, p in params.items() if k not in _NOT_HYPER}
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
) -> keras.Model:
    """Build model `name` for windows of shape `input_shape = (T, F)`.

    `hyper` overrides the defaults (or the preset's); unknown names are an error.
    """
    builder = _builder(name)
    valid = hyperparameters(name)
    unknown = sorted(set(hyper) - set(valid))
    if unknown:
        raise LobseqError(f"unknown hyperparameter(s) {', '.join(unknown)} for model {name!r}",
                          field="hyper", fix=f"valid for {name}: {', '.join(valid)}")
    chosen = hyperparameters(name, preset) if preset is not None else {}
    chosen.update(hyper)
    return builder(input_shape, n_classes, head=head, **chosen)


def describe() -> list[tuple[str, str, dict]]:
    """`(name, one-line doc, defaults)` per model, for `lobseq models`."""
    rows = []
    for name, builder in MODELS.items():
        doc = (inspect.getdoc(builder) or "").partition("\n")[0]
        rows.append((name, doc, hyperparameters(name)))
    return rows
