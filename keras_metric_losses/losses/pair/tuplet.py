"""Tuplet margin loss (pytorch-metric-learning's `TupletMarginLoss`)."""

import math

from keras_metric_losses import reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.distances import inner_product
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import masked
from keras_metric_losses.ops import masked_logsumexp, safe_sqrt


def tuplet_margin_elements(pairs, margin=5.73, scale=64.0):
    """The tuplet margin terms, dense: `{"loss": (values, mask)}`, one term per positive pair
    `(i, j)` whose anchor has a negative (PML's unreduced elements):

    `l_ij = log(1 + sum_{k in N_i} exp(scale * (S_ik - cos(theta_ij - margin))))`, with
    `theta_ij = acos(S_ij)` and `margin` in degrees.
    """
    pairs = pairs.normalized()  # PML's CosineSimilarity always normalises
    similarity = ops.clip(inner_product(pairs.queries, pairs.keys), -1.0, 1.0)
    radians = math.radians(margin)
    # cos(acos(s) - m) = s cos(m) + sqrt(1 - s^2) sin(m): no acos, whose gradient is infinite at
    # s = +-1 (a duplicate positive); `safe_sqrt` has a zero gradient there.
    sine = safe_sqrt(1.0 - ops.square(similarity))
    shifted = similarity * math.cos(radians) + sine * math.sin(radians)
    negatives = masked_logsumexp(scale * similarity, pairs.negative)  # [b]
    terms = ops.softplus(ops.expand_dims(negatives, 1) - scale * shifted)
    mask = ops.logical_and(pairs.positive, ops.expand_dims(pairs.has_negative, 1))
    return {"loss": (masked(terms, mask), mask)}


def tuplet_margin_per_anchor(pairs, *, margin, scale, reducer):
    """Tuplet margin loss, one value per anchor: PML's `TupletMarginLoss`.

    With `S` the cosine similarities of the embeddings (normalised here, as in PML) and
    `theta_ij = acos(S_ij)`, each positive pair `(i, j)` competes with all the anchor's
    negatives after its angle is enlarged by `margin` (in degrees):

    ```
    l_ij = log(1 + sum_{k in N_i} exp(scale * (S_ik - cos(theta_ij - margin))))
    ```

    Per-anchor values (`reducer`): `"anchor"` (default) is the mean of `l_ij` over the anchor's
    positives; `"pml"` is the anchor's share `B * sum_j l_ij / n_pairs` of the mean over the
    `n_pairs` positive pairs of the batch (PML's `MeanReducer`), so Keras' mean of the values
    is PML's `TupletMarginLoss(margin, scale)`.

    An anchor without a positive or a negative gets 0 and a zero gradient (PML returns 0 for a
    batch without positive or negative pairs). Difference from PML: `cos(theta - margin)` is
    computed as `S cos(margin) + sqrt(1 - S^2) sin(margin)` on `S` clipped to `[-1, 1]`, the
    same value without `acos`, whose gradient is infinite (NaN in training) when a positive is
    identical to its anchor; PML's `acos` of a float32 similarity that rounds above 1 is NaN.

    Cost: `O(B^2)` memory (no `[B, B, B]` tensor: the negatives enter through one log-sum-exp
    per anchor).

    Example:

    >>> losses = kml.tuplet_margin_loss(labels, embeddings, scale=8.0)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.1224 1.2322 0.1224 1.2322]

    Reference: Yu and Tao, "Deep Metric Learning with Tuplet Margin Loss", ICCV 2019.
    """
    values, mask = tuplet_margin_elements(pairs, margin, scale)["loss"]
    return reduction.reduce_elements(values, mask, reducer, reduction.batch_mean)


tuplet_margin_loss, TupletMarginLoss = base.declare(
    tuplet_margin_per_anchor,
    function="tuplet_margin_loss",
    cls="TupletMarginLoss",
    original="PML `TupletMarginLoss`",
    summary="angular margin on positives against every negative, scale 64",
    positional=("margin", "scale", "reducer"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        margin=base.real(5.73, "Angular margin in degrees."),
        scale=base.positive_real(64.0, "Scale of the similarities, `> 0`."),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""Tuplet margin loss (`tuplet_margin_loss`): with `reducer="pml"` and the default
    reduction the value is PML's `TupletMarginLoss(margin, scale)`.

    Example:

    >>> round(float(kml.TupletMarginLoss(scale=8.0)(labels, embeddings)), 5)
    0.67727

    Reference: Yu and Tao, ICCV 2019.
    """,
)
