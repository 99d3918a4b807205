"""The model package: three plain files, and the spec that turns raw rows into model inputs.

    model.keras   the Keras model (loaded with safe_mode, compile=False)
    scaler.json   the training scaler (`StandardScaler.to_dict`)
    spec.json     the dataset's serving record (kind, levels, input columns, warm-up,
                  feature specs, row checks, window-end rule, instruments) plus
                  feature names, window T, horizon, classes, head, dataset hash

Nothing is pickled, so loading a model never runs code from its files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lobseq import __version__
from lobseq.data.labels import class_names
from lobseq.data.serving_record import OPTIONAL_COLUMNS
from lobseq.data.validate import ROW_CHECKS

MODEL_FILE = "model.keras"


SCALER_FILE = "scaler.json"


SPEC_FILE = "spec.json"


FORMAT_VERSION = 2  # 2: spec.json copies the dataset's serving record


RECORD_KEYS = ("kind", "format", "levels", "instruments", "input_columns", "optional_columns",
               "warmup_rows", "features", "row_checks", "window_end")


def example_frame(kind: str, levels: int = 10, rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A plausible canonical frame (book with LOBSTER message columns, or daily bars).

    Used as the logged input example (MLflow's signature and serving example);
    it is not market data.
    """
    rng = np.random.default_rng(seed)
    if kind == "bars":
        close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, rows)))
        open_ = close * np.exp(rng.normal(0, 0.005, rows))
        high = np.maximum(open_, close) * (1 + rng.uniform(0, 0.01, rows))
        low = np.minimum(open_, close) * (1 - rng.uniform(0, 0.01, rows))
        return pd.DataFrame({
            "timestamp": pd.bdate_range("2024-01-02", periods=rows).values.astype("datetime64[ns]"),
            "open": open_, "high": high, "low": low, "close": close, "adj_close": close,
            "volume": rng.integers(100_000, 1_000_000, rows).astype(np.float64),
        })
    tick = 0.01
    mid_ticks = 10_000 + np.cumsum(rng.integers(-1, 2, rows))
    half = rng.integers(1, 3, rows)
    data: dict[str, np.ndarray] = {
        "timestamp": (np.datetime64("2024-01-02T09:30:00", "ns")
                      + np.cumsum(rng.integers(1, 10**8, rows)).astype("timedelta64[ns]")),
    }
    data["time"] = 34_200 + (data["timestamp"] - data["timestamp"][0]).astype(np.int64) / 1e9
    data["event_type"] = rng.choice(np.array([1, 2, 3, 4], dtype=np.int8), rows)
    data["order_id"] = rng.integers(1, 10**8, rows).astype(np.int64)
    data["size"] = (100 * rng.integers(1, 5, rows)).astype(np.float64)
    data["direction"] = rng.choice(np.array([-1, 1], dtype=np.int8), rows)
    data["price"] = np.round((mid_ticks + data["direction"] * half) * tick, 2)
    for i in range(1, levels + 1):
        data[f"ask_price_{i}"] = np.round((mid_ticks + half + i - 1) * tick, 2)
        data[f"ask_size_{i}"] = (100 * rng.integers(1, 20, rows)).astype(np.float64)
        data[f"bid_price_{i}"] = np.round((mid_ticks - half - i + 1) * tick, 2)
        data[f"bid_size_{i}"] = (100 * rng.integers(1, 20, rows)).astype(np.float64)
    return pd.DataFrame(data)


def build_spec(dataset, head: str = "classification") -> dict:
    """Everything besides weights and scaler that turns raw rows into model inputs.

    Copied from the dataset's serving record (`Dataset.serving`, written by
    ingest), plus the window, horizon and classes; nothing is guessed here.
    """
    record = dataset.serving
    spec = {key: record[key] for key in RECORD_KEYS}
    spec.update({
        "format_version": FORMAT_VERSION,
        "lobseq_version": __version__,
        "feature_names": list(dataset.feature_names),
        "window": dataset.window,
        "horizon": dataset.horizon,
        "n_classes": dataset.n_classes,
        "class_names": list(class_names(dataset.n_classes)),
        "head": head,
        "min_rows": int(record["warmup_rows"]) + dataset.window,
        "dataset": dataset.name,
        "dataset_hash": dataset.hash,
    })
    return spec


def row_checks(spec: dict) -> list[str]:
    """The row checks of a spec; a format-1 spec (before the serving record) gets its kind's
    (for books only those FI-2010's normalized values also pass)."""
    if "row_checks" in spec:
        return list(spec["row_checks"])
    return list(ROW_CHECKS["bars"] if spec.get("kind") == "bars" else ("finite", "chronological"))


def optional_columns(spec: dict) -> list[str]:
    """Canonical columns a request may add to the model's input columns."""
    return [c for c in spec.get("optional_columns", OPTIONAL_COLUMNS)
            if c not in spec["input_columns"]]
