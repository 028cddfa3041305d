"""Intra-pair variance loss (pytorch-metric-learning's `IntraPairVarianceLoss`)."""

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import masked, pair_matrix


def intra_pair_variance_per_anchor(pairs, *, pos_eps, neg_eps, distance, reducer):
    """Intra-pair variance loss, one value per anchor: PML's `IntraPairVarianceLoss`.

    With `S` the similarity of each pair (cosine by default) and `mu+`, `mu-` the mean over the
    positive pairs and over the negative pairs of the batch, the pairs that lag behind their
    kind's mean pay the square of the gap:

    ```
    pos_ij = max((1 - pos_eps) mu+ - S_ij, 0)^2        (positive pairs)
    neg_ij = max(S_ij - (1 + neg_eps) mu-, 0)^2        (negative pairs)
    ```

    For a distance the sides flip: `max(D_ij - (1 + pos_eps) mu+, 0)^2` and
    `max((1 - neg_eps) mu- - D_ij, 0)^2`. The means are differentiated, as in PML, and with
    `cross_replica=True` they are those of the global batch.

    Per-anchor values (`reducer`): `"anchor"` (default) is the mean of the anchor's positive
    terms plus the mean of its negative terms; `"pml"` is its share of PML's mean over the
    positive pairs plus its mean over the negative pairs (`MeanReducer` on each, added), so
    Keras' mean of the values is `IntraPairVarianceLoss(pos_eps, neg_eps)`'s.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1, 0])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [0.6, -0.8]])
    >>> losses = kml.intra_pair_variance_loss(labels, embeddings, reducer="pml")
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.0729 0.5105 0.0729 0.3252 0.1853]

    Reference: Kwon et al., "Revisiting Intra-pair Variance for Deep Metric Learning",
    ICCV 2019 workshop; pytorch-metric-learning's `IntraPairVarianceLoss`.
    """
    matrix, similarity = pair_matrix(pairs, distance)
    values = 0.0
    for mask, eps, pulled_up in ((pairs.positive, pos_eps, similarity),
                                 (pairs.negative, neg_eps, not similarity)):  # fmt: skip
        mean = _batch_mean(matrix, mask, pairs.cross_replica)
        gap = (1.0 - eps) * mean - matrix if pulled_up else matrix - (1.0 + eps) * mean
        terms = ops.square(ops.relu(gap))  # the reduction takes the kind's pairs only
        values = values + reduction.reduce_elements(terms, mask, reducer, reduction.batch_mean)
    return values


def _batch_mean(matrix, mask, cross_replica):
    """The mean of `matrix` over `mask`, of every replica's batch with `cross_replica`."""
    total = reduction.batch_sum(ops.sum(masked(matrix, mask)), cross_replica)
    pairs = reduction.batch_total(reduction.count(mask, "float32"), cross_replica)
    return ops.divide_no_nan(total, ops.cast(pairs, matrix.dtype))


intra_pair_variance_loss, IntraPairVarianceLoss = base.declare(
    intra_pair_variance_per_anchor,
    function="intra_pair_variance_loss",
    cls="IntraPairVarianceLoss",
    original="PML `IntraPairVarianceLoss`",
    summary="squared gaps of the pairs behind their kind's batch mean similarity",
    positional=("pos_eps", "neg_eps"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        pos_eps=base.real(0.01, "Positive pairs within this fraction of their mean pay nothing."),
        neg_eps=base.real(0.01, "Negative pairs within this fraction of their mean pay nothing."),
        distance=base.Hyperparameter(
            "cosine_similarity", distances.check, "A distance name or callable (PML's `distance`)."
        ),
        normalize=base.normalize(True),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""Intra-pair variance loss (`intra_pair_variance_loss`): with `reducer="pml"`
    and the default reduction the value is PML's `IntraPairVarianceLoss(pos_eps, neg_eps)`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1, 0])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8], [0.6, -0.8]])
    >>> round(float(kml.IntraPairVarianceLoss(reducer="pml")(labels, embeddings)), 4)
    0.2333

    Reference: Kwon et al., ICCV 2019 workshop.
    """,
)
