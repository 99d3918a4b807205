"""One set of row checks and one window-end rule, for ingest's readers and for serving."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from standin_models import bars_model, book_model

from lobseq.data import validate
from lobseq.data.sources import read_bars, read_lobster
from lobseq.errors import LobseqError

STEM = "TEST_2024-01-02_34200000_57600000"
MESSAGES = ["34200.1,1,1,100,1000000,1", "34200.5,1,2,50,1001000,-1", "34201.25,4,1,20,1000000,1",
            "34202,3,2,50,1001000,-1"]
BOOK = ["1001000,50,1000000,100", "1001000,50,1000000,100", "1001000,50,1000000,80",
        "1001000,40,1000000,80"]


def _lobster(tmp_path: Path, messages=MESSAGES, book=BOOK) -> LobseqError:
    (tmp_path / f"{STEM}_message_1.csv").write_text("\n".join(messages) + "\n")
    (tmp_path / f"{STEM}_orderbook_1.csv").write_text("\n".join(book) + "\n")
    with pytest.raises(LobseqError) as info:
        read_lobster(tmp_path)
    return info.value


def _served(rows: list[list[float]], stamps=None) -> LobseqError:
    """The error the serving path raises for one-level book rows (ask, ask size, bid, bid size)."""
    frame = pd.DataFrame(rows, columns=["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"])
    with pytest.raises(LobseqError) as info:
        book_model(window=1).forecaster.check_rows(frame, timestamps=stamps)
    return info.value


def test_negative_book_size_in_a_lobster_file_is_rejected(tmp_path):
    book = [*BOOK[:2], "1001000,50,1000000,-80", BOOK[3]]
    err = _lobster(tmp_path, book=book)
    assert (err.row, err.field, err.problem) == (3, "bid_size_1",
                                                 "bid_size_1 -80 is negative; sizes and volumes are >= 0")


def test_negative_message_size_in_a_lobster_file_is_rejected(tmp_path):
    err = _lobster(tmp_path, messages=[*MESSAGES[:3], "34202,3,2,-50,1001000,-1"])
    assert (err.row, err.field) == (4, "size")


def test_negative_volume_in_a_bar_file_is_rejected(tmp_path):
    (tmp_path / "SPY.csv").write_text("Date,Open,High,Low,Close,Volume\n2024-01-02,1,1,1,1,10\n"
                                      "2024-01-03,1,1,1,1,-10\n")
    with pytest.raises(LobseqError) as info:
        read_bars(tmp_path)
    assert (info.value.row, info.value.field) == (3, "Volume") and "negative" in info.value.problem


def test_a_crossed_book_gets_the_same_words_from_the_reader_and_from_serving(tmp_path):
    err = _lobster(tmp_path, book=[*BOOK[:2], "999000,50,1000000,80", BOOK[3]])
    served = _served([[100.1, 50, 100.0, 100], [100.1, 50, 100.0, 100], [99.9, 50, 100.0, 80]])
    assert (err.problem, err.field, err.row) == (served.problem, served.field, 3)
    assert served.row == 2  # the service counts rows from 0 in its `data`


def test_a_negative_size_gets_the_same_words_from_the_reader_and_from_serving(tmp_path):
    err = _lobster(tmp_path, book=[*BOOK[:2], "1001000,50,1000000,-80", BOOK[3]])
    served = _served([[100.1, 50, 100.0, 100], [100.1, 50, 100.0, 100], [100.1, 50, 100.0, -80]])
    assert (err.problem, err.field) == (served.problem, served.field)


def test_time_going_backwards_gets_the_same_words_from_the_reader_and_from_serving(tmp_path):
    err = _lobster(tmp_path, messages=[*MESSAGES[:2], "34200.2,4,1,20,1000000,1", MESSAGES[3]])
    stamps = pd.to_datetime(["2024-01-02 09:30:00.1", "2024-01-02 09:30:00.5",
                             "2024-01-02 09:30:00.2"])
    served = _served([[100.1, 50, 100.0, 100]] * 3, stamps)
    assert "goes backwards" in err.problem and "goes backwards" in served.problem
    assert (err.row, served.row, served.field) == (3, 2, "timestamp")


def test_equal_book_times_pass_but_repeated_bar_dates_do_not():
    rows = validate.Rows()
    validate.check_chronological(np.array([1, 2, 2, 3]), "timestamp", rows)
    with pytest.raises(LobseqError, match="appears twice"):
        validate.check_chronological(np.array([1, 2, 2, 3]), "timestamp", rows, strict=True)


def test_the_first_bad_row_is_named_then_its_first_bad_column():
    block = np.array([[1.0, 1.0, 1.0], [1.0, np.inf, np.nan], [np.nan, 1.0, 1.0]])
    with pytest.raises(LobseqError) as info:
        validate.check_finite(block, ["a", "b", "c"], validate.Rows(row_of=lambda i: i + 10))
    assert (info.value.row, info.value.field, info.value.problem) == (
        11, "b", "value inf is not a finite number")


def test_an_empty_level_is_a_nan_price_with_size_zero_and_nothing_else():
    names = ["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]
    ok = np.array([[np.nan, 0.0, 10.0, 5.0]])
    validate.check_rows(ok, names, validate.ROW_CHECKS["lobster"], validate.Rows())
    with pytest.raises(LobseqError, match="field 'ask_price_1': missing or NaN"):
        validate.check_rows(np.array([[np.nan, 3.0, 10.0, 5.0]]), names,
                            validate.ROW_CHECKS["lobster"], validate.Rows())


def test_fi2010_rows_are_only_checked_for_finite_values():
    names = ["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]
    normalized = np.array([[-1.0, -0.5, 0.2, -2.0]])  # z-scores: negative and "crossed"
    validate.check_rows(normalized, names, validate.ROW_CHECKS["fi2010"], validate.Rows())


# ------------------------------------------------------------------ the window-end rule


def test_ingest_and_serving_call_the_same_window_end_function():
    import lobseq.data.splits as splits
    import lobseq.data.windows as windows
    import lobseq.serving.forecaster as forecaster

    assert splits.complete_windows is windows.complete_windows is forecaster.complete_windows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_serving_finds_the_window_ends_ingest_finds(seed):
    from lobseq.data.splits import window_ends

    rng = np.random.default_rng(seed)
    n, window = 400, 7
    usable = rng.random(n) > 0.05
    ingest_ends = window_ends(np.zeros(n, np.int8), np.zeros(n, np.int32), usable,
                              np.ones(n, bool), window)["train"]
    fc = bars_model(window=window).forecaster
    np.testing.assert_array_equal(fc.window_ends(usable, all_windows=True), ingest_ends)


def test_a_halted_row_is_unusable_in_serving_as_in_ingest():
    from lobseq.data.windows import usable_rows

    x = np.ones((5, 2), np.float32)
    x[0, 1] = np.nan
    halted = np.array([False, False, True, False, False])
    assert usable_rows(x, halted).tolist() == [False, True, False, True, True]
