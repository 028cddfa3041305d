"""TensorFlow Similarity's self-supervised losses: relations, degenerate batches, configs and
the two-view training recipe of docs/losses/ssl.md."""

import keras
import numpy as np
import pytest
import ssl_reference
from support import numpy, value_and_grad

import keras_metric_losses as kml

RNG = np.random.default_rng(0)


def views(batch=6, dim=4):
    return RNG.normal(size=(batch, 2, dim)).astype("float32")


@pytest.mark.parametrize("temperature", [0.05, 0.5])
def test_simclr_is_twice_ntxent_on_the_same_views(temperature):
    y_pred = views()
    simclr = numpy(kml.simclr_loss(None, y_pred, temperature=temperature))
    ntxent = numpy(kml.ntxent_loss(np.arange(6), y_pred, temperature=temperature))
    np.testing.assert_allclose(simclr, 2 * ntxent, rtol=1e-5)


def test_simsiam_angular_distance_is_accurate_and_differentiable_at_identical_views():
    same = np.repeat(views(3)[:, :1], 2, axis=1)  # identical projector and predictor
    value, grad = value_and_grad(
        lambda p: keras.ops.sum(kml.simsiam_loss(None, p, projection_type="angular_distance")),
        same,
    )
    np.testing.assert_allclose(value, 3 * 0.001, atol=1e-7)  # angle 0: the margin only
    assert np.isfinite(grad).all()
    nearly = same.copy()
    nearly[:, 1, 0] += 1e-3  # angles of ~1e-3: acos of a float32 cosine loses most digits
    expected = ssl_reference.simsiam_loss(nearly[:, 0], nearly[:, 1], "angular_distance")[1]
    values = numpy(kml.simsiam_loss(None, nearly, projection_type="angular_distance", margin=0))
    np.testing.assert_allclose(values, expected - 0.001, rtol=1e-4)


def test_barlow_carries_the_batch_value_for_every_example():
    y_pred = views()
    per_example = numpy(kml.Barlow(reduction=None)(np.zeros(6), y_pred))
    expected = ssl_reference.barlow_loss(y_pred[:, 0], y_pred[:, 1])[0]
    np.testing.assert_allclose(per_example, np.full(6, expected), rtol=1e-5)
    weights = np.linspace(0, 1, 6).astype("float32")
    weighted = numpy(kml.Barlow()(np.zeros(6), y_pred, sample_weight=weights))
    np.testing.assert_allclose(weighted, expected * weights.mean(), rtol=1e-5)


def test_batches_of_one_are_finite_with_zero_gradient_where_nothing_is_learnt():
    one = views(1)
    for fn in (kml.simclr_loss, kml.barlow_loss, kml.vicreg_loss, kml.simsiam_loss):
        value, grad = value_and_grad(lambda p, f=fn: keras.ops.sum(f(None, p)), one)
        assert np.isfinite(value) and np.isfinite(grad).all(), fn.__name__
    assert numpy(kml.simclr_loss(None, one)) == 0.0  # no other example
    barlow, grad = value_and_grad(lambda p: keras.ops.sum(kml.barlow_loss(None, p)), one)
    np.testing.assert_allclose(barlow, 4 + 1e-12)  # every column constant: c = 0
    assert not grad.any()
    vicreg = numpy(kml.vicreg_loss(None, one))  # no covariance terms
    invariance = 25 * np.mean((one[0, 0] - one[0, 1]) ** 2)
    np.testing.assert_allclose(vicreg, invariance + 25 * (1 - np.sqrt(1e-4)), rtol=1e-5)


def test_vicreg_reduction_none_is_tensorflow_similaritys_default():
    y_pred = views(8)
    _, per_example = ssl_reference.vicreg_loss(y_pred[:, 0], y_pred[:, 1])
    np.testing.assert_allclose(numpy(kml.VicReg(reduction="none")(np.zeros(8), y_pred)),
                               per_example, rtol=1e-5)  # fmt: skip
    np.testing.assert_allclose(numpy(kml.VicReg()(np.zeros(8), y_pred)), per_example.mean(),
                               rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("fn", [kml.simclr_loss, kml.barlow_loss, kml.vicreg_loss,
                                kml.simsiam_loss])  # fmt: skip
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_views_are_computed_in_float32(fn, dtype):
    y_pred = keras.ops.convert_to_tensor(views(), dtype=dtype)
    half = fn(None, y_pred)
    assert keras.backend.standardize_dtype(half.dtype) == dtype
    full = fn(None, keras.ops.cast(y_pred, "float32"))  # the same rounded views
    np.testing.assert_array_equal(
        numpy(keras.ops.cast(half, "float32")),
        numpy(keras.ops.cast(keras.ops.cast(full, dtype), "float32")),
    )


@pytest.mark.parametrize(
    "cls, config",
    [
        (kml.SimCLRLoss, {"name": "simclr", "reduction": "auto", "temperature": 0.1}),
        (kml.Barlow, {"name": None, "reduction": "auto", "lambda_": 0.01, "margin": 0.0}),
        (
            kml.VicReg,
            {
                "name": "vicreg",
                "reduction": "none",
                "std_const": 1e-4,
                "lambda_": 25,
                "mu": 25,
                "nu": 1,
            },
        ),
        (kml.SimSiamLoss, {"projection_type": "cosine_distance", "margin": 0.01}),
    ],
)
def test_tensorflow_similarity_configs_load(cls, config):
    loss = cls.from_config(config)
    for key, value in config.items():
        if key not in ("name", "reduction"):
            assert getattr(loss, key) == value
    assert loss.reduction in ("sum_over_batch_size", "none")
    assert cls.from_config(loss.get_config()).get_config() == loss.get_config()


def test_bad_inputs_name_the_argument():
    with pytest.raises(ValueError, match=r"`y_pred` must hold the 2 views.*\(6, 4\)"):
        kml.simclr_loss(None, views()[:, 0])
    with pytest.raises(ValueError, match=r"`projection_type` must be one of"):
        kml.SimSiamLoss(projection_type="cosine")
    with pytest.raises(ValueError, match=r"`std_const` must be a finite number >= 0"):
        kml.VicReg(std_const=-1.0)
    with pytest.raises(ValueError, match=r"`temperature` must be a finite number > 0"):
        kml.SimCLRLoss(temperature=0)


# --- the two-view recipe of docs/losses/ssl.md -------------------------------------------


def two_view_data(n=256, seed=0):
    """Points around 4 centres in 8 dimensions; what the encoder must keep is the centre."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(4, 8)) * 3
    labels = rng.integers(0, 4, n)
    return (centres[labels] + rng.normal(size=(n, 8))).astype("float32"), labels


def recipe_model(outputs="simclr"):
    """One encoder applied to two random augmentations of the same input."""
    inputs = keras.Input((8,))
    augment = keras.Sequential([keras.layers.GaussianNoise(0.5), keras.layers.Dropout(0.1)])
    encoder = keras.Sequential([keras.layers.Dense(32, activation="relu"), keras.layers.Dense(8)])
    za, zb = encoder(augment(inputs, training=True)), encoder(augment(inputs, training=True))
    if outputs == "simclr":
        return keras.Model(inputs, keras.ops.stack([za, zb], axis=1)), encoder
    predictor = keras.layers.Dense(8)
    # SimSiam: the projector side is a target (no gradient), both directions.
    ab = keras.ops.stack([keras.ops.stop_gradient(za), predictor(zb)], axis=1)
    ba = keras.ops.stack([keras.ops.stop_gradient(zb), predictor(za)], axis=1)
    return keras.Model(inputs, {"ab": ab, "ba": ba}), encoder


def nearest_neighbour_accuracy(encoder, x, labels):
    z = numpy(encoder(x))
    z /= np.linalg.norm(z, axis=1, keepdims=True)
    similarity = z @ z.T - 2 * np.eye(len(z))
    return float(np.mean(labels[similarity.argmax(1)] == labels))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["simclr", "barlow", "vicreg", "simsiam"])
def test_two_view_recipe_trains_with_fit(loss):
    keras.utils.set_random_seed(0)
    x, labels = two_view_data()
    dummy = np.zeros(len(x), "float32")  # y_true is not used
    model, encoder = recipe_model("simsiam" if loss == "simsiam" else "simclr")
    losses = {
        "simclr": kml.SimCLRLoss(temperature=0.2),
        "barlow": kml.Barlow(),
        "vicreg": kml.VicReg(),
        "simsiam": {"ab": kml.SimSiamLoss(), "ba": kml.SimSiamLoss()},
    }
    y = {"ab": dummy, "ba": dummy} if loss == "simsiam" else dummy
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=losses[loss])
    history = model.fit(x, y, batch_size=64, epochs=8, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0], history
    assert nearest_neighbour_accuracy(encoder, x, labels) > 0.8
