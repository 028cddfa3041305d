"""Tiled softmax contrastive losses (`block_size`) equal the dense ones, in values and gradients,
eagerly and under each backend's compiler."""

import keras
import numpy as np
import pytest
from support import compiled, numpy, value_and_grad

import keras_metric_losses as kml

RNG = np.random.default_rng(17)
BACKEND = keras.backend.backend()
LOSSES = {
    "supcon": kml.supcon_loss,
    "ntxent": kml.ntxent_loss,
    "supcon_multilabel": kml.supcon_multilabel_loss,
}


def labels_for(loss, batch, classes):
    if loss == "supcon_multilabel":
        return (RNG.random((batch, classes)) < 0.4).astype("float32")
    return RNG.integers(0, classes, batch)


def assert_tiled_matches(actual, expected, rtol=1e-5):
    """Equal to `rtol` relative, the scale being the largest magnitude of `expected`."""
    expected = np.asarray(expected)
    scale = np.abs(expected).max() if expected.size else 0.0
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=rtol * scale)


def values_and_grads(fn, labels, x, **kwargs):
    """Per-example values, and the gradient of a weighted sum of them w.r.t. the embeddings
    (random weights, so that every value's gradient counts)."""
    weights = keras.ops.convert_to_tensor(RNG.normal(size=len(x)).astype("float32"))
    values = numpy(fn(labels, x, **kwargs))
    _, grad = value_and_grad(lambda e: keras.ops.sum(fn(labels, e, **kwargs) * weights), x)
    return values, grad, weights


def fast_value_and_grad(fn, x):
    """`support.value_and_grad`, under `jax.jit` on JAX (eager JAX compiles each loop of the
    tiles on every call: 4x slower; `test_tiled_eager_equals_dense` runs it eagerly)."""
    if BACKEND == "jax":
        import jax

        return tuple(map(numpy, jax.jit(jax.value_and_grad(fn))(x)))
    return value_and_grad(fn, x)


def check_tiled(name, labels, x, block_size, **kwargs):
    fn = LOSSES[name]
    values, grad, weights = values_and_grads(fn, labels, x, **kwargs)
    tiled = numpy(fn(labels, x, block_size=block_size, **kwargs))
    _, tiled_grad = fast_value_and_grad(
        lambda e: keras.ops.sum(fn(labels, e, block_size=block_size, **kwargs) * weights), x
    )
    assert_tiled_matches(tiled, values)
    assert_tiled_matches(tiled_grad, grad)
    assert np.isfinite(tiled_grad).all()
    return tiled, tiled_grad


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize(("batch", "block_size", "reducer"), [(13, 4, "anchor"), (10, 3, "pml")])
def test_tiled_equals_dense(name, batch, block_size, reducer):
    """B not a multiple of block_size (padded rows and columns), and a block larger than B."""
    x = RNG.normal(size=(batch, 6)).astype("float32")
    check_tiled(name, labels_for(name, batch, 4), x, block_size, reducer=reducer)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "temperature", "distance"),
    [("supcon", 0.05, "cosine_similarity"), ("ntxent", 1.0, "inner_product")],
)
def test_tiled_equals_dense_for_temperature_and_distance(name, temperature, distance):
    """A block larger than the batch, a low temperature, and unnormalised embeddings."""
    x = RNG.normal(size=(11, 5)).astype("float32")
    if distance == "inner_product":
        x = x / 3
    labels = labels_for(name, 11, 3)
    check_tiled(name, labels, x, 16, temperature=temperature, distance=distance)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "labels", "reducer"),
    [
        ("supcon", [0, 1, 1, 2, 3, 3, 3, 4], "anchor"),  # singletons: no positive
        ("ntxent", [0, 1, 1, 2, 3, 3, 3, 4], "pml"),
        ("supcon", [5] * 7, "pml"),  # one class: no negative anywhere
        ("ntxent", [5] * 7, "anchor"),
        ("supcon", list(range(7)), "anchor"),  # all distinct: no positive anywhere
        ("ntxent", [2], "anchor"),  # a batch of one
    ],
    ids=[
        "supcon-singletons",
        "ntxent-singletons",
        "supcon-one_class",
        "ntxent-one_class",
        "supcon-all_distinct",
        "ntxent-one_row",
    ],
)
def test_tiled_degenerate_batches(name, labels, reducer):
    labels = np.array(labels)
    x = RNG.normal(size=(len(labels), 4)).astype("float32")
    tiled, grad = check_tiled(name, labels, x, 3, reducer=reducer)
    counts = np.bincount(labels)[labels]
    if reducer == "anchor":  # nothing to learn without a positive or a negative
        idle = (counts == 1) | (counts == len(labels))
        assert not tiled[idle].any()
        if idle.all():
            assert not grad.any()


@pytest.mark.slow
def test_tiled_multiview_and_reference_keys():
    views = RNG.normal(size=(7, 2, 5)).astype("float32")
    check_tiled("ntxent", np.arange(7), views, 4)
    # CLIP-style: anchors against another tower's keys, no key is the anchor itself.
    keys = RNG.normal(size=(9, 5)).astype("float32")
    x = RNG.normal(size=(6, 5)).astype("float32")
    check_tiled("supcon", np.arange(6) % 2, x, 4, ref_embeddings=keys, ref_labels=np.arange(9) % 2)
    multi_keys = (RNG.random((9, 3)) < 0.5).astype("float32")
    check_tiled(
        "supcon_multilabel",
        labels_for("supcon_multilabel", 6, 3),
        x,
        4,
        ref_embeddings=keys,
        ref_labels=multi_keys,
    )


@pytest.mark.slow
def test_tiled_half_precision_returns_the_input_dtype():
    x = RNG.normal(size=(9, 4)).astype("float16")
    labels = RNG.integers(0, 3, 9)
    tiled = kml.supcon_loss(labels, x, block_size=4)
    assert keras.backend.standardize_dtype(tiled.dtype) == "float16"
    assert_tiled_matches(numpy(tiled).astype("float32"), numpy(kml.supcon_loss(labels, x)), 1e-3)


def compiled_value_and_grad(fn, x, xla=True, generate_code=True):
    """`(fn(x), d fn / d x)` with `fn` compiled: `jax.jit`, `tf.function` (XLA or not), or
    `support.compiled`'s `torch.compile(fullgraph=True)` of the forward (its backward is
    compiled by AOT autograd; `generate_code=False`: both graphs run eagerly)."""
    x = keras.ops.convert_to_tensor(x)
    if BACKEND == "jax":
        import jax

        value, grad = jax.jit(jax.value_and_grad(fn))(x)
    elif BACKEND == "tensorflow":
        import tensorflow as tf

        @tf.function(jit_compile=xla)
        def step(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = fn(x)
            return value, tape.gradient(value, x)

        value, grad = step(x)
    else:
        import torch

        x = x.detach().requires_grad_(True)
        value = compiled(fn, generate_code=generate_code)(x)
        (grad,) = torch.autograd.grad(value, x)
    return numpy(value), numpy(grad)


def weighted_sum(fn, labels, weights, block_size):
    def loss(e):
        return keras.ops.sum(fn(labels, e, temperature=0.1, block_size=block_size) * weights)

    return loss


def check_compiled(xla=True, batch=10, losses=(kml.supcon_loss, kml.ntxent_loss)):
    """Compiled tiled (blocks of 4) against eager dense, loss and gradient."""
    x = RNG.normal(size=(batch, 5)).astype("float32")
    labels = keras.ops.convert_to_tensor(RNG.integers(0, 3, batch))
    weights = keras.ops.convert_to_tensor(RNG.normal(size=batch).astype("float32"))
    for fn in losses:
        value, grad = value_and_grad(weighted_sum(fn, labels, weights, None), x)
        tiled, tiled_grad = compiled_value_and_grad(weighted_sum(fn, labels, weights, 4), x, xla)
        assert_tiled_matches(tiled, value)
        assert_tiled_matches(tiled_grad, grad)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND == "torch", reason="torch.compile: see the next test")
def test_tiled_compiled_equals_dense():
    check_compiled()


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "tensorflow", reason="tf.function without XLA")
def test_tiled_in_tf_function_without_xla_equals_dense():
    check_compiled(xla=False)


@pytest.mark.slow
@pytest.mark.skipif(BACKEND != "torch", reason="JAX and TensorFlow: see the tests above")
def test_tiled_torch_compile_equals_dense():
    # `torch.compile` unrolls the tile loops: its compile time grows with the tiles, (B / block)^2.
    # 2 x 2 tiles (one padded row and column), and the SupCon reducer only (NT-Xent's shares the
    # tile loops; it is compiled on the other backends). The tile loops' one run through
    # Inductor's code generation: CLIP's, SigLIP's and MNRL's tiles are captured without it.
    check_compiled(batch=7, losses=(kml.supcon_loss,))


def test_block_size_config_round_trip_and_checks():
    for cls in (kml.NTXentLoss, kml.SupConLoss, kml.SupConMultilabelLoss):
        loss = cls(block_size=64)
        config = loss.get_config()
        assert config["block_size"] == 64
        assert cls.from_config(config).block_size == 64
        assert cls().get_config()["block_size"] is None
        for bad in (0, -3, 2.5, True):
            with pytest.raises(ValueError, match="block_size"):
                cls(block_size=bad)
    with pytest.raises(ValueError, match="block_size"):
        kml.supcon_loss(np.arange(4), np.ones((4, 3), "float32"), distance="euclidean",
                        block_size=2)  # fmt: skip


def test_tiled_eager_equals_dense():
    """The loss class, and gradients without a compiler on every backend."""
    labels = RNG.integers(0, 3, 12)
    x = RNG.normal(size=(12, 4)).astype("float32")
    dense = kml.SupConLoss(temperature=0.2)
    tiled = kml.SupConLoss(temperature=0.2, block_size=5)
    value, grad = value_and_grad(lambda e: dense(labels, e), x)
    tiled_value, tiled_grad = value_and_grad(lambda e: tiled(labels, e), x)
    assert_tiled_matches(tiled_value, value)
    assert_tiled_matches(tiled_grad, grad)
