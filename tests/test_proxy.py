"""The proxy and margin-softmax losses and `layers.ClassProxies` beyond the shared spec tests:
properties against the float64 oracle, the layer that computes its loss (`loss=`: the loss
declares the logits and the margin, a mismatched pairing is an error at the first call), the
layer's training-only margin and warm-up, configs of release 0.1.0, the learning-rate
multiplier, gradients at the margin's singular points, half precision, and a trained model that
predicts identically after a `.keras` reload in a fresh process."""

import json
import math
import subprocess
import sys
import warnings

import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pml_proxy_reference as oracle
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from specs.proxy import SPECS, subcenter_arcface_oracle
from support import compiled, examples, numpy, value_and_grad

import keras_metric_losses as kml

BY_NAME = {spec.function.__name__: spec for spec in SPECS}
RNG = np.random.default_rng(0)


def _oracle_kwargs(name, k):
    return {"subcenter_arcface_loss": {"sub_centers": k},
            "soft_triple_loss": {"centers_per_class": k}}.get(name, {})  # fmt: skip


@st.composite
def batches(draw):
    batch, dim = draw(st.integers(1, 9)), draw(st.integers(2, 5))
    num_classes = draw(st.integers(1, 5))
    labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, num_classes - 1)))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    permutation = np.asarray(draw(st.permutations(range(batch))))
    return labels, batch, dim, num_classes, seed, scale, permutation


@settings(max_examples=examples(12), deadline=None)
@given(batches(), st.sampled_from(sorted(BY_NAME)), st.integers(1, 3))
def test_functions_match_the_oracle_and_permute_with_the_batch(batch, name, sub_centers):
    labels, size, dim, num_classes, seed, scale, permutation = batch
    spec = BY_NAME[name]
    k = sub_centers if name in ("subcenter_arcface_loss", "soft_triple_loss") else 1
    rng = np.random.default_rng(seed)
    embeddings = (scale * rng.normal(size=(size, dim))).astype("float32")
    proxies = rng.normal(size=(num_classes * k, dim)).astype("float32")
    kwargs = _oracle_kwargs(name, k)
    values = numpy(spec.function(labels, embeddings, proxies, **kwargs))
    weights = spec.kind.oracle_weights(proxies.astype(np.float64))
    expected = spec.kind.oracle_fn(embeddings.astype(np.float64), labels, weights, num_classes,
                                   **kwargs)  # fmt: skip
    # float32 against float64: logits up to `scale * |x| |w|` lose ~1e-7 of their size.
    np.testing.assert_allclose(values, expected.per_anchor, rtol=2e-4, atol=2e-4)
    permuted = numpy(spec.function(labels[permutation], embeddings[permutation], proxies, **kwargs))
    np.testing.assert_allclose(permuted, values[permutation], rtol=1e-5, atol=1e-5)


def test_the_subcenter_oracle_is_arcface_for_one_sub_center():
    labels, x, w = np.array([0, 2, 1]), RNG.normal(size=(3, 4)), RNG.normal(size=(4, 3))
    one = subcenter_arcface_oracle(x, labels, w, 3, sub_centers=1)
    np.testing.assert_allclose(one.per_anchor, oracle.arcface_loss(x, labels, w, 3).per_anchor)
    repeated = subcenter_arcface_oracle(x, labels, np.repeat(w, 2, axis=1), 3, sub_centers=2)
    np.testing.assert_allclose(repeated.per_anchor, one.per_anchor)


# --- the margin: where float32 and `acos` are fragile ----------------------------------------


@pytest.mark.parametrize("name", ["arcface_loss", "sphereface_loss", "large_margin_softmax_loss"])
def test_finite_gradients_where_the_cosine_is_plus_or_minus_one(name):
    """An embedding on its proxy's direction (cos = 1) or opposite (cos = -1): PML's `acos` has
    an infinite derivative there; here the value is exact and the gradient finite."""
    proxies = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]], "float32")
    embeddings = np.array([[2.0, 0.0, 0.0], [0.0, -3.0, 0.0], [0.0, 0.5, 0.0]], "float32")
    labels = np.array([0, 1, 1])
    fn = BY_NAME[name].function
    value, grad = value_and_grad(lambda e: keras.ops.sum(fn(labels, e, proxies)), embeddings)
    assert np.isfinite(grad).all(), grad
    expected = BY_NAME[name].kind.reference(labels, embeddings, proxies).sum()
    np.testing.assert_allclose(value, expected, rtol=1e-5)


def test_arcface_fallback_near_pi():
    """Beyond `theta = pi - m` the target is `cos(theta) - m sin(m)` (PML's fallback): it keeps
    decreasing in theta across the switch (where `cos(theta + m)` would turn up again)."""
    margin = 28.6
    m = math.radians(margin)
    switch = -math.cos(m)
    cosines = np.array([switch - 1e-3, switch + 1e-3, -1.0, 1.0, 0.3], "float32")
    from keras_metric_losses.class_logits import margin_target

    got = numpy(margin_target(keras.ops.convert_to_tensor(cosines), "additive_angular", margin))
    np.testing.assert_allclose(got, oracle.arcface_target(cosines.astype(np.float64), margin),
                               atol=2e-6)  # fmt: skip
    assert got[0] < got[1]  # the larger angle (just past the switch) has the smaller target


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", ["arcface_loss", "cosface_loss", "proxy_anchor_loss"])
def test_half_precision_embeddings_compute_in_float32(name, dtype):
    """The margin's angles are computed in float32: the result is the float32 loss of the
    same (representable) inputs, returned in the input dtype."""
    fn = BY_NAME[name].function
    embeddings = keras.ops.convert_to_tensor(RNG.normal(size=(6, 4)), dtype=dtype)
    proxies = RNG.normal(size=(3, 4)).astype("float32")
    labels = np.array([0, 1, 2, 0, 1, 2])
    half = fn(labels, embeddings, proxies)
    assert keras.backend.standardize_dtype(half.dtype) == dtype
    full = fn(labels, keras.ops.cast(embeddings, "float32"), proxies)
    expected = keras.ops.cast(keras.ops.cast(full, dtype), "float32")
    np.testing.assert_array_equal(numpy(keras.ops.cast(half, "float32")), numpy(expected))


# --- labels outside [0, C) with value checks off: documented values --------------------------


def test_out_of_range_ids_match_no_class():
    proxies = RNG.normal(size=(3, 4)).astype("float32")
    embeddings = RNG.normal(size=(4, 4)).astype("float32")
    labels = np.array([0, 5, -1, 2])
    for name in ("arcface_loss", "cosface_loss", "normalized_softmax_loss", "proxy_nca_loss"):
        values = numpy(BY_NAME[name].function(labels, embeddings, proxies))
        assert values[1] == 0.0 and values[2] == 0.0 and (values[[0, 3]] > 0).all(), name
    with kml.config.value_checks(), pytest.raises(ValueError, match="`labels` must be class"):
        kml.arcface_loss(labels, embeddings, proxies)
    # Proxy Anchor: an unknown id is a negative of every proxy.
    anchor = numpy(kml.proxy_anchor_loss(labels, embeddings, proxies))
    as_negative = oracle.proxy_anchor_loss(embeddings, np.array([0, 0, 0, 2]), proxies, 3)
    assert np.isfinite(anchor).all() and anchor.mean() != pytest.approx(as_negative.loss)


def test_proxy_nca_pml_reducer_drops_rows_whose_probability_underflows():
    """PML keeps the rows with `softmax(z)[y] != 0` in float32: `-log p < 150 log 2`."""
    proxies = np.array([[1.0, 0.0], [-1.0, 0.0]], "float32")
    embeddings = np.array([[1.0, 0.0], [-1.0, 0.0], [-1.0, 0.01]], "float32")
    labels = np.array([0, 1, 0])  # the third row's true proxy is at squared distance ~4
    per_anchor = numpy(kml.proxy_nca_loss(labels, embeddings, proxies, softmax_scale=30.0))
    assert per_anchor[2] > 150 * math.log(2)  # p = exp(-120) is 0 in float32
    pml = numpy(kml.proxy_nca_loss(labels, embeddings, proxies, softmax_scale=30.0, reducer="pml"))
    np.testing.assert_allclose(pml.mean(), per_anchor[:2].mean(), rtol=1e-6)
    assert pml[2] == 0.0


# --- the layer: margin in training only, warm-up, learning-rate multiplier -------------------


def test_layer_applies_the_margin_in_training_only():
    x, labels = RNG.normal(size=(5, 3)).astype("float32"), np.array([0, 1, 2, 3, 0])
    layer = kml.layers.ClassProxies(4, margin_type="additive_cosine", margin=0.25)
    cosines = numpy(layer(x))
    np.testing.assert_allclose(numpy(layer([x, labels], training=False)), cosines)
    with_margin = numpy(layer([x, labels]))
    np.testing.assert_allclose(with_margin, cosines - 0.25 * np.eye(4)[labels], rtol=1e-6,
                               atol=1e-6)  # fmt: skip
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    proxies = numpy(layer.proxies)
    np.testing.assert_allclose(
        cosines, unit @ (proxies / np.linalg.norm(proxies, axis=1, keepdims=True)).T, atol=1e-6
    )
    assert layer.compute_output_shape([(None, 3), (None,)]) == (None, 4)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(margin=0.5), r"`margin` needs a `margin_type`.*margin=0.5"),
        (dict(margin_type="multiplicative_angular", margin=2.5), r"margin=2.5"),
        (dict(margin_type="additive_angular", margin=200), r"<= 180.*margin=200"),
        (dict(margin_type="angular"), r"`margin_type` must be one of.*margin_type='angular'"),
        (dict(margin_type="multiplicative_angular", margin_warmup_steps=10), r"additive"),
        (dict(margin_warmup_steps=-1), r"margin_warmup_steps=-1"),
        (dict(sub_centers=2, normalize_proxies=False), r"normalize_proxies"),
        (dict(sub_center_pooling="mean"), r"sub_center_pooling='mean'"),
        (dict(learning_rate_multiplier=0.0), r"learning_rate_multiplier=0.0"),
    ],
)
def test_layer_arguments_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kml.layers.ClassProxies(4, **kwargs)


def test_default_margins_are_pmls():
    expected = {"additive_angular": 28.6, "additive_cosine": 0.35, "multiplicative_angular": 4}
    margins = {t: kml.layers.ClassProxies(2, margin_type=t).margin for t in expected}
    assert margins == expected


def _head(**layer_kwargs):
    features, labels = keras.Input((6,)), keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(4, name="embed")(features)
    layer = kml.layers.ClassProxies(4, name="proxies", **layer_kwargs)
    return keras.Model([features, labels], layer([embeddings, labels])), layer


def _data(batch=16):
    rng = np.random.default_rng(3)
    labels = np.arange(batch) % 4
    centres = rng.normal(size=(4, 6)) * 2
    return (centres[labels] + rng.normal(size=(batch, 6))).astype("float32"), labels


def test_margin_warms_up_linearly_over_training_steps():
    """`margin_warmup_steps=N`: the margin grows from 0 to its value over the first N training
    calls of `fit` (a model variable: compiled steps see it on every backend)."""
    loss = kml.CosFaceLoss(margin=0.4, scale=8.0)
    model, layer = _head(loss=loss, margin_warmup_steps=4)
    x, y = _data()
    embeddings = numpy(model.get_layer("embed")(x))
    assert float(numpy(layer.current_margin())) == 0.0
    cosines = numpy(model.predict([x, y], verbose=0))  # the layer returns no margin
    np.testing.assert_allclose(numpy(model([x, y])), cosines, atol=1e-6)
    np.testing.assert_allclose(numpy(layer.logits(embeddings, y)), cosines, atol=1e-6)  # step 0
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    model.fit([x, y], batch_size=8, epochs=1, verbose=0)  # 2 steps
    assert float(numpy(layer.warmup_step)) == 2.0
    np.testing.assert_allclose(float(numpy(layer.current_margin())), 0.2, rtol=1e-6)
    margin_logits = cosines - 0.2 * np.eye(4)[y]
    np.testing.assert_allclose(numpy(layer.logits(embeddings, y)), margin_logits, atol=1e-6)
    expected = numpy(kml.cosface_loss(y, embeddings, layer.proxies, margin=0.2, scale=8.0))
    np.testing.assert_allclose(numpy(layer.loss_values(embeddings, y)), expected, rtol=1e-5)
    model.fit([x, y], batch_size=8, epochs=2, verbose=0)  # 4 more steps: capped at N
    assert float(numpy(layer.warmup_step)) == 4.0
    np.testing.assert_allclose(float(numpy(layer.current_margin())), 0.4, rtol=1e-6)
    # The margin variable can be scheduled by hand too (e.g. from a callback).
    layer.margin_variable.assign(0.1)
    margin_logits = cosines - 0.1 * np.eye(4)[y]
    np.testing.assert_allclose(numpy(layer.logits(embeddings, y)), margin_logits, atol=1e-6)


def test_margin_assigned_from_a_callback_reaches_the_compiled_step():
    model, layer = _head(loss=kml.CosFaceLoss(margin=0.0, scale=4.0))
    x, y = _data()

    class Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            layer.margin_variable.assign(0.5 * epoch)

    model.compile(optimizer=keras.optimizers.SGD(0.0))
    history = model.fit([x, y], batch_size=16, epochs=2, verbose=0, callbacks=[Schedule()])
    embeddings = numpy(model.get_layer("embed")(x))
    for epoch, value in enumerate(history.history["loss"]):
        expected = kml.cosface_loss(y, embeddings, layer.proxies, margin=0.5 * epoch, scale=4.0)
        np.testing.assert_allclose(value, numpy(expected).mean(), rtol=1e-5)


def test_a_layer_without_loss_keeps_0_1_0s_margin_on_its_output():
    """`ClassProxies(C, margin_type=...)` without a loss: the margin logits are the output in
    training, for a loss of 0.1.0 restored from its config (a scaled cross-entropy)."""
    model, layer = _head(margin_type="additive_cosine", margin=0.3)
    x, y = _data()
    embeddings = numpy(model.get_layer("embed")(x))
    cosines = numpy(model.predict([x, y], verbose=0))
    np.testing.assert_allclose(numpy(model([x, y])), cosines - 0.3 * np.eye(4)[y], atol=1e-6)
    config = kml.CosFaceLoss(scale=4.0).get_config()
    del config["margin"]  # as 0.1.0 saved it
    with pytest.warns(DeprecationWarning, match=r"0\.1\.0.*loss=kml\.CosFaceLoss\(margin="):
        legacy = kml.CosFaceLoss.from_config(config)
    assert legacy.get_config() == config  # saved again as 0.1.0 saved it
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=legacy)
    value = model.evaluate([x, y], y, verbose=0)  # training=False: no margin, as in 0.1.0
    expected = kml.cosface_loss(y, embeddings, layer.proxies, margin=0.0, scale=4.0)
    np.testing.assert_allclose(value, numpy(expected).mean(), rtol=1e-5)
    trained = model.fit([x, y], y, batch_size=16, epochs=1, verbose=0).history["loss"][0]
    expected = kml.cosface_loss(y, embeddings, layer.proxies, margin=0.3, scale=4.0)
    np.testing.assert_allclose(trained, numpy(expected).mean(), rtol=1e-5)


# --- the layer computes its loss: one declaration of the margin ------------------------------

LAYER_LOSSES = [
    kml.ProxyAnchorLoss(alpha=8.0),
    kml.ProxyNCALoss(softmax_scale=4.0),
    kml.NormalizedSoftmaxLoss(temperature=0.5),
    kml.SoftTripleLoss(la=4.0, centers_per_class=2),
    kml.ArcFaceLoss(scale=8.0),
    kml.SubCenterArcFaceLoss(scale=8.0, sub_centers=2),
    kml.CosFaceLoss(scale=8.0),
    kml.SphereFaceLoss(margin=2),
    kml.LargeMarginSoftmaxLoss(margin=2),
]
FUNCTION_OF = {spec.cls: spec.function for spec in SPECS}


@pytest.mark.parametrize("loss", LAYER_LOSSES, ids=lambda loss: type(loss).__name__)
def test_the_layer_trains_its_loss_with_the_functions_value(loss):
    """`ClassProxies(C, loss=...)` computes the logits the loss declares, adds the loss of
    the function with the same weights in a training step (learning rate 0: the reported
    loss), returns the logits without margin, and trains (`compile` without a loss)."""
    model, layer = _head(loss=loss)
    x, y = _data()
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    reported = float(model.train_on_batch([x, y]))
    embeddings = numpy(model.get_layer("embed")(x))
    function = FUNCTION_OF[type(loss)]
    expected = numpy(function(y, embeddings, layer.proxies, **loss.hyperparameters)).mean()
    np.testing.assert_allclose(reported, expected, rtol=1e-5, atol=1e-6)
    declared = loss.layer_logits()
    assert {k: getattr(layer, k) for k in declared} == declared
    plain = kml.layers.ClassProxies(4, **{**declared, "margin_type": None, "margin": None})
    plain.set_proxies(layer.proxies)
    np.testing.assert_allclose(numpy(model([x, y])), numpy(plain(embeddings)), atol=1e-6)
    model.compile(optimizer=keras.optimizers.Adam(0.05))
    history = model.fit([x, y], batch_size=16, epochs=5, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0]


@pytest.mark.parametrize(
    "layer_kwargs",
    [{}, {"margin_type": "additive_cosine"}],
    ids=["no margin", "CosFace margin"],
)
def test_an_arcface_loss_compiled_on_a_layers_logits_raises_at_the_first_call(layer_kwargs):
    """The two silent mismatches of 0.1.0 (a plain normalized softmax, or CosFace, trained
    under the name ArcFace) are errors: the margin-softmax loss is computed by its layer."""
    model, _ = _head(**layer_kwargs)
    x, y = _data()
    model.compile(optimizer="adam", loss=kml.ArcFaceLoss())
    with pytest.raises(ValueError, match=r"`ArcFaceLoss` is computed by the layer") as error:
        model.fit([x, y], y, batch_size=16, epochs=1, verbose=0)
    assert "kml.layers.ClassProxies(num_classes, loss=kml.ArcFaceLoss(...))" in str(error.value)
    assert 'model.compile(optimizer="adam")' in str(error.value)


def test_a_margin_softmax_loss_called_on_logits_raises():
    logits = RNG.normal(size=(4, 3)).astype("float32")
    for loss in LAYER_LOSSES[4:]:
        name = type(loss).__name__
        match = rf"(?s)`{name}` is computed by the layer.*shape \(4, 3\)"
        with pytest.raises(ValueError, match=match):
            loss(np.array([0, 1, 2, 0]), logits)


@pytest.mark.parametrize(
    "kwargs, loss, match",
    [
        (dict(margin_type="additive_cosine"), kml.ArcFaceLoss(),
         r"`margin_type='additive_cosine'` conflicts with loss=ArcFaceLoss, which declares "
         r"margin_type='additive_angular'"),
        (dict(margin=0.2), kml.CosFaceLoss(), r"`margin=0.2` conflicts with loss=CosFaceLoss"),
        (dict(sub_centers=2), kml.ArcFaceLoss(), r"`sub_centers=2` conflicts.*sub_centers=1"),
        (dict(sub_centers=2), kml.SubCenterArcFaceLoss(), r"declares sub_centers=3"),
        (dict(normalize_embeddings=False), kml.ArcFaceLoss(), r"normalize_embeddings=True"),
        (dict(normalize_proxies=False), kml.SphereFaceLoss(), r"normalize_proxies=True"),
        (dict(sub_center_pooling="softmax", sub_centers=2), kml.ProxyAnchorLoss(),
         r"`sub_centers=2` conflicts with loss=ProxyAnchorLoss"),
        (dict(gamma=0.5), kml.SoftTripleLoss(), r"`gamma=0.5` conflicts.*declares gamma=0.1"),
        (dict(margin_type="additive_angular"), kml.ProxyNCALoss(), r"declares margin_type=None"),
        (dict(margin_warmup_steps=3), kml.SphereFaceLoss(), r"needs an additive margin"),
    ],
)  # fmt: skip
def test_layer_arguments_that_contradict_the_loss_raise(kwargs, loss, match):
    with pytest.raises(ValueError, match=match):
        kml.layers.ClassProxies(4, loss=loss, **kwargs)


def test_layer_arguments_that_agree_with_the_loss_are_accepted():
    layer = kml.layers.ClassProxies(
        4, sub_centers=3, margin_type="additive_angular", margin=20.0,
        loss=kml.SubCenterArcFaceLoss(margin=20.0),
    )  # fmt: skip
    assert (layer.sub_centers, layer.margin_type, layer.margin) == (3, "additive_angular", 20.0)
    soft = kml.layers.ClassProxies(4, loss=kml.SoftTripleLoss(centers_per_class=4, gamma=0.2))
    assert (soft.sub_centers, soft.sub_center_pooling, soft.gamma) == (4, "softmax", 0.2)
    sphere = kml.layers.ClassProxies(4, loss=kml.LargeMarginSoftmaxLoss())
    assert (sphere.normalize_embeddings, sphere.normalize_proxies) == (False, False)
    assert (sphere.margin_type, sphere.margin) == ("multiplicative_angular", 4)
    with pytest.raises(TypeError, match=r"`loss` must be a proxy or margin-softmax loss"):
        kml.layers.ClassProxies(4, loss=kml.PNLoss())


def test_the_layers_config_saves_its_loss():
    layer = kml.layers.ClassProxies(
        5, loss=kml.SubCenterArcFaceLoss(margin=20.0, scale=8.0), margin_warmup_steps=3
    )
    config = layer.get_config()
    json.dumps(config)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # a new config: no 0.1.0 behaviour
        restored = kml.layers.ClassProxies.from_config(config)
    assert restored.get_config() == config
    assert type(restored.loss) is kml.SubCenterArcFaceLoss
    assert restored.loss.get_config() == layer.loss.get_config()
    assert (restored.sub_centers, restored.margin) == (3, 20.0)


@pytest.mark.slow
@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_the_layer_trains_its_loss_under_mixed_precision(policy):
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model, _ = _head(loss=kml.ArcFaceLoss(scale=16.0))
    x, y = _data()
    assert keras.backend.standardize_dtype(model([x, y]).dtype) == "float32"
    model.compile(optimizer="adam")
    history = model.fit([x * 30.0, y], batch_size=16, epochs=3, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert all(np.isfinite(numpy(w)).all() for w in model.weights)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_learning_rate_multiplier_scales_the_proxies_steps(optimizer):
    """With `learning_rate_multiplier=r` an optimizer step from the same proxies (same
    gradients) moves them `r` times as far as with `r = 1`, for SGD and Adam alike."""
    x, y = _data()
    steps = {}
    for multiplier in (1.0, 10.0):
        keras.utils.set_random_seed(0)
        features = keras.Input((6,))
        layer = kml.layers.ClassProxies(4, learning_rate_multiplier=multiplier)
        model = keras.Model(features, layer(keras.layers.Dense(4)(features)))
        layer.set_proxies(np.eye(4, dtype="float32") + 0.1)
        make = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam}[optimizer]
        model.compile(optimizer=make(0.01), loss=kml.NormalizedSoftmaxLoss(temperature=0.5))
        before = numpy(layer.proxies)
        model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # one step
        steps[multiplier] = numpy(layer.proxies) - before
        np.testing.assert_allclose(numpy(layer.proxies), multiplier * numpy(layer.kernel),
                                   rtol=1e-6)  # fmt: skip
    assert np.abs(steps[1.0]).max() > 1e-4
    # Steps are differences of proxies of size ~1: float32 leaves them a few 1e-7 of absolute error.
    np.testing.assert_allclose(steps[10.0], 10.0 * steps[1.0], rtol=1e-4, atol=1e-6)


def test_layer_compiles_with_the_margin():
    layer = kml.layers.ClassProxies(4, margin_type="additive_angular", sub_centers=2)
    x, labels = RNG.normal(size=(5, 3)).astype("float32"), np.array([0, 1, 2, 3, 0])
    eager = numpy(layer([x, labels]))
    traced = numpy(compiled(lambda e, y: layer.logits(e, y))(x, labels))
    np.testing.assert_allclose(traced, eager, rtol=1e-5, atol=1e-6)


# --- a trained model: save, reload in a fresh process, predict identically -------------------

PREDICT = """
import json, sys
import keras
import numpy as np
import keras_metric_losses  # the only import needed
model = keras.saving.load_model(sys.argv[1])
x = np.asarray(json.load(open(sys.argv[2])), "float32")
features = model.inputs[0]
embeddings = model.get_layer("embed").output
predictor = keras.Model(features, [embeddings, model.get_layer("proxies")(embeddings)])
e, logits = predictor.predict(x, verbose=0)
print(json.dumps({"embeddings": e.tolist(), "classes": logits.argmax(-1).tolist(),
                  "logits": logits.tolist()}))
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    "loss, layer_kwargs",
    [
        (None, dict(loss=kml.SubCenterArcFaceLoss(scale=16.0, sub_centers=2))),
        (kml.ProxyAnchorLoss(), dict(learning_rate_multiplier=100.0)),
    ],
    ids=["subcenter_arcface", "proxy_anchor"],
)
def test_trained_model_reloads_and_predicts_identically(tmp_path, loss, layer_kwargs):
    """A layer that computes its loss (compiled without a loss), and a loss compiled on the
    layer's cosines."""
    keras.utils.set_random_seed(0)
    x, y = _data(batch=64)
    features = keras.Input((6,))
    embeddings = keras.layers.Dense(4, name="embed")(features)
    layer = kml.layers.ClassProxies(4, name="proxies", **layer_kwargs)
    if loss is not None:
        model, inputs = keras.Model(features, layer(embeddings)), x
    else:
        labels = keras.Input((), dtype="int32")
        model = keras.Model([features, labels], layer([embeddings, labels]))
        inputs = [x, y]
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    history = model.fit(inputs, y, batch_size=16, epochs=5, verbose=0).history["loss"]
    assert history[-1] < history[0]
    predictor = keras.Model(features, [embeddings, layer(embeddings)])
    e, logits = predictor.predict(x, verbose=0)
    assert (logits.argmax(-1) == y).mean() > 0.5  # it learned something
    path, data = tmp_path / "model.keras", tmp_path / "x.json"
    model.save(path)
    data.write_text(json.dumps(x.tolist()))
    result = subprocess.run([sys.executable, "-c", PREDICT, str(path), str(data)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["classes"] == logits.argmax(-1).tolist()
    np.testing.assert_array_equal(np.asarray(loaded["embeddings"], "float32"), e)
    np.testing.assert_array_equal(np.asarray(loaded["logits"], "float32"), logits)
