"""The softmax-contrastive losses: the shared core, multi-label SupCon against its NumPy
reference and SupCon, the multi-view and two-tower forms, PML's reducers, gradients."""

import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pml_pair_reference as pml
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from specs.softmax import (
    instance_reference,
    multiview,
    ntxent_reference,
    supcon_multilabel_reference,
    supcon_reference,
)
from support import compiled, examples, finite_difference_grad, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.softmax import core
from keras_metric_losses.losses.softmax.instance import label_ranks

RNG = np.random.default_rng(0)


def embeddings(*shape):
    return RNG.normal(size=shape).astype("float32")


# --- the core ------------------------------------------------------------------------------


def numpy_terms(logits, weights, denominator, pairwise):
    """`sum_j w * (-log p)` and `sum_j w` per row, in float64, from the definitions."""
    x = np.asarray(logits, np.float64)
    lse = pml.pml_logsumexp(x, denominator, False)
    if pairwise:
        with np.errstate(divide="ignore"):
            negatives = np.where(denominator.any(1), lse, -np.inf)
        terms = np.logaddexp(x, negatives[:, None]) - x
    else:
        terms = lse[:, None] - x
    return (weights * terms).sum(1), weights.sum(1)


@pytest.mark.parametrize("pairwise", [False, True])
def test_contrastive_terms_match_their_definition_and_have_finite_gradients(pairwise):
    logits = embeddings(5, 7) * 4
    denominator = RNG.random((5, 7)) < 0.5
    denominator[3] = False  # an anchor with an empty denominator
    weights = (RNG.random((5, 7)) < 0.4) * RNG.integers(1, 3, (5, 7)).astype("float32")
    if not pairwise:  # SupCon's positives are in the denominator
        denominator |= weights > 0
        weights[3] = 0.0
    weights[4] = 0.0  # an anchor without positives
    terms = core.contrastive_terms(logits, weights, denominator, pairwise=pairwise)
    expected_sum, expected_total = numpy_terms(logits, weights, denominator, pairwise)
    np.testing.assert_allclose(numpy(terms.weighted_sum), expected_sum, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(numpy(terms.total_weight), expected_total)
    mean = np.divide(expected_sum, expected_total, out=np.zeros(5), where=expected_total > 0)
    np.testing.assert_allclose(numpy(terms.anchor_mean), mean, rtol=1e-5, atol=1e-5)
    _, grad = value_and_grad(
        lambda x: keras.ops.sum(
            core.contrastive_terms(x, weights, denominator, pairwise=pairwise).anchor_mean
        ),
        logits,
    )
    assert np.isfinite(grad).all() and not grad[4].any()


# --- multi-label SupCon ----------------------------------------------------------------------


@st.composite
def multilabel_batches(draw):
    batch, classes = draw(st.integers(1, 9)), draw(st.integers(1, 4))
    labels = draw(hnp.arrays(np.float32, (batch, classes), elements=st.sampled_from([0.0, 1.0])))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return labels, rng.normal(size=(batch, 3)).astype("float32")


@settings(max_examples=examples(10), deadline=None)
@given(multilabel_batches(), st.sampled_from(["anchor", "pml"]), st.sampled_from([0.1, 0.5]))
def test_supcon_multilabel_matches_its_numpy_reference(batch, reducer, temperature):
    labels, e = batch
    values = kml.supcon_multilabel_loss(labels, e, temperature=temperature, reducer=reducer)
    expected = supcon_multilabel_reference(labels, e, temperature, reducer)
    np.testing.assert_allclose(numpy(values), expected, rtol=1e-5, atol=1e-5)


def test_supcon_multilabel_weights_positives_by_label_overlap():
    """Anchor 0 shares two labels with key 1 and one with key 2: key 1 counts twice."""
    labels = np.array([[1, 1, 0], [1, 1, 0], [0, 1, 0], [0, 0, 1]], "float32")
    e = embeddings(4, 3)
    x = pml.normalize(e) @ pml.normalize(e).T / 0.1
    lse = np.log(np.exp(x[0, 1:]).sum())
    expected = (2 * (lse - x[0, 1]) + (lse - x[0, 2])) / 3
    np.testing.assert_allclose(numpy(kml.supcon_multilabel_loss(labels, e))[0], expected,
                               rtol=1e-5)  # fmt: skip


@pytest.mark.parametrize("reducer", ["anchor", "pml"])
def test_supcon_multilabel_of_one_hot_labels_is_supcon_exactly(reducer):
    labels = np.array([0, 2, 1, 0, 2, 2, 3, 1])
    one_hot = np.eye(4, dtype="float32")[labels]
    for y_pred in (embeddings(8, 5), embeddings(8, 3, 5)):  # and three views of each example
        single = kml.supcon_loss(labels, y_pred, reducer=reducer)
        multi = kml.supcon_multilabel_loss(one_hot, y_pred, reducer=reducer)
        np.testing.assert_array_equal(numpy(multi), numpy(single))
        np.testing.assert_array_equal(
            numpy(kml.SupConMultilabelLoss(reducer=reducer)(one_hot, y_pred)),
            numpy(kml.SupConLoss(reducer=reducer)(labels, y_pred)),
        )


def test_supcon_multilabel_degenerate_anchors_are_zero():
    e = embeddings(4, 3)
    no_label = np.array([[0, 0], [1, 0], [1, 0], [0, 1]], "float32")  # anchor 0: no label
    all_share = np.array([[1, 1], [1, 0], [0, 1], [1, 1]], "float32")  # anchors 0, 3: no negative
    assert numpy(kml.supcon_multilabel_loss(no_label, e))[0] == 0.0
    values = numpy(kml.supcon_multilabel_loss(all_share, e))
    assert values[0] == values[3] == 0.0 and values[1] > 0 and values[2] > 0
    _, grad = value_and_grad(lambda p: keras.ops.sum(kml.supcon_multilabel_loss(no_label, p)), e)
    assert np.isfinite(grad).all()


# --- PML's losses: reducers, views, keys ------------------------------------------------------


@st.composite
def labelled_batches(draw):
    batch = draw(st.integers(1, 10))
    labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, 3)))
    views = draw(st.sampled_from([None, 2]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    shape = (batch, 4) if views is None else (batch, views, 4)
    return (
        labels,
        rng.normal(size=shape).astype("float32"),
        np.asarray(draw(st.permutations(range(batch)))),
    )


REFERENCES = {
    "ntxent": (kml.ntxent_loss, ntxent_reference),
    "supcon": (kml.supcon_loss, supcon_reference),
}


@settings(max_examples=examples(12), deadline=None)
@given(labelled_batches(), st.sampled_from(sorted(REFERENCES)), st.sampled_from(["anchor", "pml"]))
def test_pml_losses_match_the_reference_and_permute_with_the_batch(batch, name, reducer):
    labels, y_pred, permutation = batch
    fn, reference = REFERENCES[name]
    values = numpy(fn(labels, y_pred, temperature=0.5, reducer=reducer))
    expected = multiview(reference)(labels, y_pred, temperature=0.5, reducer=reducer)
    np.testing.assert_allclose(values, expected, rtol=1e-5, atol=1e-5)
    permuted = numpy(fn(labels[permutation], y_pred[permutation], temperature=0.5,
                        reducer=reducer))  # fmt: skip
    np.testing.assert_allclose(permuted, values[permutation], rtol=1e-5, atol=1e-5)


def test_simclr_form_views_or_concatenation_give_pmls_value():
    """PML's SimCLR form `concat(view1, view2)` with `arange(N)` twice, and `[N, 2, D]`."""
    views = embeddings(6, 2, 4)
    flat = np.concatenate([views[:, 0], views[:, 1]])
    ids = np.arange(6)
    expected = pml.ntxent_loss(flat, np.concatenate([ids, ids]), temperature=0.2).loss
    for reducer in ("anchor", "pml"):
        stacked = numpy(kml.ntxent_loss(ids, views, temperature=0.2, reducer=reducer))
        assert stacked.shape == (6,)
        np.testing.assert_allclose(stacked.mean(), expected, rtol=1e-5)
        concatenated = kml.ntxent_loss(np.concatenate([ids, ids]), flat, temperature=0.2,
                                       reducer=reducer)  # fmt: skip
        np.testing.assert_allclose(numpy(concatenated).mean(), expected, rtol=1e-5)
    # Any distinct ids: the examples' indices in a dataset.
    np.testing.assert_allclose(
        numpy(kml.ntxent_loss(ids * 1000 + 7, views, temperature=0.2)),
        numpy(kml.ntxent_loss(ids, views, temperature=0.2)),
    )


@pytest.mark.parametrize("name", sorted(REFERENCES))
def test_two_tower_form_matches_pml_with_reference_embeddings(name):
    """CLIP-style: image anchors against text keys, `y_true = ref_labels = arange(B)`; PML's
    `loss(embeddings, labels, ref_emb=..., ref_labels=...)`."""
    fn = REFERENCES[name][0]
    oracle = {"ntxent": pml.ntxent_loss, "supcon": pml.supcon_loss}[name]
    images, texts = embeddings(6, 4), embeddings(6, 4)
    labels = np.arange(6)
    values = numpy(fn(labels, images, ref_embeddings=texts, ref_labels=labels, reducer="pml"))
    temperature = 0.07 if name == "ntxent" else 0.1
    expected = oracle(images, labels, texts, labels, np.full(6, -1), temperature=temperature)
    np.testing.assert_allclose(values, expected.per_anchor, rtol=1e-5, atol=1e-6)
    # The InfoNCE row of CLIP: a cross-entropy of each image over all texts.
    logits = pml.normalize(images) @ pml.normalize(texts).T / 0.07
    if name == "ntxent":
        clip = np.log(np.exp(logits).sum(1)) - np.diag(logits)
        anchor = numpy(fn(labels, images, ref_embeddings=texts, ref_labels=labels))
        np.testing.assert_allclose(anchor, clip, rtol=1e-5)


@pytest.mark.parametrize("fn", [kml.ntxent_loss, kml.supcon_loss, kml.supcon_multilabel_loss])
@pytest.mark.parametrize("reducer", ["anchor", "pml"])
def test_cross_replica_on_one_device_changes_nothing(fn, reducer):
    labels = np.array([0, 1, 0, 2, 1, 2])
    y_true = np.eye(3, dtype="float32")[labels] if fn is kml.supcon_multilabel_loss else labels
    y_pred = embeddings(6, 2, 4)
    local = numpy(fn(y_true, y_pred, reducer=reducer))
    np.testing.assert_allclose(numpy(fn(y_true, y_pred, reducer=reducer, cross_replica=True)),
                               local, rtol=1e-6)  # fmt: skip


@pytest.mark.parametrize("fn", [kml.ntxent_loss, kml.supcon_loss])
def test_gradients_match_finite_differences_of_the_reference(fn):
    labels = np.array([0, 1, 0, 1, 2, 2])
    e = embeddings(6, 3)
    reference = {kml.ntxent_loss: ntxent_reference, kml.supcon_loss: supcon_reference}[fn]
    for reducer in ("anchor", "pml"):
        _, grad = value_and_grad(
            lambda p, r=reducer: keras.ops.mean(fn(labels, p, temperature=0.5, reducer=r)), e
        )
        numeric = finite_difference_grad(
            lambda p, r=reducer: reference(labels, p, temperature=0.5, reducer=r).mean(), e
        )
        np.testing.assert_allclose(grad, numeric, rtol=1e-3, atol=1e-4)


def test_pml_reducer_zero_loss_batches_and_half_precision_in_float32():
    e = embeddings(4, 3)
    for fn in (kml.ntxent_loss, kml.supcon_loss, kml.fast_ap_loss, kml.instance_loss):
        # No negative pair (not for FastAP: one class has AP = 1) / no positive pair.
        zero_batches = (np.arange(4),) if fn is kml.fast_ap_loss else (np.full(4, 5), np.arange(4))
        for labels in zero_batches if fn is not kml.instance_loss else ():
            values, grad = value_and_grad(
                lambda p, y=labels, f=fn: keras.ops.sum(f(y, p, reducer="pml")), e
            )
            assert values == 0.0 and not grad.any()
        half = fn(np.array([0, 0, 1, 1]), e.astype("float16"))
        assert keras.backend.standardize_dtype(half.dtype) == "float16"
        # Computed in float32 and rounded once to float16.
        full = numpy(fn(np.array([0, 0, 1, 1]), e.astype("float16").astype("float32")))
        np.testing.assert_array_equal(
            numpy(keras.ops.cast(half, "float32")), full.astype("float16").astype("float32")
        )


def test_compiled_multiview_and_reference_keys():
    """(The temperature is passed, the same for both losses: PyTorch 2.13's `torch.compile`
    turns a float default that changes between recompilations of one frame into a symbolic
    float, on which the hyperparameter checks' `math.isfinite` cannot run under
    `fullgraph=True`.)"""
    labels, views = np.array([3, 1, 3, 0]), embeddings(4, 2, 5)
    keys, key_labels = embeddings(7, 5), np.array([3, 0, 1, 1, 2, 3, 0])
    for fn in (kml.ntxent_loss, kml.supcon_loss):

        def multiview(y, p, f=fn):
            return f(y, p, temperature=0.5, reducer="pml")

        def with_keys(y, p, k, kl, f=fn):
            return f(y, p, temperature=0.5, ref_embeddings=k, ref_labels=kl)

        for loss, arrays in ((multiview, (labels, views)),
                             (with_keys, (labels, views[:, 0], keys, key_labels))):  # fmt: skip
            np.testing.assert_allclose(numpy(compiled(loss)(*arrays)), numpy(loss(*arrays)),
                                       rtol=1e-5, atol=1e-6)  # fmt: skip


# --- Instance and FastAP ---------------------------------------------------------------------


def test_instance_targets_are_the_ranks_of_the_labels():
    labels = np.array([2**40 + 5, 7, 2**40 + 5, -3, 7, 0], "int64")
    if keras.backend.backend() == "jax":
        labels = labels % 2**31  # int32 without x64
    _, expected = np.unique(labels, return_inverse=True)
    np.testing.assert_array_equal(numpy(label_ranks(keras.ops.convert_to_tensor(labels))),
                                  expected.reshape(-1))  # fmt: skip
    e = embeddings(6, 4)
    np.testing.assert_allclose(numpy(kml.instance_loss(labels, e, gamma=8.0)),
                               instance_reference(labels, e, gamma=8.0), rtol=1e-5)  # fmt: skip


def test_instance_loss_at_gamma_64_is_accurate_for_small_values():
    """The target's logit is subtracted inside the log-sum-exp: a loss of 1e-3 next to logits
    of 64 keeps its digits."""
    e = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.1], [0.05, -1.0]], "float32")
    values = numpy(kml.instance_loss(np.arange(4), e))
    np.testing.assert_allclose(values, instance_reference(np.arange(4), e), rtol=1e-5)


def test_fast_ap_reducers_and_ordering():
    labels = np.array([0, 0, 1, 1, 2])
    e = np.array([[1, 0], [0.9, 0.1], [0, 1], [0.1, 0.9], [-1, 0]], "float32")
    perfect = numpy(kml.fast_ap_loss(labels, e))
    assert perfect[4] == 0.0 and (perfect[:4] < 0.05).all()  # positives ranked first
    swapped = numpy(kml.fast_ap_loss(np.array([0, 1, 0, 1, 2]), e))
    assert (swapped[:4] > perfect[:4]).all()
    result = pml.fast_ap_loss(e, labels)
    np.testing.assert_allclose(numpy(kml.fast_ap_loss(labels, e, reducer="pml")),
                               result.per_anchor, rtol=1e-5, atol=1e-6)  # fmt: skip


# --- arguments -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: kml.NTXentLoss(temperature=0.0), r"`temperature` must be a finite number > 0"),
        (lambda: kml.SupConLoss(reducer="mean"), r"`reducer` must be one of.*reducer='mean'"),
        (lambda: kml.FastAPLoss(num_bins=0), r"`num_bins` must be a positive int.*=0"),
        (lambda: kml.InstanceLoss(gamma=-1), r"`gamma` must be a finite number > 0"),
        (lambda: kml.NTXentLoss(distance="cosin"), r"Unknown distance.*distance='cosin'"),
        (
            lambda: kml.ntxent_loss(np.arange(3), embeddings(3, 2), ref_embeddings=np.ones((2, 2))),
            r"`ref_embeddings` and `ref_labels` go together",
        ),
        (
            lambda: kml.supcon_multilabel_loss(
                np.ones((3, 2)),
                embeddings(3, 2),
                ref_embeddings=np.ones((2, 2)),
                ref_labels=np.ones((2, 3)),
            ),
            r"must match y_true's classes",
        ),
        (
            lambda: kml.supcon_multilabel_loss(
                np.ones((3, 2)),
                embeddings(3, 2),
                ref_embeddings=np.ones((2, 2)),
                ref_labels=np.ones((2, 2)),
                cross_replica=True,
            ),
            r"cannot be combined with `cross_replica=True`",
        ),
        (
            lambda: kml.supcon_loss(np.arange(3), embeddings(3, 2, 2, 2)),
            r"`y_pred` must be a \[batch, dim\].*\[batch, views, dim\].*\(3, 2, 2, 2\)",
        ),
        (
            lambda: kml.ntxent_loss(np.arange(2), embeddings(3, 2, 2)),
            r"same batch size. Received: y_true.shape=\(2,\) and y_pred.shape=\(3, 2, 2\)",
        ),
    ],
)
def test_bad_arguments_name_what_was_received(call, match):
    with pytest.raises((ValueError, TypeError), match=match):
        call()


def test_configs_round_trip_with_every_hyperparameter():
    loss = kml.NTXentLoss(temperature=0.2, distance="euclidean", reducer="pml",
                          cross_replica=True)  # fmt: skip
    config = loss.get_config()
    assert config["distance"] == "euclidean" and config["cross_replica"] is True
    assert kml.NTXentLoss.from_config(config).get_config() == config
    for cls in (kml.SupConLoss, kml.SupConMultilabelLoss, kml.FastAPLoss, kml.InstanceLoss):
        assert cls.from_config(cls().get_config()).get_config() == cls().get_config()


def test_a_trailing_axis_of_size_one_is_not_taken_for_views():
    """`[B, V, 1]` would be V one-dimensional views: a rank mistake (`emb[:, :, None]`)."""
    embeddings = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    with pytest.raises(ValueError, match=r"trailing axis of size 1.*y_pred.shape=\(8, 4, 1\)"):
        kml.SupConLoss()(np.arange(8) % 4, embeddings[:, :, None])
