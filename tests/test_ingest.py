"""End-to-end ingestion: leakage, alignment, determinism, atomicity, bad inputs."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lobseq.data.ingest import IngestConfig, ingest
from lobseq.data.simulate import simulate_bars, simulate_lobster
from lobseq.data.store import load_dataset
from lobseq.errors import LobseqError

SHARED_LOBSTER = Path(__file__).resolve().parents[2] / "shared" / "data" / "lobster"


@pytest.fixture(scope="module")
def sim_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sim")
    simulate_lobster(out, events=4000, levels=5, days=2, seed=3)
    return out


def _cfg(**kw):
    base = dict(format="lobster", window=20, horizon=5, fractions=(0.6, 0.2, 0.2))
    base.update(kw)
    return IngestConfig(**base)


def test_same_inputs_give_byte_identical_datasets(sim_dir, tmp_path):
    a = ingest([sim_dir], tmp_path / "a", _cfg(name="x"), log=lambda m: None)
    b = ingest([sim_dir], tmp_path / "b", _cfg(name="x"), log=lambda m: None)
    files = sorted(p.name for p in a.path.iterdir())
    assert files == sorted(p.name for p in b.path.iterdir())
    for name in files:
        assert (a.path / name).read_bytes() == (b.path / name).read_bytes(), name
    assert a.hash == b.hash


def test_manifest_records_sources_config_and_counts(sim_dir, tmp_path):
    ds = ingest([sim_dir], tmp_path / "d", _cfg(), log=lambda m: None)
    m = ds.manifest
    assert len(m["sources"]) == 4 and all(len(s["sha256"]) == 64 for s in m["sources"])
    # embargo = window + label reach - 1, the reach being horizon + 1 (entered at the next event)
    assert m["config"]["window"] == 20 and m["embargo"] == 20 + (5 + 1) - 1
    assert m["windows"]["train"] == len(ds.ends["train"]) > 0
    assert sum(m["class_balance"]["test"]) == len(ds.ends["test"])
    assert m["feature_names"] == ds.feature_names and len(ds.feature_names) == ds.n_features


def test_scaler_statistics_equal_the_training_rows_alone(sim_dir, tmp_path):
    ds = ingest([sim_dir], tmp_path / "d", _cfg(), log=lambda m: None)
    train = np.asarray(ds.features)[ds.split == 0].astype(np.float64)
    train = train[np.isfinite(train).all(axis=1)]
    np.testing.assert_allclose(ds.scaler.mean_, train.mean(axis=0), rtol=1e-6, atol=1e-9)


def test_windows_are_paired_with_the_label_at_their_end(sim_dir, tmp_path):
    ds = ingest([sim_dir], tmp_path / "d", _cfg(), log=lambda m: None)
    x, y = ds.arrays("val")
    ends = ds.ends["val"]
    last = ds.scaler.transform(np.asarray(ds.features)[ends])
    np.testing.assert_allclose(x[:, -1, :], last, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(y, ds.labels[ends])
    batch_x, batch_y = ds.batches("val", batch_size=7).batch(1)
    np.testing.assert_array_equal(batch_y, ds.labels[ends[7:14]])
    np.testing.assert_allclose(batch_x, x[7:14], rtol=1e-6)


def test_no_window_crosses_a_day_boundary(sim_dir, tmp_path):
    ds = ingest([sim_dir], tmp_path / "d", _cfg(), log=lambda m: None)
    for ends in ds.ends.values():
        assert (ds.segment[ends] == ds.segment[ends - ds.window + 1]).all()


def test_perturbing_the_future_changes_nothing_before_it(sim_dir, tmp_path):
    """Change every book row after t (first day): features at rows <= t and labels at
    rows <= t - horizon are unchanged, and the perturbation does reach later rows."""
    from lobseq.data.sources import read_lobster

    work = tmp_path / "perturbed_src"
    work.mkdir()
    for f in sorted(sim_dir.iterdir()):
        (work / f.name).write_bytes(f.read_bytes())
    before = ingest([work], tmp_path / "before", _cfg(), log=lambda m: None)
    seg = read_lobster([work])[0]
    t = len(seg.frame) // 2
    # Perturb sizes on the first day's rows after t (prices untouched keeps the book valid).
    ob = next(p for p in sorted(work.iterdir()) if "orderbook" in p.name)
    book = pd.read_csv(ob, header=None).to_numpy()
    later = book[t + 1 :]
    sizes, prices = later[:, 1::2], later[:, 0::2]
    sizes[sizes > 0] = sizes[sizes > 0] * 3 + 7
    prices[np.abs(prices) < 9_999_999_999] += 100  # +1 cent on both sides: still uncrossed
    later[:, 1::2], later[:, 0::2] = sizes, prices
    book[t + 1 :] = later
    pd.DataFrame(book).to_csv(ob, header=False, index=False)
    after = ingest([work], tmp_path / "after", _cfg(), log=lambda m: None)
    fa, fb = np.asarray(after.features), np.asarray(before.features)
    np.testing.assert_array_equal(fa[: t + 1], fb[: t + 1])
    reach = 5 + 1  # labels of the traded return read up to t + 1 + horizon
    np.testing.assert_array_equal(after.labels[: t + 1 - reach], before.labels[: t + 1 - reach])
    assert not np.array_equal(fa[t + 1 : len(seg.frame)], fb[t + 1 : len(seg.frame)])


def test_a_crash_while_writing_leaves_the_previous_dataset(sim_dir, tmp_path, monkeypatch):
    out = tmp_path / "d"
    first = ingest([sim_dir], out, _cfg(), log=lambda m: None)
    import lobseq.data.store as store

    real_save = np.save
    calls = {"n": 0}

    def failing_save(*a, **k):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real_save(*a, **k)

    monkeypatch.setattr(store.np, "save", failing_save)
    with pytest.raises(KeyboardInterrupt):
        ingest([sim_dir], out, _cfg(horizon=7), log=lambda m: None)
    monkeypatch.undo()
    again = load_dataset(out)
    assert again.hash == first.hash
    assert [p.name for p in tmp_path.iterdir()] == ["d"]  # no temp dirs left behind


def test_a_file_too_short_for_one_window_is_rejected(sim_dir, tmp_path):
    with pytest.raises(LobseqError, match="too short for one window"):
        ingest([sim_dir], tmp_path / "d", _cfg(window=5000), log=lambda m: None)
    assert not (tmp_path / "d").exists()


def test_a_horizon_that_leaves_no_labelled_rows_is_rejected(sim_dir, tmp_path):
    with pytest.raises(LobseqError, match="no labelled rows"):
        ingest([sim_dir], tmp_path / "d", _cfg(horizon=4000), log=lambda m: None)


def test_unknown_feature_name_is_rejected(sim_dir, tmp_path):
    with pytest.raises(LobseqError, match="no_such_feature"):
        ingest([sim_dir], tmp_path / "d", _cfg(features=["mid", "no_such_feature"]),
               log=lambda m: None)


def test_unknown_label_method_is_rejected(sim_dir, tmp_path):
    with pytest.raises(LobseqError, match="label"):
        ingest([sim_dir], tmp_path / "d", _cfg(label="sideways"), log=lambda m: None)


def test_embargo_shorter_than_window_plus_horizon_is_rejected(sim_dir, tmp_path):
    with pytest.raises(LobseqError, match="embargo"):
        ingest([sim_dir], tmp_path / "d", _cfg(embargo=3), log=lambda m: None)


def test_bars_ingest_next_day_direction(tmp_path):
    raw = tmp_path / "bars"
    simulate_bars(raw, symbols=("AAA", "BBB"), days=300, seed=1)
    ds = ingest([raw], tmp_path / "d",
                IngestConfig(format="bars", window=10, horizon=1, n_classes=2,
                             split_dates=None), log=lambda m: None)
    assert ds.n_classes == 2 and set(np.unique(ds.labels[ds.ends["train"]])) <= {0, 1}
    close = ds.prices[:, 0]
    t = ds.ends["train"][5]
    assert ds.labels[t] == int(close[t + 1] > close[t])


@pytest.mark.skipif(not SHARED_LOBSTER.is_dir(), reason="../shared/data/lobster is absent (real AMZN sample)")
def test_real_amzn_sample_ingests(tmp_path):
    ds = ingest([SHARED_LOBSTER], tmp_path / "amzn",
                IngestConfig(format="lobster", window=50, horizon=10), log=lambda m: None)
    assert ds.manifest["n_rows"] == 57_515
    assert ds.prices[0, 2] == pytest.approx(223.95)


def test_lazy_day_by_day_reading_gives_the_arrays_of_the_eager_reader(sim_dir):
    from lobseq.data.ingest import build_arrays
    from lobseq.data.sources import read_lobster
    from lobseq.data.sources.lobster import iter_lobster

    lazy, lazy_names, lazy_info, _ = build_arrays(iter_lobster(sim_dir), _cfg(), log=lambda m: None)
    eager, names, info, _ = build_arrays(read_lobster(sim_dir), _cfg(), log=lambda m: None)
    assert (lazy_names, lazy_info) == (names, info) and len(info) == 2
    for key, values in eager.items():
        np.testing.assert_array_equal(lazy[key], values, err_msg=key)


def test_a_broken_later_day_is_reported_by_ingest(sim_dir, tmp_path):
    import shutil

    raw = tmp_path / "raw"
    shutil.copytree(sim_dir, raw)
    book = sorted(raw.glob("*_orderbook_*.csv"))[-1]
    lines = book.read_text().splitlines()
    lines[9] = lines[9].replace(",", ",x", 1)
    book.write_text("\n".join(lines) + "\n")
    with pytest.raises(LobseqError) as info:
        ingest([raw], tmp_path / "ds", _cfg(), log=lambda m: None)
    assert (info.value.file, info.value.row) == (str(book), 10)
    assert not (tmp_path / "ds").exists()


def test_recorded_feature_specs_recompute_the_stored_features(sim_dir, tmp_path):
    from lobseq.data.features import compute_features
    from lobseq.data.sources import read_lobster

    ds = ingest([sim_dir], tmp_path / "d", _cfg(), log=lambda m: None)
    specs = ds.manifest["feature_specs"]
    assert {s["name"] for s in specs} >= {"levels_rel", "ofi", "dixon_ofr"}
    frame = read_lobster(sim_dir)[0].frame
    x, names = compute_features(frame, specs, "book")
    assert names == ds.feature_names
    np.testing.assert_array_equal(x, np.asarray(ds.features)[: len(frame)])


def _fi2010_file(path: Path, n: int, seed: int = 0) -> Path:
    """A FI-2010-layout file: 149 rows × n events, a plausible 10-level book, labels 1/2/3."""
    rng = np.random.default_rng(seed)
    mid = 10 + np.cumsum(rng.normal(0, 0.01, n))
    m = rng.normal(0, 1, (149, n))
    for lvl in range(10):
        m[4 * lvl] = mid + 0.01 * (lvl + 1)  # ask price
        m[4 * lvl + 1] = rng.integers(1, 100, n)  # ask volume
        m[4 * lvl + 2] = mid - 0.01 * (lvl + 1)  # bid price
        m[4 * lvl + 3] = rng.integers(1, 100, n)  # bid volume
    m[144:] = rng.integers(1, 4, (5, n))
    path.write_text("".join(" ".join(f"{v:.8e}" for v in row) + "\n" for row in m))
    return path


def test_fi2010_ingest_uses_the_files_own_labels_mapped_to_down_stationary_up(tmp_path):
    src = _fi2010_file(tmp_path / "Train_Dst_NoAuction_ZScore_CF_1.txt", 600)
    ds = ingest([src], tmp_path / "d",
                IngestConfig(format="fi2010", window=10, horizon=20, label="provided",
                             features=[{"name": "book", "levels": 10}]), log=lambda m: None)
    raw = np.loadtxt(src)[145]  # row 146: the horizon-20 labels (1 up, 2 stationary, 3 down)
    ends = ds.ends["train"]
    assert ds.n_features == 40
    np.testing.assert_array_equal(ds.labels[ends], (3 - raw[ends]).astype(np.int8))


def test_perturbing_validation_and_test_rows_leaves_training_untouched(sim_dir, tmp_path):
    """No scaler statistic, window or label of the training part reads a later part."""
    work = tmp_path / "src"
    work.mkdir()
    for f in sorted(sim_dir.iterdir()):
        (work / f.name).write_bytes(f.read_bytes())
    before = ingest([work], tmp_path / "before", _cfg(), log=lambda m: None)
    first_later = int(np.flatnonzero(before.split != 0)[0])  # first embargo/val row
    day2_start = int(np.flatnonzero(before.segment == 1)[0])
    assert first_later > day2_start and (before.split[first_later:] != 0).all()
    # Scale every size from the first non-training row of day 2 on.
    ob = sorted(p for p in work.iterdir() if "orderbook" in p.name)[-1]
    book = pd.read_csv(ob, header=None).to_numpy()
    later = book[first_later - day2_start :, 1::2]
    book[first_later - day2_start :, 1::2] = later * 5 + 3 * (later > 0)
    pd.DataFrame(book).to_csv(ob, header=False, index=False)
    after = ingest([work], tmp_path / "after", _cfg(), log=lambda m: None)
    np.testing.assert_array_equal(after.scaler.mean_, before.scaler.mean_)
    np.testing.assert_array_equal(after.scaler.scale_, before.scaler.scale_)
    np.testing.assert_array_equal(after.ends["train"], before.ends["train"])
    xa, ya = after.arrays("train")
    xb, yb = before.arrays("train")
    np.testing.assert_array_equal(xa, xb)
    np.testing.assert_array_equal(ya, yb)
    assert not np.array_equal(after.arrays("test")[0], before.arrays("test")[0])


@pytest.mark.parametrize("dates, message", [
    ("2024-01-03", "split dates must be two dates, got 1"),
    ("2024-01-03,2024-01-04,2024-01-05", "split dates must be two dates, got 3"),
    ("2024-01-04,2024-01-03", "validation start 2024-01-04 must come before the test start"),
    ("foo,2024-01-03", "bad split date"),
])
def test_bad_split_dates_exit_2_with_one_line_before_reading(sim_dir, tmp_path, dates, message):
    from click.testing import CliRunner

    from lobseq.cli import cli

    result = CliRunner().invoke(cli, ["ingest", str(sim_dir), "--format", "lobster",
                                      "--split-dates", dates, "--out", str(tmp_path / "d")])
    assert result.exit_code == 2 and message in result.output
    assert "Read " not in result.output and not (tmp_path / "d").exists()


def test_bad_fractions_are_rejected_before_any_file_is_read(tmp_path, monkeypatch):
    import lobseq.data.sources.lobster as lobster

    def boom(*a, **k):
        raise AssertionError("a file was read")

    monkeypatch.setattr(lobster, "iter_lobster", boom)
    with pytest.raises(LobseqError, match="fractions"):
        ingest([tmp_path], tmp_path / "d", _cfg(fractions=(0.5, 0.2, 0.2)), log=lambda m: None)


def test_unusable_rows_are_counted_and_reported(sim_dir, tmp_path):
    from lobseq.data.ingest import summary

    ds = ingest([sim_dir], tmp_path / "d", _cfg(), log=lambda m: None)
    non_finite = int((~np.isfinite(np.asarray(ds.features)).all(axis=1)).sum())
    assert ds.manifest["unusable_rows"] == non_finite > 0  # warm-up rows at least
    assert f"{non_finite:,} rows unusable" in summary(ds)
