"""The execution contract: when a decision is made, at which price a position is entered and
exited, and how long it is held. Labels and the backtest both follow it.

Bars (daily OHLCV):

* ``next_open`` (default): decide after bar t closes, enter at bar t+1's open, exit h bars
  later at bar t+1+h's open. Prices are split/dividend-adjusted consistently: the open is
  scaled by ``adj_close / close`` of its own bar.
* ``close``: decide at bar t's close and enter at that close (an idealized market-on-close
  fill), exit at close t+h (``adj_close``).

Order books: ``next`` (the only one): decide at event t, enter at event t+1, exit h events
later at event t+1+h, at the mid (or at the touch, paying the half-spread).

The point label at t is the sign beyond ±threshold of exactly the return that trade earns,
``price[t+lag+h] / price[t+lag] - 1`` with ``lag`` 1 (``next_open``, ``next``) or 0
(``close``), so it reads rows up to t+lag+h (its *reach*). Smoothed (FI-2010/DeepLOB) and
FI-2010's provided labels are research targets: the backtest still trades the contract's
return, which is then not what the label describes.

Ingest records `Execution.record()` in the manifest under ``"execution"``; the backtest and
evaluation read it back with `execution_of`, which refuses a dataset made under another
convention.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from lobseq.errors import LobseqError

CONVENTION = "lobseq.execution/1"
ENTRIES = {"bars": ("next_open", "close"), "book": ("next",)}
_PRICE = {"next_open": "open", "close": "close", "next": "mid"}


def kind_of_format(fmt: str) -> str:
    """``bars`` for the bars format, ``book`` for LOBSTER and FI-2010."""
    return "bars" if str(fmt).lower() == "bars" else "book"


@dataclass(frozen=True)
class Execution:
    kind: str  # bars | book
    entry: str  # bars: next_open | close; book: next
    horizon: int  # rows held
    label: str = "point"  # point | smoothed | provided

    def __post_init__(self) -> None:
        if self.kind not in ENTRIES or self.entry not in ENTRIES[self.kind]:
            allowed = ", ".join(ENTRIES.get(self.kind, ()))
            raise LobseqError(f"entry {self.entry!r} does not exist for {self.kind}", field="entry",
                              fix=f"use one of: {allowed}")

    @property
    def entry_lag(self) -> int:
        """Rows from the decision to the entry: 0 at the close of the decision bar, else 1."""
        return 0 if self.entry == "close" else 1

    @property
    def price(self) -> str:
        """The price trades fill at: ``open``/``close`` (adjusted) for bars, ``mid`` for books."""
        return _PRICE[self.entry]

    @property
    def label_is_traded_return(self) -> bool:
        return self.label == "point"

    @property
    def label_reach(self) -> int:
        """The furthest row ahead of t the label at t reads."""
        from lobseq.data.labels import label_reach

        return label_reach(self.horizon, "point" if self.label == "point" else "smoothed",
                           self.entry_lag)

    def prices(self, frame) -> np.ndarray:
        """(n,) float64 execution price per row of a canonical frame (NaN where undefined)."""
        from lobseq.data.features import mid_price

        if self.kind == "book":
            return mid_price(frame)
        close = frame["close"].to_numpy(np.float64)
        adj = frame["adj_close"].to_numpy(np.float64)
        if self.entry == "close":
            return adj.copy()
        with np.errstate(divide="ignore", invalid="ignore"):
            return frame["open"].to_numpy(np.float64) * (adj / close)

    def describe(self) -> str:
        """One line: decision, entry, exit, and what the label is."""
        h = self.horizon
        if self.kind == "book":
            trade = (f"decide at event t, enter at event t+1, exit at event t+{1 + h} "
                     "(mid, or the touch paying the half-spread)")
        elif self.entry == "next_open":
            trade = (f"decide after bar t closes, enter at bar t+1's open, exit at bar t+{1 + h}'s "
                     "open (adjusted: open x adj_close/close)")
        else:
            trade = f"decide and enter at bar t's close, exit at bar t+{h}'s close (adjusted)"
        if self.label_is_traded_return:
            return f"{trade}; the label is the sign of that trade's return"
        return (f"{trade}; the label is {self.label} (a research target), NOT the traded return")

    def record(self) -> dict[str, Any]:
        """The manifest's ``"execution"`` section."""
        return {"convention": CONVENTION, "kind": self.kind, "entry": self.entry,
                "entry_lag": self.entry_lag, "horizon": int(self.horizon), "price": self.price,
                "label": self.label, "label_is_traded_return": self.label_is_traded_return,
                "label_reach": self.label_reach, "describe": self.describe()}


def execution_for(fmt: str, entry: str | None, horizon: int, label: str = "point") -> Execution:
    """The contract for a source format; ``entry=None`` takes the kind's default (the first)."""
    kind = kind_of_format(fmt)
    return Execution(kind, entry or ENTRIES[kind][0], int(horizon), label)


def execution_of(manifest: dict, path: str | Path = "") -> Execution:
    """A dataset's contract from its manifest; refuses one made under another convention."""
    rec = manifest.get("execution") if isinstance(manifest, dict) else None
    found = rec.get("convention") if isinstance(rec, dict) else None
    if found != CONVENTION:
        cfg = manifest.get("config", {}) if isinstance(manifest, dict) else {}
        raise LobseqError(
            f"the dataset's labels were made under {found or 'an older, unrecorded'} execution "
            f"convention, not {CONVENTION} (label = the return of the trade the backtest makes)",
            file=path, field="execution",
            fix=f"re-ingest it: lobseq ingest SOURCES --format {cfg.get('format', '...')} "
                f"--out {path or 'DIR'} (same settings)")
    return Execution(rec["kind"], rec["entry"], int(rec["horizon"]), rec.get("label", "point"))


__all__ = ["CONVENTION", "ENTRIES", "Execution", "execution_for", "execution_of", "kind_of_format"]
