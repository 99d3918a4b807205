"""Built-in market simulator: LOBSTER-format order books and daily OHLCV bars.

Both writers are deterministic for a seed (one ``numpy.random.Generator``)
and write every file atomically: files are built in a hidden staging folder
inside ``out_dir`` (each via :func:`lobseq.io.atomic_file`) and renamed into
place only after all of them succeeded, so a failed call leaves ``out_dir``
as it was.

Order book model (``simulate_lobster``)
---------------------------------------
A zero-intelligence order-flow model on a discrete price grid, after Cont,
Stoikov & Talreja (2010), with queue-reactive market orders in the spirit of
Huang, Lehalle & Rosenbaum (2015). Prices are integer ticks (``tick``
dollars each); every resting order is tracked individually (id, size, price)
in FIFO queues per price level, so cancellations and executions reference
real orders. Events follow a continuous-time Markov chain (Gillespie
sampling); rates are per unit of model time:

- **limit orders**, rate ``LIMIT_RATE`` = 1.0 per side. A buy (sell) is
  placed ``i`` ticks below the best ask (above the best bid), ``i = 1..D``,
  ``D = levels + 4``, with probability proportional to ``i ** -PROFILE_ALPHA``
  (``PROFILE_ALPHA`` = 0.6, a decaying profile). ``i`` smaller than the
  spread improves the quote; the book can never cross. When the opposite
  side is empty the reference is one tick beyond the own best quote.
- **cancellations**: every resting order is cancelled at rate
  ``CANCEL_RATE`` = 1/60, so a side with ``N`` orders cancels at rate
  ``N / 60`` (proportional to queue size). ``PARTIAL_CANCEL`` = 5 % of them
  are partial (type 2, part of the order), the rest full deletions (type 3).
- **market orders**, queue-reactive: with best-queue sizes ``qb``, ``qa``
  (shares) and imbalance ``I = (qb - qa) / (qb + qa)``, buys arrive at rate
  ``MARKET_RATE * (1 + IMBALANCE_BETA * I)`` and sells at
  ``MARKET_RATE * (1 - IMBALANCE_BETA * I)`` (``MARKET_RATE`` = 0.35,
  ``IMBALANCE_BETA`` = 0.7): the thin side is hit more often. A market order
  executes against the best level only, oldest order first, writing one
  type-4 message per resting order it touches (same timestamp; direction
  is the resting order's side, as in LOBSTER). Emptying the best level moves
  the quote to the next occupied level.
- **hidden executions** (type 5, order id 0, book unchanged), rate
  ``HIDDEN_RATE`` = 0.08, at a price uniform between the best bid and ask.

Sizes are in shares: limit orders are round lots (100 × (1 + geometric,
mean 1.5 extra lots)) 80 % of the time and odd lots (1..99) otherwise;
market orders are 100 × geometric with mean ``MARKET_LOTS`` = 4 lots.

Because a thin queue is both hit more often and depleted sooner, the sign
of the touch imbalance predicts the next mid-price move (about 70 % hit
rate with the defaults). Each day starts from a fresh book around the
previous day's last mid (the first day: ``start_price``), is warmed up for
``BURN_IN`` messages that are not written, and then records exactly
``events`` messages. Model time is mapped linearly onto the session
09:30:00-16:00:00 (34200-57600 s after midnight) at nanosecond resolution.

Bars model (``simulate_bars``)
------------------------------
Daily log returns per symbol are ``r_t = mu_t + x_t`` with a hidden
two-state drift ``mu_t = ±0.0015`` per day (Markov regime, stays with
probability 0.98), AR(1) excess returns ``x_t = 0.15 * x_{t-1} + e_t`` and
GARCH(1,1) shocks ``e_t = sigma_t * z_t``, ``sigma_t^2 = 2e-6 + 0.08 *
e_{t-1}^2 + 0.9 * sigma_{t-1}^2``, ``z_t`` standard normal. Volume is log-normal around
1e6 shares and rises with |r_t| / sigma (the volume–volatility link). Opens
gap from the previous close; highs and lows extend beyond open and close by
half-normal amounts scaled by sigma_t. ``Adj Close`` equals ``Close`` (no
corporate actions).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from bisect import bisect_left, bisect_right, insort
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from lobseq.errors import LobseqError
from lobseq.io import atomic_file

# --- order book model parameters (rates per unit of model time) ---
LIMIT_RATE = 1.0
PROFILE_ALPHA = 0.6
CANCEL_RATE = 1.0 / 60.0
PARTIAL_CANCEL = 0.05
MARKET_RATE = 0.35
IMBALANCE_BETA = 0.7
MARKET_LOTS = 4.0
HIDDEN_RATE = 0.08
ODD_LOT_SHARE = 0.2
BURN_IN = 2000

SESSION_START_NS = 34_200 * 10**9
SESSION_NS = (57_600 - 34_200) * 10**9
EMPTY_ASK = 9_999_999_999
EMPTY_BID = -9_999_999_999
_BLOCK = 1 << 16


# ---------------------------------------------------------------- helpers

def _require(ok: bool, problem: str, field: str, fix: str) -> None:
    if not ok:
        raise LobseqError(problem, field=field, fix=fix)


def _int_arg(value: object, name: str, minimum: int = 1) -> int:
    ok = isinstance(value, (int, np.integer)) and not isinstance(value, bool)
    _require(ok and int(value) >= minimum, f"must be an integer >= {minimum}, got {value!r}",
             name, f"pass {name}={minimum} or more")
    return int(value)


def _business_days(start_date: str, days: int, name: str) -> pd.DatetimeIndex:
    try:
        start = pd.Timestamp(start_date)
    except (ValueError, TypeError) as exc:
        raise LobseqError(f"is not a date: {start_date!r}", field=name,
                          fix="use the form YYYY-MM-DD") from exc
    _require(start is not pd.NaT, f"is not a date: {start_date!r}", name,
             "use the form YYYY-MM-DD")
    return pd.bdate_range(start=start.normalize(), periods=days)


@contextlib.contextmanager
def _staged(out_dir: Path) -> Iterator[tuple[Path, list[str]]]:
    """Yield (staging dir, names); on success move every name into out_dir."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=".simulate.tmp-", dir=out_dir))
    names: list[str] = []
    try:
        yield stage, names
        for name in names:
            os.replace(stage / name, out_dir / name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def _write_csv(path: Path, tables: Iterable[pa.Table]) -> None:
    """Headerless, unquoted, comma-separated, LF: the LOBSTER layout."""
    options = pacsv.WriteOptions(include_header=False, quoting_style="none",
                                 batch_size=1 << 16)
    with atomic_file(path, "wb") as f:
        writer = None
        for table in tables:
            if writer is None:
                writer = pacsv.CSVWriter(f, table.schema, write_options=options)
            writer.write_table(table)
        if writer is not None:
            writer.close()


def _seconds_text(ns: np.ndarray) -> pa.Array:
    """Seconds after midnight as LOBSTER prints them: up to 9 decimals, no trailing zeros."""
    whole = pc.cast(pa.array(ns // 10**9), pa.string())
    frac = pc.utf8_lpad(pc.cast(pa.array(ns % 10**9), pa.string()), width=9, padding="0")
    frac = pc.utf8_rtrim(frac, characters="0")
    dotted = pc.binary_join_element_wise(whole, frac, ".")
    return pc.if_else(pc.equal(pc.utf8_length(frac), 0), whole, dotted)


# ------------------------------------------------------- order book engine

class _Day:
    """One simulated day: messages plus the order book as sparse snapshots.

    ``times`` (n,) model time in [0, 1) of the session; ``msgs`` (n, 5) int64
    [type, order id, size, price tick, direction]. The book after message r
    is, per side, the latest snapshot taken at or before r (a side is only
    re-snapshotted when its top levels change), expanded by :meth:`book`.
    """

    def __init__(self, times: np.ndarray, msgs: np.ndarray, at: list[np.ndarray],
                 ticks: list[np.ndarray], sizes: list[np.ndarray], first_row: int,
                 levels: int, next_id: int, last_mid: int) -> None:
        self.times, self.msgs = times, msgs
        self._at, self._ticks, self._sizes = at, ticks, sizes
        self._first, self.levels = first_row, levels
        self.next_id, self.last_mid = next_id, last_mid

    def book(self, lo: int, hi: int, mult: int) -> np.ndarray:
        """LOBSTER orderbook rows lo..hi-1: (hi - lo, 4 L) int64, prices × ``mult``."""
        rows = np.arange(self._first + lo, self._first + hi)
        out = np.empty((hi - lo, self.levels, 4), dtype=np.int64)
        for s, col, sentinel in ((1, 0, EMPTY_ASK), (0, 2, EMPTY_BID)):
            idx = np.searchsorted(self._at[s], rows, side="right") - 1
            size = self._sizes[s][idx]
            out[:, :, col] = np.where(size > 0, self._ticks[s][idx] * mult, sentinel)
            out[:, :, col + 1] = size
        return out.reshape(hi - lo, 4 * self.levels)


def _simulate_day(rng: np.random.Generator, n: int, levels: int, start_tick: int,
                  next_id: int) -> _Day:
    """Run the model for BURN_IN + n messages and keep the last n."""
    L = levels
    D = levels + 4
    total = BURN_IN + n
    weights = np.arange(1, D + 1, dtype=float) ** -PROFILE_ALPHA
    cdf = (np.cumsum(weights) / weights.sum()).tolist()

    # Per side s (0 bid/buy, 1 ask/sell): keys sorted best-first (bid key = -tick).
    sgn = (-1, 1)
    keys: list[list[int]] = [[], []]
    lvl: list[dict[int, int]] = [{}, {}]          # key -> aggregate size
    queue: list[dict[int, list[int]]] = [{}, {}]  # key -> FIFO order ids
    live: list[list[int]] = [[], []]              # order ids, for uniform cancel picks
    pos: list[dict[int, int]] = [{}, {}]          # order id -> index in live
    osize: dict[int, int] = {}
    okey: dict[int, int] = {}

    # Snapshots of a side's top L levels (keys, sizes; zero-padded), tagged with the row
    # they first apply to; flushed to arrays every block.
    snap_at: list[list[int]] = [[], []]
    snap_k: list[list[list[int]]] = [[], []]
    snap_z: list[list[list[int]]] = [[], []]
    chunks: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[], []]

    def snapshot(s: int, row: int) -> None:
        ks = keys[s][:L]
        sizes = list(map(lvl[s].__getitem__, ks))
        if len(ks) < L:
            pad = [0] * (L - len(ks))
            ks += pad
            sizes += pad
        snap_at[s].append(row)
        snap_k[s].append(ks)
        snap_z[s].append(sizes)

    def remove_order(oid: int, s: int) -> None:
        k = okey.pop(oid)
        del osize[oid]
        q = queue[s][k]
        q.remove(oid)
        if not q:
            del queue[s][k], lvl[s][k]
            ks = keys[s]
            del ks[bisect_left(ks, k)]
        lv, ps = live[s], pos[s]
        i = ps.pop(oid)
        last = lv.pop()
        if last != oid:
            lv[i] = last
            ps[last] = i

    def add_order(s: int, tick: int, size: int, oid: int) -> int:
        k = sgn[s] * tick
        sz = lvl[s]
        if k in sz:
            sz[k] += size
            queue[s][k].append(oid)
        else:
            sz[k] = size
            queue[s][k] = [oid]
            insort(keys[s], k)
        osize[oid] = size
        okey[oid] = k
        pos[s][oid] = len(live[s])
        live[s].append(oid)
        return bisect_left(keys[s], k)

    times = np.empty(total)
    msgs = np.empty((total, 5), dtype=np.int64)
    t_rows: list[float] = []
    m_rows: list[tuple[int, int, int, int, int]] = []
    flushed = 0

    def flush() -> None:
        nonlocal flushed
        end = flushed + len(t_rows)
        times[flushed:end] = t_rows
        msgs[flushed:end] = np.fromiter(chain.from_iterable(m_rows), dtype=np.int64,
                                        count=5 * len(m_rows)).reshape(-1, 5)
        t_rows.clear()
        m_rows.clear()
        flushed = end
        for s in (0, 1):
            m = len(snap_at[s])
            at = np.array(snap_at[s], dtype=np.int64)
            ks = np.fromiter(chain.from_iterable(snap_k[s]), dtype=np.int64, count=m * L)
            zs = np.fromiter(chain.from_iterable(snap_z[s]), dtype=np.int64, count=m * L)
            chunks[s].append((at, sgn[s] * ks.reshape(m, L), zs.reshape(m, L)))
            snap_at[s].clear()
            snap_k[s].clear()
            snap_z[s].clear()

    # Seed the book with one order per level on each side of start_tick.
    for d in range(D):
        for s in (0, 1):
            tick = start_tick + 1 + d if s else start_tick - d
            if tick >= 1:
                add_order(s, tick, 100, next_id)
                next_id += 1
    snapshot(0, 0)
    snapshot(1, 0)

    kb, ka = keys
    live_b, live_a = live
    lvl_b, lvl_a = lvl
    t_append, m_append = t_rows.append, m_rows.append
    t = 0.0
    row = 0
    last_bid, last_ask = start_tick, start_tick + 1
    while row < total:
        block = min(_BLOCK, total - row)
        gaps = rng.standard_exponential(block).tolist()
        u_ev = rng.random(block).tolist()
        u_a = rng.random(block).tolist()
        u_b = rng.random(block).tolist()
        lots = rng.geometric(1 / 2.5, block).tolist()
        odd = rng.integers(1, 100, block).tolist()
        mkt = (100 * rng.geometric(1 / MARKET_LOTS, block)).tolist()
        for j in range(block):
            if row >= total:
                break
            qb = lvl_b[kb[0]] if kb else 0
            qa = lvl_a[ka[0]] if ka else 0
            imb = (qb - qa) / (qb + qa) if qb + qa else 0.0
            r_mb = MARKET_RATE * (1.0 + IMBALANCE_BETA * imb) if ka else 0.0
            r_ms = MARKET_RATE * (1.0 - IMBALANCE_BETA * imb) if kb else 0.0
            r_cb = CANCEL_RATE * len(live_b)
            r_ca = CANCEL_RATE * len(live_a)
            rate = 2 * LIMIT_RATE + r_mb + r_ms + r_cb + r_ca + HIDDEN_RATE
            t += gaps[j] / rate
            x = u_ev[j] * rate
            if kb:
                last_bid = -kb[0]
            if ka:
                last_ask = ka[0]

            if x < 2 * LIMIT_RATE:                       # new limit order
                s = 0 if x < LIMIT_RATE else 1
                i = bisect_right(cdf, u_a[j]) + 1
                if s == 0:
                    # Asks never go below 2 ticks, so a 1-tick floor cannot cross.
                    tick = max((ka[0] if ka else last_bid + 1) - min(i, D), 1)
                else:
                    tick = (-kb[0] if kb else last_ask - 1) + min(i, D)
                size = 100 * lots[j] if u_b[j] >= ODD_LOT_SHARE else odd[j]
                oid = next_id
                next_id += 1
                if add_order(s, tick, size, oid) < L:
                    snapshot(s, row)
                t_append(t)
                m_append((1, oid, size, tick, 1 - 2 * s))
                row += 1
            else:
                x -= 2 * LIMIT_RATE
                if x < r_cb + r_ca:                      # cancellation
                    s = 0 if x < r_cb else 1
                    lv = live[s]
                    oid = lv[int(u_a[j] * len(lv))]
                    k = okey[oid]
                    size = osize[oid]
                    rank = bisect_left(keys[s], k)
                    if size > 1 and u_b[j] < PARTIAL_CANCEL:
                        cut = 1 + int(u_b[j] / PARTIAL_CANCEL * (size - 1))
                        osize[oid] = size - cut
                        lvl[s][k] -= cut
                        kind, size = 2, cut
                    else:
                        remove_order(oid, s)
                        kind = 3
                    if rank < L:
                        snapshot(s, row)
                    t_append(t)
                    m_append((kind, oid, size, sgn[s] * k, 1 - 2 * s))
                    row += 1
                elif x < r_cb + r_ca + r_mb + r_ms:      # market order at the touch
                    s = 1 if x < r_cb + r_ca + r_mb else 0   # resting side hit
                    k = keys[s][0]
                    q = queue[s][k]
                    left = mkt[j]
                    while left > 0 and row < total:
                        oid = q[0]
                        size = osize[oid]
                        fill = size if size <= left else left
                        left -= fill
                        if fill == size:
                            gone = len(q) == 1
                            remove_order(oid, s)
                        else:
                            osize[oid] = size - fill
                            lvl[s][k] -= fill
                            gone = False
                        snapshot(s, row)
                        t_append(t)
                        m_append((4, oid, fill, sgn[s] * k, 1 - 2 * s))
                        row += 1
                        if gone:
                            break
                else:                                    # hidden execution
                    lo = -kb[0] if kb else last_bid
                    hi = ka[0] if ka else last_ask
                    tick = lo + int(u_a[j] * (hi - lo + 1))
                    size = 100 * lots[j] if u_b[j] >= ODD_LOT_SHARE else odd[j]
                    t_append(t)
                    m_append((5, 0, size, tick, 1 if u_b[j] < 0.5 else -1))
                    row += 1
        flush()

    end_t = t + float(rng.standard_exponential()) / rate
    t0 = times[BURN_IN - 1]
    bid = -kb[0] if kb else last_bid
    ask = ka[0] if ka else last_ask
    at, ticks, sizes = ([np.concatenate([c[f] for c in chunks[s]]) for s in (0, 1)]
                        for f in range(3))
    return _Day((times[BURN_IN:] - t0) / (end_t - t0), msgs[BURN_IN:], at, ticks, sizes,
                BURN_IN, L, next_id, (bid + ask) // 2)


def simulate_lobster(
    out_dir: str | Path,
    *,
    events: int = 100_000,
    levels: int = 10,
    days: int = 1,
    seed: int = 0,
    ticker: str = "SIM",
    start_date: str = "2024-01-02",
    tick: float = 0.01,
    start_price: float = 100.0,
) -> list[Path]:
    """Write ``days`` LOBSTER message/orderbook file pairs; return their paths.

    ``events`` is the number of messages (rows) per day; prices in the files
    are dollars × 10,000 (integers), ``tick`` and ``start_price`` in dollars.
    Files are named ``{ticker}_{YYYY-MM-DD}_34200000_57600000_{message|orderbook}_{levels}.csv``
    for consecutive business days from ``start_date``. The model is
    described in this module's docstring.
    """
    events = _int_arg(events, "events")
    levels = _int_arg(levels, "levels")
    days = _int_arg(days, "days")
    _require(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0,
             f"must be a non-negative integer, got {seed!r}", "seed", "pass e.g. seed=0")
    _require(isinstance(ticker, str) and ticker.isalnum(),
             f"must be letters and digits only, got {ticker!r}", "ticker", "pass e.g. ticker='SIM'")
    _require(isinstance(tick, (int, float)) and tick > 0 and abs(tick * 10_000 - round(tick * 10_000)) < 1e-6
             and round(tick * 10_000) >= 1,
             f"must be a positive multiple of 0.0001 dollars, got {tick!r}", "tick",
             "pass e.g. tick=0.01")
    _require(isinstance(start_price, (int, float)) and start_price >= 2 * tick
             and np.isfinite(start_price),
             f"must be a finite price of at least two ticks, got {start_price!r}", "start_price",
             "pass e.g. start_price=100.0")
    dates = _business_days(start_date, days, "start_date")

    mult = int(round(tick * 10_000))
    rng = np.random.default_rng(seed)
    mid_tick = max(int(round(start_price / tick)), 1)
    next_id = 1_000_000
    out = Path(out_dir)
    written: list[Path] = []
    with _staged(out) as (stage, names):
        for date in dates:
            day = _simulate_day(rng, events, levels, mid_tick, next_id)
            next_id, mid_tick = day.next_id, day.last_mid
            offset = np.floor(day.times * SESSION_NS).astype(np.int64)
            ns = SESSION_START_NS + np.minimum(offset, SESSION_NS - 1)  # stay before 16:00
            msgs = day.msgs
            message = pa.table({
                "time": _seconds_text(ns),
                "type": msgs[:, 0], "order_id": msgs[:, 1], "size": msgs[:, 2],
                "price": msgs[:, 3] * mult, "direction": msgs[:, 4],
            })
            stem = f"{ticker}_{date:%Y-%m-%d}_34200000_57600000"
            name = f"{stem}_message_{levels}.csv"
            _write_csv(stage / name, [message])
            names.append(name)
            written.append(out / name)
            name = f"{stem}_orderbook_{levels}.csv"
            _write_csv(stage / name, (
                pa.table({f"c{c}": rows[:, c] for c in range(4 * levels)})
                for rows in (day.book(lo, min(lo + _BLOCK, events), mult)
                             for lo in range(0, events, _BLOCK))))
            names.append(name)
            written.append(out / name)
    return written


# ------------------------------------------------------------------ bars

def simulate_bars(
    out_dir: str | Path,
    *,
    symbols: Sequence[str] = ("AAA", "BBB", "CCC"),
    days: int = 750,
    seed: int = 0,
    start_date: str = "2020-01-01",
    fmt: str = "csv",
) -> list[Path]:
    """Write daily OHLCV bars, one file per symbol; return their paths.

    ``SYMBOL.csv`` has the header ``Date,Open,High,Low,Close,Adj Close,Volume``
    (prices in dollars, 6 decimals; volume in shares); ``fmt="parquet"``
    writes ``SYMBOL.parquet`` with the same columns (``Date`` as a date-time).
    Rows are consecutive business days from ``start_date``. The model is
    described in this module's docstring.
    """
    days = _int_arg(days, "days", minimum=2)
    _require(isinstance(seed, (int, np.integer)) and not isinstance(seed, bool) and seed >= 0,
             f"must be a non-negative integer, got {seed!r}", "seed", "pass e.g. seed=0")
    _require(fmt in ("csv", "parquet"), f"must be 'csv' or 'parquet', got {fmt!r}", "fmt",
             "pass fmt='csv' or fmt='parquet'")
    _require(not isinstance(symbols, str) and len(symbols) >= 1,
             f"must be a non-empty list of names, got {symbols!r}", "symbols",
             "pass e.g. symbols=('AAA', 'BBB')")
    for sym in symbols:
        _require(isinstance(sym, str) and sym.replace("-", "").replace(".", "").isalnum(),
                 f"has a name that is not a plain ticker: {sym!r}", "symbols",
                 "use letters, digits, '-' or '.'")
    _require(len(set(symbols)) == len(symbols), f"has duplicates: {list(symbols)!r}",
             "symbols", "list each symbol once")
    dates = _business_days(start_date, days, "start_date")

    rng = np.random.default_rng(seed)
    out = Path(out_dir)
    written: list[Path] = []
    with _staged(out) as (stage, names):
        for sym in symbols:
            frame = _bars_frame(rng, dates)
            name = f"{sym}.{fmt}"
            with atomic_file(stage / name, "wb") as f:
                if fmt == "csv":
                    text = frame.to_csv(index=False, float_format="%.6f", date_format="%Y-%m-%d",
                                        lineterminator="\n")
                    f.write(text.encode())
                else:
                    frame.to_parquet(f, index=False)
            names.append(name)
            written.append(out / name)
    return written


def _bars_frame(rng: np.random.Generator, dates: pd.DatetimeIndex) -> pd.DataFrame:
    n = len(dates)
    eps = rng.standard_normal(n)
    switch = rng.random(n)
    gap_noise = rng.standard_normal(n)
    up_noise = np.abs(rng.standard_normal(n))
    down_noise = np.abs(rng.standard_normal(n))
    vol_noise = rng.standard_normal(n)
    price0 = float(rng.uniform(20, 200))

    phi, stay, drift = 0.15, 0.98, 0.0015
    omega, alpha, beta = 2e-6, 0.08, 0.9
    regime = 1 if rng.random() < 0.5 else -1
    var = omega / (1 - alpha - beta)
    r = np.empty(n)
    sigma = np.empty(n)
    excess = shock = 0.0
    for t in range(n):  # the GARCH/AR recursion is serial; one short loop per symbol
        if switch[t] > stay:
            regime = -regime
        var = omega + alpha * shock**2 + beta * var
        sigma[t] = np.sqrt(var)
        shock = sigma[t] * eps[t]
        excess = phi * excess + shock
        r[t] = regime * drift + excess
    close = price0 * np.exp(np.cumsum(r))
    prev_close = np.concatenate([[price0], close[:-1]])
    open_ = prev_close * np.exp(0.25 * sigma * gap_noise)
    high = np.maximum(open_, close) * np.exp(0.5 * sigma * up_noise)
    low = np.minimum(open_, close) * np.exp(-0.5 * sigma * down_noise)
    shock = np.abs(r) / sigma
    volume = np.round(1e6 * np.exp(0.4 * shock + 0.3 * vol_noise)).astype(np.int64)
    # Round once here so the CSV (6 decimals) and parquet hold the same numbers and OHLC order holds.
    open_, high, low, close = (np.round(a, 6) for a in (open_, high, low, close))
    high = np.maximum.reduce([high, open_, close])
    low = np.minimum.reduce([low, open_, close])
    return pd.DataFrame({
        "Date": dates, "Open": open_, "High": high, "Low": low, "Close": close,
        "Adj Close": close, "Volume": volume,
    })
