"""Datasets on disk: `data/processed/<name>/`, written atomically, loaded memory-mapped.

Layout (see docs/architecture.md): arrays as .npy, `scaler.json`,
`manifest.json`. The dataset's identity is the SHA-256 of `manifest.json`,
which holds the sources' SHA-256s, the full config and the counts, so the
same inputs and config give the same bytes and the same hash.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lobseq.data.scaler import StandardScaler
from lobseq.data.serving_record import serving_record
from lobseq.data.splits import SPLIT_NAMES
from lobseq.data.windows import WindowBatches, gather_windows, window_sequence
from lobseq.errors import LobseqError
from lobseq.io import atomic_dir, canonical_json, sha256_bytes

ARRAYS = ("features", "labels", "returns", "prices", "timestamps", "segment", "split")


def write_dataset(out: str | Path, arrays: dict[str, np.ndarray], ends: dict[str, np.ndarray],
                  scaler: StandardScaler, manifest: dict) -> str:
    """Write everything into a temp dir and swap it into `out`. Returns the manifest hash."""
    missing = [a for a in ARRAYS if a not in arrays]
    if missing:
        raise ValueError(f"write_dataset: missing arrays {missing}")
    manifest_bytes = canonical_json(manifest)
    with atomic_dir(out) as tmp:
        for name in ARRAYS:
            np.save(tmp / f"{name}.npy", np.ascontiguousarray(arrays[name]), allow_pickle=False)
        for name in SPLIT_NAMES:
            np.save(tmp / f"ends_{name}.npy", np.asarray(ends[name], dtype=np.int64))
        (tmp / "scaler.json").write_bytes(canonical_json(scaler.to_dict()))
        # Written last: a directory with a manifest is a complete one.
        (tmp / "manifest.json").write_bytes(manifest_bytes)
    return sha256_bytes(manifest_bytes)


@dataclass
class Dataset:
    path: Path
    manifest: dict
    hash: str
    features: np.ndarray
    labels: np.ndarray
    returns: np.ndarray
    prices: np.ndarray
    timestamps: np.ndarray
    segment: np.ndarray
    split: np.ndarray
    ends: dict[str, np.ndarray]
    scaler: StandardScaler

    @property
    def name(self) -> str:
        return self.manifest.get("name", self.path.name)

    @property
    def serving(self) -> dict:
        """The manifest's serving record (`lobseq.data.serving_record`); an old dataset
        without one is a `LobseqError` that says to re-ingest."""
        return serving_record(self.manifest, self.path)

    @property
    def config(self) -> dict:
        return self.manifest["config"]

    @property
    def feature_names(self) -> list[str]:
        return self.manifest["feature_names"]

    @property
    def window(self) -> int:
        return int(self.config["window"])

    @property
    def horizon(self) -> int:
        return int(self.config["horizon"])

    @property
    def n_classes(self) -> int:
        return int(self.config["n_classes"])

    @property
    def n_features(self) -> int:
        return int(self.features.shape[1])

    def _ends(self, split: str) -> np.ndarray:
        if split not in self.ends:
            raise LobseqError(f"unknown split '{split}'", field="split",
                              fix=f"use one of {', '.join(SPLIT_NAMES)}")
        return self.ends[split]

    def batches(self, split: str, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                target: str = "class") -> WindowBatches:
        if target not in ("class", "return"):
            raise LobseqError(f"unknown target '{target}'", field="target", fix="use class or return")
        targets = self.labels if target == "class" else self.returns
        return WindowBatches(self.features, targets, self._ends(split), self.window,
                             self.scaler.mean_, self.scaler.scale_, batch_size, shuffle, seed)

    def windows(self, split: str, batch_size: int = 64, shuffle: bool = False, seed: int = 0,
                target: str = "class"):
        """A keras.utils.PyDataset of float32 (batch, T, F) scaled windows and targets."""
        return window_sequence(self.batches(split, batch_size, shuffle, seed, target))

    def arrays(self, split: str, target: str = "class") -> tuple[np.ndarray, np.ndarray]:
        """All windows of a split, materialized: for small data and tests only."""
        ends = self._ends(split)
        x = gather_windows(self.features, ends, self.window, self.scaler.mean_, self.scaler.scale_)
        y = (self.labels if target == "class" else self.returns)[ends]
        return x, np.asarray(y)


def load_dataset(path: str | Path) -> Dataset:
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise LobseqError("not a lobseq dataset (no manifest.json)", file=path,
                          fix="run `lobseq ingest ... --out DIR` first, or check the path")
    raw = manifest_path.read_bytes()
    fix = "re-create it with `lobseq ingest ... --out DIR`"
    try:
        manifest = json.loads(raw)
    except ValueError as e:
        raise LobseqError(f"the dataset's manifest is not valid JSON ({e})", file=manifest_path,
                          fix=fix) from None
    if not isinstance(manifest, dict) or "config" not in manifest:
        raise LobseqError("not a lobseq dataset manifest (no 'config')", file=manifest_path, fix=fix)
    missing = [f for f in (*[f"{a}.npy" for a in ARRAYS], *[f"ends_{s}.npy" for s in SPLIT_NAMES],
                           "scaler.json") if not (path / f).is_file()]
    if missing:
        raise LobseqError(f"incomplete dataset: {', '.join(missing)} missing", file=path, fix=fix)
    try:
        arrays = {}
        for name in ARRAYS:
            arrays[name] = np.load(path / f"{name}.npy", mmap_mode="r" if name == "features" else None)
        ends = {name: np.load(path / f"ends_{name}.npy") for name in SPLIT_NAMES}
        scaler = StandardScaler.from_dict(json.loads((path / "scaler.json").read_text()))
    except (ValueError, KeyError, OSError) as e:
        raise LobseqError(f"damaged dataset file: {type(e).__name__}: {e}", file=path, fix=fix) from None
    return Dataset(path=path, manifest=manifest, hash=sha256_bytes(raw), ends=ends,
                   scaler=scaler, **arrays)
