"""Bars reader: CSV/Parquet, per-symbol files or long tables, strict date order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lobseq.data.sources import read_bars, read_sources
from lobseq.errors import LobseqError

YAHOO = """Date,Open,High,Low,Close,Adj Close,Volume
2024-01-02,10,11,9,10.5,10.4,1000
2024-01-03,10.5,12,10,11.5,11.4,2000
2024-01-04,11.5,12,11,11,10.9,1500
"""


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def error_of(path, **kwargs) -> LobseqError:
    with pytest.raises(LobseqError) as info:
        read_bars(path, **kwargs)
    return info.value


def test_per_symbol_csv_uses_the_file_stem(tmp_path):
    [seg] = read_bars(write(tmp_path / "SPY.csv", YAHOO))
    assert (seg.instrument, seg.day, seg.kind) == ("SPY", "", "bars")
    assert list(seg.frame.columns) == [
        "timestamp",
        "open",
        "high",
        "low",
        "close",
        "adj_close",
        "volume",
    ]
    assert seg.frame["timestamp"].dtype == "datetime64[ns]"
    assert seg.frame["timestamp"].iloc[1] == pd.Timestamp("2024-01-03")
    assert seg.frame["adj_close"].tolist() == [10.4, 11.4, 10.9]
    assert all(seg.frame[c].dtype == np.float64 for c in seg.frame.columns[1:])
    assert isinstance(seg.frame.index, pd.RangeIndex)


@pytest.mark.parametrize("name", ["adj_close", "adjclose", "ADJ CLOSE"])
def test_adj_close_spellings_and_case_are_accepted(tmp_path, name):
    text = YAHOO.replace("Adj Close", name).replace("Date,Open", "DATE,open")
    frame = read_bars(write(tmp_path / "X.csv", text))[0].frame
    assert frame["adj_close"].iloc[0] == 10.4


def test_adj_close_defaults_to_close(tmp_path):
    text = "date,open,high,low,close,volume\n2024-01-02,1,2,0.5,1.5,10\n"
    frame = read_bars(write(tmp_path / "X.csv", text))[0].frame
    assert frame["adj_close"].tolist() == frame["close"].tolist() == [1.5]


def test_long_table_splits_by_symbol_and_sorts_by_symbol(tmp_path):
    text = (
        "Symbol,Date,Open,High,Low,Close,Volume\n"
        "MSFT,2024-01-02,1,1,1,1,1\n"
        "AAPL,2024-01-02,2,2,2,2,2\n"
        "MSFT,2024-01-03,3,3,3,3,3\n"
        "AAPL,2024-01-03,4,4,4,4,4\n"
    )
    segs = read_bars(write(tmp_path / "prices.csv", text))
    assert [s.instrument for s in segs] == ["AAPL", "MSFT"]
    assert segs[0].frame["close"].tolist() == [2, 4]
    assert segs[1].frame["close"].tolist() == [1, 3]
    assert list(segs[1].frame.index) == [0, 1]


def test_symbol_column_name_is_configurable(tmp_path):
    text = (
        "Ticker,Date,Open,High,Low,Close,Volume\nA,2024-01-02,1,1,1,1,1\nB,2024-01-02,2,2,2,2,2\n"
    )
    segs = read_bars(write(tmp_path / "long.csv", text), symbol_column="ticker")
    assert [s.instrument for s in segs] == ["A", "B"]


def test_parquet_long_table(tmp_path):
    table = pd.DataFrame(
        {
            "symbol": ["B", "A", "B"],
            "date": pd.to_datetime(["2024-01-02", "2024-01-02", "2024-01-03"]),
            "open": [1.0, 2.0, 3.0],
            "high": [1.0, 2.0, 3.0],
            "low": [1.0, 2.0, 3.0],
            "close": [1.0, 2.0, 3.0],
            "adj_close": [0.9, 1.9, 2.9],
            "volume": [10, 20, 30],
        }
    )
    path = tmp_path / "bars.parquet"
    table.to_parquet(path)
    segs = read_sources(path, "bars")
    assert [(s.instrument, len(s.frame)) for s in segs] == [("A", 1), ("B", 2)]
    assert segs[1].frame["timestamp"].dtype == "datetime64[ns]"
    assert segs[1].frame["adj_close"].tolist() == [0.9, 2.9]


def test_folder_of_files_one_segment_per_symbol(tmp_path):
    write(tmp_path / "SPY.csv", YAHOO)
    write(tmp_path / "QQQ.csv", YAHOO)
    write(tmp_path / "notes.txt", "ignored")
    assert [s.instrument for s in read_bars(tmp_path)] == ["QQQ", "SPY"]


# --- bad inputs ----------------------------------------------------------------------------


def test_missing_file_is_an_error(tmp_path):
    assert "not found" in error_of(tmp_path / "SPY.csv").problem


def test_empty_file_is_an_error(tmp_path):
    assert "empty" in error_of(write(tmp_path / "SPY.csv", "")).problem


def test_header_only_file_is_an_error(tmp_path):
    assert (
        "no data rows"
        in error_of(write(tmp_path / "SPY.csv", YAHOO.splitlines()[0] + "\n")).problem
    )


def test_missing_required_column_is_named(tmp_path):
    text = YAHOO.replace(",Volume", "").replace(",1000\n", "\n").replace(",2000\n", "\n")
    text = text.replace(",1500\n", "\n")
    err = error_of(write(tmp_path / "SPY.csv", text))
    assert err.field == "volume" and "Volume" in err.fix


def test_extra_cells_in_a_row_name_the_row(tmp_path):
    text = YAHOO.replace(
        "2024-01-03,10.5,12,10,11.5,11.4,2000", "2024-01-03,10.5,12,10,11.5,11.4,2000,7"
    )
    err = error_of(write(tmp_path / "SPY.csv", text))
    assert err.row == 3 and "8 cells" in err.problem


def test_short_row_names_the_row(tmp_path):
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.replace(",11.4,2000", ",11.4")))
    assert err.row == 3 and "6 cells" in err.problem


def test_trailing_comma_on_every_row_is_an_error(tmp_path):
    text = "".join(line + ",\n" for line in YAHOO.splitlines()[1:])
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.splitlines()[0] + "\n" + text))
    assert err.row == 2


def test_non_numeric_cell_names_row_and_column(tmp_path):
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.replace("11.5,11.4", "eleven,11.4")))
    assert (err.row, err.field) == (3, "Close") and "'eleven' is not a number" in err.problem


@pytest.mark.parametrize("bad", ["nan", "inf", "", "NA"])
def test_nan_inf_or_missing_value_is_an_error(tmp_path, bad):
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.replace(",1500", f",{bad}")))
    assert (err.row, err.field) == (4, "Volume")


def test_unparseable_date_names_the_row(tmp_path):
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.replace("2024-01-04", "someday")))
    assert (err.row, err.field) == (4, "Date")


def test_duplicate_date_names_the_row(tmp_path):
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.replace("2024-01-04", "2024-01-03")))
    assert (err.row, err.field) == (4, "Date") and "2024-01-03 appears twice" in err.problem


def test_dates_going_backwards_name_the_row(tmp_path):
    err = error_of(write(tmp_path / "SPY.csv", YAHOO.replace("2024-01-04", "2023-12-29")))
    assert err.row == 4 and "backwards" in err.problem


def test_long_table_order_is_checked_per_symbol(tmp_path):
    text = (
        "symbol,date,open,high,low,close,volume\n"
        "A,2024-01-03,1,1,1,1,1\n"
        "B,2024-01-02,1,1,1,1,1\n"
        "A,2024-01-02,1,1,1,1,1\n"
    )
    err = error_of(write(tmp_path / "long.csv", text))
    assert err.row == 4 and "A" in err.problem


def test_same_symbol_from_two_files_is_an_error(tmp_path):
    write(tmp_path / "SPY.csv", YAHOO)
    write(tmp_path / "long.csv", "symbol," + YAHOO.replace("\n2024", "\nSPY,2024"))
    assert "SPY" in error_of(tmp_path).problem


def test_unsupported_file_type_is_an_error(tmp_path):
    assert "unsupported" in error_of(write(tmp_path / "SPY.xlsx", "x")).problem


def test_corrupt_parquet_is_an_error(tmp_path):
    assert "Parquet" in error_of(write(tmp_path / "SPY.parquet", "not parquet")).problem


def test_reading_writes_nothing(tmp_path, monkeypatch):
    write(tmp_path / "SPY.csv", YAHOO)
    (tmp_path / "bad").mkdir()
    write(tmp_path / "bad" / "X.csv", "date\n")
    monkeypatch.chdir(tmp_path)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    read_bars(tmp_path / "SPY.csv")
    with pytest.raises(LobseqError):
        read_bars(tmp_path / "bad")
    assert sorted((str(p), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
