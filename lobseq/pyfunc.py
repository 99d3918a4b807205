"""The deployable model: raw snapshots or bars in, direction probabilities out.

A trained model is packaged as three plain files, no pickles:

    model.keras   the Keras model (loaded with safe_mode, compile=False)
    scaler.json   the training scaler (`StandardScaler.to_dict`)
    spec.json     feature specs, kind, window T, horizon, classes, input columns,
                  warm-up rows, dataset hash

`Forecaster` is the one preprocessing path: canonical frame → features
(`compute_features` with the stored specs) → scaled windows (the same
`gather_windows` training used) → a compiled `tf.function` forward pass.
The MLflow pyfunc (`lobseq/pyfunc_model.py`, logged as models-from-code by
`log_pyfunc`) and the HTTP service both call it.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq import __version__
from lobseq.errors import LobseqError
from lobseq.labels import class_names
from lobseq.scaler import StandardScaler
from lobseq.windows import gather_windows

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

MODEL_FILE = "model.keras"
SCALER_FILE = "scaler.json"
SPEC_FILE = "spec.json"
PYFUNC_MODEL_CODE = Path(__file__).with_name("pyfunc_model.py")
OPTIONAL_COLUMNS = ("timestamp", "halted")  # used when present, never required
MAX_LEVELS = 100
_PROBE_ROWS = 400


# ------------------------------------------------------------ synthetic inputs


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
    from lobseq.features import compute_features

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
    from lobseq.features import default_features

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
    from lobseq.features import compute_features

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


# ------------------------------------------------------------------ predictor


class Forecaster:
    """Fast in-process predictor over the packaged files (no `model.predict`).

    `predict(frame)` takes a canonical frame of one instrument's most recent
    rows (oldest first, at least `min_rows`), and returns one row per window:
    the last complete window, or every one with `all_windows=True`.
    """

    def __init__(self, model, scaler: StandardScaler, spec: dict) -> None:
        import tensorflow as tf

        self.model = model
        self.scaler = scaler
        self.spec = spec
        self.window = int(spec["window"])
        self.n_features = len(spec["feature_names"])
        self.class_names = list(spec["class_names"])
        self._mean = np.asarray(scaler.mean_, dtype=np.float32)
        self._scale = np.asarray(scaler.scale_, dtype=np.float32)
        self._feature_names = list(spec["feature_names"])
        self._input_columns = list(spec["input_columns"])
        # One traced graph for any batch size: ~1 ms per call instead of predict's ~50 ms.
        self._forward = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([None, self.window, self.n_features], tf.float32)],
            reduce_retracing=True,
        )
        # One window (a served request): XLA fuses the recurrent loop, ~5x faster on CPU
        # than the graph above. Fixed shape, so it compiles once; `warm_up` does that.
        self._forward_one = tf.function(
            lambda x: model(x, training=False),
            input_signature=[tf.TensorSpec([1, self.window, self.n_features], tf.float32)],
            jit_compile=True,
        )
        self._one_checked = False

    @classmethod
    def load(cls, directory: str | Path | None = None, *, model_path=None, scaler_path=None,
             spec_path=None) -> Forecaster:
        """Load from a folder holding the three files, or from explicit paths."""
        from lobseq.quiet import quiet_tensorflow

        quiet_tensorflow()
        import keras

        if directory is not None:
            directory = Path(directory)
            model_path = model_path or directory / MODEL_FILE
            scaler_path = scaler_path or directory / SCALER_FILE
            spec_path = spec_path or directory / SPEC_FILE
        spec = json.loads(Path(spec_path).read_text())
        scaler = StandardScaler.from_dict(json.loads(Path(scaler_path).read_text()))
        model = keras.models.load_model(model_path, compile=False, safe_mode=True)
        forecaster = cls(model, scaler, spec)
        forecaster.warm_up()
        return forecaster

    def warm_up(self) -> None:
        """Trace both forward passes and compile the one-window one (the first request's cost).

        The XLA pass is kept only if it compiles and agrees with the graph
        pass on a random window; otherwise one window goes through the graph.
        """
        if self._one_checked:
            return
        import tensorflow as tf

        x = np.random.default_rng(0).normal(size=(1, self.window, self.n_features)).astype(np.float32)
        reference = self._forward(x).numpy()
        try:
            fast = self._forward_one(x).numpy()
            if fast.shape != reference.shape or not np.allclose(fast, reference, rtol=1e-4, atol=1e-5):
                raise ValueError("XLA forward pass disagrees with the graph")
        except (ValueError, tf.errors.OpError):  # no XLA for some op here: the graph is fine
            self._forward_one = None
        self._one_checked = True

    # -- preprocessing

    def check_frame(self, frame) -> pd.DataFrame:
        if not isinstance(frame, pd.DataFrame):
            raise LobseqError(f"input must be a pandas DataFrame, got {type(frame).__name__}",
                              field="input")
        missing = [c for c in self.spec["input_columns"] if c not in frame.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise LobseqError(f"input lacks column(s) {shown}", field="columns",
                              fix=f"pass the canonical {self.spec['kind']} columns: "
                                  + ", ".join(self.spec["input_columns"]))
        if len(frame) < self.spec["min_rows"]:
            raise LobseqError(
                f"too few rows: {len(frame)} given, at least {self.spec['min_rows']} needed "
                f"({self.spec['warmup_rows']} feature warm-up + window {self.window})",
                field="rows", fix="send more recent rows (oldest first)")
        return frame

    def features(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        """Raw (unscaled) float32 features (n, F) and the per-row usable mask."""
        from lobseq.features import FeatureNamesDiffer, compute_features

        frame = self.check_frame(frame)
        cols = self._input_columns
        canon = frame if list(frame.columns) == cols else frame[cols]
        if not isinstance(canon.index, pd.RangeIndex) or canon.index.start != 0:
            canon = canon.reset_index(drop=True)
        try:  # the stored names: no probe run to learn them
            x, _ = compute_features(canon, self.spec["features"], self.spec["kind"],
                                    names=self._feature_names)
        except FeatureNamesDiffer:
            raise LobseqError("the input's features differ from the model's (other book levels?)",
                              field="columns", fix=f"pass levels 1..{self.spec['levels']} only") from None
        usable = np.isfinite(x).all(axis=1)
        if "halted" in frame.columns:  # as in ingest: no window may include a halted book
            usable &= ~frame["halted"].to_numpy(bool)
        return x, usable

    def window_ends(self, usable: np.ndarray, all_windows: bool = False) -> np.ndarray:
        """Rows t whose rows t-T+1..t are all usable: all of them, or the last row only."""
        run = np.cumsum(usable)  # count of usable rows up to t
        prior = np.concatenate([np.zeros(self.window, dtype=run.dtype), run])[: len(run)]
        complete = (run - prior) == self.window
        if not all_windows:
            if not complete[-1]:
                raise LobseqError(
                    f"the last {self.window} rows are not all usable (feature warm-up, a one-sided "
                    f"book or a halt); at least {self.spec['min_rows']} clean rows are needed",
                    field="rows", fix="send more recent rows (oldest first)")
            return np.array([len(usable) - 1], dtype=np.int64)
        ends = np.flatnonzero(complete)
        if len(ends) == 0:
            raise LobseqError(f"no complete window of {self.window} usable rows in the input",
                              field="rows", fix=f"send at least {self.spec['min_rows']} rows")
        return ends

    def windows(self, frame: pd.DataFrame, all_windows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Scaled float32 windows (n, T, F), exactly as training gathered them, and their end rows."""
        skip = 0
        if not all_windows:  # the last window needs only the last min_rows rows (warm-up + T)
            skip = max(0, len(frame) - int(self.spec["min_rows"]))
        x, usable = self.features(frame.iloc[skip:] if skip else frame)
        ends = self.window_ends(usable, all_windows)
        return gather_windows(x, ends, self.window, self._mean, self._scale), ends + skip

    # -- model

    def forward(self, windows: np.ndarray) -> np.ndarray:
        """Model outputs for float32 windows (n, T, F)."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if len(windows) == 1 and self._forward_one is not None:
            if not self._one_checked:
                self.warm_up()
            if self._forward_one is not None:
                return self._forward_one(windows).numpy()
        return self._forward(windows).numpy()

    def predict(self, frame: pd.DataFrame, all_windows: bool = False) -> pd.DataFrame:
        """One row per window: `p_<class>`, `direction`, `horizon` (+ `timestamp` of the window end)."""
        x, ends = self.windows(frame, all_windows)
        out = self.forward(x)
        result = pd.DataFrame(index=pd.RangeIndex(len(ends)))
        if "timestamp" in frame.columns:
            result["timestamp"] = frame["timestamp"].to_numpy()[ends]
        if self.spec["head"] == "regression":
            ret = out.reshape(-1).astype(np.float64)
            result["predicted_return"] = ret
            result["direction"] = np.where(ret > 0, "up", "down")
        else:
            for k, name in enumerate(self.class_names):
                result[f"p_{name}"] = out[:, k].astype(np.float64)
            result["direction"] = np.asarray(self.class_names, dtype=object)[out.argmax(axis=1)]
        result["horizon"] = np.int64(self.spec["horizon"])
        return result


# ------------------------------------------------------------------ packaging


def save_artifacts(model, dataset, directory: str | Path, head: str = "classification") -> dict[str, str]:
    """Write model.keras, scaler.json and spec.json into `directory`; returns name → path."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    spec = build_spec(dataset, head)
    model.save(directory / MODEL_FILE)
    (directory / SCALER_FILE).write_text(json.dumps(dataset.scaler.to_dict()))
    (directory / SPEC_FILE).write_text(json.dumps(spec, indent=2, sort_keys=True))
    return {"keras_model": str(directory / MODEL_FILE), "scaler": str(directory / SCALER_FILE),
            "spec": str(directory / SPEC_FILE)}


def _signature(example: pd.DataFrame, output: pd.DataFrame, spec: dict):
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    def col_type(series: pd.Series) -> str:
        if pd.api.types.is_datetime64_any_dtype(series):
            return "datetime"
        if pd.api.types.is_integer_dtype(series):
            return "long"
        if pd.api.types.is_bool_dtype(series):
            return "boolean"
        if pd.api.types.is_numeric_dtype(series):
            return "double"
        return "string"

    required = spec["input_columns"]
    inputs = [ColSpec(col_type(example[c]), c) for c in required]
    # Other canonical columns are accepted (not dropped with a warning); `halted` is honoured.
    inputs += [ColSpec(col_type(example[c]), c, required=False)
               for c in example.columns if c not in required]
    outputs = [ColSpec(col_type(output[c]), c) for c in output.columns]
    params = ParamSchema([ParamSpec("all_windows", "boolean", False)])
    return ModelSignature(inputs=Schema(inputs), outputs=Schema(outputs), params=params)


def pip_requirements() -> list[str]:
    import keras
    import mlflow
    import tensorflow as tf

    return [f"mlflow=={mlflow.__version__}", f"tensorflow=={tf.__version__}",
            f"keras=={keras.__version__}", f"numpy=={np.__version__}", f"pandas=={pd.__version__}"]


def log_pyfunc(model, dataset, head: str = "classification", name: str = "model"):
    """Log `model` with its preprocessing as an MLflow pyfunc (models-from-code) in the active run.

    Returns MLflow's ModelInfo (its `model_uri` registers the model).
    """
    import mlflow

    with tempfile.TemporaryDirectory(prefix="lobseq-pyfunc-") as tmp:
        artifacts = save_artifacts(model, dataset, tmp, head)
        forecaster = Forecaster(model, dataset.scaler, json.loads(Path(artifacts["spec"]).read_text()))
        spec = forecaster.spec
        levels = spec["levels"] or 1
        example = example_frame(spec["kind"], levels, rows=spec["min_rows"] + 5, seed=1)
        if spec["kind"] == "book":
            example["halted"] = False
        # only what the model reads: `lobseq serve` rejects other columns (time, order_id, price)
        example = example[[c for c in example.columns
                           if c in spec["input_columns"] or c in OPTIONAL_COLUMNS]]
        output = forecaster.predict(example)
        with warnings.catch_warnings():  # int columns in the example are canonical, not a mistake
            warnings.filterwarnings("ignore", message=".*[Ii]nteger column", category=UserWarning)
            return mlflow.pyfunc.log_model(
                name=name,
                python_model=str(PYFUNC_MODEL_CODE),
                artifacts=artifacts,
                signature=_signature(example, output, spec),
                input_example=example,
                pip_requirements=pip_requirements(),
                metadata={"lobseq_version": __version__, "dataset_hash": dataset.hash,
                          "window": spec["window"], "horizon": spec["horizon"], "kind": spec["kind"]},
            )
