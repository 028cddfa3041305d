"""The triplet losses: semi-hard mining against brute force, degenerate anchors, distances,
margins and configs, cross-replica shares, PML's miner and reducers, MarginLoss' beta."""

import json

import keras
import numpy as np
import pml_pair_reference as pml
import pytest
import tf_metric_reference as tfm
from hypothesis import given, settings
from hypothesis import strategies as st
from specs.triplet import (
    hard_reference,
    oracle_kwargs,
    pml_reference,
    semihard_reference,
    tfsim_triplet_reference,
)
from support import compiled, examples, finite_difference_grad, golden_cases, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses import distances, mining

TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}
RNG = np.random.default_rng(0)


def batch(labels, dim=3, seed=0, unit=False):
    e = np.random.default_rng(seed).normal(size=(len(labels), dim))
    if unit:
        e /= np.linalg.norm(e, axis=1, keepdims=True)
    return np.asarray(labels), e.astype("float32")


# --- Semi-hard negatives: sort + binary search against the dense definition ------------------


@st.composite
def distance_rows(draw, rows=5, columns=7, thresholds=4):
    """Fixed shapes (one compilation per backend), random contents: small integers, so many
    exact ties between distances and thresholds, and rows without any negative."""
    size = rows * columns
    d = draw(st.lists(st.integers(0, 4), min_size=size, max_size=size))
    mask = draw(st.lists(st.booleans(), min_size=size, max_size=size))
    count = rows * thresholds
    t = draw(st.lists(st.integers(-1, 5), min_size=count, max_size=count))
    return (
        np.array(d, "float32").reshape(rows, columns),
        np.array(mask).reshape(rows, columns),
        np.array(t, "float32").reshape(rows, thresholds),
    )


def brute_force_semi_hard(d, mask, thresholds):
    """`[B, T]` distances: the closest negative beyond each threshold, else the farthest."""
    beyond = mask[:, None, :] & (d[:, None, :] > thresholds[:, :, None])
    closest = np.where(beyond, d[:, None, :], np.inf).min(axis=-1)
    farthest = np.where(mask, d, -np.inf).max(axis=1)[:, None]
    return np.where(beyond.any(axis=-1), closest, farthest)


@settings(max_examples=examples(40), deadline=None)
@given(distance_rows())
def test_semi_hard_negatives_match_the_dense_definition(rows):
    d, mask, thresholds = rows
    index, found = (numpy(x) for x in mining.semi_hard_negatives(d, mask, thresholds))
    assert index.shape == thresholds.shape and index.dtype == np.int32
    np.testing.assert_array_equal(found, mask.any(axis=1))
    chosen = np.take_along_axis(d, index, axis=1)
    expected = brute_force_semi_hard(d, mask, thresholds)
    np.testing.assert_array_equal(chosen[found], expected[found])
    assert np.take_along_axis(mask, index, axis=1)[found].all()  # a negative, never another


def test_semi_hard_negatives_compiled():
    if keras.backend.backend() == "torch":
        pytest.skip("torch.compile is covered by the compiled golden cases (compile time)")
    d, mask, thresholds = (
        np.array([[0.0, 1.0, 3.0, 2.0, 2.0]], "float32"),
        np.array([[False, True, True, True, False]]),
        np.array([[0.5, 1.0, 2.0, 3.0]], "float32"),
    )
    index, found = compiled(mining.semi_hard_negatives)(d, mask, thresholds)
    np.testing.assert_array_equal(numpy(index), [[1, 3, 2, 2]])
    assert numpy(found).all()


# --- TF Addons -----------------------------------------------------------------------------


@pytest.mark.parametrize("distance_metric", ["L2", "squared-L2", "angular"])
@pytest.mark.parametrize("labels", [[0, 0, 1, 1, 2, 2, 2, 1], [0, 1, 2, 0, 1, 2, 3, 3, 4, 0]])
def test_tf_addons_losses_match_the_oracle_on_random_batches(labels, distance_metric):
    y, e = batch(labels, seed=len(labels))
    semihard = kml.triplet_semihard_loss(y, e, margin=0.3, distance_metric=distance_metric)
    expected = semihard_reference(y, e, margin=0.3, distance_metric=distance_metric)
    np.testing.assert_allclose(numpy(semihard), expected, **TOLERANCE)
    for soft in (False, True):
        hard = kml.triplet_hard_loss(y, e, 0.3, soft, distance_metric)
        expected = hard_reference(y, e, margin=0.3, soft=soft, distance_metric=distance_metric)
        np.testing.assert_allclose(numpy(hard), expected, **TOLERANCE)


def test_tf_addons_batches_without_positive_pairs_give_zero_not_nan():
    # REFERENCE_MATH 7: TF Addons gives NaN (semi-hard), 0.23463 (hard) and 0.38197 (soft).
    labels = np.array([0, 1, 2])
    e = np.array([[1, 0], [0, 1], [1, 1]], "float32") / np.array([1, 1, np.sqrt(2)])[:, None]
    e = e.astype("float32")
    for fn in (
        kml.triplet_semihard_loss,
        kml.triplet_hard_loss,
        lambda y, x: kml.triplet_hard_loss(y, x, soft=True),
    ):
        value, grad = value_and_grad(lambda x, f=fn: keras.ops.sum(f(labels, x)), e)
        assert value == 0.0 and np.all(grad == 0.0)
    assert numpy(kml.TripletSemiHardLoss()(labels, e)) == 0.0


def test_tf_addons_anchors_without_a_triplet_get_zero_and_zero_gradient():
    labels, e = batch([0, 0, 1, 2, 2, 3], seed=1)  # anchors 2 and 5 have no positive
    lonely = np.array([0, 0, 1, 0, 0, 1], "float32")
    for fn in (kml.triplet_hard_loss, kml.triplet_loss):
        value, grad = value_and_grad(
            lambda x, f=fn: keras.ops.sum(keras.ops.multiply(f(labels, x), lonely)), e
        )
        assert value == 0.0 and np.all(grad == 0.0)
    one_class = np.full(6, 4)  # no negative: TF Addons returns the margin-based fallback
    for fn in (kml.triplet_semihard_loss, kml.triplet_hard_loss, kml.triplet_loss):
        value, grad = value_and_grad(lambda x, f=fn: keras.ops.sum(f(one_class, x)), e)
        assert value == 0.0 and np.all(grad == 0.0)


def test_semihard_shares_reduce_to_the_tf_addons_scalar_with_weights_and_reductions():
    case = golden_cases("tfa_metric")[0]
    assert case["call"] == "triplet_semihard_loss"
    y, e = np.asarray(case["y_true"]), np.asarray(case["y_pred"], "float32")
    shares = numpy(kml.TripletSemiHardLoss(reduction=None, **case["kwargs"])(y, e))
    np.testing.assert_allclose(shares.mean(), case["expected"], rtol=1e-5)
    np.testing.assert_allclose(
        numpy(kml.TripletSemiHardLoss(reduction="sum", **case["kwargs"])(y[:, None], e)),
        shares.sum(),
        rtol=1e-5,
    )
    weights = np.linspace(0, 1, len(y)).astype("float32")
    weighted = kml.TripletSemiHardLoss(**case["kwargs"])(y, e, sample_weight=weights)
    np.testing.assert_allclose(numpy(weighted), (weights * shares).mean(), rtol=1e-5)


@keras.saving.register_keras_serializable(package="triplet_tests")
def negative_inner_product(query, key):
    return -keras.ops.matmul(query, keras.ops.transpose(key))


def test_distance_metric_callables_take_query_and_key():
    y, e = batch([0, 0, 1, 1, 2, 2])
    as_name = kml.triplet_semihard_loss(y, e, distance_metric="squared-L2")
    as_callable = kml.triplet_semihard_loss(y, e, distance_metric=distances.squared_euclidean)
    np.testing.assert_allclose(numpy(as_callable), numpy(as_name))
    # TF Addons' `lambda x: x @ x.T` (a similarity used as a distance) as a two-argument callable.
    similarity = kml.triplet_hard_loss(
        y, e, distance_metric=lambda q, k: -negative_inner_product(q, k)
    )
    expected = hard_reference(y, e, distance_metric=lambda x: x @ x.T)
    np.testing.assert_allclose(numpy(similarity), expected, **TOLERANCE)
    with pytest.raises(ValueError, match=r"distance_metric.*two arguments.*lambda q, k"):
        kml.TripletSemiHardLoss(distance_metric=lambda x: x @ x.T)
    with pytest.raises(ValueError, match=r"distance_metric.*two arguments"):
        kml.triplet_hard_loss(y, e, distance_metric=lambda x: x)
    with pytest.raises(ValueError, match=r"Unknown distance.*distance_metric='L3'"):
        kml.TripletHardLoss(distance_metric="L3")
    loss = kml.TripletHardLoss(distance_metric=negative_inner_product, soft=True, margin=0.5)
    config = loss.get_config()
    assert config["distance_metric"] == "triplet_tests>negative_inner_product"
    assert kml.TripletHardLoss.from_config(config).get_config() == config


def test_tf_addons_configs_load():
    # TF Addons 0.23 get_config (REFERENCE_MATH 5.2): name None and reduction "none".
    tfa_config = {"reduction": "none", "name": None, "margin": 0.5, "soft": True}
    loss = kml.TripletHardLoss.from_config({**tfa_config, "distance_metric": "L2"})
    assert loss.soft and loss.margin == 0.5 and loss.distance_metric == "euclidean"
    loss = kml.TripletSemiHardLoss.from_config(
        {"reduction": "none", "name": None, "margin": 1.0, "distance_metric": "angular"}
    )
    assert loss.get_config()["distance_metric"] == "angular"


# --- TF Similarity -------------------------------------------------------------------------


def test_triplet_loss_margin_conventions():
    y, e = batch([0, 1, 2, 3, 0, 1, 2, 3], dim=4, unit=True)
    soft = numpy(kml.triplet_loss(y, e))
    np.testing.assert_allclose(soft, tfsim_triplet_reference(y, e), **TOLERANCE)
    hinge = numpy(kml.triplet_loss(y, e, margin=0.5))
    np.testing.assert_allclose(hinge, tfsim_triplet_reference(y, e, margin=0.5), **TOLERANCE)
    np.testing.assert_array_equal(numpy(kml.triplet_loss(y, e, soft_margin=True)), soft)
    np.testing.assert_array_equal(
        numpy(kml.triplet_loss(y, e, soft_margin=False)),
        numpy(kml.triplet_loss(y, e, margin=1.0)),
    )
    assert kml.TripletLoss().get_config()["soft_margin"] is True
    config = kml.TripletLoss(margin=0.5).get_config()
    assert config["soft_margin"] is False and config["margin"] == 0.5
    with pytest.raises(ValueError, match=r"soft_margin=True, margin=0.5"):
        kml.TripletLoss(margin=0.5, soft_margin=True)
    with pytest.raises(TypeError, match=r"soft_margin.*soft_margin='yes'"):
        kml.TripletLoss(soft_margin="yes")
    with pytest.raises(ValueError, match=r"margin.*finite number.*margin=inf"):
        kml.triplet_loss(y, e, margin=float("inf"))


def test_triplet_loss_loads_tensorflow_similarity_configs():
    tfsim = {
        "reduction": "auto",
        "name": "TripletLoss",
        "distance": {"class_name": "Similarity>CosineDistance", "config": {"name": "cosine"}},
        "positive_mining_strategy": "hard",
        "negative_mining_strategy": "semi-hard",
        "margin": None,
    }
    loss = kml.TripletLoss.from_config(tfsim)
    assert loss.soft_margin is True and loss.reduction == "sum_over_batch_size"
    restored = kml.TripletLoss.from_config(json.loads(json.dumps(loss.get_config())))
    assert restored.get_config() == loss.get_config()
    hinge = kml.TripletLoss.from_config({**tfsim, "margin": 0.25, "distance": "l2"})
    assert hinge.soft_margin is False and hinge.margin == 0.25 and hinge.distance == "euclidean"


def test_triplet_loss_is_pn_without_the_pn_step_and_tf_addons_hard_on_unit_vectors():
    y, e = batch([0, 0, 1, 1, 2, 2, 0, 1], unit=True)
    hard = kml.triplet_loss(y, e, negative_mining_strategy="hard", soft_margin=True)
    tfa = kml.triplet_hard_loss(y, e, soft=True, distance_metric="angular")
    np.testing.assert_allclose(numpy(hard), numpy(tfa), rtol=1e-5, atol=1e-6)
    pn = numpy(kml.pn_loss(y, e, negative_mining_strategy="hard", margin=0.5))
    triplet = numpy(kml.triplet_loss(y, e, negative_mining_strategy="hard", margin=0.5))
    assert np.all(pn >= triplet - 1e-6) and np.any(pn > triplet + 1e-3)


def test_triplet_loss_with_reference_embeddings_matches_the_oracle():
    y, e = batch([0, 1, 2, 0], dim=4, unit=True)
    key_labels, keys = batch([0, 1, 2, 3, 1, 0, 2], dim=4, seed=5, unit=True)
    for strategies in (("hard", "semi-hard"), ("easy", "hard")):
        names = ("positive_mining_strategy", "negative_mining_strategy")
        kwargs = dict(zip(names, strategies, strict=True))
        values = kml.triplet_loss(y, e, ref_embeddings=keys, ref_labels=key_labels, **kwargs)
        expected = tfm.tfsim_triplet_loss(y, e, key_labels, keys, remove_diagonal=False, **kwargs)
        np.testing.assert_allclose(numpy(values), expected, **TOLERANCE)


# --- Cross-replica shares: each replica's keys are the global batch ------------------------


def replica_values(fn, labels, embeddings, monkeypatch, replicas=2):
    """`fn(labels[rows], embeddings[rows], cross_replica=True)` for each replica's rows, with
    `gather_keys` returning the global batch (as `tf.distribute` / `torch.distributed` do)."""
    local = len(labels) // replicas
    values = []
    for replica in range(replicas):
        rows = slice(replica * local, (replica + 1) * local)

        def gather_keys(queries, query_labels, r=replica):
            keys = keras.ops.cast(keras.ops.convert_to_tensor(embeddings), queries.dtype)
            columns = keras.ops.arange(r * local, (r + 1) * local, dtype="int32")
            return keys, keras.ops.convert_to_tensor(labels), columns

        monkeypatch.setattr(kml.distributed, "gather_keys", gather_keys)
        values.append(numpy(fn(labels[rows], embeddings[rows], cross_replica=True)))
    monkeypatch.undo()
    return np.concatenate(values)


@pytest.mark.parametrize(
    "fn",
    [
        kml.triplet_semihard_loss,
        kml.triplet_hard_loss,
        kml.triplet_loss,
        kml.triplet_margin_loss,
        kml.margin_loss,
    ],
    ids=lambda f: f.__name__,
)
def test_cross_replica_values_are_those_of_the_global_batch(fn, monkeypatch):
    labels, e = batch([0, 1, 2, 3, 0, 1, 4, 0, 2, 3, 4, 1], unit=True)
    expected = numpy(fn(labels, e))
    np.testing.assert_allclose(replica_values(fn, labels, e, monkeypatch), expected, rtol=1e-5)
    np.testing.assert_allclose(numpy(fn(labels, e, cross_replica=True)), expected)


# --- pytorch-metric-learning ---------------------------------------------------------------


@pytest.mark.parametrize("type_of_triplets", ["all", "hard", "semihard", "easy"])
@pytest.mark.parametrize("distance", ["euclidean", "cosine_similarity"])
def test_triplet_margin_miner_mask_matches_the_oracle(type_of_triplets, distance):
    labels, e = batch([0, 1, 2, 0, 1, 2, 0, 3, 3, 1], dim=4, seed=3)
    oracle = pml.Distance("lp" if distance == "euclidean" else "cosine")
    expected, _ = pml.triplet_margin_miner(
        e, labels, margin=0.3, type_of_triplets=type_of_triplets, distance=oracle
    )
    unit = e / np.linalg.norm(e, axis=1, keepdims=True)
    d = distances.get(distance)(unit, unit)
    positive, negative = mining.label_masks(labels)
    closer = distances.larger_is_closer(distance)
    mask = mining.triplet_margin_mask(d, positive, negative, 0.3, type_of_triplets, closer)
    np.testing.assert_array_equal(numpy(mask), expected)
    assert expected.any()


PML_VARIANTS = [
    {},
    {"reducer": "pml"},
    {"swap": True, "smooth_loss": True, "margin": 0.2},
    {"distance": "cosine_similarity", "swap": True, "margin": 0.3, "reducer": "pml"},
    {"normalize_embeddings": False, "margin": 1.0},
    {"type_of_triplets": "semihard", "miner_margin": 0.3, "margin": 0.2},
    {"type_of_triplets": "hard", "distance": "cosine_similarity", "reducer": "pml"},
    {"type_of_triplets": "easy", "distance": "squared_euclidean", "miner_margin": 0.5},
    {"distance": "snr", "reducer": "pml", "margin": 0.3},
    {"distance": "inner_product", "margin": 0.3},
]


@pytest.mark.parametrize("kwargs", PML_VARIANTS, ids=str)
def test_triplet_margin_loss_matches_the_oracle(kwargs):
    labels, e = batch([0, 1, 2, 0, 1, 2, 0, 3, 3, 1, 4], dim=4, seed=4)
    values = kml.triplet_margin_loss(labels, e, **kwargs)
    expected = pml_reference("TripletMarginLoss", labels, e, **kwargs)
    np.testing.assert_allclose(numpy(values), expected, **TOLERANCE)


MARGIN_VARIANTS = [
    {},
    {"reducer": "pml"},
    {"distance": "cosine_similarity", "beta": 0.5, "reducer": "pml"},
    {"normalize_embeddings": False, "beta": 2.0, "margin": 0.5},
    {"distance": "snr", "beta": 1.0},
]


@pytest.mark.parametrize("kwargs", MARGIN_VARIANTS, ids=str)
def test_margin_loss_matches_the_oracle(kwargs):
    labels, e = batch([0, 1, 2, 0, 1, 2, 0, 3, 3, 1, 4], dim=4, seed=12)
    values = kml.margin_loss(labels, e, **kwargs)
    expected = pml_reference("MarginLoss", labels, e, **kwargs)
    np.testing.assert_allclose(numpy(values), expected, **TOLERANCE)


@pytest.mark.parametrize("kwargs", [{}, {"swap": True}, {"reducer": "pml"}], ids=str)
def test_triplet_margin_loss_with_reference_embeddings_matches_the_oracle(kwargs):
    labels, e = batch([0, 1, 2, 0], dim=4, seed=6)
    key_labels, keys = batch([0, 1, 2, 3, 1, 0, 2], dim=4, seed=7)
    values = kml.triplet_margin_loss(
        labels, e, ref_embeddings=keys, ref_labels=key_labels, margin=0.2, **kwargs
    )
    result = pml.triplet_margin_loss(
        e, labels, keys, key_labels, margin=0.2, swap=kwargs.get("swap", False)
    )
    expected = result.per_anchor if kwargs.get("reducer") == "pml" else result.natural
    np.testing.assert_allclose(numpy(values), expected, **TOLERANCE)


def test_pml_degenerate_batches_give_zero_and_zero_gradient():
    e = batch(range(6), seed=8)[1]
    for labels in (np.arange(6), np.full(6, 3)):
        for fn in (kml.triplet_margin_loss, kml.margin_loss):
            for reducer in ("anchor", "pml"):
                value, grad = value_and_grad(
                    lambda x, f=fn, r=reducer, y=labels: keras.ops.sum(f(y, x, reducer=r)), e
                )
                assert value == 0.0 and np.all(grad == 0.0)


def test_pml_arguments_are_checked():
    y, e = batch([0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"miner_margin.*no effect.*miner_margin=0.5"):
        kml.TripletMarginLoss(miner_margin=0.5)
    with pytest.raises(ValueError, match=r"type_of_triplets.*'semi-hard'"):
        kml.TripletMarginLoss(type_of_triplets="semi-hard")
    with pytest.raises(ValueError, match=r"triplets_per_anchor.*'all'.*triplets_per_anchor=5"):
        kml.triplet_margin_loss(y, e, triplets_per_anchor=5)
    with pytest.raises(ValueError, match=r"reducer.*\['anchor', 'pml'\].*reducer='mean'"):
        kml.MarginLoss(reducer="mean")
    with pytest.raises(TypeError, match=r"normalize_embeddings.*bool"):
        kml.TripletMarginLoss(normalize_embeddings=1)
    with pytest.raises(ValueError, match=r"learn_beta=True.*not supported"):
        kml.MarginLoss(learn_beta=True)
    with pytest.raises(ValueError, match=r"`nu` must be a finite number.*nu=nan"):
        kml.margin_loss(y, e, nu=float("nan"))
    for beta in ([], [1.0, "a"], "1.2", [1.0, float("nan")]):
        with pytest.raises(ValueError, match=r"`beta` must be a finite number"):
            kml.MarginLoss(beta=beta)


def test_margin_loss_with_one_beta_per_class():
    labels, e = batch([0, 1, 2, 0, 1, 2, 2, 1], seed=9)
    betas = [0.8, 1.2, 1.0]
    values = numpy(kml.margin_loss(labels, e, beta=betas, reducer="pml"))
    # The oracle with a scalar beta, anchor by anchor (each anchor's triplets use its beta).
    unit = pml.normalize(e)
    d = np.linalg.norm(unit[:, None] - unit[None], axis=-1)
    positive = (labels[:, None] == labels[None]) & ~np.eye(len(labels), dtype=bool)
    negative = labels[:, None] != labels[None]
    b = np.asarray(betas)[labels][:, None]
    pos_part = np.where(positive, np.maximum(d - b + 0.2, 0), 0)
    neg_part = np.where(negative, np.maximum(b - d + 0.2, 0), 0)
    sums = negative.sum(1) * pos_part.sum(1) + positive.sum(1) * neg_part.sum(1)
    divisor = (negative.sum(1) * (pos_part > 0).sum(1)).sum()
    divisor += (positive.sum(1) * (neg_part > 0).sum(1)).sum()
    np.testing.assert_allclose(values, len(labels) * sums / divisor, **TOLERANCE)
    same = kml.margin_loss(labels, e, beta=[1.2, 1.2, 1.2])
    np.testing.assert_allclose(numpy(same), numpy(kml.margin_loss(labels, e)), rtol=1e-6)
    loss = kml.MarginLoss(beta=np.array(betas))
    assert loss.get_config()["beta"] == betas
    assert kml.MarginLoss.from_config(loss.get_config()).get_config() == loss.get_config()
    with kml.config.value_checks(), pytest.raises(ValueError, match=r"y_true"):
        kml.margin_loss(labels + 1, e, beta=betas)


# --- Gradients and precision ---------------------------------------------------------------


GRADIENT_CASES = [
    (kml.triplet_semihard_loss, tfm.triplet_semihard_per_anchor, {"margin": 0.5}),
    (kml.triplet_hard_loss, tfm.triplet_hard_per_anchor, {"soft": True}),
    (
        kml.triplet_margin_loss,
        lambda y, x, **k: pml.triplet_margin_loss(x, y, **oracle_kwargs(k)).per_anchor,
        {"margin": 0.3, "reducer": "pml"},
    ),
    (
        kml.margin_loss,
        lambda y, x, **k: pml.margin_loss(x, y, **oracle_kwargs(k)).natural,
        {"beta": 1.0},
    ),
]


@pytest.mark.parametrize(
    "fn, reference, kwargs", GRADIENT_CASES, ids=[case[0].__name__ for case in GRADIENT_CASES]
)
def test_gradient_matches_finite_differences(fn, reference, kwargs):
    labels, e = batch([0, 1, 2, 0, 1, 2, 0, 1], dim=3, seed=10)
    _, grad = value_and_grad(lambda x: keras.ops.mean(fn(labels, x, **kwargs)), e)
    numeric = finite_difference_grad(lambda x: reference(labels, x, **kwargs).mean(), e, 1e-4)
    assert np.abs(grad).max() > 0
    np.testing.assert_allclose(grad, numeric, atol=2e-3)


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    labels, e = batch([0, 1, 2, 0, 1, 2, 0, 1], seed=11, unit=True)
    half = keras.ops.cast(e, dtype)
    as_float32 = numpy(keras.ops.cast(half, "float32"))
    for fn in (
        kml.triplet_semihard_loss,
        kml.triplet_hard_loss,
        kml.triplet_loss,
        kml.triplet_margin_loss,
        kml.margin_loss,
    ):
        values = fn(labels, half)
        assert keras.backend.standardize_dtype(values.dtype) == dtype
        expected = numpy(fn(labels, as_float32))
        got = numpy(keras.ops.cast(values, "float32"))
        np.testing.assert_allclose(got, expected, rtol=1e-2, atol=1e-2)


def test_reference_keys_are_not_the_queries():
    # The front end used to drop columns 0..b-1 of `ref_embeddings` from the positives, as if
    # they were the queries themselves.
    from keras_metric_losses import pairs

    y, e = batch([0, 1])
    keys_labels, keys = batch([0, 1, 0], seed=1)
    found = pairs.build(y, e, pairs.Keys.reference(keys, keys_labels))
    np.testing.assert_array_equal(numpy(found.positive), [[1, 0, 1], [0, 1, 0]])
    assert found.self_columns is None


def test_margin_loss_takes_nu_and_ignores_it_with_a_fixed_beta_as_pml():
    y, e = np.array([0, 0, 1, 1]), np.eye(4, 3, dtype="float32")
    np.testing.assert_allclose(
        numpy(kml.margin_loss(y, e, nu=0.1)), numpy(kml.margin_loss(y, e)), rtol=0, atol=0
    )
    assert kml.MarginLoss(nu=0.1).get_config()["nu"] == 0.1
