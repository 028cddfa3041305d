"""NCE / sampled softmax losses, the log-uniform sampler and the `NCE` layer."""

import math

import keras
import numpy as np
import pytest
from nce_reference import reference_logits, reference_losses
from support import compiled, finite_difference_grad, golden_cases, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.nce import sampled_logits
from keras_metric_losses.sampling import _race_plan, _unique_log_uniform

NCE = golden_cases("nce")
SOFTMAX = golden_cases("sampled_softmax")
SAMPLER = golden_cases("log_uniform_sampler")
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


@pytest.mark.parametrize("case", NCE + SOFTMAX, ids=[c["id"] for c in NCE + SOFTMAX])
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
    with pytest.raises(ValueError, match=r"num_sampled=7, range_max=6"):
        kml.sampled_softmax_loss(W, BIAS, LABELS, X, 7, 6, num_true=2, seed=1)
    with pytest.raises(ValueError, match=r"`num_sampled` must be a positive int"):
        kml.nce_loss(W, BIAS, LABELS, X, 0, 6, num_true=2)


# --- the sampler ---------------------------------------------------------------------------


def log_uniform_probs(range_max):
    k = np.arange(range_max, dtype=np.float64)
    return np.log1p(1.0 / (k + 1.0)) / np.log1p(range_max)


def repeated_draws(fn, trials, seed=0):
    """`fn(seed_generator)` `trials` times with one generator, compiled where that is cheap."""
    generator = keras.random.SeedGenerator(seed)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.jit
        def step(state):
            with keras.StatelessScope(state_mapping=[(generator.state, state)]) as scope:
                out = fn(generator)
            return out, scope.get_current_value(generator.state)

        state, draws = generator.state.value, []
        for _ in range(trials):
            out, state = step(state)
            draws.append(out)
        return np.stack([numpy(d) for d in draws])
    if backend == "tensorflow":
        import tensorflow as tf

        step = tf.function(lambda: fn(generator), jit_compile=True)
        return np.stack([numpy(step()) for _ in range(trials)])
    return np.stack([numpy(fn(generator)) for _ in range(trials)])


@pytest.mark.parametrize("case", SAMPLER, ids=[c["id"] for c in SAMPLER])
def test_unique_inclusion_frequencies_match_tensorflow(case):
    range_max, num_sampled, golden_trials = case["range_max"], case["num_sampled"], case["trials"]
    trials = 2000
    labels = np.zeros((1, 1), "int32")

    def draw(generator):
        return kml.log_uniform_candidate_sampler(
            labels, 1, num_sampled, True, range_max, seed=generator
        )[0]

    draws = repeated_draws(draw, trials)
    assert draws.shape == (trials, num_sampled)
    assert all(len(set(row)) == num_sampled for row in draws)
    assert draws.min() >= 0 and draws.max() < range_max
    frequency = np.bincount(draws.ravel(), minlength=range_max) / trials
    golden = np.asarray(case["inclusion_frequency"])
    assert abs(frequency.sum() - num_sampled) < 1e-9 and abs(golden.sum() - num_sampled) < 1e-6
    # Two independent binomial proportions: 5 standard errors (+ 1/trials for p near 0 or 1);
    # over 1,020 classes a false alarm has probability ~ 1e-3.
    p = (frequency * trials + golden * golden_trials) / (trials + golden_trials)
    error = np.sqrt(p * (1 - p) * (1 / trials + 1 / golden_trials))
    assert (np.abs(frequency - golden) <= 5 * error + 1.0 / trials).all()


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
