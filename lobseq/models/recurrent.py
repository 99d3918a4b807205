"""Recurrent many-to-one classifiers: simple RNN, LSTM and GRU.

Each reads a window `(T, F)` and predicts from the last hidden state only.
"""

from __future__ import annotations

import keras

from lobseq.models._common import (
    activation_name,
    check_inputs,
    fraction,
    non_negative,
    output_head,
    positive_ints,
)


def _stack(x, layer_class, kind: str, units, dropout: float, l2: float, **layer_kwargs):
    """Stacked recurrent layers; all but the last return sequences."""
    units = positive_ints("units", units)
    dropout = fraction("dropout", dropout)
    l2 = non_negative("l2", l2)
    regularizer = keras.regularizers.L2(l2) if l2 > 0 else None
    for i, n in enumerate(units, start=1):
        last = i == len(units)
        suffix = "" if len(units) == 1 else f"_{i}"
        x = layer_class(
            n,
            return_sequences=not last,
            kernel_regularizer=regularizer,
            recurrent_regularizer=regularizer,
            name=f"{kind}{suffix}",
            **layer_kwargs,
        )(x)
        if dropout > 0:
            x = keras.layers.Dropout(dropout, name=f"dropout{suffix}")(x)
    return x


def _recurrent_model(layer_class, kind: str, input_shape, n_classes: int, head: str, units,
                     dropout: float, l2: float, **layer_kwargs) -> keras.Model:
    """Window input → stacked `layer_class` layers → output head; the model is named `kind`."""
    check_inputs(input_shape, n_classes, head)
    window = keras.Input(shape=tuple(input_shape), name="window")
    x = _stack(window, layer_class, kind, units, dropout, l2, **layer_kwargs)
    return keras.Model(window, output_head(x, n_classes, head), name=kind)


def build_rnn(input_shape: tuple[int, int], n_classes: int, head: str = "classification",
              units: int | list[int] = 32, activation: str = "tanh", dropout: float = 0.0,
              l2: float = 0.0) -> keras.Model:
    """Simple (Elman) RNN over the window; preset 'dixon' = Dixon (2017)."""
    check_inputs(input_shape, n_classes, head)  # before the activation, as the other builders
    return _recurrent_model(keras.layers.SimpleRNN, "rnn", input_shape, n_classes, head, units,
                            dropout, l2, activation=activation_name("activation", activation))


def build_lstm(input_shape: tuple[int, int], n_classes: int, head: str = "classification",
               units: int | list[int] = 64, dropout: float = 0.2, l2: float = 0.0) -> keras.Model:
    """Stacked LSTM (units: int or one per layer), dropout after each layer."""
    return _recurrent_model(keras.layers.LSTM, "lstm", input_shape, n_classes, head, units, dropout, l2)


def build_gru(input_shape: tuple[int, int], n_classes: int, head: str = "classification",
              units: int | list[int] = 64, dropout: float = 0.2, l2: float = 0.0) -> keras.Model:
    """Stacked GRU (units: int or one per layer), dropout after each layer."""
    return _recurrent_model(keras.layers.GRU, "gru", input_shape, n_classes, head, units, dropout, l2)
