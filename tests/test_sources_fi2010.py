"""FI-2010 reader: rows are features, columns are events; labels 1/2/3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lobseq.data.sources import read_fi2010, read_sources
from lobseq.errors import LobseqError

N_EVENTS = 5


def fi_matrix(n_events: int = N_EVENTS) -> np.ndarray:
    """149 x n: row r (1-based) of event j holds r + j/100; labels cycle 1, 2, 3."""
    rows = np.arange(1, 150, dtype=float)[:, None] + np.arange(n_events)[None, :] / 100
    rows[144:] = (np.arange(5)[:, None] + np.arange(n_events)[None, :]) % 3 + 1
    return rows


def write_fi(path: Path, matrix: np.ndarray | None = None) -> Path:
    matrix = fi_matrix() if matrix is None else matrix
    path.write_text("".join("  " + "  ".join(f"{v:.8e}" for v in row) + "\n" for row in matrix))
    return path


def write_lines(path: Path, edit) -> Path:
    lines = write_fi(path).read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def error_of(path: Path) -> LobseqError:
    with pytest.raises(LobseqError) as info:
        read_fi2010(path)
    return info.value


def test_columns_are_events_and_rows_are_canonical_columns(tmp_path):
    [seg] = read_fi2010(write_fi(tmp_path / "Train_Dst_NoAuction_ZScore_CF_1.txt"))
    frame = seg.frame
    assert (seg.instrument, seg.day, seg.kind) == ("Train_Dst_NoAuction_ZScore_CF_1", "", "book")
    assert len(frame) == N_EVENTS
    assert list(frame.columns[:5]) == [
        "timestamp",
        "ask_price_1",
        "ask_size_1",
        "bid_price_1",
        "bid_size_1",
    ]
    assert frame["ask_price_1"].tolist() == pytest.approx([1.0, 1.01, 1.02, 1.03, 1.04])
    assert frame["bid_size_1"].iloc[2] == pytest.approx(4.02)
    assert frame["ask_price_10"].iloc[0] == pytest.approx(37.0)
    assert frame["bid_size_10"].iloc[0] == pytest.approx(40.0)
    assert frame["fi_041"].iloc[0] == pytest.approx(41.0)
    assert frame["fi_144"].iloc[1] == pytest.approx(144.01)
    assert [c for c in frame.columns if c.startswith("fi_")][:2] == ["fi_041", "fi_042"]
    assert frame.shape[1] == 1 + 40 + 104 + 5


def test_labels_are_int8_in_file_coding(tmp_path):
    frame = read_fi2010(write_fi(tmp_path / "a.txt"))[0].frame
    labels = ["label_h10", "label_h20", "label_h30", "label_h50", "label_h100"]
    assert list(frame.columns[-5:]) == labels
    assert all(frame[c].dtype == np.int8 for c in labels)
    assert frame["label_h10"].tolist() == [1, 2, 3, 1, 2]
    assert frame["label_h100"].tolist() == [2, 3, 1, 2, 3]


def test_timestamp_is_synthetic_one_ns_per_event(tmp_path):
    ts = read_fi2010(write_fi(tmp_path / "a.txt"))[0].frame["timestamp"]
    assert ts.dtype == "datetime64[ns]"
    assert ts.iloc[0] == np.datetime64("1970-01-01T00:00:00.000000000")
    assert ts.iloc[4] == np.datetime64("1970-01-01T00:00:00.000000004")


def test_folder_reads_txt_files_sorted_by_stem(tmp_path):
    write_fi(tmp_path / "b.txt")
    write_fi(tmp_path / "a.txt")
    (tmp_path / "notes.md").write_text("ignored")
    assert [s.instrument for s in read_sources(tmp_path, "fi2010")] == ["a", "b"]


def test_missing_file_is_an_error(tmp_path):
    assert "not found" in error_of(tmp_path / "absent.txt").problem


def test_empty_file_is_an_error(tmp_path):
    path = tmp_path / "a.txt"
    path.write_text("\n  \n")
    assert "empty" in error_of(path).problem


def test_wrong_row_count_is_an_error(tmp_path):
    path = write_fi(tmp_path / "a.txt", fi_matrix()[:148])
    err = error_of(path)
    assert "148 rows, expected 149" in err.problem


def test_ragged_row_names_the_row(tmp_path):
    path = write_lines(tmp_path / "a.txt", lambda lines: lines.__setitem__(6, lines[6] + " 1.0"))
    err = error_of(path)
    assert err.row == 7 and "6 columns" in err.problem and "5" in err.problem


def test_short_row_names_the_row(tmp_path):
    path = write_lines(
        tmp_path / "a.txt", lambda lines: lines.__setitem__(9, lines[9].rsplit(" ", 1)[0])
    )
    err = error_of(path)
    assert err.row == 10 and "4 columns" in err.problem


def test_non_numeric_cell_names_row_and_column(tmp_path):
    def edit(lines):
        cells = lines[2].split()
        cells[3] = "oops"
        lines[2] = " ".join(cells)

    err = error_of(write_lines(tmp_path / "a.txt", edit))
    assert (err.row, err.field) == (3, "bid_price_1")
    assert "column 4" in err.problem and "oops" in err.problem


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_nan_or_inf_is_an_error(tmp_path, bad):
    matrix = fi_matrix()
    matrix[50, 1] = bad
    err = error_of(write_fi(tmp_path / "a.txt", matrix))
    assert (err.row, err.field) == (51, "fi_051") and "column 2" in err.problem


def test_label_outside_1_2_3_names_row_and_column(tmp_path):
    matrix = fi_matrix()
    matrix[146, 3] = 4.0
    err = error_of(write_fi(tmp_path / "a.txt", matrix))
    assert (err.row, err.field) == (147, "label_h30")
    assert "column 4" in err.problem


def test_reading_writes_nothing(tmp_path, monkeypatch):
    write_fi(tmp_path / "good.txt")
    bad = fi_matrix()
    bad[145, 0] = 0
    (tmp_path / "bad").mkdir()
    write_fi(tmp_path / "bad" / "x.txt", bad)
    monkeypatch.chdir(tmp_path)
    before = sorted((str(p), p.stat().st_mtime_ns) for p in tmp_path.rglob("*"))
    read_fi2010(tmp_path / "good.txt")
    with pytest.raises(LobseqError):
        read_fi2010(tmp_path / "bad")
    assert sorted((str(p), p.stat().st_mtime_ns) for p in tmp_path.rglob("*")) == before
