"""The built-in simulator writes LOBSTER-exact books and consistent daily bars."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import lobseq.data.simulate.bars as sim_bars
import lobseq.data.simulate.lobster as sim_lobster
from lobseq.data.simulate import EMPTY_ASK, EMPTY_BID, simulate_bars, simulate_lobster
from lobseq.errors import LobseqError

EVENTS = 20_000
LEVELS = 10


@pytest.fixture(scope="module")
def lobster(tmp_path_factory) -> list[Path]:
    return simulate_lobster(tmp_path_factory.mktemp("lob"), events=EVENTS, levels=LEVELS, seed=7)


@pytest.fixture(scope="module")
def messages(lobster) -> np.ndarray:
    """(n, 6) float64 message matrix, parsed without a header."""
    return pd.read_csv(lobster[0], header=None).to_numpy(dtype=np.float64)


@pytest.fixture(scope="module")
def book(lobster) -> np.ndarray:
    return pd.read_csv(lobster[1], header=None).to_numpy(dtype=np.int64)


@pytest.fixture(scope="module")
def bars(tmp_path_factory) -> list[Path]:
    return simulate_bars(tmp_path_factory.mktemp("bars"), days=750, seed=3)


def _files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


# ------------------------------------------------------------ LOBSTER layout

def test_files_are_named_like_lobster_for_consecutive_business_days(tmp_path):
    paths = simulate_lobster(tmp_path, events=300, levels=5, days=3, ticker="XYZ",
                             start_date="2024-01-05")  # a Friday
    assert [p.name for p in paths] == [
        f"XYZ_{day}_34200000_57600000_{part}_5.csv"
        for day in ("2024-01-05", "2024-01-08", "2024-01-09")
        for part in ("message", "orderbook")
    ]


def test_returned_paths_are_exactly_the_files_written(tmp_path):
    paths = simulate_lobster(tmp_path, events=300, levels=3, days=2)
    assert sorted(p.name for p in paths) == _files(tmp_path)


def test_message_file_has_six_columns_and_one_row_per_event(messages):
    assert messages.shape == (EVENTS, 6)


def test_orderbook_file_has_four_columns_per_level_and_one_row_per_event(book):
    assert book.shape == (EVENTS, 4 * LEVELS)


def test_files_have_no_header(lobster):
    first_lines = [p.read_text().split("\n", 1)[0] for p in lobster]
    assert all(re.fullmatch(r"[-0-9.,]+", line) for line in first_lines)


def test_files_are_unquoted_lf_text(lobster):
    data = b"".join(p.read_bytes() for p in lobster)
    assert b"\r" not in data and b'"' not in data and data.endswith(b"\n")


def test_prices_are_written_as_integers(lobster):
    message_prices = [line.split(",")[4] for line in lobster[0].read_text().splitlines()]
    book_prices = [f for line in lobster[1].read_text().splitlines()[:2000]
                   for f in line.split(",")[0::2]]
    assert all(re.fullmatch(r"-?\d+", p) for p in message_prices + book_prices)


def test_message_types_and_directions_use_lobster_codes(messages):
    assert set(np.unique(messages[:, 1])) <= {1, 2, 3, 4, 5}
    assert set(np.unique(messages[:, 5])) == {-1, 1}


def test_all_five_message_types_occur(messages):
    assert set(np.unique(messages[:, 1])) == {1, 2, 3, 4, 5}


def test_times_are_non_decreasing_within_the_session(messages):
    t = messages[:, 0]
    assert np.all(np.diff(t) >= 0) and t[0] >= 34_200 and t[-1] < 57_600


def test_times_have_nanosecond_decimals_without_trailing_zeros(lobster):
    times = [line.split(",", 1)[0] for line in lobster[0].read_text().splitlines()]
    assert all(re.fullmatch(r"\d{5}(\.\d{0,8}[1-9])?", t) for t in times)


def test_empty_levels_use_lobster_sentinels(tmp_path):
    # 30 levels is deeper than the model keeps filled, so empty levels occur.
    paths = simulate_lobster(tmp_path, events=3000, levels=30, seed=1)
    b = pd.read_csv(paths[1], header=None).to_numpy(dtype=np.int64)
    ask_p, ask_s, bid_p, bid_s = b[:, 0::4], b[:, 1::4], b[:, 2::4], b[:, 3::4]
    assert (ask_s == 0).any() and (bid_s == 0).any()
    assert np.array_equal(ask_p == EMPTY_ASK, ask_s == 0)
    assert np.array_equal(bid_p == EMPTY_BID, bid_s == 0)


def test_book_is_never_crossed(book):
    assert np.all(book[:, 0] > book[:, 2])


def test_occupied_levels_are_strictly_ordered_away_from_the_touch(book):
    ask, bid = book[:, 0::4], book[:, 2::4]
    deeper_ask = book[:, 5::4] > 0  # level i+1 occupied (sentinels repeat, so skip them)
    deeper_bid = book[:, 7::4] > 0
    assert np.all((np.diff(ask, axis=1) > 0)[deeper_ask])
    assert np.all((np.diff(bid, axis=1) < 0)[deeper_bid])


def test_executions_hit_the_best_quote_of_the_previous_book(messages, book):
    i = np.flatnonzero(messages[1:, 1] == 4) + 1
    touch = np.where(messages[i, 5] == -1, book[i - 1, 0], book[i - 1, 2])
    assert np.array_equal(messages[i, 4].astype(np.int64), touch)


def test_cancels_and_executions_reference_orders_at_their_submitted_price(messages):
    submitted = {int(o): p for o, p in messages[messages[:, 1] == 1][:, [2, 4]]}
    later = messages[np.isin(messages[:, 1], (2, 3, 4))]
    known = [(int(o), p) for o, p in later[:, [2, 4]] if int(o) in submitted]
    assert len(known) > 1000 and all(submitted[o] == p for o, p in known)


def test_new_order_adds_its_size_at_its_price(messages, book):
    i = np.flatnonzero(messages[1:, 1] == 1) + 1
    hits = 0
    for r in i[:500]:
        price, size, side = int(messages[r, 4]), int(messages[r, 3]), messages[r, 5]
        cols = (2, 3) if side == 1 else (0, 1)
        before = dict(zip(book[r - 1, cols[0]::4], book[r - 1, cols[1]::4], strict=True))
        after = dict(zip(book[r, cols[0]::4], book[r, cols[1]::4], strict=True))
        if price in before and price in after:
            assert after[price] == before[price] + size
            hits += 1
    assert hits > 200


# ------------------------------------------------------------ determinism

def test_same_seed_writes_byte_identical_files(tmp_path):
    a = simulate_lobster(tmp_path / "a", events=2000, levels=5, days=2, seed=11)
    b = simulate_lobster(tmp_path / "b", events=2000, levels=5, days=2, seed=11)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


_SIMULATE_IN_A_CHILD = """
import sys
from lobseq.data.simulate import simulate_bars, simulate_lobster
simulate_lobster(sys.argv[1] + "/lob", events=64_000, levels=2, days=2, seed=4)
simulate_bars(sys.argv[1] + "/bars", symbols=("A", "B"), days=30, seed=4, fmt="parquet")
"""


def _contents(directory: Path) -> dict[str, bytes]:
    return {p.relative_to(directory).as_posix(): p.read_bytes()
            for p in sorted(directory.rglob("*")) if p.is_file()}


def test_a_seed_writes_the_same_bytes_in_a_fresh_process(tmp_path):
    # 64,000 events + burn-in span two random-number blocks; the child has another hash seed.
    simulate_lobster(tmp_path / "here" / "lob", events=64_000, levels=2, days=2, seed=4)
    simulate_bars(tmp_path / "here" / "bars", symbols=("A", "B"), days=30, seed=4, fmt="parquet")
    env = {**os.environ, "PYTHONHASHSEED": "12345",
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[1]),
                                          os.environ.get("PYTHONPATH", "")])}
    subprocess.run([sys.executable, "-c", _SIMULATE_IN_A_CHILD, str(tmp_path / "child")],
                   check=True, env=env, capture_output=True)
    here, child = _contents(tmp_path / "here"), _contents(tmp_path / "child")
    assert len(here) == 6 and here == child


def test_different_seed_writes_different_files(tmp_path):
    a = simulate_lobster(tmp_path / "a", events=2000, levels=5, seed=11)
    b = simulate_lobster(tmp_path / "b", events=2000, levels=5, seed=12)
    assert a[0].read_bytes() != b[0].read_bytes()


# ------------------------------------------------------------ learnable signal

def test_touch_imbalance_predicts_the_next_mid_move(book):
    ask1, ask_q, bid1, bid_q = (book[:, c].astype(float) for c in range(4))
    mid = (ask1 + bid1) / 2
    imbalance = (bid_q - ask_q) / (bid_q + ask_q)
    changes = np.flatnonzero(np.diff(mid) != 0) + 1
    nxt = np.searchsorted(changes, np.arange(len(mid)), side="right")
    usable = (nxt < len(changes)) & (imbalance != 0)
    move = np.sign(mid[changes[nxt[usable]]] - mid[usable])
    hit_rate = np.mean(np.sign(imbalance[usable]) == move)
    # Queue depletion alone gives ~0.58; the queue-reactive market orders lift it to ~0.70.
    assert hit_rate > 0.62


def test_mid_price_moves_often_enough_to_learn_from(book):
    mid = (book[:, 0] + book[:, 2]) / 2
    assert np.count_nonzero(np.diff(mid)) > EVENTS // 20


# ------------------------------------------------------------ argument checks

@pytest.mark.parametrize("kwargs, field", [
    ({"events": 0}, "events"),
    ({"levels": 0}, "levels"),
    ({"days": 0}, "days"),
    ({"events": 10.5}, "events"),
    ({"seed": -1}, "seed"),
    ({"tick": 0.0}, "tick"),
    ({"tick": 0.00005}, "tick"),
    ({"start_price": 0.01}, "start_price"),
    ({"start_date": "not-a-date"}, "start_date"),
    ({"ticker": "A/B"}, "ticker"),
])
def test_bad_lobster_argument_raises_lobseq_error_naming_it(tmp_path, kwargs, field):
    with pytest.raises(LobseqError) as err:
        simulate_lobster(tmp_path, **kwargs)
    assert err.value.field == field and err.value.fix


def test_bad_argument_writes_nothing(tmp_path):
    with pytest.raises(LobseqError):
        simulate_lobster(tmp_path / "out", events=0)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------ atomic writes

def _fail_on_call(monkeypatch, module, name: str, call: int) -> None:
    real = getattr(module, name)
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            raise OSError("disk full (simulated)")
        return real(*args, **kwargs)

    monkeypatch.setattr(module, name, flaky)


def test_failed_lobster_write_leaves_no_file(tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, sim_lobster, "_write_csv", call=3)  # the second day's message file
    with pytest.raises(OSError):
        simulate_lobster(tmp_path, events=500, levels=3, days=2)
    assert _files(tmp_path) == []


def test_failed_write_midway_through_a_file_leaves_no_file(tmp_path, monkeypatch):
    real_rows = sim_lobster._orderbook_rows

    def rows_then_fail(day, lo, hi, mult):
        if lo > 0:
            raise OSError("disk full (simulated)")
        return real_rows(day, lo, hi, mult)

    monkeypatch.setattr(sim_lobster, "WRITE_ROWS", 256)
    monkeypatch.setattr(sim_lobster, "_orderbook_rows", rows_then_fail)
    with pytest.raises(OSError):
        simulate_lobster(tmp_path, events=1000, levels=3)
    assert _files(tmp_path) == []


def test_failed_write_keeps_the_previous_files(tmp_path, monkeypatch):
    first = simulate_lobster(tmp_path, events=500, levels=3, seed=1)
    before = [p.read_bytes() for p in first]
    _fail_on_call(monkeypatch, sim_lobster, "_write_csv", call=2)
    with pytest.raises(OSError):
        simulate_lobster(tmp_path, events=500, levels=3, seed=2)
    assert [p.read_bytes() for p in first] == before and _files(tmp_path) == [p.name for p in first]


def test_failed_bars_write_leaves_no_file(tmp_path, monkeypatch):
    _fail_on_call(monkeypatch, sim_bars, "_bars_frame", call=2)
    with pytest.raises(OSError):
        simulate_bars(tmp_path, days=50)
    assert _files(tmp_path) == []


# ------------------------------------------------------------ daily bars

def test_bars_write_one_csv_per_symbol_with_the_yahoo_header(bars):
    assert [p.name for p in bars] == ["AAA.csv", "BBB.csv", "CCC.csv"]
    assert all(p.read_text().split("\n", 1)[0] == "Date,Open,High,Low,Close,Adj Close,Volume"
               for p in bars)


def test_bars_are_consecutive_business_days(bars):
    dates = pd.to_datetime(pd.read_csv(bars[0])["Date"])
    assert dates.equals(pd.Series(pd.bdate_range("2020-01-01", periods=750), name="Date"))


def test_bars_ohlc_are_consistent(bars):
    f = pd.concat([pd.read_csv(p) for p in bars])
    low, high = f["Low"], f["High"]
    assert ((low <= f["Open"]) & (low <= f["Close"]) & (f["Open"] <= high)
            & (f["Close"] <= high) & (low > 0) & (f["Volume"] > 0)).all()


def test_bars_returns_are_positively_autocorrelated(bars):
    ac = []
    for p in bars:
        r = np.diff(np.log(pd.read_csv(p)["Adj Close"].to_numpy()))
        ac.append(np.corrcoef(r[1:], r[:-1])[0, 1])
    assert np.mean(ac) > 0.05


def test_bars_volume_rises_with_absolute_return(bars):
    f = pd.read_csv(bars[0])
    r = np.abs(np.diff(np.log(f["Close"].to_numpy())))
    assert np.corrcoef(r, np.log(f["Volume"].to_numpy()[1:]))[0, 1] > 0.2


def test_bars_same_seed_writes_byte_identical_files(tmp_path):
    a = simulate_bars(tmp_path / "a", days=60, seed=5)
    b = simulate_bars(tmp_path / "b", days=60, seed=5)
    assert [p.read_bytes() for p in a] == [p.read_bytes() for p in b]


def test_bars_different_seed_writes_different_files(tmp_path):
    a = simulate_bars(tmp_path / "a", days=60, seed=5)
    b = simulate_bars(tmp_path / "b", days=60, seed=6)
    assert a[0].read_bytes() != b[0].read_bytes()


def test_bars_parquet_holds_the_same_values_as_csv(tmp_path):
    csv = pd.read_csv(simulate_bars(tmp_path / "c", symbols=("Q",), days=40, seed=2)[0])
    pq = pd.read_parquet(simulate_bars(tmp_path / "p", symbols=("Q",), days=40, seed=2,
                                       fmt="parquet")[0])
    pq["Date"] = pq["Date"].dt.strftime("%Y-%m-%d")
    pd.testing.assert_frame_equal(csv, pq, check_dtype=False)


@pytest.mark.parametrize("kwargs, field", [
    ({"days": 1}, "days"),
    ({"fmt": "xlsx"}, "fmt"),
    ({"symbols": ()}, "symbols"),
    ({"symbols": "AAA"}, "symbols"),
    ({"symbols": ("A", "A")}, "symbols"),
    ({"symbols": ("../x",)}, "symbols"),
    ({"start_date": "2020-13-45"}, "start_date"),
])
def test_bad_bars_argument_raises_lobseq_error_naming_it(tmp_path, kwargs, field):
    with pytest.raises(LobseqError) as err:
        simulate_bars(tmp_path, **kwargs)
    assert err.value.field == field and err.value.fix
