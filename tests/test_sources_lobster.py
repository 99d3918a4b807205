"""LOBSTER reader: canonical frame, halts, sentinels, and one clear error per bad input."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from lobseq.data.sources import FORMATS, Segment, read_lobster, read_sources
from lobseq.errors import LobseqError

SAMPLE = Path(__file__).parents[1].parent / "shared/data/lobster"
STEM = "TEST_2024-01-02_34200000_57600000"

# time, type, order id, size, price (x10^4), direction  |  book after each message, 2 levels
MESSAGES = [
    "34200.000000001,1,1,100,1000000,1",
    "34200.5,1,2,50,1001000,-1",
    "34201.25,4,1,20,1000000,1",
    "34202,3,2,50,1001000,-1",
]
BOOK_2 = [
    "9999999999,0,1000000,100,9999999999,0,-9999999999,0",
    "1001000,50,1000000,100,9999999999,0,-9999999999,0",
    "1001000,50,1000000,80,9999999999,0,-9999999999,0",
    "9999999999,0,1000000,80,9999999999,0,-9999999999,0",
]


def write_pair(folder: Path, messages, book, stem=STEM, levels=2) -> tuple[Path, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    msg = folder / f"{stem}_message_{levels}.csv"
    ob = folder / f"{stem}_orderbook_{levels}.csv"
    msg.write_text("".join(line + "\n" for line in messages))
    ob.write_text("".join(line + "\n" for line in book))
    return msg, ob


def one_level(book_rows):
    return [",".join(row.split(",")[:4]) for row in book_rows]


def error_of(folder: Path) -> LobseqError:
    with pytest.raises(LobseqError) as info:
        read_lobster(folder)
    return info.value


# --- the canonical frame -------------------------------------------------------------------


def test_reads_one_segment_with_canonical_columns(tmp_path):
    write_pair(tmp_path, MESSAGES, BOOK_2)
    [seg] = read_lobster(tmp_path)
    assert isinstance(seg, Segment)
    assert (seg.instrument, seg.day, seg.kind) == ("TEST", "2024-01-02", "book")
    assert list(seg.frame.columns[:8]) == [
        "timestamp", "time", "event_type", "order_id", "size", "price", "direction", "halted",
    ]  # fmt: skip
    assert list(seg.frame.columns[8:12]) == [
        "ask_price_1",
        "ask_size_1",
        "bid_price_1",
        "bid_size_1",
    ]
    assert seg.frame.shape == (4, 16)
    assert seg.frame["event_type"].dtype == np.int8
    assert seg.frame["direction"].dtype == np.int8
    assert seg.frame["order_id"].dtype == np.int64
    assert seg.frame["halted"].dtype == bool
    assert list(seg.frame.index) == [0, 1, 2, 3]
    assert len(seg.files) == 2


def test_prices_are_dollars(tmp_path):
    write_pair(tmp_path, MESSAGES, BOOK_2)
    frame = read_lobster(tmp_path)[0].frame
    assert frame["bid_price_1"].iloc[0] == pytest.approx(100.0)
    assert frame["ask_price_1"].iloc[1] == pytest.approx(100.1)
    assert frame["price"].iloc[1] == pytest.approx(100.1)


def test_empty_levels_are_nan_price_and_zero_size(tmp_path):
    write_pair(tmp_path, MESSAGES, BOOK_2)
    frame = read_lobster(tmp_path)[0].frame
    assert np.isnan(frame["ask_price_1"].iloc[0])
    assert frame["ask_size_1"].iloc[0] == 0
    assert frame["ask_price_2"].isna().all() and frame["bid_price_2"].isna().all()
    assert (frame["ask_size_2"] == 0).all() and (frame["bid_size_2"] == 0).all()
    assert frame.filter(like="_price_").abs().max().max() < 1e6  # no sentinel survives


def test_timestamp_is_day_plus_seconds_after_midnight_to_the_nanosecond(tmp_path):
    write_pair(tmp_path, MESSAGES, BOOK_2)
    ts = read_lobster(tmp_path)[0].frame["timestamp"]
    assert ts.dtype == "datetime64[ns]"
    assert ts.iloc[0] == np.datetime64("2024-01-02T09:30:00.000000001")
    assert ts.iloc[2] == np.datetime64("2024-01-02T09:30:01.250")


def test_level_count_comes_from_the_file_name(tmp_path):
    write_pair(tmp_path, MESSAGES, one_level(BOOK_2), levels=1)
    frame = read_lobster(tmp_path)[0].frame
    assert "ask_price_2" not in frame
    assert frame.shape[1] == 12


def test_header_rows_are_tolerated(tmp_path):
    msg, ob = write_pair(tmp_path, MESSAGES, BOOK_2)
    msg.write_text("Time,Type,OrderID,Size,Price,Direction\n" + msg.read_text())
    ob.write_text(",".join(f"c{i}" for i in range(8)) + "\n" + ob.read_text())
    frame = read_lobster(tmp_path)[0].frame
    assert len(frame) == 4
    assert frame["time"].iloc[0] == pytest.approx(34200.000000001)


def test_first_row_with_one_bad_cell_is_not_taken_for_a_header(tmp_path):
    messages = list(MESSAGES)
    messages[0] = "34200.000000001,new,1,100,1000000,1"
    msg, _ = write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.file, err.row, err.field) == (str(msg), 1, "event_type")


def test_many_days_and_tickers_sort_by_day_then_ticker(tmp_path):
    write_pair(tmp_path, MESSAGES, BOOK_2, stem="ZZZ_2024-01-02_34200000_57600000")
    write_pair(tmp_path, MESSAGES, BOOK_2, stem="AAA_2024-01-03_34200000_57600000")
    write_pair(tmp_path, MESSAGES, BOOK_2, stem="AAA_2024-01-02_34200000_57600000")
    (tmp_path / "README.txt").write_text("not data")
    keys = [(s.day, s.instrument) for s in read_lobster(tmp_path)]
    assert keys == [("2024-01-02", "AAA"), ("2024-01-02", "ZZZ"), ("2024-01-03", "AAA")]


def test_explicit_file_paths_work_like_a_folder(tmp_path):
    msg, ob = write_pair(tmp_path, MESSAGES, BOOK_2)
    assert len(read_lobster([msg, ob])[0].frame) == 4
    assert len(read_sources(str(tmp_path), "lobster")) == 1


# --- trading halts -------------------------------------------------------------------------


def test_halt_rows_are_kept_and_flagged_until_resume(tmp_path):
    messages = [
        MESSAGES[0],
        "34300,7,0,0,-1,-1",  # halt
        "34400,7,0,0,0,-1",  # quoting
        "34500,7,0,0,1,-1",  # resume
        "34501,1,2,50,1001000,-1",
    ]
    book = [BOOK_2[0]] * 4 + [BOOK_2[1]]  # LOBSTER repeats the book on type-7 rows
    write_pair(tmp_path, messages, book)
    frame = read_lobster(tmp_path)[0].frame
    assert len(frame) == 5
    assert frame["halted"].tolist() == [False, True, True, False, False]
    assert frame["price"].iloc[1:4].isna().all()  # the -1/0/1 flag is not a price


def test_halt_without_resume_lasts_to_the_end(tmp_path):
    messages = [MESSAGES[0], "34300,7,0,0,-1,-1", "34400,7,0,0,0,-1"]
    write_pair(tmp_path, messages, [BOOK_2[0]] * 3)
    assert read_lobster(tmp_path)[0].frame["halted"].tolist() == [False, True, True]


def test_halt_message_with_an_unknown_flag_is_an_error(tmp_path):
    write_pair(tmp_path, [MESSAGES[0], "34300,7,0,0,5,-1"], BOOK_2[:2])
    err = error_of(tmp_path)
    assert (err.row, err.field) == (2, "price")


# --- the real sample -----------------------------------------------------------------------


@pytest.mark.skipif(not SAMPLE.is_dir(), reason=f"real LOBSTER sample not present at {SAMPLE}")
def test_real_amzn_sample_reads_exactly():
    [seg] = read_lobster(SAMPLE)
    assert (seg.instrument, seg.day) == ("AMZN", "2012-06-21")
    assert len(seg.frame) == 57_515
    assert seg.frame["ask_price_1"].iloc[0] == pytest.approx(223.95)
    assert seg.frame["bid_price_1"].iloc[0] == pytest.approx(223.18)
    assert not seg.frame["halted"].any()
    assert seg.frame["event_type"].value_counts().to_dict() == {
        1: 27_845, 3: 18_235, 4: 8_974, 5: 2_445, 2: 16,
    }  # fmt: skip
    assert seg.frame["timestamp"].is_monotonic_increasing


# --- bad inputs: one clear error each ------------------------------------------------------


def test_missing_file_is_an_error(tmp_path):
    with pytest.raises(LobseqError, match="not found"):
        read_lobster(tmp_path / "nope_message_1.csv")


def test_folder_without_lobster_files_is_an_error(tmp_path):
    (tmp_path / "notes.csv").write_text("1,2\n")
    assert "no LOBSTER files" in str(error_of(tmp_path))


def test_empty_file_is_an_error(tmp_path):
    msg, _ = write_pair(tmp_path, MESSAGES, BOOK_2)
    msg.write_text("")
    err = error_of(tmp_path)
    assert "empty" in err.problem and err.file == str(msg)


def test_header_only_file_is_an_error(tmp_path):
    msg, _ = write_pair(tmp_path, MESSAGES, BOOK_2)
    msg.write_text("time,type,id,size,price,direction\n")
    assert "no data rows" in error_of(tmp_path).problem


def test_orderbook_column_count_must_match_the_level_in_the_name(tmp_path):
    _, ob = write_pair(tmp_path, MESSAGES, one_level(BOOK_2), levels=2)
    err = error_of(tmp_path)
    assert err.file == str(ob) and err.row == 1
    assert "expected 8 columns, found 4" in err.problem and "2 level" in err.fix


def test_wrong_column_count_names_the_row(tmp_path):
    messages = [*MESSAGES[:2], MESSAGES[2] + ",9", MESSAGES[3]]
    msg, _ = write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.file, err.row) == (str(msg), 3)


SEPARATORS = [(";", "';'"), ("\t", "tabs"), ("|", "'|'")]


@pytest.mark.parametrize("sep, named", SEPARATORS)
def test_message_file_with_another_separator_names_row_1_and_the_separator(tmp_path, sep, named):
    msg, _ = write_pair(tmp_path, [m.replace(",", sep) for m in MESSAGES], BOOK_2)
    err = error_of(tmp_path)
    assert (err.file, err.row) == (str(msg), 1)
    assert f"separated by {named}" in err.problem and "comma-separated" in err.fix


@pytest.mark.parametrize("sep, named", SEPARATORS)
def test_orderbook_with_another_separator_names_row_1_and_the_separator(tmp_path, sep, named):
    _, ob = write_pair(tmp_path, MESSAGES, [b.replace(",", sep) for b in BOOK_2])
    err = error_of(tmp_path)
    assert (err.file, err.row) == (str(ob), 1)
    assert f"separated by {named}" in str(err)


def test_semicolons_with_decimal_commas_are_named_too(tmp_path):
    messages = [m.replace(",", ";").replace(".", ",") for m in MESSAGES]
    msg, _ = write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.file, err.row) == (str(msg), 1) and "';'" in err.problem


def test_header_with_another_separator_names_row_1(tmp_path):
    msg, _ = write_pair(tmp_path, MESSAGES, BOOK_2)
    msg.write_text("Time;Type;OrderID;Size;Price;Direction\n" + msg.read_text().replace(",", ";"))
    err = error_of(tmp_path)
    assert (err.file, err.row) == (str(msg), 1) and "';'" in err.problem


def test_header_names_with_spaces_are_not_taken_for_a_separator(tmp_path):
    _, ob = write_pair(tmp_path, MESSAGES, one_level(BOOK_2), levels=2)
    ob.write_text("ask price 1,ask size 1,bid price 1,bid size 1\n" + ob.read_text())
    err = error_of(tmp_path)
    assert err.row == 2 and "expected 8 columns, found 4" in err.problem


def test_non_numeric_cell_names_row_and_column(tmp_path):
    messages = list(MESSAGES)
    messages[2] = "34201.25,4,1,twenty,1000000,1"
    write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.row, err.field) == (3, "size")
    assert "'twenty' is not a number" in str(err)


def test_non_numeric_cell_row_counts_the_header_line(tmp_path):
    _, ob = write_pair(tmp_path, MESSAGES, BOOK_2)
    lines = ob.read_text().splitlines()
    lines[1] = lines[1].replace("1000000,100", "1000000,abc", 1)
    ob.write_text("ask,as,bid,bs,a2,s2,b2,bs2\n" + "\n".join(lines) + "\n")
    err = error_of(tmp_path)
    assert (err.file, err.row, err.field) == (str(ob), 3, "bid_size_1")


@pytest.mark.parametrize("bad", ["nan", "inf", ""])
def test_nan_inf_or_blank_cell_is_an_error(tmp_path, bad):
    messages = list(MESSAGES)
    messages[1] = f"34200.5,1,2,{bad},1001000,-1"
    write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.row, err.field) == (2, "size")


def test_time_going_backwards_is_an_error(tmp_path):
    messages = list(MESSAGES)
    messages[2] = "34200.1,4,1,20,1000000,1"
    write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.row, err.field) == (3, "time") and "backwards" in err.problem


def test_equal_times_are_fine(tmp_path):
    messages = list(MESSAGES)
    messages[2] = "34200.5,4,1,20,1000000,1"
    write_pair(tmp_path, messages, BOOK_2)
    assert len(read_lobster(tmp_path)[0].frame) == 4


def test_row_counts_that_differ_are_an_error(tmp_path):
    _, ob = write_pair(tmp_path, MESSAGES, BOOK_2[:3])
    err = error_of(tmp_path)
    assert err.file == str(ob) and "3 rows" in err.problem and "4" in err.problem


def test_crossed_book_names_the_row(tmp_path):
    book = list(BOOK_2)
    book[2] = "999000,50,1000000,80,9999999999,0,-9999999999,0"  # ask 99.90 < bid 100.00
    _, ob = write_pair(tmp_path, MESSAGES, book)
    err = error_of(tmp_path)
    assert (err.file, err.row) == (str(ob), 3) and "crossed" in err.problem


def test_locked_book_is_not_crossed(tmp_path):
    book = list(BOOK_2)
    book[2] = "1000000,50,1000000,80,9999999999,0,-9999999999,0"
    write_pair(tmp_path, MESSAGES, book)
    assert len(read_lobster(tmp_path)[0].frame) == 4


def test_message_without_orderbook_is_an_error(tmp_path):
    msg, ob = write_pair(tmp_path, MESSAGES, BOOK_2)
    ob.unlink()
    err = error_of(tmp_path)
    assert err.file == str(msg) and "no orderbook" in err.problem and ob.name in err.fix


def test_orderbook_without_message_is_an_error(tmp_path):
    msg, ob = write_pair(tmp_path, MESSAGES, BOOK_2)
    msg.unlink()
    err = error_of(tmp_path)
    assert err.file == str(ob) and "no message" in err.problem and msg.name in err.fix


def test_file_not_named_like_lobster_is_an_error(tmp_path):
    path = tmp_path / "book.csv"
    path.write_text(BOOK_2[0] + "\n")
    with pytest.raises(LobseqError, match="not a LOBSTER file name"):
        read_lobster(path)


def test_unknown_event_type_is_an_error(tmp_path):
    messages = list(MESSAGES)
    messages[1] = "34200.5,9,2,50,1001000,-1"
    write_pair(tmp_path, messages, BOOK_2)
    err = error_of(tmp_path)
    assert (err.row, err.field) == (2, "event_type")


def test_unknown_format_lists_the_valid_ones(tmp_path):
    with pytest.raises(LobseqError) as info:
        read_sources(tmp_path, "itch")
    assert "itch" in str(info.value)
    for name in ("bars", "fi2010", "lobster"):
        assert name in info.value.fix
    assert set(FORMATS) == {"bars", "fi2010", "lobster"}


def test_reading_writes_nothing(tmp_path, monkeypatch):
    data = tmp_path / "data"
    write_pair(data, MESSAGES, BOOK_2)
    work = tmp_path / "cwd"
    work.mkdir()
    monkeypatch.chdir(work)

    def snapshot():
        return sorted((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in tmp_path.rglob("*"))

    broken = tmp_path / "broken"
    write_pair(broken, MESSAGES, BOOK_2[:3])
    before = snapshot()
    read_lobster(data)
    with pytest.raises(LobseqError):
        read_lobster(broken)
    assert snapshot() == before
    assert os.listdir(work) == []


# --- block-wise orderbook parsing and lazy reading -----------------------------------------


def test_small_parse_blocks_give_the_same_frame(tmp_path, monkeypatch):
    import lobseq.data.sources.lobster_csv as lobster_csv

    write_pair(tmp_path, MESSAGES, BOOK_2)
    whole = read_lobster(tmp_path)[0].frame
    monkeypatch.setattr(lobster_csv, "BOOK_BLOCK_BYTES", 64)  # about one row per block
    assert read_lobster(tmp_path)[0].frame.equals(whole)


def test_bad_cell_in_a_later_block_names_its_row(tmp_path, monkeypatch):
    import lobseq.data.sources.lobster_csv as lobster_csv

    monkeypatch.setattr(lobster_csv, "BOOK_BLOCK_BYTES", 64)
    book = list(BOOK_2)
    book[1] = "1001000,inf,1000000,100,9999999999,0,-9999999999,0"
    book[3] = "9999999999,nan,1000000,80,9999999999,0,-9999999999,0"
    _, ob = write_pair(tmp_path, MESSAGES, book)
    err = error_of(tmp_path)  # a missing cell is reported before an earlier infinite one
    assert (err.file, err.row, err.field, err.problem) == (
        str(ob), 4, "ask_size_1", "missing or NaN value"
    )


def test_extra_orderbook_rows_in_later_blocks_are_counted(tmp_path, monkeypatch):
    import lobseq.data.sources.lobster_csv as lobster_csv

    monkeypatch.setattr(lobster_csv, "BOOK_BLOCK_BYTES", 64)
    write_pair(tmp_path, MESSAGES, BOOK_2 + BOOK_2[-1:] * 3)
    assert "orderbook has 7 rows" in error_of(tmp_path).problem


def test_iter_lobster_checks_names_at_once_and_parses_one_day_per_step(tmp_path):
    from lobseq.data.sources.lobster import iter_lobster

    write_pair(tmp_path, MESSAGES, BOOK_2, stem="AAA_2024-01-02_34200000_57600000")
    write_pair(tmp_path, MESSAGES, ["not,a,book"], stem="AAA_2024-01-03_34200000_57600000")
    stream = iter_lobster(tmp_path)  # the broken second day is not parsed yet
    assert len(stream) == 2 and len(stream.files) == 2
    days = iter(stream)
    assert next(days).day == "2024-01-02"
    with pytest.raises(LobseqError):
        next(days)
    (tmp_path / "AAA_2024-01-02_34200000_57600000_orderbook_2.csv").unlink()
    with pytest.raises(LobseqError, match="no orderbook file"):
        iter_lobster(tmp_path)
