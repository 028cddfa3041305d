"""Circle loss: TensorFlow Similarity's `CircleLoss` and, with `joint=True`, the paper's form
that pytorch-metric-learning's `CircleLoss` and `keras.losses.Circle` compute."""

from keras import ops

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses import pair_terms
from keras_metric_losses.losses.base import (
    LossFunctionWrapper,
    TensorFlowSimilarityConfig,
    hyperparameters,
)
from keras_metric_losses.ops import masked_logsumexp


def circle_logits(matrix, gamma, margin):
    """`(positive, negative)` `[b, K]` circle logits of a distance matrix (TF Similarity's
    distance form; with `D = 1 - S` they are the paper's similarity logits)."""
    positive = gamma * ops.relu(margin + matrix) * (matrix - margin)
    negative = gamma * ops.relu(1.0 + margin - matrix) * (1.0 - margin - matrix)
    return positive, negative


def circle_elements(pairs, distance="cosine", gamma=80.0, margin=0.4, joint=False):
    """`[b]` circle loss of each query (its one element), 0 for a query without a positive or
    a negative key. `joint=False`: `log(1 + sum_p e^lp) + log(1 + sum_n e^ln)`;
    `joint=True`: `softplus(lse_p + lse_n) = log(1 + sum_p e^lp * sum_n e^ln)`."""
    positive_logits, negative_logits = circle_logits(pairs.distances(distance), gamma, margin)
    add_one = not joint
    positive = masked_logsumexp(positive_logits, pairs.positive, add_one=add_one)
    negative = masked_logsumexp(negative_logits, pairs.negative, add_one=add_one)
    losses = ops.softplus(positive + negative) if joint else positive + negative
    return ops.where(pairs.valid, losses, ops.zeros_like(losses))


@export
@hyperparameters(
    distance=distances.check,
    gamma=pair_terms.positive_real,
    margin=validation.real,
    joint=validation.boolean,
    normalize=validation.boolean,
    reducer=pair_terms.check_reducer,
    cross_replica=validation.boolean,
)
def circle_loss(
    y_true,
    y_pred,
    *,
    distance="cosine",
    gamma=80.0,
    margin=0.4,
    joint=False,
    normalize=False,
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Circle loss, one value per anchor, as TensorFlow Similarity 0.17.1's `CircleLoss`; with
    `joint=True`, the paper's form (PML's `CircleLoss`, `keras.losses.circle`).

    With `D = distance(y_pred, y_pred)` (the cosine distance `1 - S` of unit embeddings by
    default) and `m = margin`, the pair logits weight each pair by how far it is from its
    optimum:

    ```
    lp_ij = gamma * max(m + D_ij, 0) * (D_ij - m)              (positives, j in P_i)
    ln_ij = gamma * max(1 + m - D_ij, 0) * (1 - m - D_ij)      (negatives, j in N_i)
    ```

    and

    ```
    loss_i = log(1 + sum_j exp(lp_ij)) + log(1 + sum_j exp(ln_ij))     # joint=False (TF Sim.)
    loss_i = log(1 + sum_j exp(lp_ij) * sum_k exp(ln_ik))              # joint=True (paper)
    ```

    The paper's form (Sun et al., eq. 1, with `S = 1 - D`) sums over every (positive,
    negative) pair jointly: `softplus(lse(lp) + lse(ln))`. TF Similarity adds two separate
    softplus terms, an upper bound of it (`log((1 + a)(1 + b)) >= log(1 + ab)`): the values
    differ by a few percent and more. An anchor without a positive or without a negative gets
    0 and a zero gradient in both forms.

    Per-anchor values (`reducer`): `"anchor"` (default) is `loss_i` itself, whose mean is TF
    Similarity's batch value; `"pml"` is anchor `i`'s share `B * loss_i / n_nonzero` of the
    mean over the anchors whose loss is `> 0` (PML's `AvgNonZeroReducer`, and Keras' `Circle`,
    which masks the zero losses out of its mean), so Keras' mean of the values is that number.

    Settings of the originals (the class's value with the default reduction):

    | original | here |
    | --- | --- |
    | TF Similarity `CircleLoss(distance, gamma, margin)` | the defaults |
    | PML `CircleLoss(m, gamma)` (normalises) | `joint=True, normalize=True, reducer="pml"` |
    | `keras.losses.Circle(gamma, margin)` (unit embeddings) | `joint=True, reducer="pml"` |
    | `keras.losses.circle(...)` (per anchor) | `circle_loss(..., joint=True)` |

    (PML's `m` is `margin`.)

    PML treats the weights `max(m + D, 0)` and `max(1 + m - D, 0)` as constants in the
    gradient (`detach`); here, as in TF Similarity and Keras, they are differentiated: same
    values, slightly different gradients. As in TF Similarity the matrix is used as a distance
    whatever it is.

    With `ref_embeddings` / `ref_labels` (a gallery, a cross-batch memory) the anchors are
    compared with those keys; `cross_replica=True` with the embeddings of every replica.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings (unit length for `"cosine"`, or `normalize=True`).
        distance: A distance name or callable, expected in `[0, 2]`. Defaults to `"cosine"`.
        gamma: Scale, `> 0`. Defaults to 80.0.
        margin: Relaxation margin `m`. Defaults to 0.4.
        joint: The paper's joint form instead of TF Similarity's sum. Defaults to `False`.
        normalize: L2-normalise the embeddings first. Defaults to `False`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        cross_replica: Compare with the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes, an unknown distance or reducer, `gamma` not `> 0`; with
            value checks on, also for non-integral labels and non-finite embeddings.
        TypeError: if the labels are not numbers, or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.circle_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(3))
    [16.    60.928 16.    60.928]

    Reference: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
    Optimization", CVPR 2020.
    """
    pairs = pair_terms.batch_pairs(y_true, y_pred, normalize=normalize,
                                   ref_embeddings=ref_embeddings, ref_labels=ref_labels,
                                   cross_replica=cross_replica)  # fmt: skip
    if pair_terms.is_empty(pairs):
        return pair_terms.in_dtype_of(pair_terms.zeros(pairs), y_pred)
    losses = circle_elements(pairs, distance, gamma, margin, joint)
    if reducer == "pml":
        losses = reduction.nonzero_mean(ops.expand_dims(losses, 1), ops.expand_dims(pairs.valid, 1))
    return pair_terms.in_dtype_of(losses, y_pred)


@export
class CircleLoss(TensorFlowSimilarityConfig, LossFunctionWrapper):
    """Circle loss (`circle_loss`) with TensorFlow Similarity's arguments; `joint=True` gives
    the paper's form of PML's `CircleLoss` and `keras.losses.Circle`.

    With the defaults and the default reduction the value is TF Similarity 0.17.1's
    `CircleLoss()`; TF Similarity configs load. `CircleLoss(joint=True, reducer="pml")` equals
    `keras.losses.Circle()` on unit embeddings, and with `normalize=True` PML's
    `CircleLoss(m=margin, gamma=gamma)` on any embeddings. See `circle_loss`.

    Args:
        distance: A distance name or callable. Defaults to `"cosine"`.
        gamma: Scale, `> 0`. Defaults to 80.0.
        margin: Relaxation margin. Defaults to 0.4.
        name: Defaults to `"CircleLoss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        joint: Keyword-only. The paper's joint form (PML, Keras). Defaults to `False`.
        normalize: Keyword-only. L2-normalise the embeddings first. Defaults to `False`.
        reducer: Keyword-only. `"anchor"` or `"pml"` (mean over the non-zero anchors).
            Defaults to `"anchor"`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults
            to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.CircleLoss()(labels, embeddings)), 3)
    38.464

    Reference: Sun et al., CVPR 2020.
    """

    def __init__(
        self,
        distance="cosine",
        gamma=80.0,
        margin=0.4,
        name="CircleLoss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        joint=False,
        normalize=False,
        reducer="anchor",
        cross_replica=False,
    ):
        super().__init__(
            circle_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            distance=distance,
            gamma=gamma,
            margin=margin,
            joint=joint,
            normalize=normalize,
            reducer=reducer,
            cross_replica=cross_replica,
        )
