import numpy as np

from lobseq.data.scaler import StandardScaler
from lobseq.data.windows import WindowBatches, gather_windows


def test_window_ending_at_t_holds_rows_up_to_t():
    features = np.arange(20, dtype=np.float32).reshape(10, 2)
    x = gather_windows(features, np.array([4, 9]), window=3)
    assert x.shape == (2, 3, 2) and x.dtype == np.float32
    assert x[0, :, 0].tolist() == [4.0, 6.0, 8.0]  # rows 2, 3, 4
    assert x[1, -1].tolist() == [18.0, 19.0]  # last step is row 9


def test_batches_pair_each_window_with_the_label_at_its_end():
    features = np.arange(10, dtype=np.float32)[:, None]
    labels = np.arange(10, dtype=np.int8) % 3
    b = WindowBatches(features, labels, np.array([3, 5, 8]), window=2, batch_size=2)
    x, y = b.batch(0)
    assert x[:, -1, 0].tolist() == [3.0, 5.0]
    assert y.tolist() == [labels[3], labels[5]]


def test_shuffle_is_seeded_and_covers_every_window():
    features = np.arange(100, dtype=np.float32)[:, None]
    ends = np.arange(5, 100)
    a = WindowBatches(features, features[:, 0], ends, 3, batch_size=10, shuffle=True, seed=7)
    b = WindowBatches(features, features[:, 0], ends, 3, batch_size=10, shuffle=True, seed=7)
    ya = np.concatenate([a.batch(i)[1] for i in range(len(a))])
    yb = np.concatenate([b.batch(i)[1] for i in range(len(b))])
    assert ya.tolist() == yb.tolist()
    assert sorted(ya.tolist()) == ends.astype(float).tolist()
    assert ya.tolist() != sorted(ya.tolist())


def test_scaler_is_applied_to_gathered_windows():
    rng = np.random.default_rng(0)
    features = rng.normal(5, 2, (50, 3)).astype(np.float32)
    sc = StandardScaler().fit(features)
    x = gather_windows(features, np.array([10]), 4, sc.mean_, sc.scale_)
    np.testing.assert_allclose(x[0], sc.transform(features[7:11]), rtol=1e-5, atol=1e-6)


def test_scaler_statistics_are_those_of_the_given_rows_only():
    rng = np.random.default_rng(1)
    features = rng.normal(0, 1, (100, 2))
    features[60:] += 1000.0  # "future" rows far away
    sc = StandardScaler(chunk_rows=7).fit(features, rows=np.arange(60))
    np.testing.assert_allclose(sc.mean_, features[:60].mean(axis=0))
    np.testing.assert_allclose(sc.scale_, features[:60].std(axis=0))


def test_scaler_round_trips_through_json_dict():
    sc = StandardScaler().fit(np.array([[1.0, 2.0], [3.0, 2.0]]))
    back = StandardScaler.from_dict(sc.to_dict())
    assert back.scale_.tolist() == [1.0, 1.0]  # constant column → scale 1, not 0
    np.testing.assert_array_equal(back.mean_, sc.mean_)
