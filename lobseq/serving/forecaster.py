"""The one inference path: canonical rows or stored windows → probabilities, in batches.

`Forecaster` holds a model's three plain files (Keras model, training scaler,
spec.json). Every caller goes through it:

    rows  →  check_frame, check_rows (`lobseq.data.validate`, the rules ingest applied)
          →  features (the stored specs, `compute_features`)
          →  usable rows and window ends (`lobseq.data.windows`, ingest's rule)
          →  scaled windows (`gather_windows`)  →  forward pass  →  probabilities

`predict` (the MLflow pyfunc's output frame), `proba_rows` (batch predict and
the HTTP service) and `proba_windows` (evaluation, on a dataset's raw
features) share everything after the step they start at.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from lobseq.data import validate
from lobseq.data.scaler import StandardScaler
from lobseq.data.windows import complete_windows, gather_windows, usable_rows
from lobseq.errors import LobseqError
from lobseq.serving.spec import MODEL_FILE, SCALER_FILE, SPEC_FILE, optional_columns, row_checks

CHECK_ROWS = 65_536  # rows per block of row checks (bounds the float64 temporary)


def _request_rows(offset: int) -> validate.Rows:
    """Rows handed to the forecaster: errors name row `offset + i` (0-based)."""
    return validate.Rows(row_of=lambda i: offset + i,
                         fix_data="correct the row or leave it out",
                         fix_order="send the rows oldest first")


class Forecaster:
    """Fast in-process predictor over the packaged files (no `model.predict`).

    Rows are a canonical frame of one instrument's most recent rows (oldest
    first, at least `min_rows`): every complete window is scored, or only the
    last (`all_windows=False`, which reads just the last `min_rows` rows).
    Thread-safe: features are pure functions, the forward pass a `tf.function`.
    """

    chunk = 4096  # windows per forward call (bounds memory in batch prediction)

    def __init__(self, model, scaler: StandardScaler, spec: dict) -> None:
        self.model = model
        self.scaler = scaler
        self.spec = spec
        self.window = int(spec["window"])
        self.min_rows = int(spec["min_rows"])
        self.horizon = int(spec["horizon"])
        self.n_features = len(spec["feature_names"])
        self.class_names = list(spec["class_names"])
        self.input_columns = list(spec["input_columns"])
        self.optional_columns = optional_columns(spec)
        self.row_checks = row_checks(spec)
        # frame.columns.equals(...) is ~10x cheaper than comparing lists (a served request)
        self._index = {len(c): pd.Index(c) for c in (self.input_columns,
                                                     [*self.input_columns, "halted"])}
        self._mean = np.asarray(scaler.mean_, dtype=np.float32)
        self._scale = np.asarray(scaler.scale_, dtype=np.float32)
        self._forward = self._forward_one = None
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

    def _compile(self) -> None:
        import tensorflow as tf

        model = self.model
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

    def warm_up(self) -> None:
        """Trace both forward passes and compile the one-window one (the first request's cost).

        The XLA pass is kept only if it compiles and agrees with the graph
        pass on a random window; otherwise one window goes through the graph.
        """
        if self._one_checked:
            return
        import tensorflow as tf

        if self._forward is None:
            self._compile()
        x = np.random.default_rng(0).normal(size=(1, self.window, self.n_features)).astype(np.float32)
        reference = self._forward(x).numpy()
        try:
            fast = self._forward_one(x).numpy()
            if fast.shape != reference.shape or not np.allclose(fast, reference, rtol=1e-4, atol=1e-5):
                raise ValueError("XLA forward pass disagrees with the graph")
        except (ValueError, tf.errors.OpError):  # no XLA for some op here: the graph is fine
            self._forward_one = None
        self._one_checked = True

    # -- rows

    def check_frame(self, frame) -> pd.DataFrame:
        """A DataFrame with the model's input columns and at least `min_rows` rows."""
        if not isinstance(frame, pd.DataFrame):
            raise LobseqError(f"input must be a pandas DataFrame, got {type(frame).__name__}",
                              field="input")
        missing = [c for c in self.input_columns if c not in frame.columns]
        if missing:
            shown = ", ".join(missing[:8]) + (f" and {len(missing) - 8} more" if len(missing) > 8 else "")
            raise LobseqError(f"input lacks column(s) {shown}", field="columns",
                              fix=f"pass the canonical {self.spec['kind']} columns: "
                                  + ", ".join(self.input_columns))
        if len(frame) < self.min_rows:
            raise LobseqError(
                f"too few rows: {len(frame)} given, at least {self.min_rows} needed "
                f"({self.spec['warmup_rows']} feature warm-up + window {self.window})",
                field="rows", fix="send more recent rows (oldest first)")
        return frame

    def check_rows(self, frame: pd.DataFrame, first_row: int = 0, timestamps=None) -> None:
        """The row checks ingest applied to the model's source files (`lobseq.data.validate`).

        Errors name row `first_row + i` for frame row i; `timestamps` (else the
        frame's `timestamp` column, if any) must be in order.
        """
        names = self.input_columns + (["halted"] if "halted" in frame.columns else [])
        part = frame if frame.columns.equals(self._index[len(names)]) else frame[names]
        for start in range(0, len(part), CHECK_ROWS):
            chunk = part if len(part) <= CHECK_ROWS else part.iloc[start : start + CHECK_ROWS]
            validate.check_rows(chunk.to_numpy(dtype=np.float64), names, self.row_checks,
                                _request_rows(first_row + start))
        if timestamps is None and "timestamp" in frame.columns:
            timestamps = frame["timestamp"]
        validate.check_order(self.row_checks, timestamps, _request_rows(first_row))

    def features(self, frame: pd.DataFrame, first_row: int = 0,
                 timestamps=None) -> tuple[np.ndarray, np.ndarray]:
        """Checked rows → raw (unscaled) float32 features (n, F) and the per-row usable mask."""
        from lobseq.data.features import FeatureNamesDiffer, compute_features

        frame = self.check_frame(frame)
        self.check_rows(frame, first_row, timestamps)
        cols = self.input_columns
        canon = frame if frame.columns.equals(self._index[len(cols)]) else frame[cols]
        if not isinstance(canon.index, pd.RangeIndex) or canon.index.start != 0:
            canon = canon.reset_index(drop=True)
        try:  # the stored names: no probe run to learn them
            x, _ = compute_features(canon, self.spec["features"], self.spec["kind"],
                                    names=self.spec["feature_names"])
        except FeatureNamesDiffer:
            raise LobseqError("the input's features differ from the model's (other book levels?)",
                              field="columns", fix=f"pass levels 1..{self.spec['levels']} only") from None
        halted = frame["halted"].to_numpy(bool) if "halted" in frame.columns else None
        return x, usable_rows(x, halted)  # ingest's "usable": finite features, not halted

    def window_ends(self, usable: np.ndarray, all_windows: bool = False) -> np.ndarray:
        """Rows t whose rows t-T+1..t are all usable (ingest's rule): all of them, or the last."""
        complete = complete_windows(usable, self.window)
        if not all_windows:
            if not complete[-1]:
                raise LobseqError(
                    f"the last {self.window} rows are not all usable (feature warm-up, a one-sided "
                    f"book or a halt); at least {self.min_rows} clean rows are needed",
                    field="rows", fix="send more recent rows (oldest first)")
            return np.array([len(usable) - 1], dtype=np.int64)
        ends = np.flatnonzero(complete)
        if len(ends) == 0:
            raise LobseqError(f"no complete window of {self.window} usable rows in the input",
                              field="rows", fix=f"send at least {self.min_rows} rows")
        return ends

    def _features_for(self, frame: pd.DataFrame, all_windows: bool, first_row: int, timestamps):
        """(features, usable, skip): the last window needs only the last `min_rows` rows."""
        skip = max(0, len(frame) - self.min_rows) if not all_windows else 0
        if skip:
            frame = frame.iloc[skip:]
            timestamps = None if timestamps is None else timestamps[skip:]
        x, usable = self.features(frame, first_row + skip, timestamps)
        return x, usable, skip

    def windows(self, frame: pd.DataFrame, all_windows: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Scaled float32 windows (n, T, F), exactly as training gathered them, and their end rows."""
        x, usable, skip = self._features_for(frame, all_windows, 0, None)
        ends = self.window_ends(usable, all_windows)
        return gather_windows(x, ends, self.window, self._mean, self._scale), ends + skip

    # -- model

    def forward(self, windows: np.ndarray) -> np.ndarray:
        """Model outputs for float32 windows (n, T, F)."""
        windows = np.ascontiguousarray(windows, dtype=np.float32)
        if not self._one_checked:
            self.warm_up()
        if len(windows) == 1 and self._forward_one is not None:
            return self._forward_one(windows).numpy()
        return self._forward(windows).numpy()

    def proba_windows(self, features: np.ndarray, ends: np.ndarray,
                      batch_size: int | None = None) -> np.ndarray:
        """float64 (len(ends), K) outputs for windows of raw `features` (N, F) ending at `ends`,
        scaled with the model's own scaler, `batch_size` windows per forward call."""
        step = batch_size or self.chunk
        ends = np.asarray(ends, dtype=np.int64)
        parts = [self.forward(gather_windows(features, ends[i:i + step], self.window, self._mean,
                                             self._scale))
                 for i in range(0, len(ends), step)]
        width = 1 if self.spec.get("head") == "regression" else len(self.class_names)
        return (np.concatenate(parts).astype(np.float64) if parts
                else np.zeros((0, width), dtype=np.float64))

    def proba_rows(self, frame: pd.DataFrame, all_windows: bool = True, *, first_row: int = 0,
                   timestamps=None) -> tuple[np.ndarray, np.ndarray]:
        """(outputs (m, K) float64, frame row of each (m,)): every complete window, or the last.

        `first_row` and `timestamps` as in `check_rows` (the service's request rows).
        """
        x, usable, skip = self._features_for(frame, all_windows, first_row, timestamps)
        ends = self.window_ends(usable, all_windows)
        return self.proba_windows(x, ends), ends + skip

    def predict(self, frame: pd.DataFrame, all_windows: bool = False) -> pd.DataFrame:
        """One row per window: `p_<class>`, `direction`, `horizon` (+ `timestamp` of the window end)."""
        out, ends = self.proba_rows(frame, all_windows)
        result = pd.DataFrame(index=pd.RangeIndex(len(ends)))
        if "timestamp" in frame.columns:
            result["timestamp"] = frame["timestamp"].to_numpy()[ends]
        if self.spec["head"] == "regression":
            ret = out.reshape(-1)
            result["predicted_return"] = ret
            result["direction"] = np.where(ret > 0, "up", "down")
        else:
            for k, name in enumerate(self.class_names):
                result[f"p_{name}"] = out[:, k]
            result["direction"] = np.asarray(self.class_names, dtype=object)[out.argmax(axis=1)]
        result["horizon"] = np.int64(self.horizon)
        return result
