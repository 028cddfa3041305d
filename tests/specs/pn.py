"""The PN loss (TF Similarity)."""

import keras
import numpy as np
from pn_reference import pn_reference

import keras_metric_losses as kml
from specs import Spec
from specs.kinds import EMBEDDINGS

SPECS = [
    Spec(
        kml.pn_loss,
        kml.PNLoss,
        EMBEDDINGS,
        "triplet",
        kwargs={"negative_mining_strategy": "hard"},  # semi-hard mining jumps under rounding
        reference=lambda y, e: pn_reference(y, e, negative_mining_strategy="hard")[0],
        cross_replica=True,
    ),
]

RTOL = 1e-5


def assert_matches_golden(values, case):
    """Every per-anchor value within 1e-5 relative, and the mean within 1e-5 relative.

    "Relative" is relative to the larger of the value and the two distances it is the
    difference of (`|d_pos| + |d_neg|`). For almost every anchor that is the value itself. A
    handful of anchors in the squared-Euclidean and inner-product cases (unnormalised
    embeddings, distances up to ~100) have losses of 1e-3..1e-7 that are the difference of two
    large distances: there TensorFlow Similarity's own float32 value carries an error of a few
    float32 ulps of the distances (its soft margin `log(exp(-x) + 1) + x` even returns 0.0 for
    a true 3.1e-7), so float32 results of any other implementation - or the float64 NumPy
    reference - can only agree to 1e-5 of the distances' scale.
    """
    values = np.asarray(values, np.float64)
    expected = np.asarray(case["expected_per_example"])
    _, pos_dist, neg_dist = pn_reference(case["y_true"], case["y_pred"], **case["kwargs"])
    scale = np.maximum(np.abs(expected), np.abs(pos_dist) + np.abs(neg_dist))
    assert np.all(np.abs(values - expected) <= RTOL * scale), (values, expected)
    np.testing.assert_allclose(values.mean(), case["expected"], rtol=RTOL)


def check_case(case, run):
    """The class with `reduction=None` and the function give TF Similarity's per-anchor values."""
    y_true, y_pred = np.asarray(case["y_true"]), np.asarray(case["y_pred"], dtype=case["dtype"])
    loss = kml.PNLoss(reduction=None, **case["kwargs"])
    for fn in (loss, lambda y, e: kml.pn_loss(y, e, **case["kwargs"])):
        values = run(fn, y_true, y_pred)
        assert tuple(values.shape) == (len(y_true),)
        assert keras.backend.standardize_dtype(values.dtype) == "float32"
        assert_matches_golden(keras.ops.convert_to_numpy(values), case)


GOLDEN = {("pn.json", "PNLoss"): check_case}
