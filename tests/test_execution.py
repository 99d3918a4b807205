"""The execution contract: labels describe exactly the trade the backtest makes."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from lobseq.data.execution import CONVENTION, execution_of
from lobseq.data.ingest import IngestConfig, ingest
from lobseq.errors import LobseqError
from lobseq.evaluation.backtest.model import backtest_probas, conventions


@pytest.fixture(scope="module")
def bars_raw(tmp_path_factory):
    from lobseq.data.simulate import simulate_bars

    return simulate_bars(tmp_path_factory.mktemp("bars"), symbols=("AAA", "BBB"), days=300, seed=3)


def _bars(raw, root, horizon, **kw):
    cfg = IngestConfig(format="bars", window=10, horizon=horizon, n_classes=2, **kw)
    return ingest(raw, root / f"bars{horizon}{kw.get('entry', '')}", cfg, log=lambda _m: None)


def _oracle(ds, split="test", **conv):
    """Backtest a perfect-foresight signal of the label, and its opposite, at mid, no costs."""
    ends = ds.ends[split]
    onehot = np.eye(ds.n_classes)[ds.labels[ends]]
    rows = np.flatnonzero(ds.split == ("train", "val", "test").index(split))
    c = conventions(ds, cost_bps=0.0, at_touch=False, **conv)
    return backtest_probas(ds, rows, ends, {"oracle": onehot, "opposite": onehot[:, ::-1]}, c)


@pytest.mark.parametrize("horizon", [1, 5])
def test_perfect_foresight_of_the_bars_label_wins_every_trade(bars_raw, tmp_path, horizon):
    br, res, out = _oracle(_bars(bars_raw, tmp_path, horizon))
    assert out["oracle_n_trades"] > 20
    assert out["oracle_hit_rate"] == 1.0 and (res["oracle"].trades["return"] > 0).all()
    assert out["oracle_total_return"] > 0


@pytest.mark.parametrize("horizon", [1, 5])
def test_the_labels_opposite_loses_every_trade_on_bars(bars_raw, tmp_path, horizon):
    _, res, out = _oracle(_bars(bars_raw, tmp_path, horizon))
    assert out["opposite_hit_rate"] == 0.0 and (res["opposite"].trades["return"] < 0).all()
    assert out["opposite_total_return"] < 0


def test_perfect_foresight_at_the_close_convention_wins_every_trade(bars_raw, tmp_path):
    ds = _bars(bars_raw, tmp_path, 1, entry="close")
    assert execution_of(ds.manifest).entry_lag == 0
    _, res, out = _oracle(ds)
    assert out["oracle_hit_rate"] == 1.0
    t = res["oracle"].trades
    assert (t.entry_row == t.signal_row).all()  # entered at the decision bar's close


def test_bars_trade_at_the_adjusted_open_of_the_next_bar(bars_raw, tmp_path):
    ds = _bars(bars_raw, tmp_path, 1)
    frame = pd.read_csv(bars_raw[0])
    n = len(frame)
    adj_open = frame["Open"] * frame["Adj Close"] / frame["Close"]
    assert np.allclose(ds.prices[:n, 0], adj_open)
    lab = ds.labels[:n]
    r = adj_open.shift(-2) / adj_open.shift(-1) - 1  # decided at t, in at open t+1, out at t+2
    ok = lab >= 0
    assert ((r[ok] > 0) == (lab[ok] == 1)).all()


def test_a_split_in_the_raw_prices_does_not_move_the_labels(bars_raw, tmp_path):
    frame = pd.read_csv(bars_raw[0])
    split = frame.copy()
    half = np.arange(len(frame)) < 150  # a 2:1 split on day 150: raw prices halve after it
    for col in ("Open", "High", "Low", "Close"):
        split.loc[~half, col] /= 2
    (tmp_path / "s").mkdir()
    split.to_csv(tmp_path / "s" / "AAA.csv", index=False)
    frame.to_csv(tmp_path / "s0.csv", index=False)
    a = _bars([tmp_path / "s0.csv"], tmp_path / "a", 1)
    b = _bars([tmp_path / "s" / "AAA.csv"], tmp_path / "b", 1)
    assert np.array_equal(a.labels, b.labels)


def test_perfect_foresight_of_the_book_label_wins_every_trade(lobster_raw, tmp_path):
    ds = ingest(lobster_raw, tmp_path / "book", IngestConfig(format="lobster", window=10,
                                                             horizon=10), log=lambda _m: None)
    _, res, out = _oracle(ds)
    trades = res["oracle"].trades
    assert len(trades) > 20 and out["oracle_hit_rate"] == 1.0 and (trades["return"] > 0).all()
    assert out["oracle_total_return"] > 0
    assert out["opposite_hit_rate"] == 0.0 and (res["opposite"].trades["return"] < 0).all()


def test_a_smoothed_label_is_not_what_the_book_trades(lobster_raw, tmp_path):
    """The backtest of a smoothed-label dataset trades mid[t+1+h] / mid[t+1] - 1, so a perfect
    forecast of the smoothed label is not a perfect trade, and the table says why."""
    from lobseq.evaluation.backtest.report import format_backtest_table

    ds = ingest(lobster_raw, tmp_path / "sm", IngestConfig(format="lobster", window=10, horizon=10,
                                                           label="smoothed"), log=lambda _m: None)
    assert not execution_of(ds.manifest).label_is_traded_return
    br, res, out = _oracle(ds)
    t = res["oracle"].trades
    mid = br.market.px
    assert np.allclose(t["return"], t.side * (mid[t.entry_row + 10] / mid[t.signal_row + 1] - 1))
    assert out["oracle_hit_rate"] < 1.0  # zero or opposite traded moves despite a right label
    assert "not the traded return" in format_backtest_table(out, ["oracle"])


def test_the_manifest_records_the_contract_and_an_embargo_covering_the_reach(bars_raw, tmp_path):
    ds = _bars(bars_raw, tmp_path, 5)
    rec = ds.manifest["execution"]
    assert (rec["convention"], rec["entry"], rec["entry_lag"], rec["label_reach"]) == \
        (CONVENTION, "next_open", 1, 6)
    assert ds.manifest["embargo"] == 10 + 6 - 1


def test_an_embargo_shorter_than_the_label_reach_is_refused():
    with pytest.raises(LobseqError, match="label reach"):
        IngestConfig(format="bars", window=10, horizon=5, embargo=14).validate()


def test_a_dataset_made_under_another_convention_is_refused_naming_what_to_reingest(bars_raw,
                                                                                     tmp_path):
    ds = _bars(bars_raw, tmp_path, 1)
    manifest = json.loads((ds.path / "manifest.json").read_text())
    del manifest["execution"]
    with pytest.raises(LobseqError) as e:
        execution_of(manifest, ds.path)
    assert "re-ingest" in str(e.value) and str(ds.path) in str(e.value)


def test_a_book_entry_on_bars_is_refused():
    with pytest.raises(LobseqError, match="entry"):
        IngestConfig(format="bars", entry="next").validate()


def test_book_backtests_default_to_touch_fills_and_one_minute_periods(lobster_raw, tmp_path):
    ds = ingest(lobster_raw, tmp_path / "b2", IngestConfig(format="lobster", window=10, horizon=10),
                log=lambda _m: None)
    c = conventions(ds)
    assert (c.cost_bps, c.at_touch, c.period, c.periods_per_year) == (0.0, True, "60s", 98_280.0)
    assert "touch" in c.costs_line() and "sqrt(98,280)" in c.annualization_line()


def test_bars_backtests_default_to_one_bps(bars_raw, tmp_path):
    c = conventions(_bars(bars_raw, tmp_path, 1))
    assert (c.cost_bps, c.at_touch, c.period, c.periods_per_year) == (1.0, False, "day", 252.0)
