"""Neighbourhood components analysis (pytorch-metric-learning's `NCALoss`)."""

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import pair_matrix
from keras_metric_losses.miners.base import occurrences
from keras_metric_losses.ops import masked_logsumexp


def nca_per_anchor(pairs, *, softmax_scale, distance, reducer):
    """Neighbourhood components analysis loss, one value per anchor: PML's `NCALoss`.

    Each anchor picks a neighbour with the softmax of its scaled similarities to every other
    key (`S`: the similarity, or the negated distance; squared Euclidean by default), and loses
    the log-probability of picking one of its positives:

    ```
    loss_i = -log sum_{j in P_i} exp(s S_ij) / sum_{k != i} exp(s S_ik)
    ```

    computed as a difference of two log-sum-exps (PML takes the log of the softmax's sum, which
    drops an anchor whose positive mass underflows to 0). An anchor without a positive gives 0
    with a zero gradient. Per-anchor values (`reducer`): `"anchor"` (default) `loss_i`; `"pml"`
    its share of the mean over the anchors that have a positive, so Keras' mean of the values
    is PML's scalar. A batch where no anchor has a positive gives 0 (PML: NaN).

    With `miner=`, as in PML, the softmax still runs over every key and every positive counts:
    the miner's selection only weighs each anchor's loss by how many times it appears in the
    mined pairs or triplets (as an anchor, positive or negative; against a gallery or the keys
    of every replica, as an anchor only), divided by the largest count.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.nca_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6271 1.1143 0.6271 1.1143]

    Reference: Goldberger et al., "Neighbourhood Components Analysis", NeurIPS 2004;
    pytorch-metric-learning's `NCALoss`.
    """
    matrix, similarity = pair_matrix(pairs, distance)
    logits = softmax_scale * (matrix if similarity else -matrix)
    every = pairs if pairs.unmined is None else pairs.unmined  # a miner only weighs the rows
    others = every.candidates
    if others is None:  # a gallery: every key is another example
        others = ops.ones_like(logits, dtype="bool")
    losses = masked_logsumexp(logits, others) - masked_logsumexp(logits, every.positive)
    if pairs.unmined is not None:
        counts = occurrences(pairs)
        losses = losses * ops.divide_no_nan(counts, ops.max(counts))
    has_positive = ops.expand_dims(every.has_positive, 1)
    losses = ops.where(has_positive, ops.expand_dims(losses, 1), 0.0)
    return reduction.reduce_elements(losses, has_positive, reducer, reduction.batch_mean)


nca_loss, NCALoss = base.declare(
    nca_per_anchor,
    function="nca_loss",
    cls="NCALoss",
    original="PML `NCALoss`",
    summary="minus the log softmax probability of picking a positive among the other keys",
    positional=("softmax_scale",),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        softmax_scale=base.positive_real(1.0, "Scale `s` of the similarities, `> 0`."),
        distance=base.Hyperparameter(
            "squared_euclidean", distances.check, "A distance name or callable (PML's `distance`)."
        ),
        normalize=base.normalize(True),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""Neighbourhood components analysis loss (`nca_loss`): with `reducer="pml"` and
    the default reduction the value is PML's `NCALoss(softmax_scale)`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.NCALoss()(labels, embeddings)), 4)
    0.8707

    Reference: Goldberger et al., NeurIPS 2004.
    """,
)
