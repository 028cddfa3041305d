"""Multi-similarity loss: TensorFlow Similarity's `MultiSimilarityLoss` (with its pair mining);
pytorch-metric-learning's `MultiSimilarityLoss` is the same class with other settings."""

from keras_metric_losses import distances, mining, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.ops import masked_logsumexp


def multi_similarity_elements(
    pairs, *, distance, alpha, beta, epsilon, lmda, center, one_sided
):  # fmt: skip
    """Multi-similarity loss, one value per anchor, as TensorFlow Similarity 0.17.1's
    `MultiSimilarityLoss`; PML's `MultiSimilarityLoss` with other settings (`kml.compat`).

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

    An anchor whose `P'_i` or `N'_i` is empty gets 0 and a zero gradient, as in TF Similarity
    (with `one_sided=True`, as in PML, an empty side adds 0 and the other still counts). Like
    TF Similarity the matrix is used as a distance whatever it is (`"inner_product"` as is);
    `"cosine"` does not normalise (pass unit embeddings, or `normalize=True`).

    PML's `MultiSimilarityLoss(alpha, beta, base)` (no pair mining: that is PML's
    `MultiSimilarityMiner`; normalised embeddings) with its default `CosineSimilarity()` is
    `distance="cosine", normalize=True, lmda=base, center=1.0, epsilon=None, one_sided=True`
    (`D = 1 - S` gives `s = base - S`), and with `LpDistance()`: `distance="euclidean",
    normalize=True, lmda=0.0, center=base, epsilon=None, one_sided=True`. PML averages the
    anchors, which is Keras' default reduction: the class's value is then PML's.

    Cost: one `[B, B]` distance matrix and row reductions, memory `O(B^2)`.

    Example:

    >>> losses = kml.multi_similarity_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.     0.6787 0.     0.6787]

    Reference: Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning", CVPR 2019.
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


def _epsilon(value, name):
    """`None` (no pair mining) or a finite number `>= 0`."""
    return None if value is None else validation.real(value, name, low=0.0)


multi_similarity_loss, MultiSimilarityLoss = base.declare(
    multi_similarity_elements,
    function="multi_similarity_loss",
    cls="MultiSimilarityLoss",
    name="MultiSimilarityLoss",
    original="TF Similarity `MultiSimilarityLoss`; PML `MultiSimilarityLoss` by settings",
    summary="mined positive/negative pairs, `log(1 + sum exp)` per side",
    positional=("distance", "alpha", "beta", "epsilon", "lmda", "center"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(
        distance=base.Hyperparameter("cosine", distances.check, "A distance name or callable."),
        alpha=base.positive_real(2.0, "Scale of the positive terms, `> 0`."),
        beta=base.positive_real(40.0, "Scale of the negative terms, `> 0` (PML: 50)."),
        epsilon=base.Hyperparameter(
            0.1, _epsilon, "Mining slack, `>= 0`, or `None` for no mining (every pair counts)."
        ),
        lmda=base.real(0.5, "The threshold `lambda` (PML's `base` with a cosine distance)."),
        center=base.real(
            1.0, "Subtracted from the distances with `lmda` (`s = D + lmda - center`)."
        ),
        normalize=base.normalize(False),
        one_sided=base.boolean(
            False,
            "Keep an anchor whose positive (negative) side is empty, with its other term (PML).",
        ),
    ),
    class_doc="""Multi-similarity loss (`multi_similarity_loss`), with TensorFlow Similarity's
    arguments; also pytorch-metric-learning's `MultiSimilarityLoss` (`kml.compat`).

    With the defaults and the default reduction the value is TF Similarity 0.17.1's
    `MultiSimilarityLoss()`; TF Similarity configs (`reduction: "auto"`, a distance config
    dict) load. PML's `MultiSimilarityLoss(alpha=2, beta=50, base=0.5)` (cosine similarity) is
    `MultiSimilarityLoss(distance="cosine", alpha=2.0, beta=50.0, lmda=0.5, center=1.0,
    epsilon=None, normalize=True, one_sided=True)`.

    Example:

    >>> round(float(kml.MultiSimilarityLoss()(labels, embeddings)), 5)
    0.33937

    Reference: Wang et al., CVPR 2019.
    """,
)
