"""`manifold_loss` beyond its golden cases (tests/data/pml_more.json, `specs.proxy`): its
arguments, meta classes drawn or out of range, non-finite inputs, degenerate batches, float64,
`lambdaC=inf`, eagerly and compiled."""

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
