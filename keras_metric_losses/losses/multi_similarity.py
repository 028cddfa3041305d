"""Multi-similarity loss: TensorFlow Similarity's `MultiSimilarityLoss` (with its pair mining);
pytorch-metric-learning's `MultiSimilarityLoss` is the same class with other settings."""

from keras import ops

from keras_metric_losses import distances, mining, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses import pair_terms
from keras_metric_losses.losses.base import (
    LossFunctionWrapper,
    TensorFlowSimilarityConfig,
    hyperparameters,
)
from keras_metric_losses.ops import masked_logsumexp


def _epsilon(value, name):
    """`None` (no pair mining) or a finite number `>= 0`."""
    return None if value is None else validation.real(value, name, low=0.0)


def multi_similarity_elements(
    pairs,
    distance="cosine",
    alpha=2.0,
    beta=40.0,
    epsilon=0.1,
    lmda=0.5,
    center=1.0,
    one_sided=False,
):
    """`[b]` multi-similarity loss of each query (its one element, as in PML).

    Mining (skipped with `epsilon=None`): `P'_i = {j in P_i: D_ij > min_{N_i} D - epsilon}`,
    `N'_i = {j in N_i: D_ij < max_{P_i} D + epsilon}`. With `s = D + lmda - center`:

    ```
    loss_i = log(1 + sum_{P'_i} exp(alpha s_ij)) / alpha
           + log(1 + sum_{N'_i} exp(-beta s_ij)) / beta
    ```

    0 where `P'_i` or `N'_i` is empty, unless `one_sided`: then an empty side adds 0.
    """
    matrix = pairs.distances(distance)
    positive, negative = pairs.positive, pairs.negative
    if epsilon is not None:
        # The thresholds only select pairs: comparisons carry no gradient.
        closest_negative = -mining.masked_max(-matrix, negative)  # +inf without negatives
        farthest_positive = mining.masked_max(matrix, positive)  # -inf without positives
        positive = ops.logical_and(
            positive, matrix > ops.expand_dims(closest_negative, 1) - epsilon
        )
        negative = ops.logical_and(
            negative, matrix < ops.expand_dims(farthest_positive, 1) + epsilon
        )
    shifted = matrix + (lmda - center)
    losses = (
        masked_logsumexp(alpha * shifted, positive, add_one=True) / alpha
        + masked_logsumexp(-beta * shifted, negative, add_one=True) / beta
    )
    if one_sided:
        return losses
    valid = ops.logical_and(ops.any(positive, axis=-1), ops.any(negative, axis=-1))
    return ops.where(valid, losses, ops.zeros_like(losses))


@export
@hyperparameters(
    distance=distances.check,
    alpha=pair_terms.positive_real,
    beta=pair_terms.positive_real,
    epsilon=_epsilon,
    lmda=validation.real,
    center=validation.real,
    normalize=validation.boolean,
    one_sided=validation.boolean,
    cross_replica=validation.boolean,
)
def multi_similarity_loss(
    y_true,
    y_pred,
    *,
    distance="cosine",
    alpha=2.0,
    beta=40.0,
    epsilon=0.1,
    lmda=0.5,
    center=1.0,
    normalize=False,
    one_sided=False,
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Multi-similarity loss, one value per anchor, as TensorFlow Similarity 0.17.1's
    `MultiSimilarityLoss`; PML's `MultiSimilarityLoss` with the settings below.

    With `D = distance(y_pred, y_pred)`, each anchor `i` first mines its informative pairs
    (`epsilon`): positives farther than its closest negative minus `epsilon`, and negatives
    closer than its farthest positive plus `epsilon`,

    ```
    P'_i = {j in P_i : D_ij > min_{l in N_i} D_il - epsilon}
    N'_i = {j in N_i : D_ij < max_{l in P_i} D_il + epsilon}
    ```

    then, with `s_ij = D_ij + lmda - center`,

    ```
    loss_i = 1/alpha log(1 + sum_{j in P'_i} exp(alpha s_ij))
           + 1/beta  log(1 + sum_{j in N'_i} exp(-beta s_ij))
    ```

    An anchor whose `P'_i` or `N'_i` is empty gets 0 and a zero gradient, as in TF Similarity.
    Like TF Similarity the matrix is used as a distance whatever it is (`"inner_product"` as
    is); `"cosine"` does not normalise (pass unit embeddings, or `normalize=True`).

    PML's `MultiSimilarityLoss(alpha, beta, base)` (no pair mining: that is PML's
    `MultiSimilarityMiner`; normalised embeddings; an anchor with one empty side still pays
    the other) is, with its default `CosineSimilarity()`:

    ```python
    multi_similarity_loss(y_true, y_pred, distance="cosine", normalize=True, alpha=alpha,
                          beta=beta, lmda=base, center=1.0, epsilon=None, one_sided=True)
    ```

    (`D = 1 - S` gives `s = base - S`), and with `LpDistance()`: `distance="euclidean",
    normalize=True, lmda=0.0, center=base, epsilon=None, one_sided=True`. PML averages the
    anchors, which is Keras' default reduction: the class's value is then PML's.

    With `ref_embeddings` / `ref_labels` (a gallery, a cross-batch memory) the anchors are
    compared with those keys; `cross_replica=True` compares them with the embeddings of every
    replica. Cost: one `[B, B]` distance matrix and row reductions, memory `O(B^2)`.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        distance: A distance name or callable. Defaults to `"cosine"`.
        alpha: Scale of the positive terms, `> 0`. Defaults to 2.0.
        beta: Scale of the negative terms, `> 0`. Defaults to 40.0 (PML: 50).
        epsilon: Mining slack, `>= 0`, or `None` for no mining (every pair counts). Defaults
            to 0.1.
        lmda: The similarity threshold `lambda` (PML's `base` with a cosine distance).
            Defaults to 0.5.
        center: Subtracted from the distances with `lmda` (`s = D + lmda - center`). Defaults
            to 1.0.
        normalize: L2-normalise the embeddings first. Defaults to `False`.
        one_sided: Keep an anchor whose positive (negative) side is empty, with its other term
            only (PML). Defaults to `False`.
        cross_replica: Compare with the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes, an unknown distance, `alpha`/`beta` not `> 0`, a negative
            `epsilon`; with value checks on, also for non-integral labels and non-finite
            embeddings.
        TypeError: if the labels are not numbers, or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.multi_similarity_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.     0.6787 0.     0.6787]

    Reference: Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning", CVPR 2019.
    """
    pairs = pair_terms.batch_pairs(y_true, y_pred, normalize=normalize,
                                   ref_embeddings=ref_embeddings, ref_labels=ref_labels,
                                   cross_replica=cross_replica)  # fmt: skip
    if pair_terms.is_empty(pairs):
        return pair_terms.in_dtype_of(pair_terms.zeros(pairs), y_pred)
    losses = multi_similarity_elements(pairs, distance, alpha, beta, epsilon, lmda, center,
                                       one_sided)  # fmt: skip
    return pair_terms.in_dtype_of(losses, y_pred)


@export
class MultiSimilarityLoss(TensorFlowSimilarityConfig, LossFunctionWrapper):
    """Multi-similarity loss (`multi_similarity_loss`), with TensorFlow Similarity's arguments;
    also pytorch-metric-learning's `MultiSimilarityLoss`.

    With the defaults and the default reduction the value is TF Similarity 0.17.1's
    `MultiSimilarityLoss()`; TF Similarity configs (`reduction: "auto"`, a distance config
    dict) load. PML's `MultiSimilarityLoss(alpha=2, beta=50, base=0.5)` (cosine similarity) is

    ```python
    kml.MultiSimilarityLoss(distance="cosine", alpha=2.0, beta=50.0, lmda=0.5, center=1.0,
                            epsilon=None, normalize=True, one_sided=True)
    ```

    and with `LpDistance()`: `distance="euclidean", lmda=0.0, center=base` and the same flags.

    Args:
        distance: A distance name or callable. Defaults to `"cosine"`.
        alpha: Scale of the positive terms. Defaults to 2.0.
        beta: Scale of the negative terms. Defaults to 40.0.
        epsilon: Mining slack, or `None` for no mining. Defaults to 0.1.
        lmda: Similarity threshold. Defaults to 0.5.
        center: Defaults to 1.0.
        name: Defaults to `"MultiSimilarityLoss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        normalize: Keyword-only. L2-normalise the embeddings first. Defaults to `False`.
        one_sided: Keyword-only. Keep anchors with one empty side (PML). Defaults to `False`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults
            to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.MultiSimilarityLoss()(labels, embeddings)), 5)
    0.33937

    Reference: Wang et al., CVPR 2019.
    """

    def __init__(
        self,
        distance="cosine",
        alpha=2.0,
        beta=40.0,
        epsilon=0.1,
        lmda=0.5,
        center=1.0,
        name="MultiSimilarityLoss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        normalize=False,
        one_sided=False,
        cross_replica=False,
    ):
        super().__init__(
            multi_similarity_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            distance=distance,
            alpha=alpha,
            beta=beta,
            epsilon=epsilon,
            lmda=lmda,
            center=center,
            normalize=normalize,
            one_sided=one_sided,
            cross_replica=cross_replica,
        )
