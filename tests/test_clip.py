"""CLIP and SigLIP beyond the golden cases (specs/clip.py): the tiled path against the dense one,
eagerly and compiled, and `kml.layers.LogitScale` (weights, gradient, `fit`, clamp, saving)."""

import math

import keras
import numpy as np
import pytest
from support import golden_cases, numpy, value_and_grad
from test_tiling import assert_tiled_matches, compiled_value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.clip.clip import clip_values
from keras_metric_losses.losses.clip.siglip import siglip_values

RNG = np.random.default_rng(25)
VALUES = {"clip": clip_values, "siglip": siglip_values}


def packed_loss(name, shape, weights, block_size):
    """A weighted sum of the per-example values of `[I, T, t, bias]` packed in one vector."""
    size = shape[0] * shape[1]

    def loss(x):
        images = keras.ops.reshape(x[:size], shape)
        texts = keras.ops.reshape(x[size : 2 * size], shape)
        values = VALUES[name](images, texts, scale=keras.ops.exp(x[2 * size]),
                              bias=x[2 * size + 1], block_size=block_size)  # fmt: skip
        return keras.ops.sum(values * weights)

    return loss


def problem(batch, dim=5, t=2.66, bias=-3.0):
    images = RNG.normal(size=(batch, dim)).astype("float32")
    texts = images + 0.5 * RNG.normal(size=(batch, dim)).astype("float32")
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    x = np.concatenate([images.ravel(), texts.ravel(), np.array([t, bias], "float32")])
    weights = keras.ops.convert_to_tensor(RNG.normal(size=batch).astype("float32"))
    return x, (batch, dim), weights


@pytest.mark.parametrize("name", sorted(VALUES))
@pytest.mark.parametrize(("batch", "block_size", "t"), [(10, 3, 2.66), (7, 4, math.log(100)),
                                                        (5, 8, 1.0)])  # fmt: skip
def test_tiled_equals_dense(name, batch, block_size, t):
    """Padded rows and columns, a block larger than the batch, s = 100: values and the
    gradients of the features, t and the bias."""
    x, shape, weights = problem(batch, t=t)
    value, grad = value_and_grad(packed_loss(name, shape, weights, None), x)
    tiled, tiled_grad = value_and_grad(packed_loss(name, shape, weights, block_size), x)
    assert_tiled_matches(tiled, value)
    assert_tiled_matches(tiled_grad[:-1], grad[:-1])
    # CLIP's bias cancels: 0 by tiles, the dense form's rounding (~1e-8) otherwise.
    np.testing.assert_allclose(tiled_grad[-1], grad[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(VALUES))
def test_tiled_compiled_equals_dense(name):
    """Compiled tiles (2 x 2 of 4, one padded row and column) against eager dense. On torch,
    Dynamo and AOTAutograd capture both graphs whole and run them eagerly: the tile loops go
    through Inductor's code generation in test_tiling (27 s a loss on an empty cache)."""
    x, shape, weights = problem(7)
    value, grad = value_and_grad(packed_loss(name, shape, weights, None), x)
    loss = packed_loss(name, shape, weights, 4)
    tiled, tiled_grad = compiled_value_and_grad(loss, x, generate_code=False)
    assert_tiled_matches(tiled, value)
    assert_tiled_matches(tiled_grad[:-1], grad[:-1])
    np.testing.assert_allclose(tiled_grad[-1], grad[-1], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("loss", [kml.clip_loss, kml.siglip_loss])
def test_block_size_of_the_public_function_and_empty_batch(loss):
    y_pred = RNG.normal(size=(6, 2, 3)).astype("float32")
    assert_tiled_matches(numpy(loss(None, y_pred, block_size=4)), numpy(loss(None, y_pred)))
    assert numpy(loss(None, np.zeros((0, 2, 3), "float32"), block_size=4)).shape == (0,)


def test_hyperparameter_checks():
    for cls in (kml.ClipLoss, kml.SigLipLoss):
        with pytest.raises(ValueError, match="scale"):
            cls(scale=0.0)
        with pytest.raises(ValueError, match=r"`scale` must be a finite number > 0. Received"):
            cls(scale=np.array([1.0, 2.0]))  # not a scalar
        with pytest.raises(ValueError, match="bias"):
            cls(bias="-10")
        assert cls.from_config(cls(bias=None).get_config()).bias is None
    assert kml.ClipLoss().scale == pytest.approx(1 / 0.07) and kml.ClipLoss().bias is None
    assert (kml.SigLipLoss().scale, kml.SigLipLoss().bias) == (10.0, -10.0)


# --- LogitScale ---------------------------------------------------------------------------------


def test_logit_scale_starts_from_open_clips_inits():
    clip = kml.layers.LogitScale(loss=kml.ClipLoss())
    assert float(clip.log_scale.value) == pytest.approx(math.log(1 / 0.07))
    assert clip.bias is None and len(clip.trainable_weights) == 1
    siglip = kml.layers.LogitScale(loss=kml.SigLipLoss())
    assert float(siglip.log_scale.value) == pytest.approx(math.log(10.0))
    assert float(siglip.bias) == -10.0 and len(siglip.trainable_weights) == 2
    with pytest.raises(TypeError, match=r"loss=.*NTXentLoss"):
        kml.layers.LogitScale(loss=kml.NTXentLoss())


@pytest.mark.parametrize("case_id", ["clip-b12-d8-bias-2.5", "siglip-b8-d8-init"])
def test_logit_scale_gradients_are_open_clips(case_id):
    """The loss the layer adds, and its gradients w.r.t. t (`s * d/ds`) and the bias, are the
    golden values of open_clip."""
    (case,) = [c for c in golden_cases("clip") if c["id"] == case_id]
    loss = {"ClipLoss": kml.ClipLoss, "SigLipLoss": kml.SigLipLoss}[case["call"]]
    layer = kml.layers.LogitScale(loss=loss(bias=case["logit_bias"]))
    y_pred = np.stack([np.asarray(case[k], "float32") for k in ("image_features",
                                                                "text_features")], 1)  # fmt: skip

    def added(weights):
        trainable = [weights[k] for k in range(len(layer.trainable_variables))]
        return layer.stateless_call(trainable, [], y_pred, return_losses=True)[2][0]

    weights = np.array([case["logit_scale_log"], case["logit_bias"]], "float32")
    value, grad = value_and_grad(added, weights)
    np.testing.assert_allclose(value, case["expected"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad[0], case["grads"]["logit_scale_log"], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(grad[1], case["grads"]["logit_bias"], rtol=1e-5, atol=1e-6)


def two_towers(loss, name="logit_scale"):
    images, texts = keras.Input((6,)), keras.Input((5,))
    image = keras.layers.UnitNormalization()(keras.layers.Dense(4)(images))
    text = keras.layers.UnitNormalization()(keras.layers.Dense(4)(texts))
    scale = kml.layers.LogitScale(loss=loss, name=name)
    return keras.Model([images, texts], scale(keras.ops.stack([image, text], axis=1))), scale


def data(batch=16):
    images = RNG.normal(size=(batch, 6)).astype("float32")
    return [images, images[:, :5] + 0.1 * RNG.normal(size=(batch, 5)).astype("float32")]


@pytest.mark.slow
@pytest.mark.parametrize("loss", [kml.ClipLoss(), kml.SigLipLoss(block_size=4)])
def test_logit_scale_trains_with_fit_and_the_clamp_holds(loss):
    keras.utils.set_random_seed(0)
    model, scale = two_towers(loss)
    model.compile(optimizer=keras.optimizers.SGD(0.1))
    before = [numpy(w) for w in scale.trainable_weights]
    history = model.fit(data(), batch_size=8, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert all(numpy(w) != b for w, b in zip(scale.trainable_weights, before, strict=True))
    model.optimizer.learning_rate.assign(1e-6)  # steps far smaller than the clamp's
    for start, clamped in ((5.0, math.log(100.0)), (-1.0, 0.0)):  # outside [0, ln 100]
        scale.log_scale.assign(start)
        model.fit(data(8), batch_size=8, epochs=1, verbose=0)
        assert float(scale.log_scale.value) == pytest.approx(clamped)


@pytest.mark.slow
def test_logit_scale_saves_and_loads_with_the_model(tmp_path):
    keras.utils.set_random_seed(0)
    model, scale = two_towers(kml.SigLipLoss(scale=20.0, bias=-5.0))
    model.compile(optimizer="adam")
    x = data()
    model.fit(x, batch_size=8, epochs=1, verbose=0)
    path = str(tmp_path / "siglip.keras")
    model.save(path)
    loaded = keras.saving.load_model(path)
    restored = loaded.get_layer("logit_scale")
    assert isinstance(restored.loss, kml.SigLipLoss) and restored.loss.bias == -5.0
    for weight, original in zip(restored.trainable_weights, scale.trainable_weights, strict=True):
        np.testing.assert_array_equal(numpy(weight), numpy(original))
    np.testing.assert_allclose(loaded.evaluate(x, verbose=0), model.evaluate(x, verbose=0),
                               rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("loss", [kml.ClipLoss, kml.SigLipLoss], ids=lambda c: c.__name__)
def test_image_and_text_given_apart(loss):
    """`[image, text]` is the stacked `[B, 2, D]`; features of different shapes raise, naming
    them, in the loss and in the layer."""
    rng = np.random.default_rng(3)
    image, text = rng.normal(size=(2, 4, 8)).astype("float32")
    np.testing.assert_allclose(
        numpy(loss(reduction=None)(None, [image, text])),
        numpy(loss(reduction=None)(None, np.stack([image, text], axis=1))),
        rtol=1e-6,
    )
    shapes = r"a list of shapes \[\(4, 8\), \(3, 8\)\]"
    with pytest.raises(ValueError, match=shapes):
        loss()(None, [image, text[:3]])
    with pytest.raises(ValueError, match=shapes):
        kml.layers.LogitScale(loss=loss())([image, text[:3]])
