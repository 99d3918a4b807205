"""Named hyperparameter presets per builder (plain data: listing them never imports Keras).

name -> preset -> {"hyper": builder kwargs, "window": intended T, "doc": one line}
"""

PRESETS = {
    "rnn": {
        # Dixon (2017), "Sequence classification of the limit order book using
        # recurrent neural networks": 20 ReLU units, L2-penalized, windows of 10 steps.
        "dixon": {
            "hyper": {"units": 20, "activation": "relu", "dropout": 0.0, "l2": 1e-3},
            "window": 10,
            "doc": "Dixon (2017): 20 ReLU units, L2 1e-3 on kernel and recurrent weights, window 10",
        },
    },
}
