"""Soft nearest neighbour loss (TensorFlow Similarity's `SoftNearestNeighborLoss`)."""

import math

from keras import ops

from keras_metric_losses import distances, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses import pair_terms
from keras_metric_losses.losses.base import (
    LossFunctionWrapper,
    TensorFlowSimilarityConfig,
    hyperparameters,
)
from keras_metric_losses.ops import masked_logsumexp

_LOG_FLOOR = math.log(1e-9)  # TF Similarity adds 1e-9 to the ratio inside its log


def soft_nearest_neighbor_elements(pairs, distance="sql2", temperature=1.0):
    """`[b]` soft nearest neighbour loss of each query, 0 for a query without a positive or a
    negative key: `-log(1e-9 + sum_{P_i} w_ij / sum_{j != i} w_ij)`, `w = exp(-D / T)`,
    computed in log space."""
    logits = -pairs.distances(distance) / temperature
    others = ops.logical_or(pairs.positive, pairs.negative)  # every key but the query itself
    log_ratio = masked_logsumexp(logits, pairs.positive) - masked_logsumexp(logits, others)
    losses = -ops.logaddexp(log_ratio, _LOG_FLOOR)
    return ops.where(pairs.valid, losses, ops.zeros_like(losses))


@export
@hyperparameters(
    distance=distances.check,
    temperature=pair_terms.positive_real,
    cross_replica=validation.boolean,
)
def soft_nearest_neighbor_loss(
    y_true,
    y_pred,
    *,
    distance="sql2",
    temperature=1.0,
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
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

    With `ref_embeddings` / `ref_labels` (a gallery, a cross-batch memory) the neighbours are
    those keys; `cross_replica=True` takes the embeddings of every replica.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        distance: A distance name or callable. Defaults to `"sql2"` (squared Euclidean).
        temperature: `T > 0`. Defaults to 1.0.
        cross_replica: Compare with the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes, an unknown distance, `temperature` not `> 0`; with value
            checks on, also for non-integral labels and non-finite embeddings.
        TypeError: if the labels are not numbers, or `cross_replica` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.soft_nearest_neighbor_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6271 1.1143 0.6271 1.1143]

    Reference: Frosst, Papernot and Hinton, "Analyzing and Improving Representations with the
    Soft Nearest Neighbor Loss", ICML 2019.
    """
    pairs = pair_terms.batch_pairs(y_true, y_pred, ref_embeddings=ref_embeddings,
                                   ref_labels=ref_labels, cross_replica=cross_replica)  # fmt: skip
    if pair_terms.is_empty(pairs):
        return pair_terms.in_dtype_of(pair_terms.zeros(pairs), y_pred)
    losses = soft_nearest_neighbor_elements(pairs, distance, temperature)
    return pair_terms.in_dtype_of(losses, y_pred)


@export
class SoftNearestNeighborLoss(TensorFlowSimilarityConfig, LossFunctionWrapper):
    """Soft nearest neighbour loss (`soft_nearest_neighbor_loss`), as TensorFlow Similarity's
    `SoftNearestNeighborLoss`: with the default reduction the value is TF Similarity's.

    Args:
        distance: A distance name or callable. Defaults to `"sql2"`.
        temperature: `> 0`. Defaults to 1.0.
        name: Defaults to `"SoftNearestNeighborLoss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults
            to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.SoftNearestNeighborLoss()(labels, embeddings)), 5)
    0.87071

    Reference: Frosst, Papernot and Hinton, ICML 2019.
    """

    def __init__(
        self,
        distance="sql2",
        temperature=1.0,
        name="SoftNearestNeighborLoss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            soft_nearest_neighbor_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            distance=distance,
            temperature=temperature,
            cross_replica=cross_replica,
        )
