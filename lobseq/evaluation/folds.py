"""Walk-forward folds: chronological train/test blocks with an embargo, and each fold's view."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from lobseq.data.splits import SPLIT_NAMES, min_embargo
from lobseq.errors import LobseqError
from lobseq.evaluation.backtest.engine import _day_runs
from lobseq.evaluation.config import WalkForwardConfig


def walk_forward_folds(periods, train: int, test: int, *, mode: str = "rolling",
                       embargo: int = 0, step: int | None = None
                       ) -> list[tuple[np.ndarray, np.ndarray]]:
    """Chronological (train_idx, test_idx) row-index pairs for walk-forward evaluation.

    `periods` is a row count n (each row one period) or one label per row
    (e.g. the day; rows chronological, each label one contiguous run).
    `train` and `test` count periods: fold k tests periods
    ``[train + k*step, train + k*step + test)`` (``step`` defaults to `test`)
    and trains on the `train` periods before it (``rolling``, Dixon's
    protocol) or on all periods before it (``expanding``). The last `embargo`
    rows before each test block are dropped from its training rows, so no
    training row lies within `embargo` rows of a test row (use
    ``embargo >= window + label reach - 1`` when labels look ahead). Only full
    test blocks are returned.
    """
    if mode not in ("rolling", "expanding"):
        raise LobseqError(f"mode must be 'rolling' or 'expanding', got {mode!r}", field="mode")
    train, test = int(train), int(test)
    step = test if step is None else int(step)
    if train < 1 or test < 1 or step < 1:
        raise LobseqError("train, test and step must be >= 1 periods", field="train")
    if embargo < 0:
        raise LobseqError(f"embargo must be >= 0, got {embargo!r}", field="embargo")
    if np.ndim(periods) == 0:
        n = int(periods)
        run = np.arange(n)
    else:
        labels = np.asarray(periods)
        n = labels.size
        run = _day_runs(labels, n)
        if n and run[-1] + 1 != pd.unique(labels).size:
            raise LobseqError("period labels must be in chronological runs (a label reappears)",
                              field="periods", fix="sort rows by time")
    n_periods = int(run[-1]) + 1 if n else 0
    first_row = np.searchsorted(run, np.arange(n_periods + 1))  # first row of each period
    folds = []
    k = 0
    while (t0 := train + k * step) + test <= n_periods:
        p0 = 0 if mode == "expanding" else t0 - train
        test_start = first_row[t0]
        train_end = min(first_row[t0], test_start - embargo)  # exclusive
        train_idx = np.arange(first_row[p0], max(train_end, first_row[p0]), dtype=np.int64)
        if train_idx.size == 0:
            raise LobseqError(f"embargo {embargo} leaves fold {k} with no training rows",
                              field="embargo")
        folds.append((train_idx, np.arange(test_start, first_row[t0 + test], dtype=np.int64)))
        k += 1
    return folds


DAY_NS = 86_400 * 10**9


@dataclass
class Fold:
    index: int
    train_rows: tuple[int, int]  # [start, stop) of the fold's training rows (incl. validation tail)
    val_rows: tuple[int, int]  # [start, stop) of the validation tail
    test_rows: tuple[int, int]  # [start, stop)
    ends: dict[str, np.ndarray] = field(repr=False)  # train/val/test window ends
    scaler_rows: np.ndarray = field(repr=False)

    def describe(self, ds) -> dict:
        ts = np.asarray(ds.timestamps)

        def when(r):
            return str(pd.Timestamp(int(ts[r])))

        return {"fold": self.index, "train_rows": list(self.train_rows),
                "val_rows": list(self.val_rows), "test_rows": list(self.test_rows),
                "train_start": when(self.train_rows[0]), "train_end": when(self.train_rows[1] - 1),
                "test_start": when(self.test_rows[0]), "test_end": when(self.test_rows[1] - 1),
                **{f"{k}_windows": int(len(v)) for k, v in self.ends.items()}}


def valid_ends(ds) -> np.ndarray:
    """Every valid window end of the dataset, sorted (union of its splits' ends)."""
    return np.unique(np.concatenate([np.asarray(ds.ends[s], dtype=np.int64) for s in SPLIT_NAMES]))


def _within(ends: np.ndarray, window: int, lo: int, hi: int) -> np.ndarray:
    """Ends whose whole window (rows e-T+1..e) lies in rows [lo, hi)."""
    return ends[(ends - window + 1 >= lo) & (ends < hi)]


def covered_rows(ends: np.ndarray, window: int, n: int) -> np.ndarray:
    """Rows read by at least one window ending at `ends` (sorted)."""
    mark = np.zeros(n + 1, dtype=np.int64)
    np.add.at(mark, ends - window + 1, 1)
    np.add.at(mark, ends + 1, -1)
    return np.flatnonzero(np.cumsum(mark)[:n] > 0)


def period_labels(ds, by: str):
    """(periods argument for walk_forward_folds, resolved `by`)."""
    n = len(ds.labels)
    day = np.asarray(ds.timestamps, dtype=np.int64) // DAY_NS
    if by == "auto":
        by = "days" if np.unique(day).size >= 3 else "periods"
    return (day if by == "days" else n), by


def _sizes(n_periods: int, cfg: WalkForwardConfig) -> tuple[int, int]:
    folds = cfg.folds or 3
    train, test = cfg.train_size, cfg.test_size
    if train is None and test is None:
        train = test = n_periods // (folds + 1)
    elif test is None:
        test = (n_periods - train) // folds
    elif train is None:
        train = n_periods - folds * test
    if not train or not test or train < 1 or test < 1 or train + test > n_periods:
        raise LobseqError(
            f"cannot make {folds} fold(s) from {n_periods} period(s) "
            f"(train {train}, test {test})", field="folds",
            fix="use fewer folds, smaller --train-size/--test-size, or --by periods")
    return int(train), int(test)


def make_folds(ds, cfg: WalkForwardConfig) -> tuple[list[Fold], str]:
    """The folds of `ds` under `cfg` (chronological, embargoed), and the resolved `by`."""
    from lobseq.evaluation.folds import walk_forward_folds

    cfg.validate()
    from lobseq.data.execution import execution_of

    need = min_embargo(ds.window, execution_of(ds.manifest, ds.path).label_reach)
    embargo = need if cfg.embargo is None else int(cfg.embargo)
    if embargo < need:
        raise LobseqError(f"embargo {embargo} is shorter than window + label reach - 1 = {need}",
                          field="embargo", fix="leave it unset or raise it")
    periods, by = period_labels(ds, cfg.by)
    n_periods = int(np.unique(periods).size) if by == "days" else int(periods)
    train, test = _sizes(n_periods, cfg)
    pairs = walk_forward_folds(periods, train, test, mode=cfg.mode, embargo=embargo)
    if cfg.folds is not None:
        pairs = pairs[: cfg.folds]
    if not pairs:
        raise LobseqError(f"no complete fold: {n_periods} {by}, train {train}, test {test}",
                          field="folds", fix="use smaller sizes or fewer folds")
    all_ends = valid_ends(ds)
    T, n = ds.window, len(ds.labels)
    stamps = np.asarray(ds.timestamps, dtype=np.int64)
    folds = []
    for k, (tr, te) in enumerate(pairs):
        a, b = int(tr[0]), int(tr[-1]) + 1
        ts, tend = int(te[0]), int(te[-1]) + 1
        # Row order is time order only within a segment: instrument-major rows (bars) would
        # put a later date of one instrument into the training rows of another's test block.
        if stamps[a:b].max() > stamps[ts:tend].min():
            raise LobseqError(
                f"fold {k} would train on rows dated after its test rows ({by} follow the "
                "dataset's row order, which is not time order across its instruments)",
                file=ds.path, field="by",
                fix="walk forward over a dataset of one instrument (ingest each symbol on its own)")
        n_val = max(1, int(round(cfg.val_fraction * (b - a))))
        val_start = b - n_val
        ends = {"train": _within(all_ends, T, a, val_start - embargo),
                "val": _within(all_ends, T, val_start, b),
                "test": _within(all_ends, T, ts, tend)}
        empty = [s for s, e in ends.items() if len(e) == 0]
        if empty:
            raise LobseqError(
                f"fold {k} has no {'/'.join(empty)} windows (training rows {a}..{b - 1}, "
                f"validation tail {n_val} rows, test rows {ts}..{tend - 1}, window {T}, "
                f"embargo {embargo})", field="train_size",
                fix="use larger --train-size/--test-size, fewer folds, or a smaller --val-fraction")
        folds.append(Fold(k, (a, b), (val_start, b), (ts, tend), ends,
                          covered_rows(ends["train"], T, n)))
    return folds, by


def fold_view(ds, fold: Fold):
    """The dataset seen by one fold: its window ends and a scaler fitted on its training rows."""
    from lobseq.data.scaler import StandardScaler

    scaler = StandardScaler().fit(ds.features, rows=fold.scaler_rows)
    return replace(ds, ends=dict(fold.ends), scaler=scaler)
