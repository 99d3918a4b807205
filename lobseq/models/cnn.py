"""1-D convolutional many-to-one classifier over the time axis."""

from __future__ import annotations

import keras

from lobseq.models._common import check_inputs, fraction, output_head, positive_int, positive_ints


def build_cnn(
    input_shape: tuple[int, int],
    n_classes: int,
    head: str = "classification",
    filters: int | list[int] = (32, 64),
    kernel_size: int = 5,
    pool_size: int = 2,
    dense_units: int = 64,
    dropout: float = 0.3,
) -> keras.Model:
    """Conv1D + max-pool blocks over time (filters: one per block), then a dense head."""
    check_inputs(input_shape, n_classes, head)
    filters = positive_ints("filters", filters)
    kernel_size = positive_int("kernel_size", kernel_size)
    pool_size = positive_int("pool_size", pool_size)
    dense_units = positive_int("dense_units", dense_units)
    dropout = fraction("dropout", dropout)

    window = keras.Input(shape=tuple(input_shape), name="window")
    x = window
    for i, n in enumerate(filters, start=1):
        x = keras.layers.Conv1D(n, kernel_size, padding="same", activation="relu",
                                name=f"time_conv{i}")(x)
        # 'same' pooling keeps at least one step, so short windows still build.
        x = keras.layers.MaxPooling1D(pool_size, padding="same", name=f"time_pool{i}")(x)
    x = keras.layers.Flatten(name="flatten")(x)
    x = keras.layers.Dense(dense_units, activation="relu", name="dense")(x)
    if dropout > 0:
        x = keras.layers.Dropout(dropout, name="dropout")(x)
    return keras.Model(window, output_head(x, n_classes, head), name="cnn")
