"""DeepLOB: Zhang, Zohren & Roberts (2019), "DeepLOB: Deep convolutional
neural networks for limit order books", IEEE Trans. Signal Processing.

The window `(T, 40)` of the raw 10-level book is read as a one-channel image
`(T, 40, 1)` whose columns are, per level, ask price, ask size, bid price,
bid size. Convolutions first pair price with size (1x2, stride 2), then ask
with bid (1x2, stride 2), then merge the 10 levels (1x10); an inception module
mixes time scales and an LSTM summarizes the sequence.
"""

from __future__ import annotations

import keras

from lobseq.errors import LobseqError
from lobseq.models._common import check_inputs, output_head, positive_int

BOOK_COLUMNS = 40  # 10 levels x (ask price, ask size, bid price, bid size)


def _conv(x, filters: int, kernel: tuple[int, int], name: str, strides=(1, 1), padding="same"):
    """Conv2D followed by LeakyReLU(0.01), as after every convolution in the paper."""
    x = keras.layers.Conv2D(filters, kernel, strides=strides, padding=padding, name=name)(x)
    return keras.layers.LeakyReLU(negative_slope=0.01, name=f"{name}_leaky")(x)


def _book_block(x, filters: int, name: str, kernel: tuple[int, int], strides=(1, 1)):
    """One convolution across the book (valid padding) then two (4x1) over time."""
    x = _conv(x, filters, kernel, f"{name}_book", strides=strides, padding="valid")
    x = _conv(x, filters, (4, 1), f"{name}_time_a")
    return _conv(x, filters, (4, 1), f"{name}_time_b")


def build_deeplob(
    input_shape: tuple[int, int],
    n_classes: int,
    head: str = "classification",
    filters: int = 32,
    inception_filters: int = 64,
    lstm_units: int = 64,
) -> keras.Model:
    """DeepLOB (Zhang et al. 2019): conv blocks over the 10-level book, inception, LSTM."""
    window_len, n_features = check_inputs(input_shape, n_classes, head)
    if n_features != BOOK_COLUMNS:
        raise LobseqError(
            f"deeplob needs the {BOOK_COLUMNS} columns of a 10-level book (per level: ask price, "
            f"ask size, bid price, bid size), got {n_features} features",
            field="features",
            fix="ingest 10-level files with only DeepLOB's columns, e.g. `lobseq ingest RAW --format "
                "lobster --features levels_rel --out data/processed/NAME` (a pipeline's ingest: "
                "features: [{name: levels_rel, levels: 10}])",
        )
    filters = positive_int("filters", filters)
    inception_filters = positive_int("inception_filters", inception_filters)
    lstm_units = positive_int("lstm_units", lstm_units)

    window = keras.Input(shape=(window_len, n_features), name="window")
    x = keras.layers.Reshape((window_len, n_features, 1), name="book_image")(window)
    x = _book_block(x, filters, "block1", (1, 2), strides=(1, 2))  # (T, 20): price with size
    x = _book_block(x, filters, "block2", (1, 2), strides=(1, 2))  # (T, 10): ask with bid
    x = _book_block(x, filters, "block3", (1, 10))                 # (T, 1): all levels

    n = inception_filters
    short = _conv(_conv(x, n, (1, 1), "inception_3x1_reduce"), n, (3, 1), "inception_3x1")
    medium = _conv(_conv(x, n, (1, 1), "inception_5x1_reduce"), n, (5, 1), "inception_5x1")
    pooled = keras.layers.MaxPooling2D((3, 1), strides=(1, 1), padding="same",
                                       name="inception_pool3x1")(x)
    pooled = _conv(pooled, n, (1, 1), "inception_pool_1x1")
    x = keras.layers.Concatenate(axis=-1, name="inception")([short, medium, pooled])
    x = keras.layers.Reshape((window_len, 3 * n), name="inception_sequence")(x)

    x = keras.layers.LSTM(lstm_units, name="lstm")(x)
    return keras.Model(window, output_head(x, n_classes, head), name="deeplob")
