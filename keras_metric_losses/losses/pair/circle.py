"""Circle loss: TensorFlow Similarity's `CircleLoss` and, with `joint=True`, the paper's form
that pytorch-metric-learning's `CircleLoss` and `keras.losses.Circle` compute."""

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.ops import masked_logsumexp


def circle_logits(matrix, gamma, margin):
    """`(positive, negative)` `[b, K]` circle logits of a distance matrix (TF Similarity's
    distance form; with `D = 1 - S` they are the paper's similarity logits)."""
    positive = gamma * ops.relu(margin + matrix) * (matrix - margin)
    negative = gamma * ops.relu(1.0 + margin - matrix) * (1.0 - margin - matrix)
    return positive, negative


def circle_elements(pairs, *, distance, gamma, margin, joint):
    """`[b]` circle loss of each query (its one element), 0 for a query without a positive or
    a negative key. `joint=False`: `log(1 + sum_p e^lp) + log(1 + sum_n e^ln)`;
    `joint=True`: `softplus(lse_p + lse_n) = log(1 + sum_p e^lp * sum_n e^ln)`."""
    positive_logits, negative_logits = circle_logits(pairs.distances(distance), gamma, margin)
    add_one = not joint
    positive = masked_logsumexp(positive_logits, pairs.positive, add_one=add_one)
    negative = masked_logsumexp(negative_logits, pairs.negative, add_one=add_one)
    losses = ops.softplus(positive + negative) if joint else positive + negative
    return ops.where(pairs.valid, losses, ops.zeros_like(losses))


def circle_per_anchor(pairs, *, reducer, **hyperparameters):
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
    The settings of PML's and Keras' losses are in `kml.compat`.

    PML treats the weights `max(m + D, 0)` and `max(1 + m - D, 0)` as constants in the
    gradient (`detach`); here, as in TF Similarity and Keras, they are differentiated: same
    values, slightly different gradients. As in TF Similarity the matrix is used as a distance
    whatever it is.

    Example:

    >>> losses = kml.circle_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(3))
    [16.    60.928 16.    60.928]

    Reference: Sun et al., "Circle Loss: A Unified Perspective of Pair Similarity
    Optimization", CVPR 2020.
    """
    losses = circle_elements(pairs, **hyperparameters)
    if reducer == "pml":
        return reduction.nonzero_mean(ops.expand_dims(losses, 1), ops.expand_dims(pairs.valid, 1))
    return losses


circle_loss, CircleLoss = base.declare(
    circle_per_anchor,
    function="circle_loss",
    cls="CircleLoss",
    name="CircleLoss",
    original="TF Similarity `CircleLoss`; `joint=True`: PML `CircleLoss`, `keras.losses.Circle`",
    summary="self-paced pair weights around optima `1 - m` / `m`",
    positional=("distance", "gamma", "margin"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(
        distance=base.Hyperparameter(
            "cosine", distances.check, "A distance name or callable, expected in `[0, 2]`."
        ),
        gamma=base.positive_real(80.0, "Scale, `> 0`."),
        margin=base.real(0.4, "Relaxation margin `m`."),
        joint=base.boolean(
            False, "The paper's joint form (PML, Keras) instead of TF Similarity's sum."
        ),
        normalize=base.normalize(False),
        reducer=base.reducer('`"anchor"` or `"pml"` (mean over the non-zero anchors).'),
    ),
    class_doc="""Circle loss (`circle_loss`) with TensorFlow Similarity's arguments; `joint=True`
    gives the paper's form of PML's `CircleLoss` and `keras.losses.Circle`.

    With the defaults and the default reduction the value is TF Similarity 0.17.1's
    `CircleLoss()`; TF Similarity configs load. `CircleLoss(joint=True, reducer="pml")` equals
    `keras.losses.Circle()` on unit embeddings, and with `normalize=True` PML's
    `CircleLoss(m=margin, gamma=gamma)` on any embeddings.

    Example:

    >>> round(float(kml.CircleLoss()(labels, embeddings)), 3)
    38.464

    Reference: Sun et al., CVPR 2020.
    """,
)
