"""Mixed precision: every loss trains under `mixed_float16` / `mixed_bfloat16` without overflow,
computes in float32 and agrees with the float32 run to the tolerances derived in
docs/concepts.md ("Mixed precision")."""

import keras
import numpy as np
import pytest
from specs import SPECS
from support import first_of_each, numpy

import keras_metric_losses as kml

POLICIES = ["mixed_float16", "mixed_bfloat16"]
# Unit roundoff of the half-precision compute dtype (2**-11 and 2**-8).
UNIT_ROUNDOFF = {"mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}
# Gradient tolerance, relative to the largest float32 gradient entry: 5 rounding stages (input
# cast, layer output, loss input, upstream gradient, weight-gradient product) times the longest
# reduction (16 = batch = width), each at most `n * u` (worst-case bound, Higham's gamma_n).
GRADIENT_ROUNDINGS = 5 * 16
# Each spec's class. Its function is not run again: `compile` wraps a function in Keras'
# `LossFunctionWrapper`, which casts the predictions to float32 as the class does, and
# test_training checks that function and class give the same loss.
TARGETS = {spec.cls.__name__: (spec, lambda s=spec: s.compile_loss()) for spec in SPECS}
# Every loss on torch (its eager steps cost least: 12 s for the two sweeps, against 72 s on JAX,
# which compiles each step, on an empty cache), one per family and kind on the others: the loss
# math runs in float32 under every policy, and the casts around it are Keras', as in `fit`.
NAMES = first_of_each(
    (((spec.family, spec.kind.name), pytest.param(name, id=name))
     for name, (spec, _) in TARGETS.items()),
    every_one_on="torch",
)  # fmt: skip
# TensorFlow runs these steps eagerly: tracing a `tf.function` per loss and policy took most of
# the sweep's time (190 s of test time), and rounding is the same op by op; every loss's traced
# `fit` is test_training's. JAX and torch run what `fit` runs (`jax.jit`, eager).
RUN_EAGERLY = keras.backend.backend() == "tensorflow"


def first_step(spec, loss, policy):
    """`(loss, gradients, model output in float64)` of one SGD step from the float32 weights."""
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    weights = spec.kind.model().get_weights()
    keras.config.set_dtype_policy(policy)
    model = spec.kind.model()
    model.set_weights(weights)
    # Inputs of moderate size: a float16 gradient that overflows makes the loss-scale optimizer
    # skip the first step (TensorFlow, initial scale 2**15).
    x, y = spec.kind.data(scale=0.5)
    output = numpy(model(x)).astype(np.float64)
    learning_rate = 0.1
    model.compile(
        optimizer=keras.optimizers.SGD(learning_rate), loss=loss(), run_eagerly=RUN_EAGERLY
    )
    value = float(model.train_on_batch(x, y))
    gradients = [
        (w0 - numpy(w)) / learning_rate for w0, w in zip(weights, model.weights, strict=True)
    ]
    return value, gradients, output


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_first_step_agrees_with_float32(name):
    """Both policies against one float32 step (three steps a loss, not four)."""
    spec, loss = TARGETS[name]
    reference = first_step(spec, loss, "float32")
    for policy in POLICIES:
        _agrees_with_float32(spec, loss, policy, *reference)


def _agrees_with_float32(spec, loss, policy, loss32, gradients32, output32):
    value, gradients, output = first_step(spec, loss, policy)
    for gradient in gradients:
        assert np.isfinite(gradient).all()
    if not spec.precision:
        return
    # The loss is computed in float32 from the half-precision output: it differs from the
    # float32 run by at most (Lipschitz constant) * (output error), plus float32 rounding.
    lipschitz_input = spec.kind.lipschitz_input
    output_error = np.abs(lipschitz_input(output) - lipschitz_input(output32))
    assert 0 < output_error.max() < 64 * UNIT_ROUNDOFF[policy] * np.abs(output32).max()
    bound = spec.kind.precision_bound(output_error)
    assert abs(value - loss32) <= bound + 1e-5 * (1 + abs(loss32))
    tolerance = GRADIENT_ROUNDINGS * UNIT_ROUNDOFF[policy]
    for gradient, gradient32 in zip(gradients, gradients32, strict=True):
        scale = np.abs(gradient32).max()
        np.testing.assert_array_less(np.abs(gradient - gradient32), tolerance * scale + 1e-7)


@pytest.mark.slow
@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", NAMES)
def test_training_steps_stay_finite(name, policy):
    """Inputs scaled so that similarities reach ~1e4 (float16 `exp` overflows above ~11)."""
    spec, loss = TARGETS[name]
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    model = spec.kind.model()
    x, y = spec.kind.data(scale=30.0)
    output = numpy(model(x))
    if spec.kind.name == "similarity":
        assert output.dtype == policy.split("_")[1] and np.abs(output).max() > 1e3
    model.compile(optimizer="adam", loss=loss(), run_eagerly=RUN_EAGERLY)
    for _ in range(4):
        assert np.isfinite(model.train_on_batch(x, y))
    assert all(np.isfinite(numpy(w)).all() for w in model.weights)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_npairs_of_half_precision_logits_of_magnitude_1e4_is_exact(dtype):
    """Softmax in float16 would overflow (max 65504); computed in float32 the loss is exact."""
    rng = np.random.default_rng(0)
    logits = keras.ops.convert_to_tensor(rng.uniform(-1e4, 1e4, size=(8, 8)), dtype=dtype)
    labels = np.arange(8) % 3
    as_float32 = keras.ops.cast(logits, "float32")
    per_anchor = numpy(kml.NpairsLoss(reduction=None)(labels, logits))
    assert per_anchor.dtype == np.float32 and np.isfinite(per_anchor).all()
    np.testing.assert_array_equal(
        per_anchor, numpy(kml.NpairsLoss(reduction=None)(labels, as_float32))
    )
    # Against a float64 NumPy reference on the same (exactly representable) logits.
    s = numpy(as_float32).astype(np.float64)
    same = labels[:, None] == labels[None, :]
    log_softmax = s - s.max(1, keepdims=True)
    log_softmax -= np.log(np.exp(log_softmax).sum(1, keepdims=True))
    reference = -(same * log_softmax).sum(1) / same.sum(1)
    np.testing.assert_allclose(per_anchor, reference, rtol=0, atol=8 * 2.0**-24 * 1e4)
    values = kml.npairs_loss(labels, logits)  # the function returns the input dtype
    assert keras.backend.standardize_dtype(values.dtype) == dtype
    assert np.isfinite(numpy(keras.ops.cast(values, "float32"))).all()  # TF: no bfloat16 NumPy


@pytest.mark.parametrize("policy", POLICIES)
def test_losses_follow_keras_dtype_conventions(policy):
    """Like Keras' own losses, the classes compute in `floatx()` (float32), not in the global
    policy's compute dtype; `dtype=` chooses another one."""
    keras.config.set_dtype_policy(policy)
    keras_loss = keras.losses.CategoricalCrossentropy()
    similarity = keras.ops.convert_to_tensor(np.eye(4), dtype=policy.split("_")[1])
    for spec in SPECS:
        assert spec.loss().dtype == keras_loss.dtype == "float32"
    value = kml.NpairsLoss()(np.arange(4), similarity)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert (
        kml.NpairsLoss(dtype=policy).dtype
        == keras.losses.CategoricalCrossentropy(dtype=policy).dtype
    )
