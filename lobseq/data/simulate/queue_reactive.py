"""The order book model behind `simulate_lobster`: one simulated day of messages and books.

A zero-intelligence order-flow model on a discrete price grid, after Cont,
Stoikov & Talreja (2010), with queue-reactive market orders in the spirit of
Huang, Lehalle & Rosenbaum (2015). Prices are integer ticks; every resting
order is tracked individually (id, size, price) in FIFO queues per price
level, so cancellations and executions reference real orders. Events follow
a continuous-time Markov chain (Gillespie sampling); rates are per unit of
model time:

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
rate with the defaults). A day starts from a fresh book around a given mid
tick, is warmed up for ``BURN_IN`` messages that are not kept, and then
records exactly ``n`` messages; model time is returned as a fraction of the
recorded span, for the writer to map onto the session.

The random numbers are drawn in blocks of ``BLOCK`` events (seven arrays per
block, always in the same order), so the block size is part of what a seed
means: changing it changes the files.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right, insort
from dataclasses import dataclass
from itertools import chain

import numpy as np

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
BLOCK = 1 << 16

SIGN = (-1, 1)  # side s: 0 bid/buy (key = -tick), 1 ask/sell (key = tick)


@dataclass
class Day:
    """One simulated day: its messages, and the book as sparse per-side snapshots.

    The book after message r is, per side, the latest snapshot taken at or
    before row ``first_row + r`` (rows count the burn-in; a side is only
    re-snapshotted when its top ``levels`` levels change).
    """

    times: np.ndarray  # (n,) model time in [0, 1) of the recorded span
    msgs: np.ndarray  # (n, 5) int64: type, order id, size, price tick, direction
    snapshot_rows: list[np.ndarray]  # per side (0 bid, 1 ask): (m,) int64, sorted
    snapshot_ticks: list[np.ndarray]  # per side: (m, levels) int64, best first
    snapshot_sizes: list[np.ndarray]  # per side: (m, levels) int64, 0 = empty level
    first_row: int
    levels: int
    next_id: int  # the next day's first order id
    last_mid: int  # tick; the next day's book starts around it


class _Book:
    """Every resting order of both sides, in FIFO queues per price key, keys sorted best first."""

    __slots__ = ("keys", "lvl", "queue", "live", "pos", "osize", "okey")

    def __init__(self) -> None:
        self.keys: list[list[int]] = [[], []]
        self.lvl: list[dict[int, int]] = [{}, {}]          # key -> aggregate size
        self.queue: list[dict[int, list[int]]] = [{}, {}]  # key -> FIFO order ids
        self.live: list[list[int]] = [[], []]              # order ids, for uniform cancel picks
        self.pos: list[dict[int, int]] = [{}, {}]          # order id -> index in live
        self.osize: dict[int, int] = {}
        self.okey: dict[int, int] = {}

    def add(self, s: int, tick: int, size: int, oid: int) -> int:
        """Queue a new order; returns its level's rank from the touch (0 = best)."""
        k = SIGN[s] * tick
        sz = self.lvl[s]
        if k in sz:
            sz[k] += size
            self.queue[s][k].append(oid)
        else:
            sz[k] = size
            self.queue[s][k] = [oid]
            insort(self.keys[s], k)
        self.osize[oid] = size
        self.okey[oid] = k
        self.pos[s][oid] = len(self.live[s])
        self.live[s].append(oid)
        return bisect_left(self.keys[s], k)

    def reduce(self, s: int, k: int, oid: int, amount: int) -> None:
        """Take `amount` shares off a resting order that keeps the rest."""
        self.osize[oid] -= amount
        self.lvl[s][k] -= amount

    def remove(self, oid: int, s: int) -> None:
        k = self.okey.pop(oid)
        del self.osize[oid]
        q = self.queue[s][k]
        q.remove(oid)
        if not q:
            del self.queue[s][k], self.lvl[s][k]
            ks = self.keys[s]
            del ks[bisect_left(ks, k)]
        lv, ps = self.live[s], self.pos[s]
        i = ps.pop(oid)
        last = lv.pop()
        if last != oid:
            lv[i] = last
            ps[last] = i


class _Tape:
    """What a day records: messages, and each side's top levels whenever they change.

    Rows are buffered in lists and moved into arrays once per block (`flush`).
    """

    __slots__ = ("levels", "times", "msgs", "t_rows", "m_rows", "flushed", "snap_at", "snap_k",
                 "snap_z", "chunks")

    def __init__(self, total: int, levels: int) -> None:
        self.levels = levels
        self.times = np.empty(total)
        self.msgs = np.empty((total, 5), dtype=np.int64)
        self.t_rows: list[float] = []
        self.m_rows: list[tuple[int, int, int, int, int]] = []
        self.flushed = 0
        # Per side: rows the snapshots first apply to, their keys and sizes (zero-padded).
        self.snap_at: list[list[int]] = [[], []]
        self.snap_k: list[list[list[int]]] = [[], []]
        self.snap_z: list[list[list[int]]] = [[], []]
        self.chunks: list[list[tuple[np.ndarray, np.ndarray, np.ndarray]]] = [[], []]

    def record(self, t: float, msg: tuple[int, int, int, int, int]) -> None:
        self.t_rows.append(t)
        self.m_rows.append(msg)

    def snapshot(self, book: _Book, s: int, row: int) -> None:
        L = self.levels
        ks = book.keys[s][:L]
        sizes = list(map(book.lvl[s].__getitem__, ks))
        if len(ks) < L:
            pad = [0] * (L - len(ks))
            ks += pad
            sizes += pad
        self.snap_at[s].append(row)
        self.snap_k[s].append(ks)
        self.snap_z[s].append(sizes)

    def flush(self) -> None:
        end = self.flushed + len(self.t_rows)
        self.times[self.flushed:end] = self.t_rows
        self.msgs[self.flushed:end] = np.fromiter(chain.from_iterable(self.m_rows), dtype=np.int64,
                                                  count=5 * len(self.m_rows)).reshape(-1, 5)
        self.t_rows.clear()
        self.m_rows.clear()
        self.flushed = end
        L = self.levels
        for s in (0, 1):
            m = len(self.snap_at[s])
            at = np.array(self.snap_at[s], dtype=np.int64)
            ks = np.fromiter(chain.from_iterable(self.snap_k[s]), dtype=np.int64, count=m * L)
            zs = np.fromiter(chain.from_iterable(self.snap_z[s]), dtype=np.int64, count=m * L)
            self.chunks[s].append((at, SIGN[s] * ks.reshape(m, L), zs.reshape(m, L)))
            self.snap_at[s].clear()
            self.snap_k[s].clear()
            self.snap_z[s].clear()

    def sides(self) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """Per side (bid, ask): snapshot rows, ticks (L columns) and sizes."""
        at, ticks, sizes = ([np.concatenate([c[f] for c in self.chunks[s]]) for s in (0, 1)]
                            for f in range(3))
        return at, ticks, sizes


class _OrderFlow:
    """The event loop: picks each event by the current rates and applies it to book and tape."""

    __slots__ = ("levels", "depth", "total", "cdf", "book", "tape", "row", "t", "rate", "last_bid",
                 "last_ask", "next_id")

    def __init__(self, levels: int, total: int, start_tick: int, next_id: int) -> None:
        self.levels, self.depth, self.total = levels, levels + 4, total
        weights = np.arange(1, self.depth + 1, dtype=float) ** -PROFILE_ALPHA
        self.cdf = (np.cumsum(weights) / weights.sum()).tolist()
        self.book, self.tape = _Book(), _Tape(total, levels)
        self.row, self.t, self.rate = 0, 0.0, 1.0
        self.last_bid, self.last_ask = start_tick, start_tick + 1
        # Seed the book with one order per level on each side of start_tick.
        for d in range(self.depth):
            for s in (0, 1):
                tick = start_tick + 1 + d if s else start_tick - d
                if tick >= 1:
                    self.book.add(s, tick, 100, next_id)
                    next_id += 1
        self.next_id = next_id
        self.tape.snapshot(self.book, 0, 0)
        self.tape.snapshot(self.book, 1, 0)

    def run_block(self, rng: np.random.Generator) -> None:
        """Draw one block's random numbers and run events until they or the day run out."""
        block = min(BLOCK, self.total - self.row)
        gaps = rng.standard_exponential(block).tolist()
        u_ev = rng.random(block).tolist()
        u_a = rng.random(block).tolist()
        u_b = rng.random(block).tolist()
        lots = rng.geometric(1 / 2.5, block).tolist()
        odd = rng.integers(1, 100, block).tolist()
        mkt = (100 * rng.geometric(1 / MARKET_LOTS, block)).tolist()
        event, total = self.event, self.total
        for j in range(block):
            if self.row >= total:
                break
            event(gaps[j], u_ev[j], u_a[j], u_b[j], lots[j], odd[j], mkt[j])
        self.tape.flush()

    def event(self, gap: float, u_ev: float, u_a: float, u_b: float, lots: int, odd: int,
              mkt: int) -> None:
        """One event: `gap` and `u_ev` pick when and which; `u_a`, `u_b` and the sizes, how."""
        book = self.book
        kb, ka = book.keys
        qb = book.lvl[0][kb[0]] if kb else 0
        qa = book.lvl[1][ka[0]] if ka else 0
        imb = (qb - qa) / (qb + qa) if qb + qa else 0.0
        r_mb = MARKET_RATE * (1.0 + IMBALANCE_BETA * imb) if ka else 0.0
        r_ms = MARKET_RATE * (1.0 - IMBALANCE_BETA * imb) if kb else 0.0
        r_cb = CANCEL_RATE * len(book.live[0])
        r_ca = CANCEL_RATE * len(book.live[1])
        rate = self.rate = 2 * LIMIT_RATE + r_mb + r_ms + r_cb + r_ca + HIDDEN_RATE
        self.t += gap / rate
        x = u_ev * rate
        if kb:
            self.last_bid = -kb[0]
        if ka:
            self.last_ask = ka[0]
        size = 100 * lots if u_b >= ODD_LOT_SHARE else odd
        if x < 2 * LIMIT_RATE:
            self.limit_order(0 if x < LIMIT_RATE else 1, u_a, size)
            return
        x -= 2 * LIMIT_RATE
        if x < r_cb + r_ca:
            self.cancel(0 if x < r_cb else 1, u_a, u_b)
        elif x < r_cb + r_ca + r_mb + r_ms:
            self.market_order(1 if x < r_cb + r_ca + r_mb else 0, mkt)  # the resting side hit
        else:
            self.hidden_execution(u_a, u_b, size)

    def limit_order(self, s: int, u: float, size: int) -> None:
        kb, ka = self.book.keys
        i = min(bisect_right(self.cdf, u) + 1, self.depth)
        if s == 0:
            # Asks never go below 2 ticks, so a 1-tick floor cannot cross.
            tick = max((ka[0] if ka else self.last_bid + 1) - i, 1)
        else:
            tick = (-kb[0] if kb else self.last_ask - 1) + i
        oid = self.next_id
        self.next_id += 1
        if self.book.add(s, tick, size, oid) < self.levels:
            self.tape.snapshot(self.book, s, self.row)
        self.tape.record(self.t, (1, oid, size, tick, 1 - 2 * s))
        self.row += 1

    def cancel(self, s: int, u_a: float, u_b: float) -> None:
        book = self.book
        lv = book.live[s]
        oid = lv[int(u_a * len(lv))]
        k = book.okey[oid]
        size = book.osize[oid]
        rank = bisect_left(book.keys[s], k)
        if size > 1 and u_b < PARTIAL_CANCEL:
            cut = 1 + int(u_b / PARTIAL_CANCEL * (size - 1))
            book.reduce(s, k, oid, cut)
            kind, size = 2, cut
        else:
            book.remove(oid, s)
            kind = 3
        if rank < self.levels:
            self.tape.snapshot(book, s, self.row)
        self.tape.record(self.t, (kind, oid, size, SIGN[s] * k, 1 - 2 * s))
        self.row += 1

    def market_order(self, s: int, amount: int) -> None:
        """Execute `amount` shares against side `s`'s best level, oldest order first."""
        book = self.book
        k = book.keys[s][0]
        q = book.queue[s][k]
        left = amount
        while left > 0 and self.row < self.total:
            oid = q[0]
            size = book.osize[oid]
            fill = size if size <= left else left
            left -= fill
            gone = fill == size and len(q) == 1
            if fill == size:
                book.remove(oid, s)
            else:
                book.reduce(s, k, oid, fill)
            self.tape.snapshot(book, s, self.row)
            self.tape.record(self.t, (4, oid, fill, SIGN[s] * k, 1 - 2 * s))
            self.row += 1
            if gone:
                break

    def hidden_execution(self, u_a: float, u_b: float, size: int) -> None:
        kb, ka = self.book.keys
        lo = -kb[0] if kb else self.last_bid
        hi = ka[0] if ka else self.last_ask
        tick = lo + int(u_a * (hi - lo + 1))
        self.tape.record(self.t, (5, 0, size, tick, 1 if u_b < 0.5 else -1))
        self.row += 1

    def day(self, rng: np.random.Generator) -> Day:
        """The recorded day, burn-in dropped, times scaled to [0, 1) of the recorded span."""
        end_t = self.t + float(rng.standard_exponential()) / self.rate
        times = self.tape.times
        t0 = times[BURN_IN - 1]
        kb, ka = self.book.keys
        bid = -kb[0] if kb else self.last_bid
        ask = ka[0] if ka else self.last_ask
        at, ticks, sizes = self.tape.sides()
        return Day((times[BURN_IN:] - t0) / (end_t - t0), self.tape.msgs[BURN_IN:], at, ticks,
                   sizes, BURN_IN, self.levels, self.next_id, (bid + ask) // 2)


def simulate_day(rng: np.random.Generator, n: int, levels: int, start_tick: int,
                 next_id: int) -> Day:
    """Run the model for BURN_IN + n messages from a fresh book around `start_tick`; keep the last n.

    Order ids start at `next_id`; the returned day's `next_id` and `last_mid`
    (a tick) continue the next day.
    """
    flow = _OrderFlow(levels, BURN_IN + n, start_tick, next_id)
    while flow.row < flow.total:
        flow.run_block(rng)
    return flow.day(rng)
