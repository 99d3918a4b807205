"""The manifest's serving record: written by ingest, copied into spec.json, never guessed."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lobseq.data.ingest import IngestConfig, ingest, summary
from lobseq.data.simulate import simulate_bars, simulate_lobster
from lobseq.data.store import load_dataset
from lobseq.errors import LobseqError

BOOK_1 = ["ask_price_1", "ask_size_1", "bid_price_1", "bid_size_1"]


@pytest.fixture(scope="module")
def lob(tmp_path_factory):
    root = tmp_path_factory.mktemp("lob")
    simulate_lobster(root / "raw", events=3000, levels=5, days=2, seed=0)
    return root / "raw"


@pytest.fixture(scope="module")
def bars(tmp_path_factory):
    root = tmp_path_factory.mktemp("bars")
    simulate_bars(root / "raw", symbols=("BBB", "AAA"), days=120, seed=0)
    return root / "raw"


def _ingest(src, out, log=lambda m: None, **kw):
    base = dict(format="lobster", window=10, horizon=5)
    return ingest([src], out, IngestConfig(**{**base, **kw}), log=log)


def test_lobster_record_lists_the_columns_the_features_read(lob, tmp_path):
    rec = _ingest(lob, tmp_path / "d").serving
    book = [f"{s}_{w}_{i}" for i in range(1, 6) for s, w in
            (("ask", "price"), ("ask", "size"), ("bid", "price"), ("bid", "size"))]
    # dixon_ofr reads the message columns; time, order_id and price are read by nothing
    assert rec["input_columns"] == ["event_type", "size", "direction", *book]
    assert (rec["kind"], rec["format"], rec["levels"], rec["instruments"]) == (
        "book", "lobster", 5, ["SIM"])
    assert rec["optional_columns"] == ["timestamp", "halted"]
    assert rec["row_checks"] == ["finite", "non_negative_sizes", "not_crossed", "chronological"]
    assert "complete_windows" in rec["window_end"]


def test_recorded_columns_alone_recompute_the_stored_features(lob, tmp_path):
    from lobseq.data.features import compute_features
    from lobseq.data.sources import read_lobster

    ds = _ingest(lob, tmp_path / "d")
    rec = ds.serving
    frame = read_lobster(lob)[1].frame  # the second day: not the one the columns were noted on
    x, _ = compute_features(frame[rec["input_columns"]], rec["features"], rec["kind"],
                            names=ds.feature_names)
    np.testing.assert_array_equal(x, np.asarray(ds.features)[len(ds.features) - len(frame):])


def test_warmup_is_the_history_the_slowest_feature_needs(lob, tmp_path):
    from lobseq.data.features import compute_features
    from lobseq.data.sources import read_lobster

    ds = _ingest(lob, tmp_path / "d")
    warmup = ds.serving["warmup_rows"]
    frame = read_lobster(lob)[0].frame
    x, _ = compute_features(frame, ds.serving["features"], "book")
    finite = np.isfinite(x).all(axis=1)
    assert warmup > 0 and finite[warmup] and not finite[warmup - 1]


def test_empty_book_levels_do_not_count_as_warmup(tmp_path):
    # Raw `book` features are NaN while deep levels are empty (the simulated day opens so);
    # they need no history, so the warm-up is 0, as serving needs.
    simulate_lobster(tmp_path / "raw", events=6000, levels=10, days=1, seed=0)
    ds = _ingest(tmp_path / "raw", tmp_path / "d", window=20,
                 features=[{"name": "book", "levels": 10}])
    first_finite = int(np.argmax(np.isfinite(np.asarray(ds.features)).all(axis=1)))
    assert (first_finite > 0, ds.serving["warmup_rows"]) == (True, 0)


def test_a_spec_without_levels_reads_every_level_of_the_files(lob, tmp_path):
    rec = _ingest(lob, tmp_path / "d", features=["levels_rel"]).serving
    assert (rec["levels"], len(rec["input_columns"]), rec["features"][0]["levels"]) == (5, 20, None)


def test_book_columns_come_in_whole_levels(lob, tmp_path):
    # spread and returns read only the touch prices, but a canonical book has whole levels
    rec = _ingest(lob, tmp_path / "d", features=["spread", "returns"]).serving
    assert rec["input_columns"] == BOOK_1


def test_bars_record(bars, tmp_path):
    lines = []
    ds = _ingest(bars, tmp_path / "d", log=lines.append, format="bars", window=5, horizon=1,
                 n_classes=2)
    rec = ds.serving
    assert (rec["kind"], rec["levels"], rec["instruments"], rec["optional_columns"]) == (
        "bars", None, ["AAA", "BBB"], ["timestamp"])
    assert rec["input_columns"] == ["high", "low", "close", "adj_close", "volume"]  # no open
    assert rec["row_checks"] == ["finite", "non_negative_sizes", "strictly_chronological"]
    assert any(line.startswith("  AAA: 120 rows, ") for line in lines)  # bars have no day: no stray space
    assert "(feature warm-up or undefined values)" in summary(ds)


def test_spec_json_is_the_record_and_nothing_is_probed(lob, tmp_path, monkeypatch):
    import lobseq.data.features as features
    from lobseq.serving.spec import RECORD_KEYS, build_spec

    ds = _ingest(lob, tmp_path / "d")

    def no_features(*a, **k):
        raise AssertionError("build_spec computed features")

    monkeypatch.setattr(features, "compute_features", no_features)
    spec = build_spec(ds)
    assert {k: spec[k] for k in RECORD_KEYS} == ds.serving
    assert spec["min_rows"] == ds.serving["warmup_rows"] + ds.window
    assert (spec["feature_names"], spec["dataset_hash"]) == (ds.feature_names, ds.hash)


def test_a_dataset_without_the_record_says_to_reingest(lob, tmp_path):
    from lobseq.serving.spec import build_spec

    ds = _ingest(lob, tmp_path / "d")
    manifest = json.loads((ds.path / "manifest.json").read_text())
    del manifest["serving"]
    (ds.path / "manifest.json").write_text(json.dumps(manifest))
    old = load_dataset(ds.path)
    with pytest.raises(LobseqError, match="no serving record.*Fix: re-ingest it"):
        build_spec(old)


def test_the_record_holds_what_serving_reads_and_the_same_specs(lob, tmp_path):
    ds = _ingest(lob, tmp_path / "d")
    manifest = json.loads((ds.path / "manifest.json").read_text())
    assert set(manifest["serving"]) == {
        "kind", "format", "levels", "instruments", "input_columns", "optional_columns",
        "warmup_rows", "features", "row_checks", "window_end"}
    assert manifest["serving"]["features"] == manifest["feature_specs"]
