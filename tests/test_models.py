"""Model builders: shapes, heads, DeepLOB structure, validation, many-to-one."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from lobseq import models  # noqa: E402
from lobseq.errors import LobseqError  # noqa: E402

T = 8
SHAPES = {"rnn": (T, 5), "lstm": (T, 5), "gru": (T, 5), "cnn": (T, 5), "deeplob": (T, 40)}
SMALL = {  # tiny sizes keep the file fast
    "rnn": {"units": 4},
    "lstm": {"units": [4, 3]},
    "gru": {"units": 4},
    "cnn": {"filters": [4, 4], "dense_units": 4},
    "deeplob": {"filters": 4, "inception_filters": 4, "lstm_units": 4},
}


def _windows(shape, batch=3, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, *shape)).astype("float32")


def _layer(model, name):
    return model.get_layer(name)


def test_registry_holds_the_five_models():
    assert list(models.MODELS) == ["rnn", "lstm", "gru", "cnn", "deeplob"]


@pytest.mark.parametrize("name", list(models.MODELS))
def test_classification_gives_probabilities_per_class(name):
    model = models.build(name, SHAPES[name], 3, **SMALL[name])
    probs = np.asarray(model(_windows(SHAPES[name]), training=False))
    assert probs.shape == (3, 3)
    assert model.layers[-1].name == "probabilities"
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    assert (probs >= 0).all()


@pytest.mark.parametrize("name", list(models.MODELS))
def test_regression_head_gives_one_linear_output(name):
    model = models.build(name, SHAPES[name], 3, head="regression", **SMALL[name])
    out = np.asarray(model(_windows(SHAPES[name]), training=False))
    assert out.shape == (3, 1)
    head = _layer(model, "next_return")
    assert head.units == 1 and head.activation.__name__ == "linear"


@pytest.mark.parametrize("name", list(models.MODELS))
def test_output_depends_on_the_last_time_step(name):
    model = models.build(name, SHAPES[name], 3, **SMALL[name])
    x = _windows(SHAPES[name])
    moved = x.copy()
    moved[:, -1, :] += 1.0
    before = np.asarray(model(x, training=False))
    after = np.asarray(model(moved, training=False))
    assert np.abs(after - before).max() > 1e-6


@pytest.mark.parametrize("name", list(models.MODELS))
def test_model_accepts_exactly_its_window_shape(name):
    t, f = SHAPES[name]
    model = models.build(name, (t, f), 3, **SMALL[name])
    assert model.input_shape == (None, t, f)
    with pytest.raises(ValueError):
        model(np.zeros((2, t + 1, f), "float32"))
    with pytest.raises(ValueError):
        model(np.zeros((2, t, f + 1), "float32"))


def test_default_hyperparameters_build_every_model():
    for name in models.MODELS:
        model = models.build(name, (T, 40), 2, **models.hyperparameters(name))
        assert model.output_shape == (None, 2)


def test_deeplob_has_three_book_blocks_shrinking_the_book_axis():
    model = models.build("deeplob", (T, 40), 3)
    widths = {"block1": 20, "block2": 10, "block3": 1}
    kernels = {"block1": (1, 2), "block2": (1, 2), "block3": (1, 10)}
    for block, width in widths.items():
        book = _layer(model, f"{block}_book")
        assert book.kernel_size == kernels[block]
        assert book.filters == 32
        assert book.output.shape[1:] == (T, width, 32)
        for conv in ("time_a", "time_b"):
            layer = _layer(model, f"{block}_{conv}")
            assert layer.kernel_size == (4, 1) and layer.padding == "same"
            assert layer.output.shape[1:] == (T, width, 32)
    assert _layer(model, "block1_book").strides == (1, 2)
    assert _layer(model, "block2_book").strides == (1, 2)


def test_deeplob_uses_leaky_relu_after_every_convolution():
    model = models.build("deeplob", (T, 40), 3)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len(convs) == 9 + 5  # three book blocks of 3, inception 1x1,3x1,1x1,5x1,1x1
    for conv in convs:
        leaky = _layer(model, f"{conv.name}_leaky")
        assert leaky.negative_slope == pytest.approx(0.01)


def test_deeplob_inception_has_three_branches_of_64_then_lstm_64():
    model = models.build("deeplob", (T, 40), 3)
    assert _layer(model, "inception_3x1").kernel_size == (3, 1)
    assert _layer(model, "inception_5x1").kernel_size == (5, 1)
    assert _layer(model, "inception_pool3x1").pool_size == (3, 1)
    for branch in ("inception_3x1", "inception_5x1", "inception_pool_1x1"):
        assert _layer(model, branch).output.shape[1:] == (T, 1, 64)
    assert _layer(model, "inception").output.shape[1:] == (T, 1, 192)
    assert _layer(model, "inception_sequence").output.shape[1:] == (T, 192)
    assert _layer(model, "lstm").units == 64
    assert _layer(model, "probabilities").activation.__name__ == "softmax"


@pytest.mark.parametrize("n_features", [20, 39, 41, 144])
def test_deeplob_rejects_anything_but_the_40_column_book(n_features):
    with pytest.raises(LobseqError, match=r"40 columns of a 10-level book") as err:
        models.build("deeplob", (T, n_features), 3)
    assert "lobseq ingest" in err.value.fix and "--features levels_rel" in err.value.fix


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(LobseqError, match="unknown model 'transformer'") as err:
        models.build("transformer", (T, 5), 3)
    assert all(name in str(err.value) for name in models.MODELS)


def test_unknown_hyperparameter_lists_the_valid_ones():
    with pytest.raises(LobseqError, match="unknown hyperparameter.*unitz") as err:
        models.build("lstm", (T, 5), 3, unitz=8)
    assert "units" in err.value.fix and "dropout" in err.value.fix


@pytest.mark.parametrize(
    ("name", "hyper", "field"),
    [
        ("lstm", {"units": 0}, "units"),
        ("gru", {"units": []}, "units"),
        ("gru", {"units": [8, -1]}, "units"),
        ("lstm", {"dropout": 1.0}, "dropout"),
        ("rnn", {"activation": "wiggly"}, "activation"),
        ("rnn", {"l2": -1e-3}, "l2"),
        ("cnn", {"kernel_size": 2.5}, "kernel_size"),
        ("deeplob", {"lstm_units": "64"}, "lstm_units"),
    ],
)
def test_bad_hyperparameter_values_are_rejected(name, hyper, field):
    with pytest.raises(LobseqError) as err:
        models.build(name, SHAPES[name], 3, **hyper)
    assert err.value.field == field


@pytest.mark.parametrize(
    ("shape", "n_classes", "head", "field"),
    [
        ((T,), 3, "classification", "input_shape"),
        ((0, 5), 3, "classification", "input_shape"),
        ((T, 5, 1), 3, "classification", "input_shape"),
        ((T, 5), 1, "classification", "n_classes"),
        ((T, 5), 3, "ranking", "head"),
    ],
)
def test_bad_shapes_classes_and_heads_are_rejected(shape, n_classes, head, field):
    with pytest.raises(LobseqError) as err:
        models.build("gru", shape, n_classes, head=head)
    assert err.value.field == field


def test_dixon_preset_is_20_relu_units_with_l2():
    hyper = models.hyperparameters("rnn", preset="dixon")
    assert hyper["units"] == 20 and hyper["activation"] == "relu"
    assert models.preset_window("rnn", "dixon") == 10
    model = models.build("rnn", (10, 5), 3, preset="dixon")
    rnn = _layer(model, "rnn")
    assert rnn.units == 20
    assert rnn.cell.activation.__name__ == "relu"
    assert isinstance(rnn.cell.kernel_regularizer, keras.regularizers.L2)
    assert isinstance(rnn.cell.recurrent_regularizer, keras.regularizers.L2)
    assert len(model.losses) == 2


def test_preset_values_can_be_overridden():
    model = models.build("rnn", (10, 5), 3, preset="dixon", units=7)
    assert _layer(model, "rnn").units == 7


def test_unknown_preset_is_rejected():
    with pytest.raises(LobseqError, match="unknown preset"):
        models.hyperparameters("lstm", preset="dixon")


def test_stacked_units_give_one_layer_each_and_only_the_last_is_many_to_one():
    model = models.build("lstm", (T, 5), 3, units=[6, 5, 4], dropout=0.1)
    layers = [_layer(model, f"lstm_{i}") for i in (1, 2, 3)]
    assert [layer.units for layer in layers] == [6, 5, 4]
    assert [layer.return_sequences for layer in layers] == [True, True, False]


def test_describe_gives_a_line_and_defaults_per_model():
    rows = models.describe()
    assert [row[0] for row in rows] == list(models.MODELS)
    for name, doc, defaults in rows:
        assert doc and "\n" not in doc
        assert defaults == models.hyperparameters(name)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_hyperparameters_read_from_source_match_the_builders_signature(name):
    import inspect

    params = inspect.signature(models.MODELS[name]).parameters
    declared = {k: list(p.default) if isinstance(p.default, tuple) else p.default
                for k, p in params.items() if k not in ("input_shape", "n_classes", "head")}
    assert models.hyperparameters(name) == declared
