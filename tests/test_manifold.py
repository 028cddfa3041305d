"""`manifold_loss` beyond its golden cases (tests/data/pml_more.json, `specs.proxy`): its
arguments, meta classes drawn or out of range, non-finite inputs, degenerate batches, float64,
`lambdaC=inf`, eagerly and compiled; and `ManifoldLoss`, computed by `layers.ClassProxies`: its
values, its draws from the layer's saved seed state, training, saving and its errors."""

import keras
import numpy as np
import pml_more_proxy_reference as oracle
import pytest
from support import compiled, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.proxy.manifold import draw_meta_classes

RNG = np.random.default_rng(0)
EMBEDDINGS = RNG.normal(size=(10, 4)).astype("float32")
PROXIES = RNG.normal(size=(3, 4)).astype("float32")
META = np.array([0, 1, 2, 0, 1, 2, 0, 1, 2, 0])


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(lambdaC=-1.0), r"`lambdaC` must be a finite number >= 0. Received: lambdaC=-1.0"),
        (dict(alpha=1.0), r"`alpha` must be in \(0, 1\). Received: alpha=1.0"),
        (dict(alpha=0.0), r"`alpha` must be a finite number > 0 and <= 1. Received: alpha=0.0"),
        (dict(margin="a"), r"`margin` must be a finite number. Received: margin='a'"),
    ],
)
def test_bad_hyperparameters_raise_naming_them(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kml.manifold_loss(META, EMBEDDINGS, PROXIES, **kwargs)


def test_bad_shapes_raise_naming_the_argument():
    with pytest.raises(ValueError, match=r"`embeddings` and `proxies` must have the same number"):
        kml.manifold_loss(META, EMBEDDINGS, PROXIES[:, :3])
    with pytest.raises(ValueError, match=r"`meta_classes`"):
        kml.manifold_loss(META[:4], EMBEDDINGS, PROXIES)
    with pytest.raises(ValueError, match=r"a batch of at least K = 3 embeddings.*a batch of 2"):
        kml.manifold_loss(None, EMBEDDINGS[:2], PROXIES)
    with pytest.raises(TypeError, match=r"`seed`"):
        kml.manifold_loss(None, EMBEDDINGS, PROXIES, seed="a")


@pytest.mark.parametrize("run", [lambda f, *a: f(*a), lambda f, *a: compiled(f)(*a)],
                         ids=["eager", "compiled"])  # fmt: skip
def test_values_are_the_oracles(run):
    proxies = keras.ops.convert_to_tensor(PROXIES)  # compiled functions close over tensors
    values = run(lambda m, e: kml.manifold_loss(m, e, proxies, lambdaC=0.5), META, EMBEDDINGS)
    expected = oracle.manifold_loss(EMBEDDINGS, META, PROXIES, lambdaC=0.5).per_anchor
    np.testing.assert_allclose(numpy(values), expected, rtol=1e-5, atol=1e-6)


def test_infinite_lambda_c_is_the_context_loss_alone():
    values = kml.manifold_loss(META, EMBEDDINGS, PROXIES, lambdaC=float("inf"))
    expected = oracle.manifold_loss(EMBEDDINGS, META, PROXIES, lambdaC=np.inf).per_anchor
    assert np.isfinite(expected).all()
    np.testing.assert_allclose(numpy(values), expected, rtol=1e-5, atol=1e-6)


def test_drawn_meta_classes_cover_every_proxy_and_vary_with_the_seed():
    draws = [numpy(draw_meta_classes(10, 3, seed)) for seed in range(5)]
    for drawn in draws:
        assert drawn.shape == (10,) and set(drawn) == {0, 1, 2}
    assert len({tuple(d) for d in draws}) > 1
    drawn = numpy(draw_meta_classes(10, 3, 7))
    np.testing.assert_allclose(
        numpy(kml.manifold_loss(None, EMBEDDINGS, PROXIES, seed=7)),
        numpy(kml.manifold_loss(drawn, EMBEDDINGS, PROXIES)),
        rtol=1e-6,
    )


@pytest.mark.skipif(
    keras.backend.backend() == "torch", reason="Keras' torch RNG is not traceable by Dynamo"
)
def test_drawn_meta_classes_compile_with_a_seed_generator():
    generator = keras.random.SeedGenerator(0)
    proxies = keras.ops.convert_to_tensor(PROXIES)
    values = compiled(lambda e: kml.manifold_loss(None, e, proxies, seed=generator))(EMBEDDINGS)
    assert numpy(values).shape == (10,) and np.isfinite(numpy(values)).all()


def test_an_id_out_of_range_gives_its_row_zero():
    meta = META.copy()
    meta[3] = 7
    values = numpy(kml.manifold_loss(meta, EMBEDDINGS, PROXIES))
    assert values[3] == 0.0 and (values[np.arange(10) != 3] > 0).any()


def test_non_finite_embeddings_give_a_non_finite_loss():
    for bad in (np.nan, np.inf):
        embeddings = EMBEDDINGS.copy()
        embeddings[2, 1] = bad
        assert not np.isfinite(numpy(kml.manifold_loss(META, embeddings, PROXIES))).all()


@pytest.mark.parametrize(
    "embeddings, meta",
    [
        (np.zeros((4, 4), "float32"), np.array([0, 1, 2, 0])),  # zero rows: cosines 0
        (EMBEDDINGS[:1], np.array([1])),  # a batch of one
        (np.repeat(EMBEDDINGS[:1], 5, axis=0), np.zeros(5, int)),  # equal rows, one meta class
    ],
    ids=["zero", "one", "equal"],
)
def test_degenerate_batches_give_finite_values_and_gradients(embeddings, meta):
    def mean(x):
        return keras.ops.mean(kml.manifold_loss(meta, x, PROXIES))

    value, grad = value_and_grad(mean, embeddings)
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_float64_stays_float64():
    if keras.backend.backend() == "jax":
        pytest.skip("JAX computes in float32 without jax_enable_x64")
    embeddings, proxies = EMBEDDINGS.astype("float64"), PROXIES.astype("float64")
    values = kml.manifold_loss(META, embeddings, proxies)
    assert keras.backend.standardize_dtype(values.dtype) == "float64"
    expected = oracle.manifold_loss(embeddings, META, proxies).per_anchor
    np.testing.assert_allclose(numpy(values), expected, rtol=1e-10)


def test_an_empty_batch_gives_no_values():
    values = kml.manifold_loss(np.zeros((0,), int), np.zeros((0, 4), "float32"), PROXIES)
    assert numpy(values).shape == (0,)


# --- ManifoldLoss, computed by layers.ClassProxies(K, loss=kml.ManifoldLoss()) ----------------


def head(seed=None, **kwargs):
    """`ClassProxies(3, loss=kml.ManifoldLoss(**kwargs))` holding `PROXIES`."""
    layer = kml.layers.ClassProxies(3, loss=kml.ManifoldLoss(**kwargs), meta_class_seed=seed)
    layer.set_proxies(PROXIES)
    return layer


def added_loss(layer, *args, **kwargs):
    """The loss that one call of `layer` adds (`None` for none)."""
    layer(*args, **kwargs)
    losses = [numpy(loss) for loss in layer.losses]
    assert len(losses) <= 1, losses
    return losses[0] if losses else None


def test_the_layer_computes_the_function_with_its_proxies():
    layer = head(lambdaC=0.5, alpha=0.7, margin=0.01)
    expected = numpy(kml.manifold_loss(META, EMBEDDINGS, PROXIES, lambdaC=0.5, alpha=0.7,
                                       margin=0.01))  # fmt: skip
    np.testing.assert_allclose(numpy(layer.loss_values(EMBEDDINGS, META)), expected, rtol=1e-6)
    for training in (True, False, None):  # given meta classes: always the loss of these
        value = added_loss(layer, [EMBEDDINGS, META], training=training)
        np.testing.assert_allclose(value, expected.mean(), rtol=1e-6)
    logits = numpy(layer([EMBEDDINGS, META]))
    plain = kml.layers.ClassProxies(3)
    plain.set_proxies(PROXIES)
    np.testing.assert_allclose(logits, numpy(plain(EMBEDDINGS)), rtol=1e-6)


def test_the_layer_draws_meta_classes_in_training_only():
    layer = head(seed=3)
    assert added_loss(layer, EMBEDDINGS) is None
    assert added_loss(layer, EMBEDDINGS, training=False) is None
    drawn = numpy(kml.manifold_loss(None, EMBEDDINGS, PROXIES, seed=keras.random.SeedGenerator(3)))
    np.testing.assert_allclose(added_loss(layer, EMBEDDINGS, training=True), drawn.mean(), 1e-6)
    # The generator advances: the next call draws other meta classes.
    assert added_loss(layer, EMBEDDINGS, training=True) != pytest.approx(drawn.mean())


def test_calling_the_class_directly_raises():
    with pytest.raises(ValueError, match=r"ClassProxies\(K, loss=kml.ManifoldLoss\(\)\)"):
        kml.ManifoldLoss()(META, EMBEDDINGS)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile(loss=kml.ManifoldLoss())
    with pytest.raises(ValueError, match=r"`ManifoldLoss` takes the embeddings and the proxies"):
        model.evaluate(EMBEDDINGS, META, verbose=0)


def test_config_round_trips():
    loss = kml.ManifoldLoss(lambdaC=0.5, alpha=0.7, margin=0.01, reduction="sum", name="m")
    config = loss.get_config()
    assert {k: config[k] for k in ("lambdaC", "alpha", "margin")} == dict(
        lambdaC=0.5, alpha=0.7, margin=0.01
    )
    assert kml.ManifoldLoss.from_config(config).get_config() == config
    layer = kml.layers.ClassProxies(3, loss=loss, meta_class_seed=5)
    restored = kml.layers.ClassProxies.from_config(layer.get_config())
    assert restored.get_config() == layer.get_config()
    assert restored.meta_class_seed == 5 and restored.loss.get_config() == config
    # Keyword-only hyperparameters: PML's positional `l` and `K` (the layer's) do not land in
    # `lambdaC` and `alpha`.
    with pytest.raises(TypeError, match=r"`name` must be a string. Received: name=128"):
        kml.ManifoldLoss(128, 50)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(meta_class_seed=-1), r"`meta_class_seed` must be an int >= 0. Received: "),
        (dict(meta_class_seed=1.5), r"`meta_class_seed` must be an int >= 0. Received: "),
        (dict(meta_class_seed=1, loss=kml.ProxyNCALoss()), r"Received: meta_class_seed=1 and "),
        (dict(meta_class_seed=1, loss=None), r"Received: meta_class_seed=1 and loss=None"),
        (dict(sub_centers=2, loss=kml.ManifoldLoss()), r"`sub_centers=2` conflicts with"),
    ],
)
def test_layer_arguments_that_do_not_fit_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kml.layers.ClassProxies(3, **kwargs)


def manifold_model(meta_classes, seed=0, **kwargs):
    """An encoder and `ClassProxies(3, loss=ManifoldLoss(**kwargs))`: on `[x, meta classes]`,
    or on `x` alone (the layer draws them)."""
    features = keras.Input((4,))
    embeddings = keras.layers.Dense(8, name="embedding")(features)
    proxies = kml.layers.ClassProxies(3, loss=kml.ManifoldLoss(**kwargs), meta_class_seed=seed,
                                      name="proxies")  # fmt: skip
    if not meta_classes:
        return keras.Model(features, proxies(embeddings))
    meta = keras.Input((), dtype="int32")
    return keras.Model([features, meta], proxies([embeddings, meta]))


def clustered(batch=48):
    rng = np.random.default_rng(1)
    labels = np.arange(batch) % 3
    centres = rng.normal(size=(3, 4)) * 4.0
    return (centres[labels] + rng.normal(size=(batch, 4))).astype("float32"), labels


@pytest.mark.parametrize("meta_classes", [True, False], ids=["given", "drawn"])
def test_fit_lowers_the_loss(meta_classes):
    """The labels as meta classes: the loss of the whole set goes down. The margin is 0.1: with
    PML's 5e-4 few of the `g_ik >= 0` terms are on at the start, the gradient sees only those,
    and a term that switches on adds at least `log 2` to its row, so the loss of a short fit
    goes up and down (measured on the three backends)."""
    keras.utils.set_random_seed(0)
    model = manifold_model(meta_classes, margin=0.1)
    model.compile(optimizer=keras.optimizers.Adam(0.05))  # the layer adds the loss
    x, labels = clustered()
    inputs = [x, labels] if meta_classes else x
    if meta_classes:
        before = model.evaluate(inputs, batch_size=len(x), verbose=0)
        losses = model.fit(inputs, batch_size=12, epochs=15, verbose=0).history["loss"]
        after = model.evaluate(inputs, batch_size=len(x), verbose=0)
        assert np.isfinite(losses).all() and after < 0.9 * before, (before, after, losses)
        return
    # Drawn meta classes (PML's without `indices_tuple`) are new at every step and ignore the
    # data, so the loss need not go down: the steps train both the encoder and the proxies,
    # and each step draws once.
    layer = model.get_layer("proxies")
    before = [numpy(w) for w in model.weights]
    losses = model.fit(inputs, batch_size=12, epochs=2, verbose=0).history["loss"]
    assert np.isfinite(losses).all()
    assert all((numpy(w) != w0).any() for w, w0 in zip(model.weights, before, strict=True))
    fresh = keras.random.SeedGenerator(0)
    for _ in range(2 * len(x) // 12):
        fresh.next()
    np.testing.assert_array_equal(numpy(layer.meta_class_generator.state), numpy(fresh.state))


def test_a_saved_model_reloads_the_loss_and_the_seed_state(tmp_path):
    keras.utils.set_random_seed(0)
    model = manifold_model(meta_classes=False, seed=4)
    model.compile(optimizer=keras.optimizers.Adam(0.01))
    x, _ = clustered(24)
    model.fit(x, batch_size=12, epochs=1, verbose=0)
    path = str(tmp_path / "manifold.keras")
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True)
    layer, reloaded = model.get_layer("proxies"), loaded.get_layer("proxies")
    assert isinstance(reloaded.loss, kml.ManifoldLoss)
    assert reloaded.get_config() == layer.get_config()
    state = numpy(layer.meta_class_generator.state)
    assert state.any()  # the draws of the first epoch advanced it
    np.testing.assert_array_equal(numpy(reloaded.meta_class_generator.state), state)
    # The next draw, and the training that goes on, are the same as without the reload.
    next_draws = [
        numpy(m.get_layer("proxies").loss_values(m.get_layer("embedding")(x[:12]), None))
        for m in (model, loaded)
    ]
    np.testing.assert_allclose(next_draws[1], next_draws[0], rtol=1e-6)
    histories = [m.fit(x, batch_size=12, epochs=2, shuffle=False, verbose=0).history["loss"]
                 for m in (model, loaded)]  # fmt: skip
    np.testing.assert_allclose(histories[1], histories[0], rtol=1e-5)
