"""PNLoss / pn_loss: TensorFlow Similarity 0.17.1 values, edge cases, gradients, compilation."""

import json

import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pn_reference import pn_reference
from specs.pn import assert_matches_golden
from support import examples, finite_difference_grad, golden_cases, numpy, value_and_grad

import keras_metric_losses as kml

CASES = golden_cases("pn")
RTOL = 1e-5


def case_inputs(case):
    return np.asarray(case["y_true"]), np.asarray(case["y_pred"], dtype=case["dtype"])


def test_numpy_reference_matches_golden():
    # Guards the reference loop that the random-batch and gradient tests rely on.
    for case in CASES:
        losses, _, _ = pn_reference(case["y_true"], case["y_pred"], **case["kwargs"])
        assert_matches_golden(losses, case)


# REFERENCE_MATH 4.5: TensorFlow Similarity's own test vectors.
PERFECT = (np.array([0, 1, 2, 3, 0, 1, 2, 3]), np.eye(4)[[0, 1, 2, 3, 0, 1, 2, 3]])
BAD = (np.array([0, 1, 2, 3, 0, 1, 2, 3]), np.eye(4)[[0, 1, 2, 3, 3, 2, 1, 0]])
MINING = (np.array([0, 0, 0, 1, 1, 1]), np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0, 1], [1, 0]]))
SEMI_HARD = (
    np.array([0, 0, 1, 1]),
    np.array([[1, 0], [0.5, 0.8660254], [0, 1], [0.01010049, 0.999949]]),
)
TFSIM_VECTORS = [
    (PERFECT, {"soft_margin": True}, [0.31326169] * 8),
    (PERFECT, {"soft_margin": True, "margin": 1.0}, [0.31326169] * 8),
    (PERFECT, {}, [0.0] * 8),
    (PERFECT, {"margin": 1.1}, [0.1] * 8),
    (BAD, {"soft_margin": True}, [0.6931472] * 3 + [1.3132617] + [0.6931472] * 4),
    (BAD, {}, None),  # mean 1.125
    (MINING, {"positive_mining_strategy": "easy", "negative_mining_strategy": "easy"}, None),
    (MINING, {"positive_mining_strategy": "hard", "negative_mining_strategy": "hard"}, [2.0] * 6),
    (MINING, {"negative_mining_strategy": "semi-hard"}, None),  # mean 2.0
    (MINING, {"positive_mining_strategy": "easy", "negative_mining_strategy": "hard"}, None),
    (
        SEMI_HARD,
        {"positive_mining_strategy": "easy"},
        [1.3710315, 1.3660254, 0.8710825, 0.8710825],
    ),
]
TFSIM_MEANS = [0.31326169, 0.31326169, 0.0, 0.1, 0.7706615, 1.125, 2 / 3, 2.0, 2.0, 8 / 6, None]
EASY_EASY, EASY_HARD = [0, 0, 2, 0, 0, 2], [1, 1, 2, 1, 1, 2]


@pytest.mark.parametrize("index", range(len(TFSIM_VECTORS)))
def test_tensorflow_similarity_test_vectors(index):
    (labels, embeddings), kwargs, per_anchor = TFSIM_VECTORS[index]
    per_anchor = {6: EASY_EASY, 9: EASY_HARD}.get(index, per_anchor)
    values = numpy(kml.pn_loss(labels, embeddings.astype("float32"), **kwargs))
    if per_anchor is not None:
        np.testing.assert_allclose(values, per_anchor, rtol=RTOL, atol=1e-6)
    if TFSIM_MEANS[index] is not None:
        np.testing.assert_allclose(values.mean(), TFSIM_MEANS[index], rtol=RTOL, atol=1e-7)


def test_anchors_without_positive_or_negative_get_zero_loss_and_zero_gradient():
    # REFERENCE_MATH 4.3's singleton example: anchors 0 and 3 have no positive. TensorFlow
    # Similarity gives them 0.14765 / 0.0 (hard/hard) and 0.5 / 2.4562 (easy/easy); we give 0.
    labels = np.array([0, 1, 1, 2])
    raw = np.array([[1, 0.2], [0.3, 1], [0.5, 0.9], [-1, 0.1]])
    embeddings = (raw / np.linalg.norm(raw, axis=1, keepdims=True)).astype("float32")
    hard = numpy(kml.pn_loss(labels, embeddings, negative_mining_strategy="hard", margin=0.5))
    np.testing.assert_allclose(hard, [0.0, 0.17081, 0.17081, 0.0], atol=1e-5)
    easy = kml.pn_loss(
        labels,
        embeddings,
        positive_mining_strategy="easy",
        negative_mining_strategy="easy",
        margin=0.5,
    )
    np.testing.assert_allclose(numpy(easy), [0.0, 0.0, 0.0, 0.0], atol=1e-6)

    lonely = np.array([1.0, 0.0, 0.0, 1.0], "float32")
    for distance in ["cosine", "euclidean", "manhattan"]:
        for negatives in ["hard", "semi-hard", "easy"]:

            def lonely_loss(e, d=distance, n=negatives):
                losses = kml.pn_loss(
                    labels, e, distance=d, negative_mining_strategy=n, soft_margin=True
                )
                return keras.ops.sum(keras.ops.multiply(losses, lonely))

            value, grad = value_and_grad(lonely_loss, embeddings)
            assert value == 0.0 and np.all(grad == 0.0), (distance, negatives, grad)

    # The mean still counts them: sum of the two valid anchors / 4.
    mean = kml.PNLoss(negative_mining_strategy="hard", margin=0.5)(labels, embeddings)
    np.testing.assert_allclose(numpy(mean), 2 * 0.17081 / 4, rtol=1e-4)


@pytest.mark.parametrize("distance", ["cosine", "euclidean", "squared_euclidean", "manhattan"])
def test_one_class_batch_and_batch_of_one(distance):
    embeddings = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    for labels, e in [(np.full(5, 7), embeddings), (np.array([3]), embeddings[:1])]:
        value, grad = value_and_grad(
            lambda x, y=labels: keras.ops.sum(kml.pn_loss(y, x, distance=distance)), e
        )
        assert value == 0.0 and np.all(grad == 0.0)
        assert numpy(kml.PNLoss(distance=distance)(labels, e)) == 0.0


@pytest.mark.parametrize(
    "distance", ["cosine", "euclidean", "squared_euclidean", "manhattan", "ip"]
)
def test_gradients_are_finite_with_duplicate_embeddings(distance):
    # Duplicates put exact zeros in the distance matrix (sqrt'(0) = inf for a naive euclidean).
    labels = np.array([0, 0, 1, 1, 2, 2])
    e = np.array([[1, 0], [1, 0], [0, 1], [0, 1], [0.6, 0.8], [1, 0]], "float32")
    for soft in (True, False):
        for negatives in ("hard", "semi-hard", "easy"):
            value, grad = value_and_grad(
                lambda x, s=soft, n=negatives: keras.ops.mean(
                    kml.pn_loss(
                        labels, x, distance=distance, soft_margin=s, negative_mining_strategy=n
                    )
                ),
                e,
            )
            assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize("index", [3, 14, 45])  # cosine, euclidean, manhattan
def test_gradient_matches_finite_differences(index):
    case = CASES[index]
    y_true, y_pred = case_inputs(case)

    def mean_loss(x):
        return keras.ops.mean(kml.pn_loss(y_true, x, **case["kwargs"]))

    _, grad = value_and_grad(mean_loss, y_pred)

    def reference_mean(x):
        return pn_reference(y_true, x, **case["kwargs"])[0].mean()

    numeric = finite_difference_grad(reference_mean, y_pred, eps=1e-4)
    assert np.abs(grad).max() > 0
    np.testing.assert_allclose(grad, numeric, atol=2e-3)


@pytest.mark.slow
def test_compiled_gradient_is_finite_for_lonely_anchors():
    if keras.backend.backend() == "torch":
        pytest.skip("torch.compile is covered by test_golden's compiled cases (compile time)")
    labels = np.array([0, 0, 1, 2])
    e = np.array([[1, 0], [1, 0], [0, 1], [0.6, 0.8]], "float32")

    def loss(e):
        return keras.ops.mean(kml.pn_loss(labels, e, distance="euclidean", soft_margin=True))

    if keras.backend.backend() == "jax":
        import jax

        grad = jax.jit(jax.grad(loss))(e)
    else:
        import tensorflow as tf

        @tf.function(jit_compile=True)
        def grad_fn(x):
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(x)
            return tape.gradient(value, x)

        grad = grad_fn(tf.constant(e))
    assert np.isfinite(numpy(grad)).all()


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    case = CASES[6]  # cosine, B=64, soft margin
    y_true, y_pred = case_inputs(case)
    half = keras.ops.cast(y_pred, dtype)
    values = kml.pn_loss(y_true, half, **case["kwargs"])
    assert keras.backend.standardize_dtype(values.dtype) == dtype
    expected = pn_reference(y_true, numpy(keras.ops.cast(half, "float32")), **case["kwargs"])[0]
    np.testing.assert_allclose(numpy(keras.ops.cast(values, "float32")), expected, rtol=1e-2)
    mean = kml.PNLoss(dtype=dtype, **case["kwargs"])(y_true, half)
    assert keras.backend.standardize_dtype(mean.dtype) == dtype
    np.testing.assert_allclose(numpy(keras.ops.cast(mean, "float32")), case["expected"], rtol=2e-2)


def test_reductions_sample_weight_and_label_shapes():
    for case in CASES[::7]:
        y_true, y_pred = case_inputs(case)
        mean = kml.PNLoss(**case["kwargs"])(y_true, y_pred)
        np.testing.assert_allclose(numpy(mean), case["expected"], rtol=RTOL)
    case = CASES[10]
    y_true, y_pred = case_inputs(case)
    per_anchor = np.asarray(case["expected_per_example"])
    weights = np.linspace(0.0, 2.0, len(y_true)).astype("float32")
    loss = kml.PNLoss(**case["kwargs"])
    np.testing.assert_allclose(
        numpy(loss(y_true, y_pred, sample_weight=weights)),
        (weights * per_anchor).sum() / len(y_true),
        rtol=RTOL,
    )
    summed = kml.PNLoss(reduction="sum", **case["kwargs"])(y_true[:, None], y_pred)
    np.testing.assert_allclose(numpy(summed), per_anchor.sum(), rtol=RTOL)
    big = y_true.astype("int64") + 2**24  # stays distinct; a float32 cast would merge classes
    np.testing.assert_allclose(numpy(loss(big, y_pred)), case["expected"], rtol=RTOL)


BAD_ARGUMENTS = [
    ({"positive_mining_strategy": "semi-hard"}, r"positive_mining_strategy.*'semi-hard'"),
    ({"positive_mining_strategy": "Hard"}, r"positive_mining_strategy.*\['hard', 'easy'\]"),
    ({"negative_mining_strategy": "semihard"}, r"negative_mining_strategy.*'semihard'"),
    ({"soft_margin": True, "margin": 0.5}, r"soft_margin=True, margin=0.5"),
    ({"margin": "1"}, r"margin.*finite number"),
    ({"margin": float("nan")}, r"margin.*finite number"),
    ({"distance": "cosine_sim"}, r"Unknown distance.*'cosine'.*cosine_sim"),
    ({"distance": 3}, r"Unknown distance.*distance=3"),
]


@pytest.mark.parametrize("kwargs, message", BAD_ARGUMENTS)
def test_bad_arguments_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        kml.PNLoss(**kwargs)
    with pytest.raises(ValueError, match=message):
        kml.pn_loss(np.zeros(2, "int32"), np.zeros((2, 2), "float32"), **kwargs)


def test_soft_margin_flag_is_a_bool():
    with pytest.raises(TypeError, match=r"soft_margin.*bool.*soft_margin=1"):
        kml.PNLoss(soft_margin=1)


def test_soft_margin_and_margin_conventions():
    # `margin` is a plain float: with the soft margin only its default is accepted (unused).
    assert kml.PNLoss(soft_margin=True).get_config()["margin"] == 1.0
    assert kml.PNLoss(soft_margin=True, margin=1.0).get_config()["soft_margin"] is True
    assert kml.PNLoss(margin=np.float32(0.5)).get_config()["margin"] == 0.5
    config = kml.PNLoss(margin=1.0).get_config()
    assert config["margin"] == 1.0 and config["soft_margin"] is False
    assert type(config["margin"]) is float and type(kml.PNLoss().get_config()["margin"]) is float


def test_config_round_trip_and_tensorflow_similarity_config():
    loss = kml.PNLoss(
        distance="L1",
        positive_mining_strategy="easy",
        negative_mining_strategy="hard",
        margin=0.25,
        name="pn",
        reduction="sum",
    )
    config = loss.get_config()
    assert config["distance"] == "manhattan" and config["margin"] == 0.25
    assert kml.PNLoss.from_config(config).get_config() == config
    serialized = keras.saving.serialize_keras_object(loss)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is kml.PNLoss and restored.get_config() == config

    # A TensorFlow Similarity 0.17 PNLoss config: margin None means soft margin.
    tfsim = {
        "distance": "cosine",
        "positive_mining_strategy": "hard",
        "negative_mining_strategy": "semi-hard",
        "margin": None,
        "name": "PNLoss",
        "reduction": "auto",
    }
    restored = kml.PNLoss.from_config(tfsim)
    assert restored.get_config()["soft_margin"] is True
    assert restored.reduction == "sum_over_batch_size"
    labels, embeddings = PERFECT
    np.testing.assert_allclose(numpy(restored(labels, embeddings)), 0.31326169, rtol=RTOL)
    # ... also with the distance saved as a TensorFlow Similarity Distance object config.
    tfsim["distance"] = {"class_name": "Similarity>EuclideanDistance", "config": {"name": "l2"}}
    assert kml.PNLoss.from_config(tfsim).get_config()["distance"] == "euclidean"


@keras.saving.register_keras_serializable(package="pn_tests")
def chebyshev(query, key):
    differences = keras.ops.expand_dims(query, 1) - keras.ops.expand_dims(key, 0)
    return keras.ops.max(keras.ops.abs(differences), axis=-1)


def test_registered_callable_distance_round_trip():
    labels, embeddings = MINING
    loss = kml.PNLoss(distance=chebyshev, reduction=None)
    config = loss.get_config()
    assert config["distance"] == "pn_tests>chebyshev"
    restored = kml.PNLoss.from_config(config)
    # Here every difference is 0 or +-(1, -1): chebyshev = manhattan / 2 (so margin 1 <-> 2).
    manhattan = kml.PNLoss(distance="manhattan", margin=2.0, reduction=None)
    expected = numpy(manhattan(labels, embeddings.astype("float32"))) / 2
    np.testing.assert_allclose(numpy(restored(labels, embeddings.astype("float32"))), expected)
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(loss)))
    assert keras.saving.deserialize_keras_object(serialized).get_config() == config

    unregistered = kml.PNLoss(distance=lambda q, k: chebyshev(q, k))
    assert numpy(unregistered(labels, embeddings.astype("float32"))) >= 0  # usable eagerly
    with pytest.raises(ValueError, match="register_keras_serializable"):
        unregistered.get_config()


@pytest.mark.slow
def test_fit_reduces_the_loss():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    centers = rng.normal(size=(8, 16)) * 1.5
    labels = np.repeat(np.arange(8), 32)
    rng.shuffle(labels)
    x = (centers[labels] + rng.normal(size=(len(labels), 16))).astype("float32")
    model = keras.Sequential(
        [keras.Input((16,)), keras.layers.Dense(8), keras.layers.UnitNormalization()]
    )
    loss = kml.PNLoss(soft_margin=True, negative_mining_strategy="hard")
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    history = model.fit(x, labels, batch_size=64, epochs=5, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < 0.9 * history[0], history


DISTANCE_NAMES = ["cosine", "euclidean", "squared_euclidean", "manhattan", "inner_product"]


@st.composite
def batches(draw):
    batch = draw(st.integers(1, 9))
    dim = draw(st.integers(1, 3))
    labels = draw(st.lists(st.integers(0, 3), min_size=batch, max_size=batch))
    # Small integers: every distance is exact in float32, so ties are exact ties (and there
    # are many), and mining must break them by first index exactly like the reference.
    values = draw(st.lists(st.integers(-2, 2), min_size=batch * dim, max_size=batch * dim))
    return np.array(labels), np.array(values, "float32").reshape(batch, dim)


@settings(max_examples=examples(25), deadline=None)
@given(
    batch=batches(),
    distance=st.sampled_from(DISTANCE_NAMES),
    positive=st.sampled_from(["hard", "easy"]),
    negative=st.sampled_from(["hard", "semi-hard", "easy"]),
    margin=st.sampled_from([None, 0.0, 0.5, 2.0]),
)
def test_random_batches_match_numpy_reference(batch, distance, positive, negative, margin):
    labels, embeddings = batch
    kwargs = {
        "distance": distance,
        "positive_mining_strategy": positive,
        "negative_mining_strategy": negative,
    }
    soft = margin is None
    values = kml.pn_loss(
        labels, embeddings, soft_margin=soft, **kwargs, **({} if soft else {"margin": margin})
    )
    expected = pn_reference(labels, embeddings, soft_margin=soft, margin=margin, **kwargs)[0]
    np.testing.assert_allclose(numpy(values), expected, rtol=1e-5, atol=1e-6)


def test_margin_none_is_the_soft_margin_as_in_tf_similarity():
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    embeddings = np.random.default_rng(3).normal(size=(8, 4)).astype("float32")
    soft = numpy(kml.pn_loss(labels, embeddings, soft_margin=True))
    np.testing.assert_array_equal(numpy(kml.pn_loss(labels, embeddings, margin=None)), soft)
    loss = kml.PNLoss(margin=None)
    assert loss.soft_margin is True and loss.margin == 1.0
    np.testing.assert_allclose(numpy(loss(labels, embeddings)), soft.mean(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"`margin` has no effect with `soft_margin=True`"):
        kml.PNLoss(soft_margin=True, margin=0.5)
