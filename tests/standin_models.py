"""Forecasters for fast tests: the real `Forecaster` (row checks, features, window rule,
scaling) with a numpy forward pass in place of the Keras network, so no TensorFlow."""

from __future__ import annotations

import numpy as np

from lobseq.data.scaler import StandardScaler
from lobseq.data.validate import ROW_CHECKS
from lobseq.data.windows import WINDOW_END_RULE
from lobseq.serving.forecaster import Forecaster
from lobseq.serving.loader import LoadedModel


class NumpyForecaster(Forecaster):
    """`Forecaster` whose forward pass is `forward(windows) -> (n, K)` in numpy."""

    def __init__(self, spec: dict, forward) -> None:
        n = len(spec["feature_names"])
        scaler = StandardScaler().fit(np.array([[-1.0] * n, [1.0] * n]))  # mean 0, scale 1
        super().__init__(model=None, scaler=scaler, spec=spec)
        self._numpy_forward = forward
        self._one_checked = True  # nothing to compile

    def forward(self, windows: np.ndarray) -> np.ndarray:
        return self._numpy_forward(np.asarray(windows, dtype=np.float32))


def _spec(kind: str, fmt: str, features: list, names: list[str], input_columns: list[str],
          window: int, warmup: int, instruments: list[str], optional: list[str]) -> dict:
    return {"format_version": 2, "kind": kind, "format": fmt, "levels": 1 if kind == "book" else None,
            "instruments": instruments, "input_columns": input_columns,
            "optional_columns": optional, "warmup_rows": warmup, "features": features,
            "row_checks": list(ROW_CHECKS[fmt]), "window_end": WINDOW_END_RULE,
            "feature_names": names, "window": window, "horizon": 1, "n_classes": 2,
            "class_names": ["down", "up"], "head": "classification", "min_rows": warmup + window,
            "dataset": "standin", "dataset_hash": "0" * 64}


def up_if_last_positive(windows: np.ndarray) -> np.ndarray:
    """P(up) 0.8 when the last row's first feature is > 0, else 0.3."""
    up = np.where(windows[:, -1, 0] > 0, 0.8, 0.3)
    return np.column_stack([1 - up, up])


def bars_model(window: int = 3, instruments=("AAA",)) -> LoadedModel:
    """Bars, one feature: the 1-day log return of `adj_close` (warm-up 1)."""
    spec = _spec("bars", "bars", [{"name": "log_returns", "lags": [1]}], ["ret_1"], ["adj_close"],
                 window, 1, list(instruments), ["timestamp"])
    return LoadedModel(NumpyForecaster(spec, up_if_last_positive), uri="models:/stand-in/3",
                       name="stand-in", version="3", run_id="f" * 32)


def book_model(window: int = 3) -> LoadedModel:
    """A one-level LOBSTER book: depth imbalance at level 1 and the spread (no warm-up)."""
    spec = _spec("book", "lobster",
                 [{"name": "depth_imbalance", "levels": 1, "cumulative": True},
                  {"name": "spread", "unit": "bps", "tick_size": 0.01}],
                 ["depth_imbalance_1", "spread_bps"],
                 ["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"],
                 window, 0, ["AAA", "BBB"], ["timestamp", "halted"])
    return LoadedModel(NumpyForecaster(spec, up_if_last_positive), uri="runs:/" + "e" * 32 + "/model",
                       run_id="e" * 32)
