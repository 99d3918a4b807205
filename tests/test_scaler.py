import json

import numpy as np
import pytest

from lobseq.data.scaler import StandardScaler
from lobseq.errors import LobseqError


def _features(n=5_000, f=4, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(0, 1, (n, f)) * [1.0, 1e-3, 50.0, 2.0] + [0.0, 3.0, -7.0, 1e4]).astype(np.float32)


def test_chunked_fit_equals_one_chunk_fit():
    x = _features()
    rows = np.flatnonzero(np.arange(len(x)) % 3 != 0)
    whole = StandardScaler(chunk_rows=len(x)).fit(x, rows=rows)
    for chunk in (1, 7, 1000):
        part = StandardScaler(chunk_rows=chunk).fit(x, rows=rows)
        np.testing.assert_allclose(part.mean_, whole.mean_, rtol=1e-12)
        np.testing.assert_allclose(part.scale_, whole.scale_, rtol=1e-12)
        assert part.n_samples_seen_ == len(rows)


def test_statistics_are_the_float64_mean_and_population_std_of_the_rows():
    x = _features()
    rows = np.arange(100, 4000)
    sc = StandardScaler(chunk_rows=333).fit(x, rows=rows)
    ref = x[rows].astype(np.float64)
    np.testing.assert_allclose(sc.mean_, ref.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(sc.scale_, ref.std(axis=0), rtol=1e-12)


def test_rows_outside_the_training_rows_do_not_change_the_fit():
    x = _features()
    rows = np.arange(3000)
    before = StandardScaler(chunk_rows=500).fit(x, rows=rows)
    x[3000:] = 1e6  # the "future"
    after = StandardScaler(chunk_rows=500).fit(x, rows=rows)
    assert before.to_dict() == after.to_dict()


def test_a_memory_mapped_matrix_is_fitted_like_the_array(tmp_path):
    x = _features()
    np.save(tmp_path / "f.npy", x)
    mm = np.load(tmp_path / "f.npy", mmap_mode="r")
    rows = np.arange(0, len(x), 2)
    a = StandardScaler(chunk_rows=256).fit(mm, rows=rows)
    b = StandardScaler(chunk_rows=256).fit(x, rows=rows)
    assert a.to_dict() == b.to_dict()


def test_constant_and_near_constant_features_get_scale_one():
    x = np.column_stack([np.full(10, 3.0), 1.0 + np.arange(10) * 1e-14, np.arange(10.0)])
    sc = StandardScaler().fit(x)
    assert sc.scale_[:2].tolist() == [1.0, 1.0]
    out = sc.transform(x)
    assert np.isfinite(out).all() and np.allclose(out[:, 0], 0.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_training_rows_are_refused(bad):
    x = _features(n=50)
    x[17, 2] = bad
    with pytest.raises(LobseqError, match="NaN or inf"):
        StandardScaler(chunk_rows=10).fit(x)
    StandardScaler().fit(x, rows=np.arange(17))  # rows before the bad one are fine


def test_no_rows_is_an_error():
    with pytest.raises(LobseqError, match="no training rows"):
        StandardScaler().fit(_features(n=10), rows=np.array([], dtype=np.int64))


def test_refit_forgets_the_previous_fit():
    x = _features()
    sc = StandardScaler(chunk_rows=100).fit(x, rows=np.arange(1000))
    sc.fit(x, rows=np.arange(2000, 2500))
    fresh = StandardScaler(chunk_rows=100).fit(x, rows=np.arange(2000, 2500))
    assert sc.to_dict() == fresh.to_dict()


def test_json_round_trip_keeps_the_transform():
    x = _features()
    sc = StandardScaler().fit(x)
    back = StandardScaler.from_dict(json.loads(json.dumps(sc.to_dict())))
    assert set(sc.to_dict()) == {"mean_", "scale_", "n_samples_seen_"}
    np.testing.assert_array_equal(back.transform(x), sc.transform(x))
    assert back.transform(x).dtype == np.float32
