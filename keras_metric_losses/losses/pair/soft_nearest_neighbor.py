"""Soft nearest neighbour loss (TensorFlow Similarity's `SoftNearestNeighborLoss`)."""

import math

from keras_metric_losses import distances
from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.ops import masked_logsumexp

_LOG_FLOOR = math.log(1e-9)  # TF Similarity adds 1e-9 to the ratio inside its log


def soft_nearest_neighbor_elements(pairs, *, distance, temperature):
    """Soft nearest neighbour loss, one value per anchor, as TensorFlow Similarity 0.17.1's
    `SoftNearestNeighborLoss`.

    With `D = distance(y_pred, y_pred)` and `T = temperature`, each anchor's neighbours get the
    weights `w_ij = exp(-D_ij / T)`; the loss is minus the log of the weight share of its
    positives (the probability that a soft nearest neighbour shares its label):

    ```
    loss_i = -log(1e-9 + sum_{j in P_i} w_ij / sum_{j != i} w_ij)
    ```

    An anchor without a positive gets 0, as in TF Similarity, and so does an anchor without a
    negative (its share is 1; TF Similarity's `-log(1 + 1e-9)` rounds to 0). TF Similarity's
    class averages the anchors, which is Keras' default reduction.

    Difference from TF Similarity: the share is computed in log space (`logsumexp`), so
    distances much larger than `T` give finite values instead of `0 / 0 = NaN` (TF Similarity
    takes `exp(-D / T)` directly: every weight of an anchor underflows to 0 once its distances
    exceed about `87 T` in float32). The `1e-9` floor is kept: a loss never exceeds
    `-log(1e-9) = 20.72`. Float16/bfloat16 embeddings are computed in float32.

    Example:

    >>> losses = kml.soft_nearest_neighbor_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6271 1.1143 0.6271 1.1143]

    Reference: Frosst, Papernot and Hinton, "Analyzing and Improving Representations with the
    Soft Nearest Neighbor Loss", ICML 2019.
    """
    logits = -pairs.distances(distance) / temperature
    others = ops.logical_or(pairs.positive, pairs.negative)  # every key but the query itself
    log_ratio = masked_logsumexp(logits, pairs.positive) - masked_logsumexp(logits, others)
    losses = -ops.logaddexp(log_ratio, _LOG_FLOOR)
    return ops.where(pairs.valid, losses, ops.zeros_like(losses))


soft_nearest_neighbor_loss, SoftNearestNeighborLoss = base.declare(
    soft_nearest_neighbor_elements,
    function="soft_nearest_neighbor_loss",
    cls="SoftNearestNeighborLoss",
    name="SoftNearestNeighborLoss",
    original="TF Similarity `SoftNearestNeighborLoss`",
    summary="`-log` of the weight share `exp(-D / T)` of an anchor's positives (log space)",
    positional=("distance", "temperature"),
    options=(base.KEYS, base.CROSS_REPLICA),
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(
        distance=base.Hyperparameter(
            "sql2", distances.check, 'A distance name or callable (`"sql2"`: squared Euclidean).'
        ),
        temperature=base.positive_real(1.0, "`T > 0`."),
    ),
    class_doc="""Soft nearest neighbour loss (`soft_nearest_neighbor_loss`), as TensorFlow
    Similarity's `SoftNearestNeighborLoss`: with the default reduction the value is TF
    Similarity's.

    Example:

    >>> round(float(kml.SoftNearestNeighborLoss()(labels, embeddings)), 5)
    0.87071

    Reference: Frosst, Papernot and Hinton, ICML 2019.
    """,
)
