"""Threshold-consistent margin loss (pytorch-metric-learning's `ThresholdConsistentMarginLoss`)."""

from keras_metric_losses import reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import masked


def threshold_consistent_margin_per_anchor(
    pairs, *, lambda_plus, lambda_minus, margin_plus, margin_minus, reducer
):  # fmt: skip
    """Threshold-consistent margin loss, one value per anchor: PML's
    `ThresholdConsistentMarginLoss`.

    With `S` the cosine similarity of each pair, the positive pairs less similar than
    `margin_plus` and the negative pairs more similar than `margin_minus` pay their gap, each
    kind averaged over the pairs that pay:

    ```
    loss = lambda_plus  mean_{positive, S <= margin_plus}  (margin_plus - S)
         + lambda_minus mean_{negative, S >= margin_minus} (S - margin_minus)
    ```

    A kind with no such pair adds 0. Per-anchor values (`reducer`): `"anchor"` (default) is
    the anchor's own two means; `"pml"` its share of the batch's means, so that Keras' mean of
    the values is PML's scalar. Unlike PML (which looks both ends of a pair up in the batch,
    reading the wrong rows or failing with a gallery), `ref_embeddings` and a cross-batch
    memory work as for the other losses.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.threshold_consistent_margin_loss(labels, embeddings, reducer="pml")
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.1667 0.4733 0.1667 0.4733]

    Reference: Zhang et al., "Threshold-Consistent Margin Loss for Open-World Deep Metric
    Learning", ICLR 2024; pytorch-metric-learning's `ThresholdConsistentMarginLoss`.
    """
    similarity = pairs.distances("cosine_similarity")
    sides = (
        (pairs.positive, lambda_plus, margin_plus - similarity),
        (pairs.negative, lambda_minus, similarity - margin_minus),
    )
    values = 0.0
    for mask, weight, gap in sides:
        paying = ops.logical_and(mask, gap >= 0)
        terms = masked(gap, paying)
        values = values + weight * reduction.reduce_elements(
            terms, paying, reducer, reduction.batch_mean
        )
    return values


threshold_consistent_margin_loss, ThresholdConsistentMarginLoss = base.declare(
    threshold_consistent_margin_per_anchor,
    function="threshold_consistent_margin_loss",
    cls="ThresholdConsistentMarginLoss",
    original="PML `ThresholdConsistentMarginLoss`",
    summary="hinges of the positive and negative cosines at two margins, each kind's mean",
    positional=("lambda_plus", "lambda_minus", "margin_plus", "margin_minus"),
    options=(base.KEYS, base.MINER),
    hyperparameters=dict(
        lambda_plus=base.real(1.0, "Weight of the positive pairs' mean hinge."),
        lambda_minus=base.real(1.0, "Weight of the negative pairs' mean hinge."),
        margin_plus=base.real(0.9, "Positive pairs less similar than this pay."),
        margin_minus=base.real(0.5, "Negative pairs more similar than this pay."),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""Threshold-consistent margin loss (`threshold_consistent_margin_loss`): with
    `reducer="pml"` and the default reduction the value is PML's
    `ThresholdConsistentMarginLoss(lambda_plus, lambda_minus, margin_plus, margin_minus)`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.ThresholdConsistentMarginLoss(reducer="pml")(labels, embeddings)), 4)
    0.32

    Reference: Zhang et al., ICLR 2024.
    """,
)
