"""Z-score scaler fitted on training rows only, serialized as plain JSON."""

from __future__ import annotations

import numpy as np

from lobseq.errors import LobseqError


class StandardScaler:
    """sklearn-shaped: `fit` learns `mean_` and `scale_`; `transform` applies them.

    Statistics are accumulated in float64 in chunks, so fitting on a
    memory-mapped (N, F) matrix never loads it whole. A constant feature gets
    scale 1 (it becomes 0, not inf).
    """

    def __init__(self, chunk_rows: int = 262_144) -> None:
        self.chunk_rows = chunk_rows

    def fit(self, X: np.ndarray, rows: np.ndarray | None = None) -> StandardScaler:
        n_features = X.shape[1]
        total = np.zeros(n_features)
        total_sq = np.zeros(n_features)
        count = 0
        sel = np.arange(len(X)) if rows is None else np.asarray(rows)
        for start in range(0, len(sel), self.chunk_rows):
            block = np.asarray(X[sel[start : start + self.chunk_rows]], dtype=np.float64)
            total += block.sum(axis=0)
            count += len(block)
            del block
        if count == 0:
            raise LobseqError("no training rows to fit the scaler on", fix="enlarge the training part")
        mean = total / count
        for start in range(0, len(sel), self.chunk_rows):
            block = np.asarray(X[sel[start : start + self.chunk_rows]], dtype=np.float64)
            block -= mean  # in place: ((block - mean) ** 2) without two more temporaries
            np.square(block, out=block)
            total_sq += block.sum(axis=0)
            del block
        std = np.sqrt(total_sq / count)
        if not (np.all(np.isfinite(mean)) and np.all(np.isfinite(std))):
            raise LobseqError("training rows hold NaN or inf", fix="drop non-finite rows first")
        self.mean_ = mean
        self.scale_ = np.where(std > 1e-12, std, 1.0)
        self.n_samples_seen_ = count
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
        return s
