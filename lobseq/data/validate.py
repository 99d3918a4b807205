"""Row checks shared by the readers (ingest) and the serving path: one rule, one message.

Every check is vectorized over numpy columns and raises `LobseqError` naming
the first bad row, the field and the fix. *Where* the rows come from is a
`Rows`: a reader passes its file and file line numbers, the service passes
the position of each row in the request's `data` (0-based).

Rules (the same for files and for served rows):

* **finite**: every value is a finite number. In canonical book rows an
  empty level is price NaN with size 0 (that is how readers store LOBSTER's
  empty-level sentinels), so a NaN price is accepted there and nowhere else.
* **non-negative sizes**: book sizes (`ask_size_i`, `bid_size_i`), the
  message `size` and bar `volume` are >= 0.
* **not crossed**: best ask >= best bid where both sides quote (a locked
  book, ask == bid, is accepted: LOBSTER files can show one).
* **chronological**: timestamps never go backwards (books: equal times are
  fine, many messages share one; bars: strictly increasing, one bar per date).

`ROW_CHECKS[format]` says which rules a source format gets (FI-2010 files
are normalized, so their prices and sizes can be negative and cross);
ingest records that list in the manifest's serving record, so a model
checks served rows exactly as ingest checked its files.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from lobseq.errors import LobseqError

ROW_CHECKS: dict[str, tuple[str, ...]] = {
    "lobster": ("finite", "non_negative_sizes", "not_crossed", "chronological"),
    "bars": ("finite", "non_negative_sizes", "strictly_chronological"),
    "fi2010": ("finite",),
}
CHECKS = ("finite", "non_negative_sizes", "not_crossed", "chronological", "strictly_chronological")

SIZE_COLUMN = re.compile(r"(ask|bid)_size_\d+|size|volume")
PRICE_COLUMN = re.compile(r"(ask|bid)_price_(\d+)")


def _same(index: int) -> int:
    return index


@dataclass(frozen=True)
class Rows:
    """Where checked rows come from, for the error: `file` (None for a request) and
    `row_of(i)`, the row number to report for array index `i`."""

    file: str | None = None
    row_of: Callable[[int], int] = _same
    fix_data: str = "re-export the file"  # what to do about a bad value
    fix_order: str = "sort the rows oldest first"  # what to do about rows out of order

    def error(self, problem: str, index: int, field: str, fix: str) -> LobseqError:
        return LobseqError(problem, file=self.file, row=self.row_of(int(index)), field=field,
                           fix=fix)


def size_columns(names: Sequence[str]) -> list[str]:
    """The columns whose values are quantities (never negative)."""
    return [n for n in names if SIZE_COLUMN.fullmatch(n)]


def _first(mask: np.ndarray) -> int | None:
    hits = np.flatnonzero(mask)
    return int(hits[0]) if hits.size else None


def _first_cell(bad: np.ndarray) -> tuple[int, int] | None:
    """(row, column) of the first True of a (n,) or (n, k) mask, row-major."""
    if bad.ndim == 1:
        row = _first(bad)
        return None if row is None else (row, 0)
    rows = _first(bad.any(axis=1))
    return None if rows is None else (rows, int(np.argmax(bad[rows])))


def check_finite(values: np.ndarray, names: Sequence[str], rows: Rows,
                 empty_ok: np.ndarray | None = None) -> None:
    """Every value finite: `values` is (n,) for one column `names[0]` or (n, k) for `names`.

    `empty_ok` (same shape, bool): cells where NaN means an empty book level.
    """
    values = np.asarray(values)
    if values.dtype.kind not in "fc":
        return
    bad = ~np.isfinite(values)
    if empty_ok is not None:
        bad &= ~(np.isnan(values) & empty_ok)
    cell = _first_cell(bad)
    if cell is None:
        return
    i, j = cell
    value = float(values[i] if values.ndim == 1 else values[i, j])
    problem = ("missing or NaN value" if np.isnan(value)
               else f"value {value} is not a finite number")
    raise rows.error(problem, i, names[j], rows.fix_data)


def check_non_negative(values: np.ndarray, names: Sequence[str], rows: Rows) -> None:
    """Sizes and volumes are >= 0 (a NaN is `check_finite`'s business)."""
    values = np.asarray(values)
    cell = _first_cell(values < 0)
    if cell is not None:
        i, j = cell
        value = values[i] if values.ndim == 1 else values[i, j]
        raise rows.error(f"{names[j]} {float(value):g} is negative; sizes and volumes are "
                         ">= 0", i, names[j], rows.fix_data)


def check_not_crossed(ask: np.ndarray, bid: np.ndarray, rows: Rows) -> None:
    """Best ask >= best bid wherever both sides quote (NaN: an empty side, not crossed)."""
    at = _first(np.asarray(ask) < np.asarray(bid))
    if at is not None:
        raise rows.error(f"crossed book: best ask {ask[at]} < best bid {bid[at]}", at,
                         "ask_price_1", rows.fix_data + "; a book is never crossed")


def as_ns(stamps) -> np.ndarray:
    """int64 ns since the epoch (UTC) of datetime64 values, a DatetimeIndex/Series or ints."""
    if hasattr(stamps, "dt"):  # a Series
        stamps = stamps.array
    asi8 = getattr(stamps, "asi8", None)  # DatetimeIndex / DatetimeArray (tz-aware: UTC)
    if asi8 is not None:
        return np.asarray(asi8)
    stamps = np.asarray(stamps)
    if stamps.dtype.kind == "M":
        return stamps.astype("datetime64[ns]").view(np.int64)
    return stamps.astype(np.int64)


NAT = np.iinfo(np.int64).min  # NaT as int64: also "no predecessor" in `previous`


def check_chronological(stamps: np.ndarray, field: str, rows: Rows, *, strict: bool = False,
                        previous: np.ndarray | None = None,
                        what: Callable[[int], str] | None = None,
                        show: Callable[[object], str] = str) -> None:
    """Times never go backwards (`strict`: never repeat either).

    `stamps`: int64 ns, or float seconds. `previous[i]`: the time row i must
    follow (default row i-1's; a long table of bars passes the same symbol's
    previous date, `NAT` where there is none). `what` ("for AAPL") and `show`
    (a time's text) only shape the message.
    """
    stamps = np.asarray(stamps)
    if stamps.dtype == np.int64:
        at = _first(stamps == NAT)
        if at is not None:
            raise rows.error("missing time", at, field, rows.fix_data)
    if previous is None:
        previous = np.empty_like(stamps)
        previous[1:] = stamps[:-1]
        if len(stamps):
            previous[0] = NAT if stamps.dtype == np.int64 else -np.inf
    previous = np.asarray(previous)
    at = _first((stamps <= previous) if strict else (stamps < previous))
    if at is None:
        return
    now, before = show(stamps[at]), show(previous[at])
    suffix = f" {what(at)}" if what else ""
    if stamps[at] == previous[at]:
        problem = f"{field} {now} appears twice{suffix}"
    else:
        problem = f"{field} goes backwards ({now} after {before}){suffix}"
    raise rows.error(problem, at, field, rows.fix_order)


@dataclass(frozen=True)
class _Layout:
    """Where the checked kinds of columns sit in a block (computed once per column list)."""

    sizes: list[int]  # quantity columns
    prices: list[int]  # book price columns that have their level's size column ...
    price_sizes: list[int]  # ... at these positions
    touch: tuple[int, int] | None  # (ask_price_1, bid_price_1)


@lru_cache(maxsize=64)
def _layout(names: tuple[str, ...]) -> _Layout:
    where = {n: j for j, n in enumerate(names)}
    prices, price_sizes = [], []
    for j, name in enumerate(names):
        m = PRICE_COLUMN.fullmatch(name)
        k = where.get(f"{m[1]}_size_{m[2]}") if m else None
        if k is not None:
            prices.append(j)
            price_sizes.append(k)
    touch = ((where["ask_price_1"], where["bid_price_1"])
             if "ask_price_1" in where and "bid_price_1" in where else None)
    return _Layout([where[n] for n in size_columns(names)], prices, price_sizes, touch)


def check_rows(block: np.ndarray, names: Sequence[str], checks: Sequence[str], rows: Rows, *,
               timestamps=None) -> None:
    """Apply `checks` (names from `CHECKS`) to canonical rows: float64 `block` (n, k) whose
    column j is `names[j]`. `timestamps` (datetime-like or int64 ns), when given, is checked
    for order; rows without timestamps cannot be.
    """
    unknown = [c for c in checks if c not in CHECKS]
    if unknown:
        raise ValueError(f"unknown row checks {unknown}")
    block = np.asarray(block)
    names = tuple(names)
    if len(block):
        layout = _layout(names)
        if "finite" in checks:
            empty = np.zeros(block.shape, dtype=bool)  # NaN price + size 0: an empty level
            empty[:, layout.prices] = block[:, layout.price_sizes] == 0
            check_finite(block, names, rows, empty_ok=empty)
        if "non_negative_sizes" in checks and layout.sizes:
            check_non_negative(block[:, layout.sizes], [names[j] for j in layout.sizes], rows)
        if "not_crossed" in checks and layout.touch is not None:
            check_not_crossed(block[:, layout.touch[0]], block[:, layout.touch[1]], rows)
    check_order(checks, timestamps, rows)


def check_order(checks: Sequence[str], timestamps, rows: Rows) -> None:
    """The order rule among `checks` (chronological or strictly so) on `timestamps`
    (datetime-like or int64 ns); rows without timestamps cannot be checked."""
    order = [c for c in ("chronological", "strictly_chronological") if c in checks]
    if order and timestamps is not None:
        check_chronological(as_ns(timestamps), "timestamp", rows,
                            strict=order[0] == "strictly_chronological", show=_iso)


def _iso(ns) -> str:
    return str(np.datetime64(int(ns), "ns"))
