"""Z-score scaler fitted on training rows only, serialized as plain JSON."""

from __future__ import annotations

import numpy as np
from sklearn.preprocessing import StandardScaler as SklearnStandardScaler

from lobseq.errors import LobseqError

# A feature this flat is treated as constant (scale 1, so it becomes 0, not inf); sklearn's own
# rule only catches features flat to machine precision.
FLAT_STD = 1e-12


class StandardScaler(SklearnStandardScaler):
    """scikit-learn's `StandardScaler`, fitted chunk by chunk on chosen rows, saved as JSON.

    `fit(X, rows)` reads `X[rows]` in float64 chunks of `chunk_rows` and feeds
    each to `partial_fit`, so a memory-mapped (N, F) matrix is never loaded
    whole. Fitted: `mean_`, `scale_` (a constant feature gets 1), `var_`,
    `n_samples_seen_`. `transform` works in float32 like the window gatherer
    (`lobseq.data.windows.gather_windows`) and the service, so all scale alike.
    A chunk costs about 2.5 x its float64 size at peak (sklearn's update makes
    one temporary of it); 65,536 rows keep ingest's peak below the two-pass fit's.
    """

    def __init__(self, chunk_rows: int = 65_536) -> None:
        super().__init__()
        self.chunk_rows = chunk_rows

    def fit(self, X: np.ndarray, rows: np.ndarray | None = None) -> StandardScaler:
        sel = np.arange(len(X)) if rows is None else np.asarray(rows)
        if len(sel) == 0:
            raise LobseqError("no training rows to fit the scaler on", fix="enlarge the training part")
        try:
            for start in range(0, len(sel), self.chunk_rows):
                block = np.asarray(X[sel[start : start + self.chunk_rows]], dtype=np.float64)
                # sklearn's fit starts afresh; partial_fit adds to it.
                (super().fit if start == 0 else self.partial_fit)(block)
        except ValueError as exc:  # sklearn refuses inf (NaN it skips, which the count shows)
            raise LobseqError("training rows hold NaN or inf", fix="drop non-finite rows first") from exc
        if np.any(self.n_samples_seen_ != len(sel)):
            raise LobseqError("training rows hold NaN or inf", fix="drop non-finite rows first")
        self.scale_ = np.where(np.sqrt(self.var_) > FLAT_STD, self.scale_, 1.0)
        return self

    def transform(self, X: np.ndarray) -> np.ndarray:
        mean = self.mean_.astype(np.float32)
        scale = self.scale_.astype(np.float32)
        return ((np.asarray(X, dtype=np.float32) - mean) / scale).astype(np.float32, copy=False)

    def to_dict(self) -> dict:
        return {
            "mean_": [float(v) for v in self.mean_],
            "scale_": [float(v) for v in self.scale_],
            "n_samples_seen_": int(self.n_samples_seen_),
        }

    @classmethod
    def from_dict(cls, d: dict) -> StandardScaler:
        s = cls()
        s.mean_ = np.asarray(d["mean_"], dtype=np.float64)
        s.scale_ = np.asarray(d["scale_"], dtype=np.float64)
        s.n_samples_seen_ = int(d["n_samples_seen_"])
        s.n_features_in_ = len(s.mean_)
        return s
