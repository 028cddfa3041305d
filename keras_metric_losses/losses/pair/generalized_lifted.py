"""Generalized lifted structure loss (pytorch-metric-learning's
`GeneralizedLiftedStructureLoss`): one smooth hinge per anchor, no pair terms."""

from keras_metric_losses import distances
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import beyond, pair_matrix
from keras_metric_losses.ops import masked_logsumexp


def generalized_lifted_structure_elements(pairs, *, distance, neg_margin, pos_margin):
    """Generalized lifted structure loss, one value per anchor: PML's
    `GeneralizedLiftedStructureLoss` (whose elements are these per-anchor values).

    With `D = distance(y_pred, y_pred)` (embeddings L2-normalised first when `normalize`):

    ```
    loss_i = max(log sum_{j in P_i} exp(D_ij - pos_margin)
                 + log sum_{l in N_i} exp(neg_margin - D_il), 0)
    ```

    (a smooth version of "farthest positive minus closest negative"; margins flipped for a
    similarity). As in PML an empty sum counts 0: an anchor with only negatives (all labels
    distinct) or only positives (one class) still pays its one term, and a batch of one gives
    0. PML averages the anchors (`MeanReducer`), which is Keras' default reduction: the class's
    value is PML's.

    Example:

    >>> losses = kml.generalized_lifted_structure_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [1.2047 1.783  1.2047 1.783 ]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    arXiv:1703.07737 (the generalized form); pytorch-metric-learning 2.9.
    """
    matrix, similarity = pair_matrix(pairs, distance)
    positive = masked_logsumexp(beyond(matrix, pos_margin, similarity), pairs.positive)
    negative = masked_logsumexp(beyond(neg_margin, matrix, similarity), pairs.negative)
    return ops.relu(positive + negative)


generalized_lifted_structure_loss, GeneralizedLiftedStructureLoss = base.declare(
    generalized_lifted_structure_elements,
    function="generalized_lifted_structure_loss",
    cls="GeneralizedLiftedStructureLoss",
    original="PML `GeneralizedLiftedStructureLoss`",
    summary="`max(lse(positive distances) + lse(margin - negative distances), 0)` per anchor",
    positional=("neg_margin", "pos_margin", "distance", "normalize"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        neg_margin=base.real(1.0, "Margin of the negative distances."),
        pos_margin=base.real(0.0, "Subtracted from the positive distances."),
        distance=base.Hyperparameter(
            "euclidean",
            distances.check,
            "A distance name or callable (margins flip for a similarity).",
        ),
        normalize=base.normalize(True),
    ),
    class_doc="""Generalized lifted structure loss (`generalized_lifted_structure_loss`): with
    the default reduction the value is PML's `GeneralizedLiftedStructureLoss`.

    Example:

    >>> round(float(kml.GeneralizedLiftedStructureLoss()(labels, embeddings)), 5)
    1.49385

    Reference: Hermans et al., arXiv:1703.07737; pytorch-metric-learning 2.9.
    """,
)
