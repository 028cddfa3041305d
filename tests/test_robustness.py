"""Degenerate batches, bad inputs and invariances, for every loss on the current backend."""

import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from references import reference_per_anchor
from support import numpy, value_and_grad

import keras_metric_losses as kml

SIMILARITY_LOSSES = [
    pytest.param(kml.npairs_loss, False, id="npairs"),
    pytest.param(kml.npairs_multilabel_loss, True, id="multilabel"),
]


def labels_for(fn_multilabel, labels):
    return np.eye(labels.max() + 1, dtype="float32")[labels] if fn_multilabel else labels


@pytest.mark.parametrize("fn, multilabel", SIMILARITY_LOSSES)
@pytest.mark.parametrize(
    "labels",
    [
        pytest.param([7], id="batch-of-one"),
        pytest.param([2, 2, 2, 2], id="one-class"),
        pytest.param([0, 1, 2, 3], id="all-distinct"),
    ],
)
def test_degenerate_batches_are_finite_and_exact(fn, multilabel, labels):
    labels = np.asarray(labels)
    y_true = labels_for(multilabel, labels)
    rng = np.random.default_rng(0)
    y_pred = rng.normal(size=(len(labels), len(labels))).astype("float32")
    value, grad = value_and_grad(lambda s: fn(y_true, s), y_pred)
    assert np.isfinite(value) and np.isfinite(grad).all()
    np.testing.assert_allclose(value, reference_per_anchor(labels, y_pred).mean(), atol=1e-6)


@pytest.mark.parametrize("fn, multilabel", SIMILARITY_LOSSES)
def test_empty_batch_gives_zero(fn, multilabel):
    y_true = np.zeros((0, 3) if multilabel else (0,), "int32")
    assert numpy(fn(y_true, np.zeros((0, 0), "float32"))) == 0.0


@pytest.mark.parametrize("fn, multilabel", SIMILARITY_LOSSES)
def test_minus_infinity_masks_a_pair_exactly(fn, multilabel):
    labels = np.array([0, 1, 2])
    y_pred = np.array([[1.0, -np.inf, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    expected = np.mean([np.log1p(np.exp(-1.0)), *[np.log1p(2 * np.exp(-1.0))] * 2])
    value, grad = value_and_grad(lambda s: fn(labels_for(multilabel, labels), s), y_pred)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    assert np.isfinite(grad).all() and grad[0, 1] == 0.0


@pytest.mark.parametrize("loss", [kml.npairs_loss, kml.NpairsLoss()], ids=["fn", "class"])
@pytest.mark.parametrize("labels", [np.array(["a", "b"]), np.array([b"a", b"b"])])
def test_non_numeric_labels_raise_type_error(loss, labels):
    with pytest.raises(TypeError, match=r"`y_true` must hold numbers.*dtype="):
        loss(labels, np.eye(2, dtype="float32"))


def test_float_labels_compare_by_value():
    # Documented: labels are compared for equality as given, so float ids work as ids.
    y_pred = np.random.default_rng(1).normal(size=(3, 3)).astype("float32")
    as_float = kml.npairs_loss(np.array([0.5, 0.5, 1.5]), y_pred)
    np.testing.assert_allclose(numpy(as_float), numpy(kml.npairs_loss(np.array([0, 0, 1]), y_pred)))


@st.composite
def labelled_similarity(draw):
    batch = draw(st.integers(1, 12))
    labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, 4)))
    scale = draw(st.sampled_from([0.1, 1.0, 30.0]))
    logits = draw(hnp.arrays(np.float32, (batch, batch), elements=st.floats(-1, 1, width=32)))
    permutation = draw(st.permutations(range(batch)))
    return labels, logits * scale, np.asarray(permutation)


@settings(max_examples=30, deadline=None)
@given(labelled_similarity(), st.integers(0, 2**40))
def test_npairs_properties(case, offset):
    labels, y_pred, permutation = case
    per_anchor = numpy(kml.NpairsLoss(reduction=None)(labels, y_pred))
    expected = reference_per_anchor(labels, y_pred)
    np.testing.assert_allclose(per_anchor, expected, rtol=1e-5, atol=1e-5)
    # Permuting the batch (rows, columns and labels together) permutes the per-anchor losses.
    permuted = numpy(
        kml.NpairsLoss(reduction=None)(labels[permutation], y_pred[permutation][:, permutation])
    )
    np.testing.assert_allclose(permuted, per_anchor[permutation], rtol=1e-5, atol=1e-5)
    # Renaming the classes (an injective map, here large offsets) changes nothing.
    renamed = labels * 7 + offset
    if keras.backend.backend() == "jax":
        renamed = renamed % 2**31  # JAX without x64 holds integers as int32
    np.testing.assert_allclose(
        numpy(kml.NpairsLoss(reduction=None)(renamed, y_pred)), per_anchor, rtol=1e-6, atol=1e-6
    )
