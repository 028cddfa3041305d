"""Mixed precision: every loss trains under `mixed_float16` / `mixed_bfloat16` without overflow,
computes in float32 and agrees with the float32 run to the tolerances derived in
docs/concepts.md ("Mixed precision")."""

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml

POLICIES = ["mixed_float16", "mixed_bfloat16"]
# Unit roundoff of the half-precision compute dtype (2**-11 and 2**-8).
UNIT_ROUNDOFF = {"mixed_float16": 2.0**-11, "mixed_bfloat16": 2.0**-8}
BATCH, DIM, NUM_CLASSES = 16, 8, 40
# Gradient tolerance, relative to the largest float32 gradient entry: 5 rounding stages (input
# cast, layer output, loss input, upstream gradient, weight-gradient product) times the longest
# reduction (16 = batch = width), each at most `n * u` (worst-case bound, Higham's gamma_n).
GRADIENT_ROUNDINGS = 5 * 16


def pair_model():
    anchors, positives = keras.Input((DIM,)), keras.Input((DIM,))
    embed = keras.layers.Dense(16)
    similarity = kml.PairwiseSimilarity()([embed(anchors), embed(positives)])
    return keras.Model([anchors, positives], similarity)


def embedding_model():
    inputs = keras.Input((DIM,))
    return keras.Model(inputs, keras.layers.UnitNormalization()(keras.layers.Dense(16)(inputs)))


def nce_model(remove_accidental_hits):
    features, labels = keras.Input((DIM,)), keras.Input((1,), dtype="int32")
    embedded = keras.layers.Dense(16)(features)
    nce = kml.layers.NCE(NUM_CLASSES, 10, remove_accidental_hits=remove_accidental_hits, seed=1)
    return keras.Model([features, labels], nce([embedded, labels]))


def cosine_distances(embeddings):
    e = np.asarray(embeddings, np.float64)
    return np.maximum(1.0 - e @ e.T, 0.0)


def data(scale=1.0):
    rng = np.random.default_rng(0)
    x = [(rng.normal(size=(BATCH, DIM)) * scale).astype("float32") for _ in range(2)]
    labels = np.arange(BATCH) % 4
    nce_labels = rng.integers(0, NUM_CLASSES, size=(BATCH, 1)).astype("int32")
    return x, labels, nce_labels


def identity(y_pred):
    return np.asarray(y_pred, np.float64)


# name: (build, loss, inputs(x, labels, nce_labels) -> (x, y), what the loss is Lipschitz in,
#        bound(|error| of that) -> bound on the mean loss error)
TARGETS = {
    "NpairsLoss": (pair_model, kml.NpairsLoss, lambda x, y, n: (x, y), identity,
                   lambda err: 2 * err.max()),
    "npairs_loss": (pair_model, lambda: kml.npairs_loss, lambda x, y, n: (x, y), identity,
                    lambda err: 2 * err.max()),
    "NpairsMultilabelLoss": (pair_model, kml.NpairsMultilabelLoss,
                             lambda x, y, n: (x, np.eye(4, dtype="float32")[y]), identity,
                             lambda err: 2 * err.max()),
    "PNLoss": (embedding_model, lambda: kml.PNLoss(negative_mining_strategy="hard"),
               lambda x, y, n: (x[0], y), cosine_distances, lambda err: 2 * err.max()),
    "NCELoss": (lambda: nce_model(False), kml.NCELoss, lambda x, y, n: ([x[0], n], n), identity,
                lambda err: err.sum(axis=1).mean()),
    "SampledSoftmaxLoss": (lambda: nce_model(True), kml.SampledSoftmaxLoss,
                           lambda x, y, n: ([x[0], n], n), identity, lambda err: 2 * err.max()),
}  # fmt: skip
# Losses with a Keras `(y_true, y_pred)` signature that must be covered; `pn_loss` per anchor.
assert {"NpairsMultilabelLoss", "PNLoss"} <= set(TARGETS)


def first_step(name, policy):
    """`(loss, gradients, model output in float64)` of one SGD step from the float32 weights."""
    build, loss, inputs, _, _ = TARGETS[name]
    keras.config.set_dtype_policy("float32")
    keras.utils.set_random_seed(0)
    weights = build().get_weights()
    keras.config.set_dtype_policy(policy)
    model = build()
    model.set_weights(weights)
    x, y = inputs(*data())
    output = numpy(model(x)).astype(np.float64)
    learning_rate = 0.1
    model.compile(optimizer=keras.optimizers.SGD(learning_rate), loss=loss())
    value = float(model.train_on_batch(x, y))
    gradients = [
        (w0 - numpy(w)) / learning_rate for w0, w in zip(weights, model.weights, strict=True)
    ]
    return value, gradients, output


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("name", TARGETS)
def test_first_step_agrees_with_float32(name, policy):
    _, _, _, lipschitz_input, bound = TARGETS[name]
    loss32, gradients32, output32 = first_step(name, "float32")
    loss, gradients, output = first_step(name, policy)
    # The loss is computed in float32 from the half-precision output: it differs from the
    # float32 run by at most (Lipschitz constant) * (output error), plus float32 rounding.
    output_error = np.abs(lipschitz_input(output) - lipschitz_input(output32))
    assert 0 < output_error.max() < 64 * UNIT_ROUNDOFF[policy] * np.abs(output32).max()
    assert abs(loss - loss32) <= bound(output_error) + 1e-5 * (1 + abs(loss32))
    tolerance = GRADIENT_ROUNDINGS * UNIT_ROUNDOFF[policy]
    for gradient, gradient32 in zip(gradients, gradients32, strict=True):
        assert np.isfinite(gradient).all()
        scale = np.abs(gradient32).max()
        np.testing.assert_array_less(np.abs(gradient - gradient32), tolerance * scale + 1e-7)


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize(
    "name, loss",
    [
        ("npairs", kml.NpairsLoss()),
        ("npairs", kml.npairs_loss),
        ("multilabel", kml.npairs_multilabel_loss),
        ("pn", kml.PNLoss()),
        ("pn", kml.pn_loss),
        ("nce", kml.NCELoss()),
        ("sampled_softmax", kml.SampledSoftmaxLoss()),
    ],
    ids=lambda v: getattr(v, "__name__", None) or type(v).__name__ if not isinstance(v, str) else v,
)
def test_training_steps_stay_finite(name, loss, policy):
    """Inputs scaled so that similarities reach ~1e4 (float16 `exp` overflows above ~11)."""
    keras.config.set_dtype_policy(policy)
    keras.utils.set_random_seed(0)
    x, labels, nce_labels = data(scale=30.0)
    if name in ("nce", "sampled_softmax"):
        model, x, y = nce_model(name == "sampled_softmax"), [x[0], nce_labels], nce_labels
    elif name == "pn":
        model, x, y = embedding_model(), x[0], labels
    else:
        model, y = pair_model(), labels if name == "npairs" else np.eye(4)[labels]
    output = numpy(model(x))
    if name in ("npairs", "multilabel"):
        assert output.dtype == policy.split("_")[1] and np.abs(output).max() > 1e3
    model.compile(optimizer="adam", loss=loss)
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
    scalar = kml.npairs_loss(labels, logits)  # the function returns the input dtype
    assert keras.backend.standardize_dtype(scalar.dtype) == dtype
    assert np.isfinite(numpy(keras.ops.cast(scalar, "float32")))  # TF: no bfloat16 NumPy


@pytest.mark.parametrize("policy", POLICIES)
def test_losses_follow_keras_dtype_conventions(policy):
    """Like Keras' own losses, the classes compute in `floatx()` (float32), not in the global
    policy's compute dtype; `dtype=` chooses another one."""
    keras.config.set_dtype_policy(policy)
    keras_loss = keras.losses.CategoricalCrossentropy()
    similarity = keras.ops.convert_to_tensor(np.eye(4), dtype=policy.split("_")[1])
    for loss in (kml.NpairsLoss(), kml.PNLoss(), kml.NCELoss(), kml.SampledSoftmaxLoss()):
        assert loss.dtype == keras_loss.dtype == "float32"
    value = kml.NpairsLoss()(np.arange(4), similarity)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert (
        kml.NpairsLoss(dtype=policy).dtype
        == keras.losses.CategoricalCrossentropy(dtype=policy).dtype
    )
