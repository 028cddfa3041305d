"""Angular loss (pytorch-metric-learning's `AngularLoss`)."""

import math

import keras
import numpy as np

from keras_metric_losses import reduction, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.distances import inner_product
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import masked
from keras_metric_losses.miners.base import positive_multiplicity
from keras_metric_losses.ops import lowest_finite


def angular_per_anchor(pairs, *, alpha, normalize_negatives, reducer):
    """Angular loss, one value per anchor: PML's `AngularLoss`.

    Each positive pair `(a, p)` (L2-normalised) is pushed away from every negative `x_n` of
    its anchor so that the angle at `x_n` in the triangle `(a, p, x_n)` stays below `alpha`
    (in degrees):

    ```
    l_ap = log(1 + sum_{n in N_a} exp(4 tan^2(alpha) (a + p) . x_n - 2 (1 + tan^2(alpha)) a . p))
    ```

    The sum over the negatives is one matrix product of the `exp` of the anchor's and of the
    positive's products with `x_n`, each shifted by its largest: `O(K^2)` memory for `K` keys
    (`B` in a batch), no `[B, K, K]` tensor. Per-anchor values (`reducer`): `"anchor"`
    (default) the mean of the anchor's `l_ap`; `"pml"` its share of the mean over every
    positive pair (PML's `MeanReducer`). A pair whose anchor has no negative gives 0.

    With `miner=`, as in PML, the mined positive pairs are the pairs `(a, p)`, each counted as
    many times as the mined triplets hold it (once for a pair miner), and each is compared with
    every negative of its anchor, mined or not.

    `normalize_negatives=False` is PML's setting: PML normalises `a` and `p` but takes the
    negatives `x_n` as they are, so the value then depends on their norms (the paper normalises
    all three).

    Example:

    >>> losses = kml.angular_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [1.8947 1.8947 1.8947 1.8947]

    Reference: Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017;
    pytorch-metric-learning's `AngularLoss`.
    """
    normalized = pairs.normalized()
    anchors, keys = normalized.queries, normalized.keys
    negatives = keys if normalize_negatives else pairs.keys
    every = pairs if pairs.unmined is None else pairs.unmined  # a miner selects positive pairs
    tan_squared = math.tan(math.radians(alpha)) ** 2
    anchor_terms = 4.0 * tan_squared * inner_product(anchors, negatives)  # [b, K]: a . x_n
    positive_terms = 4.0 * tan_squared * inner_product(keys, negatives)  # [K, K]: p . x_n
    anchor_shift = _row_max(anchor_terms, every.negative)
    positive_shift = ops.stop_gradient(ops.amax(positive_terms, axis=1, keepdims=True))
    shifted = masked(anchor_terms - anchor_shift, every.negative)
    anchor_exp = masked(ops.exp(shifted), every.negative)
    sums = ops.matmul(anchor_exp, ops.transpose(ops.exp(positive_terms - positive_shift)))
    # Each product is at least exp(-16 tan^2(alpha)) of its largest for unit negatives: a sum
    # underflows only past alpha = 66 degrees, and then stays at the dtype's smallest normal.
    tiny = float(np.finfo(keras.backend.standardize_dtype(sums.dtype)).tiny)
    log_sums = ops.log(ops.maximum(sums, tiny)) + anchor_shift + ops.transpose(positive_shift)
    terms = ops.softplus(log_sums - 2.0 * (1.0 + tan_squared) * inner_product(anchors, keys))
    mask = ops.logical_and(pairs.positive, ops.expand_dims(every.has_negative, 1))
    values = masked(terms, mask)
    return reduction.reduce_weighted(values, positive_multiplicity(pairs), reducer)


def _row_max(values, mask):
    """The largest of each row's `values` where `mask` holds (0 for an empty row), `[n, 1]`,
    as a constant."""
    top = ops.amax(ops.where(mask, values, lowest_finite(values.dtype)), axis=1, keepdims=True)
    return ops.stop_gradient(ops.where(ops.any(mask, axis=1, keepdims=True), top, 0.0))


def _acute_degrees(value, name):
    """A hyperparameter check: an angle in degrees in `(0, 90)`, as a float."""
    value = validation.real(value, name, low=0.0, low_open=True)
    if value >= 90.0:
        raise ValueError(
            f"`{name}` must be an angle in degrees in (0, 90). Received: {name}={value!r}"
        )
    return value


angular_loss, AngularLoss = base.declare(
    angular_per_anchor,
    function="angular_loss",
    cls="AngularLoss",
    original="PML `AngularLoss`",
    summary="each positive pair against every negative, bounding the angle at the negative",
    positional=("alpha",),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        alpha=base.Hyperparameter(40.0, _acute_degrees, "Angle bound in degrees, in `(0, 90)`."),
        normalize_negatives=base.boolean(
            True, "L2-normalise the negatives too (PML: `False`, see the function)."
        ),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""Angular loss (`angular_loss`): with `normalize_negatives=False`,
    `reducer="pml"` and the default reduction the value is PML's `AngularLoss(alpha)`.

    Example:

    >>> round(float(kml.AngularLoss()(labels, embeddings)), 4)
    1.8947

    Reference: Wang et al., ICCV 2017.
    """,
)
