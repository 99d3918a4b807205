"""The model package: three plain files, and the spec that turns raw rows into model inputs.

    model.keras   the Keras model (loaded with safe_mode, compile=False)
    scaler.json   the training scaler (`StandardScaler.to_dict`)
    spec.json     feature specs, kind, window T, horizon, classes, input columns,
                  warm-up rows, dataset hash

Nothing is pickled, so loading a model never runs code from its files.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from lobseq import __version__
from lobseq.data.labels import class_names
from lobseq.errors import LobseqError

MODEL_FILE = "model.keras"


SCALER_FILE = "scaler.json"


SPEC_FILE = "spec.json"


OPTIONAL_COLUMNS = ("timestamp", "halted")  # used when present, never required


MAX_LEVELS = 100


_PROBE_ROWS = 400


def example_frame(kind: str, levels: int = 10, rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A plausible canonical frame (book with LOBSTER message columns, or daily bars).

    Used as the logged input example and to probe which columns and how many
    warm-up rows the stored feature specs need; it is not market data.
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


def _names_for(frame: pd.DataFrame, specs, kind: str) -> list[str] | None:
    from lobseq.data.features import compute_features

    try:
        return compute_features(frame, specs, kind)[1]
    except LobseqError:
        return None


def resolve_specs(manifest: dict) -> tuple[list, int | None]:
    """The feature specs the dataset was built with, and its book level count (None for bars).

    Ingest stores `config.features = None` for "the default set for the
    file's levels"; the level count is found by matching the stored feature
    names on example frames, so a spec list that does not reproduce the
    dataset's feature names is an error here, not a silent mismatch later.
    """
    from lobseq.data.features import default_features

    kind = manifest.get("kind", "book")
    want = list(manifest["feature_names"])
    # Prefer resolved specs if ingest recorded them; else the config's (None = defaults).
    specs = manifest.get("feature_specs") or manifest.get("config", {}).get("features")
    if kind == "bars":
        specs = specs or default_features("bars", 1)
        if _names_for(example_frame("bars", rows=_PROBE_ROWS), specs, "bars") == want:
            return specs, None
    else:
        for messages in (False, True):  # ingest adds message features when the frame has messages
            for levels in range(1, MAX_LEVELS + 1):
                level_specs = specs or default_features("book", levels, messages=messages)
                frame = example_frame("book", levels, rows=_PROBE_ROWS)
                names = _names_for(frame, level_specs, "book")
                if names == want:
                    return level_specs, levels
                if names is not None and len(names) > len(want):  # more levels only add columns
                    break
            if specs is not None:
                break
    raise LobseqError("cannot reproduce the dataset's feature names from its feature specs on a "
                      "canonical frame", field="features",
                      fix="package only datasets whose features are computed from canonical "
                          "book or bar columns")


def build_spec(dataset, head: str = "classification") -> dict:
    """Everything besides weights and scaler that turns raw rows into model inputs."""
    from lobseq.data.features import compute_features

    manifest = dataset.manifest
    kind = manifest.get("kind", "book")
    specs, levels = resolve_specs(manifest)
    probe = example_frame(kind, levels or 1, rows=_PROBE_ROWS)
    reference = compute_features(probe, specs, kind)[1]
    required = []
    for col in probe.columns:
        if col in OPTIONAL_COLUMNS:
            continue
        if _names_for(probe.drop(columns=[col]), specs, kind) != reference:
            required.append(col)
    x, _ = compute_features(probe[required], specs, kind)
    finite = np.isfinite(x).all(axis=1)
    warmup = int(np.argmax(finite)) if finite.any() else len(probe)
    return {
        "format_version": 1,
        "lobseq_version": __version__,
        "kind": kind,
        "features": specs,
        "feature_names": list(dataset.feature_names),
        "levels": levels,
        "input_columns": required,
        "window": dataset.window,
        "horizon": dataset.horizon,
        "n_classes": dataset.n_classes,
        "class_names": list(class_names(dataset.n_classes)),
        "head": head,
        "warmup_rows": warmup,
        "min_rows": warmup + dataset.window,
        "dataset": dataset.name,
        "dataset_hash": dataset.hash,
    }
