"""`CoSENTLoss` and `AnglELoss` beyond their reference values (specs/text_pairs.py)."""

import keras
import numpy as np
import pytest
from specs.text_pairs import ranking_reference
from support import finite_difference_grad, numpy, value_and_grad

import keras_metric_losses as kml

RNG = np.random.default_rng(0)
SCORES = RNG.uniform(size=8).astype("float32")
TUPLES = RNG.normal(size=(8, 4, 6)).astype("float32")
PAIRS = TUPLES[:, :2]


def test_a_large_scale_does_not_overflow():
    """With scale 1e4 the exponentials overflow float32: the shifted log-sum-exp is the
    largest difference (plus at most log of the number of terms)."""
    value = numpy(kml.cosent_loss(SCORES, PAIRS, scale=1e4))
    expected = ranking_reference(SCORES, PAIRS, scale=1e4)
    np.testing.assert_allclose(value, expected, rtol=1e-5)
    _, grad = value_and_grad(lambda p: keras.ops.mean(kml.cosent_loss(SCORES, p, scale=1e4)),
                             PAIRS)  # fmt: skip
    assert np.isfinite(grad).all()


@pytest.mark.parametrize(
    "labels",
    [
        [0.5, 0.5, 1.0, 1.0, -np.inf, np.inf, np.inf, 0.2],  # ties and infinite labels
        [0.5, np.nan, 1.0, 0.5, 0.2, np.nan, 0.7, 0.2],  # NaN: lower and higher than none
    ],
    ids=["ties-inf", "nan"],
)
def test_ranking_in_label_order_is_the_sum_over_ordered_pairs(labels):
    """The cumulative log-sum-exp in label order against the sum over every ordered pair:
    value and gradient (central differences of the float64 reference)."""
    labels = np.asarray(labels, "float32")
    value, grad = value_and_grad(lambda p: keras.ops.mean(kml.cosent_loss(labels, p, scale=2.0)),
                                 PAIRS)  # fmt: skip
    np.testing.assert_allclose(value, ranking_reference(labels, PAIRS, scale=2.0)[0], rtol=1e-6)
    expected = finite_difference_grad(
        lambda p: ranking_reference(labels, p, scale=2.0)[0], PAIRS, eps=1e-5
    )
    np.testing.assert_allclose(grad, expected, rtol=1e-4, atol=1e-6)


def test_only_the_order_of_the_labels_matters():
    for loss in (kml.cosent_loss, kml.angle_loss):
        base = numpy(loss(SCORES, PAIRS))
        np.testing.assert_allclose(numpy(loss(np.exp(5 * SCORES), PAIRS)), base, rtol=1e-6)
        np.testing.assert_allclose(numpy(loss(SCORES[:, None], PAIRS)), base, rtol=1e-6)
        ranks = np.argsort(np.argsort(SCORES)).astype("int32")  # integer labels
        np.testing.assert_allclose(numpy(loss(ranks, PAIRS)), base, rtol=1e-6)


def test_equal_labels_give_zero_and_no_gradient():
    labels = np.full(8, 0.3, "float32")
    value, grad = value_and_grad(lambda p: keras.ops.mean(kml.cosent_loss(labels, p)), PAIRS)
    assert value == 0.0 and not grad.any()


def test_angle_tuples_rank_every_anchor_pair():
    """`(anchor, positive, negatives...)`: the anchor against each column, labels `y` for the
    positives and `1 - y` for the negatives; `None`: 1 for the positives."""
    for labels in (SCORES, None):
        expected = ranking_reference(labels, TUPLES, similarity_fct="pairwise_angle_sim")
        np.testing.assert_allclose(numpy(kml.angle_loss(labels, TUPLES)), expected, rtol=1e-5)
    assert not numpy(kml.angle_loss(None, PAIRS)).any()  # two columns, no labels: no order


def test_the_angle_similarity_is_cosent_pairwise_angle_sim():
    np.testing.assert_allclose(
        numpy(kml.angle_loss(SCORES, PAIRS, scale=7.0)),
        numpy(kml.cosent_loss(SCORES, PAIRS, scale=7.0, similarity_fct="pairwise_angle_sim")),
        rtol=1e-6,
    )


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"`similarity_fct`.*Received: similarity_fct='cos_sim'"):
        kml.CoSENTLoss(similarity_fct="cos_sim")
    with pytest.raises(ValueError, match=r"Received: scale=0"):
        kml.AnglELoss(scale=0)
    with pytest.raises(ValueError, match=r"hold 2 columns.*Received: y_pred.shape=\(8, 4, 6\)"):
        kml.cosent_loss(SCORES, TUPLES)
    with pytest.raises(TypeError, match=r"`y_true` must hold numbers.*Received: y_true=None"):
        kml.cosent_loss(None, PAIRS)
