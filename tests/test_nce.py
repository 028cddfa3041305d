"""NCE / sampled softmax losses, the log-uniform sampler and the `NCE` layer."""

import doctest
import math

import keras
import numpy as np
import pytest
from nce_reference import reference_logits, reference_losses
from support import (
    compiled,
    finite_difference_grad,
    first_of_each,
    golden_cases,
    numpy,
    repeated_draws,
    value_and_grad,
)

import keras_metric_losses as kml
from keras_metric_losses import docstrings, sampling
from keras_metric_losses.layers import nce as nce_layer_module
from keras_metric_losses.losses.sampled import nce as nce_loss_module
from keras_metric_losses.losses.sampled import sampled_softmax as sampled_softmax_module
from keras_metric_losses.sampled_logits import sampled_logits
from keras_metric_losses.sampling import _race_plan, _unique_log_uniform

NCE = golden_cases("nce")
SOFTMAX = golden_cases("sampled_softmax")
FUNCTIONS = {"nce_loss": kml.nce_loss, "sampled_softmax_loss": kml.sampled_softmax_loss}


def case_arrays(case, dtype="float32"):
    """`(weights, biases, labels, inputs, sampled_values)` of a golden case, as NumPy."""
    weights = case["weights"]
    if "shards" in case["id"]:
        weights = [np.asarray(shard, dtype) for shard in weights]
    else:
        weights = np.asarray(weights, dtype)
    sampled, true_ec, sampled_ec = case["sampled_values"]
    sampled_values = (
        np.asarray(sampled, "int32"),
        np.asarray(true_ec, "float32"),
        np.asarray(sampled_ec, "float32"),
    )
    return (
        weights,
        np.asarray(case["biases"], dtype),
        np.asarray(case["labels"], "int32"),
        np.asarray(case["inputs"], dtype),
        sampled_values,
    )


def call(fn, case, dtype="float32", **overrides):
    weights, biases, labels, inputs, sampled_values = case_arrays(case, dtype)
    kwargs = {**case["kwargs"], **overrides}
    return fn(weights, biases, labels, inputs, sampled_values=sampled_values, **kwargs)


@pytest.mark.parametrize(
    "case",
    first_of_each(
        ((c["call"], c["kwargs"]["remove_accidental_hits"]), pytest.param(c, id=c["id"]))
        for c in NCE + SOFTMAX
    ),
)
def test_matches_tensorflow(case):
    value = call(FUNCTIONS[case["call"]], case)
    assert tuple(value.shape) == (len(case["labels"]),)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    np.testing.assert_allclose(numpy(value), case["expected_per_example"], rtol=1e-5)


def test_golden_values_agree_with_numpy_reference():
    # Guards the NumPy reference used below for duplicates, float16 and the layer.
    for case in NCE + SOFTMAX:
        weights, biases, labels, inputs, sampled_values = case_arrays(case)
        rah = case["kwargs"]["remove_accidental_hits"]
        nce, softmax = reference_losses(
            *reference_logits(weights, biases, labels, inputs, sampled_values, rah)
        )
        expected = nce if case["call"] == "nce_loss" else softmax
        np.testing.assert_allclose(expected, case["expected_per_example"], rtol=1e-5)


# REFERENCE_MATH 6.6: hand-made vector, verified against TensorFlow.
W = np.array([[0.1, 0.2], [0.3, -0.1], [-0.2, 0.4], [0.5, 0.5], [-0.3, -0.2], [0, 0.6]], "float32")
BIAS = np.array([0, 0.1, -0.1, 0.2, 0, -0.2], "float32")
X = np.array([[1, 0.5], [-0.5, 1]], "float32")
LABELS = np.array([[1, 3], [2, 2]], "int32")
SAMPLED = (
    np.array([3, 0, 5], "int32"),
    np.array([[0.4, 0.3], [0.2, 0.2]], "float32"),
    np.array([0.3, 0.6, 0.1], "float32"),
)


@pytest.mark.parametrize(
    "fn, rah, expected",
    [
        (kml.nce_loss, False, [7.931609, 7.934709]),
        (kml.nce_loss, True, [5.6678658, 7.934709]),
        (kml.sampled_softmax_loss, False, [1.8124897, 1.601496]),
        (kml.sampled_softmax_loss, True, [1.5188559, 1.601496]),
    ],
)
def test_reference_math_vector(fn, rah, expected):
    value = fn(W, BIAS, LABELS, X, 3, 6, num_true=2, sampled_values=SAMPLED,
               remove_accidental_hits=rah)  # fmt: skip
    np.testing.assert_allclose(numpy(value), expected, rtol=1e-5)


def test_logits_mask_only_the_hit_with_a_finite_value():
    logits = numpy(sampled_logits(W, BIAS, LABELS, X, 3, 6, 2, SAMPLED, True))
    np.testing.assert_allclose(
        logits[0], [1.266291, 2.153973, np.finfo("float32").min, 0.7108256, 2.402585], rtol=1e-5
    )
    assert np.isfinite(logits).all()


def test_duplicated_samples_mask_only_the_last_copy():
    case = NCE[3]  # num_true 3, accidental hits removed
    weights, biases, labels, inputs, (sampled, true_ec, sampled_ec) = case_arrays(case)
    sampled = sampled.copy()
    sampled[[0, 4, 7]] = labels[0, 0]  # one true class of row 0, sampled three times
    sampled[[2, 5]] = labels[1, 1]
    values = (sampled, true_ec, sampled_ec)
    true, noise, removed = reference_logits(weights, biases, labels, inputs, values, True)
    assert removed[0, 7] and not removed[0, 0] and not removed[0, 4]
    nce, softmax = reference_losses(true, noise, removed)
    kwargs = dict(num_true=3, sampled_values=values, remove_accidental_hits=True)
    args = (weights, biases, labels, inputs, 10, 100)
    np.testing.assert_allclose(numpy(kml.nce_loss(*args, **kwargs)), nce, rtol=1e-5)
    np.testing.assert_allclose(numpy(kml.sampled_softmax_loss(*args, **kwargs)), softmax, rtol=1e-5)


def test_compiled_matches_tensorflow():
    # num_true 2, hits removed, 4 shards; one compiled function for both losses.
    def both(nce_args, softmax_args):
        kwargs = dict(num_sampled=32, num_classes=1000, num_true=2, remove_accidental_hits=True)
        results = []
        for fn, (w0, w1, w2, w3, b, y, x, s, t_ec, s_ec) in (
            (kml.nce_loss, nce_args),
            (kml.sampled_softmax_loss, softmax_args),
        ):
            results.append(fn([w0, w1, w2, w3], b, y, x, sampled_values=(s, t_ec, s_ec), **kwargs))
        return results

    def flat(case):
        weights, biases, labels, inputs, sampled_values = case_arrays(case)
        return [*weights, biases, labels, inputs, *sampled_values]

    nce_flat, softmax_flat = flat(NCE[5]), flat(SOFTMAX[5])
    fn = compiled(lambda *a: both(a[: len(nce_flat)], a[len(nce_flat) :]))
    nce, softmax = fn(*nce_flat, *softmax_flat)
    np.testing.assert_allclose(numpy(nce), NCE[5]["expected_per_example"], rtol=1e-5)
    np.testing.assert_allclose(numpy(softmax), SOFTMAX[5]["expected_per_example"], rtol=1e-5)


@pytest.mark.parametrize("fn", [kml.nce_loss, kml.sampled_softmax_loss])
def test_gradients_are_finite_and_match_finite_differences(fn):
    case = NCE[6]  # hits removed, 2 shards: [4, 3] rows
    weights, biases, labels, inputs, values = case_arrays(case)
    dense = np.concatenate(weights)
    kwargs = dict(sampled_values=values, remove_accidental_hits=True)

    def total(x):
        return keras.ops.sum(fn(dense, biases, labels, x, 6, 7, **kwargs))

    _, grad = value_and_grad(total, inputs)
    assert np.isfinite(grad).all()
    numeric = finite_difference_grad(lambda x: numpy(total(x.astype("float32"))), inputs, eps=1e-2)
    np.testing.assert_allclose(grad, numeric, atol=2e-3)

    def total_w(w):
        return keras.ops.sum(fn([w[:4], w[4:]], biases, labels, inputs, 6, 7, **kwargs))

    _, grad_w = value_and_grad(total_w, dense)
    assert np.isfinite(grad_w).all()
    numeric_w = finite_difference_grad(
        lambda w: numpy(total_w(w.astype("float32"))), dense, eps=1e-2
    )
    np.testing.assert_allclose(grad_w, numeric_w, atol=2e-3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("fn", [kml.nce_loss, kml.sampled_softmax_loss])
def test_half_precision_is_computed_in_float32_without_nan(fn, dtype):
    # TensorFlow: -FLT_MAX becomes -inf in float16 and every row with a hit is NaN.
    case = NCE[3]
    value = call(fn, case, dtype=dtype, remove_accidental_hits=True)
    assert keras.backend.standardize_dtype(value.dtype) == dtype
    reference = numpy(call(fn, case, remove_accidental_hits=True))
    assert np.isfinite(numpy(value).astype("float32")).all()
    np.testing.assert_allclose(numpy(value).astype("float32"), reference, rtol=2e-2)


def test_default_sampler_is_used_and_seeded():
    case = NCE[7]
    weights, biases, labels, inputs, _ = case_arrays(case)
    args = (weights, biases, labels, inputs, 64, 5000)
    first = numpy(kml.nce_loss(*args, seed=3))
    assert np.isfinite(first).all()
    np.testing.assert_allclose(numpy(kml.nce_loss(*args, seed=3)), first)
    sampled_values = kml.log_uniform_candidate_sampler(labels, 1, 64, True, 5000, seed=3)
    np.testing.assert_allclose(
        numpy(kml.nce_loss(*args, sampled_values=sampled_values)), first, rtol=1e-6
    )
    generator = keras.random.SeedGenerator(0)
    a = numpy(kml.sampled_softmax_loss(*args, seed=generator))
    b = numpy(kml.sampled_softmax_loss(*args, seed=generator))
    assert np.isfinite(a).all() and not np.allclose(a, b)


def test_errors_name_the_argument():
    args = dict(num_sampled=3, num_classes=6, num_true=2, sampled_values=SAMPLED)
    with pytest.raises(ValueError, match=r"`inputs`.*Received: weights.shape=\[\(6, 2\)\]"):
        kml.nce_loss(W, BIAS, LABELS, np.ones((2, 3), "float32"), **args)
    with pytest.raises(ValueError, match=r"`biases`.*Received: biases.shape=\(5,\)"):
        kml.nce_loss(W, BIAS[:5], LABELS, X, **args)
    with pytest.raises(ValueError, match=r"`labels`.*Received: labels.shape=\(2, 1\)"):
        kml.nce_loss(W, BIAS, LABELS[:, :1], X, **args)
    with pytest.raises(ValueError, match=r"`num_classes`.*Received: num_classes=7"):
        kml.nce_loss(W, BIAS, LABELS, X, 3, 7, num_true=2, sampled_values=SAMPLED)
    with pytest.raises(ValueError, match=r"true_expected_count.shape=\(2, 2, 1\)"):
        values = (SAMPLED[0], SAMPLED[1][..., None], SAMPLED[2])
        kml.nce_loss(W, BIAS, LABELS, X, 3, 6, num_true=2, sampled_values=values)
    with pytest.raises(ValueError, match=r"'div' way.*Received: rows=\[2, 4\]"):
        kml.nce_loss([W[:2], W[2:]], BIAS, LABELS, X, **args)
    with pytest.raises(ValueError, match=r"at most `num_classes`.*num_sampled=7, num_classes=6"):
        kml.sampled_softmax_loss(W, BIAS, LABELS, X, 7, 6, num_true=2, seed=1)
    with pytest.raises(ValueError, match=r"`num_sampled` must be a positive int"):
        kml.nce_loss(W, BIAS, LABELS, X, 0, 6, num_true=2)


# --- ids out of range, value checks ---------------------------------------------------------

# 50 classes; rows with ids below and above the range, and their nearest classes.
RNG = np.random.default_rng(12)
W50 = RNG.normal(size=(50, 4)).astype("float32")
B50 = RNG.normal(size=(50,)).astype("float32")
X4 = RNG.normal(size=(4, 4)).astype("float32")
OUT_OF_RANGE = np.array([[-1], [50], [3], [-7]], "int32")
CLIPPED = np.array([[0], [49], [3], [0]], "int32")


def both_losses(labels, seed=5, **kwargs):
    """`[nce_loss, sampled_softmax_loss]` of the 50-class case with the default sampler."""
    return [
        fn(W50, B50, labels, X4, num_sampled=8, num_classes=50, seed=seed, **kwargs)
        for fn in (kml.nce_loss, kml.sampled_softmax_loss)
    ]


def compilers():
    """`(name, compile)` of every compiled path of the backend: XLA and graph `tf.function`,
    `jax.jit`; PyTorch runs eagerly (Keras' torch RNG is not traceable by Dynamo)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return [("jax.jit", jax.jit)]
    if backend == "tensorflow":
        import tensorflow as tf

        return [
            ("tf.function(jit_compile=True)", lambda fn: tf.function(fn, jit_compile=True)),
            ("tf.function", tf.function),
        ]
    return [("torch eager", lambda fn: fn)]


def test_out_of_range_labels_are_clipped_to_the_nearest_class():
    assert not kml.config.value_checks_enabled()
    for bad, clipped in zip(both_losses(OUT_OF_RANGE), both_losses(CLIPPED), strict=True):
        assert np.isfinite(numpy(bad)).all()
        np.testing.assert_array_equal(numpy(bad), numpy(clipped))
    # With given candidates (one out of range, and a hit on the clipped label), and float ids.
    values = (np.array([0, 49, 70], "int32"), np.full((4, 1), 0.5, "float32"),
              np.array([0.5, 0.1, 0.2], "float32"))  # fmt: skip
    kwargs = dict(num_sampled=3, num_classes=50, sampled_values=values)
    for fn in (kml.nce_loss, kml.sampled_softmax_loss):
        expected = numpy(fn(W50, B50, CLIPPED, X4, **kwargs))
        np.testing.assert_array_equal(numpy(fn(W50, B50, OUT_OF_RANGE, X4, **kwargs)), expected)
        floats = np.array([[-0.5], [np.inf], [3.0], [-np.inf]], "float32")
        np.testing.assert_array_equal(numpy(fn(W50, B50, floats, X4, **kwargs)), expected)


@pytest.mark.parametrize("name, compile_fn", compilers(), ids=[name for name, _ in compilers()])
def test_out_of_range_labels_are_finite_in_compiled_code(name, compile_fn):
    # The NaN this fixes: the expected count of label -1 was log1p(1 / 0) = inf.
    assert not kml.config.value_checks_enabled()
    step = compile_fn(lambda labels: both_losses(labels))
    bad = [numpy(v) for v in step(keras.ops.convert_to_tensor(OUT_OF_RANGE))]
    clipped = [numpy(v) for v in step(keras.ops.convert_to_tensor(CLIPPED))]
    for b, c in zip(bad, clipped, strict=True):
        assert np.isfinite(b).all(), (name, b)
        np.testing.assert_allclose(b, c, rtol=1e-6)
    if keras.backend.backend() != "torch":  # traced: values cannot raise, even with checks on
        with kml.config.value_checks():
            traced = compile_fn(lambda labels: both_losses(labels))
            checked = [numpy(v) for v in traced(keras.ops.convert_to_tensor(OUT_OF_RANGE))]
        for b, c in zip(checked, bad, strict=True):
            np.testing.assert_allclose(b, c, rtol=1e-6)


def test_out_of_range_labels_in_a_compiled_fit_give_a_finite_loss():
    features, context = keras.Input((4,)), keras.Input((1,), dtype="int32")
    for loss in (kml.NCELoss(), kml.SampledSoftmaxLoss()):
        nce = kml.layers.NCE(50, 8, seed=1, remove_accidental_hits=True)
        model = keras.Model([features, context], nce([features, context]))
        # XLA on TensorFlow and JAX; PyTorch's fit is eager.
        model.compile(optimizer="sgd", loss=loss, jit_compile=keras.backend.backend() != "torch")
        history = model.fit([X4, OUT_OF_RANGE], OUT_OF_RANGE, batch_size=4, epochs=2, verbose=0)
        assert np.isfinite(history.history["loss"]).all(), history.history
        assert np.isfinite(numpy(nce.kernel)).all()


def test_value_checks_raise_for_labels_out_of_range_and_non_finite_inputs():
    args = (W50, B50)
    with kml.config.value_checks():
        for fn in (kml.nce_loss, kml.sampled_softmax_loss):
            with pytest.raises(ValueError, match=r"`labels` must be class ids in \[0, num_cl"):
                fn(*args, OUT_OF_RANGE, X4, 8, 50, seed=1)
            with pytest.raises(ValueError, match=r"`labels` must hold integer class ids"):
                fn(*args, np.array([[0.5], [1], [2], [3]], "float32"), X4, 8, 50, seed=1)
            with pytest.raises(ValueError, match=r"`inputs` must be finite"):
                fn(*args, CLIPPED, np.where(X4 > 1, np.nan, X4), 8, 50, seed=1)
            assert np.isfinite(numpy(fn(*args, CLIPPED, X4, 8, 50, seed=1))).all()
        layer = kml.layers.NCE(50, 8)
        with pytest.raises(ValueError, match=r"`labels` must be class ids"):
            layer([X4, OUT_OF_RANGE])
    # Off again: clipped, no error.
    assert np.isfinite(numpy(kml.nce_loss(*args, OUT_OF_RANGE, X4, 8, 50, seed=1))).all()


@pytest.mark.parametrize("fn", [kml.nce_loss, kml.sampled_softmax_loss])
def test_value_checks_read_bfloat16_inputs_and_labels(fn):
    # TensorFlow raised "object __array__ method not producing an array" while checking the
    # label range: a 0-d bfloat16 tensor was turned into NumPy.
    case = NCE[3]
    weights, biases, labels, inputs, values = case_arrays(case)
    kwargs = dict(num_sampled=10, num_classes=100, num_true=3, sampled_values=values)
    bf16 = keras.ops.cast(inputs, "bfloat16")
    bf16_labels = keras.ops.cast(labels, "bfloat16")  # ids < 256: exact in bfloat16
    reference = numpy(fn(weights, biases, labels, inputs, **kwargs))
    with kml.config.value_checks():
        value = fn(weights, biases, bf16_labels, bf16, **kwargs)
        assert keras.backend.standardize_dtype(value.dtype) == "bfloat16"
        value = numpy(keras.ops.cast(value, "float32"))
        np.testing.assert_allclose(value, reference, rtol=2e-2)
        assert np.isfinite(numpy(fn(weights, biases, labels, bf16, seed=2, num_sampled=10,
                                    num_classes=100, num_true=3))).all()  # fmt: skip
        bad = keras.ops.cast(np.where(labels == labels[0, 0], 100, labels), "bfloat16")
        with pytest.raises(ValueError, match=r"`labels` must be class ids.*max=100"):
            fn(weights, biases, bad, bf16, **kwargs)
        with pytest.raises(ValueError, match=r"`labels` must hold integer class ids"):
            fn(weights, biases, keras.ops.cast(labels + 0.5, "bfloat16"), bf16, **kwargs)
        nan_inputs = keras.ops.cast(np.where(inputs > 1, np.nan, inputs), "bfloat16")
        with pytest.raises(ValueError, match=r"`inputs` must be finite"):
            fn(weights, biases, labels, nan_inputs, **kwargs)


# --- the sampler ---------------------------------------------------------------------------


def log_uniform_probs(range_max):
    k = np.arange(range_max, dtype=np.float64)
    return np.log1p(1.0 / (k + 1.0)) / np.log1p(range_max)


@pytest.mark.slow  # thousands of sampler draws
def test_head_and_tail_race_matches_the_full_race():
    # range_max 5,000: 256 head classes race, the tail comes from K i.i.d. draws.
    range_max, num_sampled, trials = 5000, 16, 1000
    plan = _race_plan(num_sampled, range_max)
    assert plan is not None and plan[0] == 256 and num_sampled < plan[1] <= 4 * num_sampled
    labels = np.zeros((1, 1), "int32")

    def fast(generator):
        return kml.log_uniform_candidate_sampler(
            labels, 1, num_sampled, True, range_max, seed=generator
        )[0]

    def full(generator):
        return _unique_log_uniform(num_sampled, range_max, generator, None)[0]

    fast_draws, full_draws = repeated_draws(fast, trials, 1), repeated_draws(full, trials, 2)
    assert all(len(set(row)) == num_sampled for row in fast_draws)
    edges = np.unique(np.geomspace(300, range_max - 1, 12).astype(int))
    edges = np.concatenate([np.arange(300), edges])  # single classes, then log-spaced bins

    def binned(draws):
        counts = np.bincount(draws.ravel(), minlength=range_max)
        return np.add.reduceat(counts, edges) / trials

    a, b = binned(fast_draws), binned(full_draws)
    p = np.clip((a + b) / 2, 0, None)
    error = np.sqrt(np.maximum(p * (1 - p), p) * 2 / trials)  # bins may exceed 1 per draw
    assert (np.abs(a - b) <= 5 * error + 1.0 / trials).all()
    np.testing.assert_allclose(a.sum(), num_sampled)


def test_unique_expected_counts_follow_tensorflow():
    labels = np.array([[0], [5], [999]], "int32")
    sampled, true_ec, sampled_ec = (
        numpy(v) for v in kml.log_uniform_candidate_sampler(labels, 1, 50, True, 1000, seed=7)
    )
    p = log_uniform_probs(1000)
    # TF's estimate 1 - (1 - p)^T with one T for the whole call (here T > 50 surely).
    tries = np.log1p(-sampled_ec.astype(np.float64)) / np.log1p(-p[sampled])
    assert tries.min() > 50 and np.ptp(tries) < 1e-3 * tries.mean() + 0.5
    t = tries.mean()
    np.testing.assert_allclose(sampled_ec, -np.expm1(t * np.log1p(-p[sampled])), rtol=1e-4)
    np.testing.assert_allclose(true_ec[:, 0], -np.expm1(t * np.log1p(-p[labels[:, 0]])), rtol=1e-4)
    # One draw of a huge range: no duplicate is possible, so T == S and counts are S * p.
    sampled, true_ec, sampled_ec = (
        numpy(v) for v in kml.log_uniform_candidate_sampler(labels, 1, 1, True, 10**6, seed=1)
    )
    p = log_uniform_probs(10**6)
    np.testing.assert_allclose(sampled_ec, p[sampled], rtol=1e-4)
    np.testing.assert_allclose(true_ec[:, 0], p[labels[:, 0]], rtol=1e-4)


def test_non_unique_draws_follow_the_log_uniform_distribution():
    labels = np.array([[1, 2]], "int32")
    num_sampled = 20000
    sampled, true_ec, sampled_ec = (
        numpy(v)
        for v in kml.log_uniform_candidate_sampler(labels, 2, num_sampled, False, 50, seed=5)
    )
    p = log_uniform_probs(50)
    np.testing.assert_allclose(sampled_ec, num_sampled * p[sampled], rtol=1e-4)
    np.testing.assert_allclose(true_ec, num_sampled * p[labels], rtol=1e-4)
    counts = np.bincount(sampled, minlength=50)
    chi2 = ((counts - num_sampled * p) ** 2 / (num_sampled * p)).sum()
    assert chi2 < 49 + 6 * math.sqrt(2 * 49)  # mean 49, sd ~ 9.9


def test_sampler_seeds_shapes_and_compilation():
    labels = np.array([[3, 4], [0, 1]], "int32")
    sample = kml.log_uniform_candidate_sampler(labels, 2, 8, True, 100, seed=11)
    assert [tuple(v.shape) for v in sample] == [(8,), (2, 2), (8,)]
    assert [keras.backend.standardize_dtype(v.dtype) for v in sample] == [
        "int32", "float32", "float32",
    ]  # fmt: skip
    again = kml.log_uniform_candidate_sampler(labels, 2, 8, True, 100, seed=11)
    np.testing.assert_array_equal(numpy(sample[0]), numpy(again[0]))
    if keras.backend.backend() != "torch":  # Keras' torch RNG is not traceable by dynamo
        fn = compiled(lambda y: kml.log_uniform_candidate_sampler(y, 2, 8, True, 100, seed=11))
        first, second = fn(labels), fn(labels)
        # Reproducible, but TensorFlow's XLA kernels may draw other numbers than eager ones.
        np.testing.assert_array_equal(numpy(first[0]), numpy(second[0]))
        candidates = numpy(first[0])
        assert len(set(candidates)) == 8 and candidates.min() >= 0 and candidates.max() < 100
        p = log_uniform_probs(100)[candidates]
        tries = np.log1p(-numpy(first[2]).astype(np.float64)) / np.log1p(-p)
        no_duplicate = np.allclose(numpy(first[2]), 8 * p, rtol=1e-4)  # T == S: S * p
        assert no_duplicate or (tries.min() >= 8 and np.ptp(tries) < 1e-3 * tries.mean() + 0.5)


def test_sampler_errors():
    labels = np.zeros((2, 1), "int32")
    with pytest.raises(ValueError, match=r"Received: num_sampled=11, range_max=10"):
        kml.log_uniform_candidate_sampler(labels, 1, 11, True, 10)
    with pytest.raises(ValueError, match=r"Received: true_classes.shape=\(2, 1\)"):
        kml.log_uniform_candidate_sampler(labels, 2, 3, True, 10)
    assert kml.log_uniform_candidate_sampler(labels, 1, 11, False, 10, seed=1)[0].shape == (11,)


def test_sampler_clips_true_classes_out_of_range():
    # Gave an expected count of 79.2 and NaN: the ids were not checked against range_max.
    for unique in (False, True):
        for bad, clipped in (([[0, 10]], [[0, 1]]), ([[0, -10]], [[0, 0]])):
            args = (2, 2, unique, 2)
            _, true_ec, _ = kml.log_uniform_candidate_sampler(np.array(bad), *args, seed=1)
            _, expected, _ = kml.log_uniform_candidate_sampler(np.array(clipped), *args, seed=1)
            assert np.isfinite(numpy(true_ec)).all() and (numpy(true_ec) <= 2).all()
            np.testing.assert_array_equal(numpy(true_ec), numpy(expected))
    p = log_uniform_probs(2)
    _, true_ec, _ = kml.log_uniform_candidate_sampler(np.array([[0, 10]]), 2, 2, False, 2, seed=1)
    np.testing.assert_allclose(numpy(true_ec), [[2 * p[0], 2 * p[1]]], rtol=1e-6)
    with kml.config.value_checks():
        for bad in ([[0, 10]], [[0, -10]]):
            with pytest.raises(
                ValueError, match=r"`true_classes` must be class ids.*num_classes=2"
            ):
                kml.log_uniform_candidate_sampler(np.array(bad), 2, 2, False, 2, seed=1)
        with pytest.raises(ValueError, match=r"`true_classes` must hold integer class ids"):
            kml.log_uniform_candidate_sampler(np.array([[0.5]]), 1, 2, False, 2, seed=1)


def test_sampler_compiled_with_true_classes_out_of_range_is_finite():
    for name, compile_fn in compilers():
        fn = compile_fn(lambda y: kml.log_uniform_candidate_sampler(y, 2, 4, True, 20, seed=3))
        sampled, true_ec, sampled_ec = (numpy(v) for v in fn(np.array([[-1, 25], [0, 19]])))
        assert np.isfinite(true_ec).all() and np.isfinite(sampled_ec).all(), name
        np.testing.assert_array_equal(true_ec[0], true_ec[1])
        assert sampled.min() >= 0 and sampled.max() < 20


LARGE_RANGE = 2**33


def test_range_max_above_int32_draws_int64_candidates_in_range():
    # int32 wrapped around: every candidate was 0 or negative (TensorFlow, PyTorch), or JAX
    # raised OverflowError.
    labels = np.array([[0], [LARGE_RANGE - 1], [-5], [LARGE_RANGE + 7]], "int64")
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        if not jax.config.jax_enable_x64:
            with pytest.raises(
                ValueError, match=r"`range_max` can be at most 2\*\*31 - 1 = 2147483647"
            ):
                kml.log_uniform_candidate_sampler(labels, 1, 8, True, LARGE_RANGE, seed=1)
            if not hasattr(jax, "enable_x64"):
                pytest.skip("this JAX has no `jax.enable_x64` context to test the int64 path")
            with jax.enable_x64(True):
                return check_large_range(labels)
    check_large_range(labels)


def check_large_range(labels):
    for unique in (True, False):
        sampled, true_ec, sampled_ec = kml.log_uniform_candidate_sampler(
            labels, 1, 200, unique, LARGE_RANGE, seed=3
        )
        assert keras.backend.standardize_dtype(sampled.dtype) == "int64"
        sampled, true_ec, sampled_ec = numpy(sampled), numpy(true_ec), numpy(sampled_ec)
        assert sampled.min() >= 0 and sampled.max() < LARGE_RANGE
        # 6% of the mass lies above 2**31: P(no such candidate in 200 draws) < 1e-5.
        assert (sampled >= 2**31).any()
        # Drawn in float64: far-tail ids are not on float32's grid (multiples of 2**9 here).
        assert (sampled[sampled >= 2**28] % 4 != 0).any()
        assert np.isfinite(true_ec).all() and (true_ec > 0).all()
        assert np.isfinite(sampled_ec).all() and (sampled_ec > 0).all()
        np.testing.assert_array_equal(true_ec[2], true_ec[0])  # -5 is class 0
        np.testing.assert_array_equal(true_ec[3], true_ec[1])  # 2**33 + 7 is the last class
        if not unique:
            p_last = math.log1p(1 / LARGE_RANGE) / math.log1p(LARGE_RANGE)
            np.testing.assert_allclose(true_ec[1], 200 * p_last, rtol=1e-5)


def test_range_max_at_the_int32_limit_stays_in_range():
    limit = sampling.INT32_LIMIT
    labels = np.array(
        [[limit - 1], [limit]], "int64" if keras.backend.backend() != "jax" else "int32"
    )
    for unique in (True, False):
        sampled, true_ec, sampled_ec = kml.log_uniform_candidate_sampler(
            labels, 1, 64, unique, limit, seed=4
        )
        assert keras.backend.standardize_dtype(sampled.dtype) == "int32"
        sampled = numpy(sampled)
        assert sampled.min() >= 0 and sampled.max() < limit
        assert np.isfinite(numpy(true_ec)).all() and np.isfinite(numpy(sampled_ec)).all()


# --- the layer and the Loss classes -------------------------------------------------------


def golden_layer(case, **kwargs):
    """An `NCE` layer holding the golden case's weights, and the case's arrays."""
    weights, biases, labels, inputs, sampled_values = case_arrays(case)
    dense = np.concatenate(weights) if isinstance(weights, list) else weights
    layer = kml.layers.NCE(
        case["kwargs"]["num_classes"], case["kwargs"]["num_sampled"],
        num_true=case["kwargs"]["num_true"], seed=4, **kwargs,
    )  # fmt: skip
    layer.build(inputs.shape)
    layer.set_weights([dense, biases])
    return layer, (dense, biases, labels, inputs, sampled_values)


@pytest.mark.parametrize("index", [3])
def test_loss_classes_equal_the_functions_for_the_same_candidates(index):
    for loss_cls, cases, rah in (
        (kml.NCELoss, NCE, False),
        (kml.SampledSoftmaxLoss, SOFTMAX, True),
    ):
        case = cases[index]
        layer, (dense, biases, labels, inputs, values) = golden_layer(
            case, remove_accidental_hits=rah
        )
        fn = FUNCTIONS[case["call"]]
        kwargs = {**case["kwargs"], "remove_accidental_hits": rah}
        logits = layer.sampled_logits(inputs, labels, sampled_values=values)
        per_example = numpy(loss_cls(reduction=None)(labels, logits))
        expected = numpy(fn(dense, biases, labels, inputs, sampled_values=values, **kwargs))
        np.testing.assert_allclose(per_example, expected, rtol=1e-6)
        if rah == case["kwargs"]["remove_accidental_hits"]:
            np.testing.assert_allclose(per_example, case["expected_per_example"], rtol=1e-5)
        np.testing.assert_allclose(numpy(loss_cls()(labels, logits)), expected.mean(), rtol=1e-5)
        # The layer's own draw: the same candidates as the function with the same generator.
        drawn = layer([inputs, labels])
        seed = keras.random.SeedGenerator(4)
        expected = numpy(fn(dense, biases, labels, inputs, seed=seed, **kwargs))
        np.testing.assert_allclose(numpy(loss_cls(reduction=None)(labels, drawn)), expected,
                                   rtol=1e-5)  # fmt: skip


def test_layer_outputs_shapes_and_fresh_samples():
    case = NCE[3]
    layer, (dense, biases, labels, inputs, _) = golden_layer(case)
    np.testing.assert_allclose(numpy(layer(inputs)), inputs @ dense.T + biases, rtol=1e-5,
                               atol=1e-6)  # fmt: skip
    first, second = numpy(layer([inputs, labels])), numpy(layer([inputs, labels]))
    assert first.shape == (16, 13) and np.isfinite(first).all()
    assert not np.allclose(first[:, 3:], second[:, 3:])  # a new sample each call
    assert layer.compute_output_shape([(None, 4), (None, 3)]) == (None, 13)
    assert layer.compute_output_shape((None, 4)) == (None, 100)
    config = layer.get_config()
    restored = kml.layers.NCE.from_config(config)
    assert restored.get_config() == config
    with pytest.raises(ValueError, match=r"Received: num_sampled=101, num_classes=100"):
        kml.layers.NCE(100, 101)
    with pytest.raises(ValueError, match=r"Received: num_true=0"):
        kml.layers.NCE(100, 10, num_true=0)


def test_loss_classes_under_mixed_precision_stay_finite():
    # The removed logit (-3.4e38) becomes -inf in a float16 loss: still no NaN.
    logits = numpy(sampled_logits(W, BIAS, LABELS, X, 3, 6, 2, SAMPLED, True))
    for loss_cls in (kml.NCELoss, kml.SampledSoftmaxLoss):
        expected = numpy(kml.sampled_softmax_loss(W, BIAS, LABELS, X, 3, 6, 2, SAMPLED, True))
        if loss_cls is kml.NCELoss:
            expected = numpy(kml.nce_loss(W, BIAS, LABELS, X, 3, 6, 2, SAMPLED, True))
        value = numpy(loss_cls(reduction=None, dtype="mixed_float16")(LABELS, logits))
        assert np.isfinite(value).all()
        np.testing.assert_allclose(value, expected, rtol=1e-2)
        _, grad = value_and_grad(
            lambda z, c=loss_cls: keras.ops.cast(c(dtype="mixed_float16")(LABELS, z), "float32"),
            logits,
        )
        assert np.isfinite(grad).all() and grad[0, 2] == 0


def test_loss_classes_check_shapes():
    with pytest.raises(ValueError, match=r"more than num_true=2 columns.*y_pred.shape=\(2, 2\)"):
        kml.NCELoss()(LABELS, np.zeros((2, 2), "float32"))


# --- one vocabulary, docstrings -----------------------------------------------------------


def test_numpy_integers_and_booleans_are_accepted_everywhere():
    five, six, two, one = np.int64(5), np.int64(6), np.int32(2), np.int64(1)
    args = (W, BIAS, LABELS, X)
    for fn in FUNCTIONS.values():
        expected = numpy(fn(*args, 3, 6, num_true=2, sampled_values=SAMPLED))
        value = fn(*args, np.int64(3), six, num_true=two, sampled_values=SAMPLED,
                   remove_accidental_hits=np.bool_(fn is kml.sampled_softmax_loss))  # fmt: skip
        np.testing.assert_array_equal(numpy(value), expected)
        assert np.isfinite(numpy(fn(*args, five, six, num_true=two, seed=np.int64(1)))).all()
    sample = kml.log_uniform_candidate_sampler(LABELS, two, five, np.bool_(True), np.int64(10))
    assert tuple(sample[0].shape) == (5,)
    layer = kml.layers.NCE(np.int64(100), np.int32(10), num_true=one, seed=np.int64(3),
                           remove_accidental_hits=np.bool_(True))  # fmt: skip
    config = layer.get_config()
    assert [type(config[key]) for key in ("num_classes", "num_sampled", "num_true", "seed")] == [
        int, int, int, int,
    ]  # fmt: skip
    assert config["remove_accidental_hits"] is True


def test_counts_and_flags_are_checked_with_one_vocabulary():
    args = (W, BIAS, LABELS, X)
    for bad in (0, -1, 2.0, True, "3", None):
        with pytest.raises(ValueError, match=r"`num_sampled` must be a positive int"):
            kml.nce_loss(*args, bad, 6, num_true=2, sampled_values=SAMPLED)
        with pytest.raises(ValueError, match=r"`range_max` must be a positive int"):
            kml.log_uniform_candidate_sampler(LABELS, 2, 3, True, bad)
        with pytest.raises(ValueError, match=r"`num_classes` must be a positive int"):
            kml.layers.NCE(bad, 3)
    for fn in FUNCTIONS.values():
        with pytest.raises(TypeError, match=r"`remove_accidental_hits` must be a bool"):
            fn(*args, 3, 6, num_true=2, sampled_values=SAMPLED, remove_accidental_hits=1)
    with pytest.raises(TypeError, match=r"`unique` must be a bool"):
        kml.log_uniform_candidate_sampler(LABELS, 2, 3, "yes", 10)
    with pytest.raises(TypeError, match=r"`remove_accidental_hits` must be a bool"):
        kml.layers.NCE(10, 3, remove_accidental_hits="no")
    with pytest.raises(TypeError, match=r"`seed` must be an int or None"):
        kml.layers.NCE(10, 3, seed=1.5)


def test_the_two_losses_are_declarations_with_tensorflow_signatures():
    import inspect

    # TensorFlow's, with `seed` added before its `name` (accepted, unused).
    tf_signature = ["weights", "biases", "labels", "inputs", "num_sampled", "num_classes",
                    "num_true", "sampled_values", "remove_accidental_hits", "seed",
                    "name"]  # fmt: skip
    for fn, rah in ((kml.nce_loss, False), (kml.sampled_softmax_loss, True)):
        parameters = inspect.signature(fn).parameters
        assert list(parameters) == tf_signature
        assert parameters["num_true"].default == 1
        assert parameters["remove_accidental_hits"].default is rah


DOCTEST_MODULES = [
    sampling,
    nce_loss_module,
    sampled_softmax_module,
    nce_layer_module,
    docstrings,
]


@pytest.mark.parametrize("module", DOCTEST_MODULES, ids=[m.__name__ for m in DOCTEST_MODULES])
def test_docstring_examples(module):
    finder, runner = doctest.DocTestFinder(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    report = []
    tests = [test for test in finder.find(module) if test.examples]
    for test in tests:
        runner.run(test, out=report.append)
    assert tests and runner.failures == 0, "".join(report)
    assert not any("+SKIP" in example.source for t in tests for example in t.examples)
