"""Checks and output heads shared by every builder in `lobseq.models`."""

from __future__ import annotations

import keras

from lobseq.errors import LobseqError

HEADS = ("classification", "regression")


def check_inputs(input_shape, n_classes: int, head: str) -> tuple[int, int]:
    """Validate `(T, F)`, the class count and the head; return `(T, F)` as ints."""
    try:
        window, n_features = (int(v) for v in input_shape)
        well_formed = len(tuple(input_shape)) == 2 and window > 0 and n_features > 0
    except (TypeError, ValueError):
        well_formed = False
    if not well_formed:
        raise LobseqError(
            f"input_shape must be (window, n_features) with two positive integers, got {input_shape!r}",
            field="input_shape",
        )
    if head not in HEADS:
        raise LobseqError(f"unknown head {head!r}", field="head", fix=f"use one of {', '.join(HEADS)}")
    if head == "classification" and (isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2):
        raise LobseqError(f"n_classes must be an integer >= 2, got {n_classes!r}", field="n_classes")
    return window, n_features


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise LobseqError(f"{name} must be a positive integer, got {value!r}", field=name)
    return value


def positive_ints(name: str, value) -> list[int]:
    """An int or a non-empty list of ints (one per stacked layer)."""
    values = [value] if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(values, (list, tuple)) or not values:
        raise LobseqError(
            f"{name} must be a positive integer or a list of them, got {value!r}", field=name
        )
    return [positive_int(name, v) for v in values]


def fraction(name: str, value) -> float:
    """A dropout rate in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise LobseqError(f"{name} must be a number in [0, 1), got {value!r}", field=name)
    return float(value)


def non_negative(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0.0:
        raise LobseqError(f"{name} must be a number >= 0, got {value!r}", field=name)
    return float(value)


def activation_name(name: str, value) -> str:
    if not isinstance(value, str):
        raise LobseqError(f"{name} must be the name of a Keras activation, got {value!r}", field=name)
    try:
        keras.activations.get(value)
    except (ValueError, TypeError) as exc:
        raise LobseqError(
            f"unknown activation {value!r}", field=name, fix="use e.g. 'tanh', 'relu' or 'sigmoid'"
        ) from exc
    return value


def output_head(x, n_classes: int, head: str):
    """Softmax class probabilities, or one linear output for the next return."""
    if head == "regression":
        return keras.layers.Dense(1, activation="linear", name="next_return")(x)
    return keras.layers.Dense(n_classes, activation="softmax", name="probabilities")(x)
