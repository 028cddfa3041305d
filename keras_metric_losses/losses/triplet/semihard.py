"""Semi-hard triplet loss (TF Addons' `triplet_semihard_loss`), one share per anchor."""

from keras_metric_losses import mining
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.triplet import common
from keras_metric_losses.ops import label_equality


def semihard_elements(pairs, *, margin, distance_metric):
    """Semi-hard triplet loss (TF Addons 0.23), as one share per anchor of the batch loss.

    With `D = distance_metric(y_pred, y_pred)`, for every ordered positive pair `(a, p)`
    (same label, `p != a`) the negative is the *semi-hard* one: the closest negative farther
    from the anchor than the positive, or, if there is none, the anchor's farthest negative:

    ```
    d_neg(a, p) = min {D[a, n] : y_n != y_a, D[a, n] > D[a, p]}    (else max_n D[a, n])
    l(a, p)     = max(margin + D[a, p] - d_neg(a, p), 0)
    loss        = sum_{(a, p)} l(a, p) / #P                          (TF Addons' scalar)
    v_a         = B * sum_p l(a, p) / #P                             (returned, [B])
    ```

    `#P` is the number of ordered positive pairs of the batch. TF Addons returns the scalar
    `loss`; this function returns each anchor's share `v_a`, whose mean over the batch is
    exactly that scalar (so `TripletSemiHardLoss()` with its default reduction equals TF
    Addons). A share depends on the whole batch through `#P`: `sample_weight` reweights
    shares of the batch mean, not independent per-anchor losses. With `cross_replica=True`,
    `#P` and `B` are the global batch's, so the mean of the shares over all replicas is the
    global batch's loss.

    Degenerate batches: a batch without positive pairs (every label distinct, a batch of one)
    gives 0 for every anchor and zero gradients (TF Addons: NaN, tensorflow/addons#2447); an
    anchor without a negative (a batch of one class) gives 0 (TF Addons falls back to the row
    minimum and returns `margin + mean D[a, p]`).

    Cost: the `[B, B]` distance matrix, one sort of each row's negatives and a binary search per
    pair: `O(B^2)` memory and `O(B^2 log B)` time (TF Addons builds a `[B^2, B]` tensor).

    Returns:
        `[B]` per-anchor shares in the dtype of `y_pred` (float16/bfloat16 are computed in
        float32).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0])
    >>> embeddings = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
    >>> # TF Addons' example has no negative: 2.4142137 there, 0 here.
    >>> print(keras.ops.convert_to_numpy(kml.triplet_semihard_loss(labels, embeddings)))
    [0. 0.]
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> losses = kml.triplet_semihard_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.5858 0.     1.5858 0.    ]

    Reference: Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and
    Clustering", CVPR 2015; `tfa.losses.triplet_semihard_loss`.
    """
    dist = pairs.distances(distance_metric)
    # One semi-hard negative per (anchor, positive): the threshold is D[a, p] itself.
    negative, has_negative = mining.semi_hard_negatives(dist, pairs.negative, dist)
    losses = ops.relu((margin + dist) - mining.take_rows(dist, negative))
    counted = ops.logical_and(pairs.positive, ops.expand_dims(has_negative, 1))
    row_sums = ops.sum(ops.where(counted, losses, 0), axis=1)
    num_keys = ops.cast(ops.shape(dist)[1], dist.dtype)
    if pairs.keys_are_queries:
        num_positive_pairs = ops.sum(ops.cast(pairs.positive, dist.dtype))
    else:  # cross_replica: the ordered positive pairs of the global batch
        same = ops.cast(label_equality(pairs.key_labels), dist.dtype)
        num_positive_pairs = ops.sum(same) - num_keys
    return ops.divide_no_nan(num_keys * row_sums, num_positive_pairs)


triplet_semihard_loss, TripletSemiHardLoss = base.declare(
    semihard_elements,
    function="triplet_semihard_loss",
    cls="TripletSemiHardLoss",
    original="`tfa.losses.TripletSemiHardLoss`",
    summary=(
        "each positive pair against its semi-hard negative; per-anchor shares whose mean is "
        "TF Addons' scalar (L2, squared-L2, angular or a callable)"
    ),
    positional=("margin", "distance_metric"),
    function_positional=True,
    options=(base.CROSS_REPLICA,),
    hyperparameters=dict(
        margin=base.real(1.0, "The margin, a finite float."),
        distance_metric=common.DISTANCE_METRIC,
    ),
    class_doc="""Semi-hard triplet loss of TF Addons 0.23 (`triplet_semihard_loss`), one share
    per anchor.

    With the default `"sum_over_batch_size"` reduction the value is TF Addons' scalar (for
    batches with a positive pair and a negative; TF Addons gives NaN without positive pairs,
    this class 0). TF Addons' class always reduces to that scalar (`reduction=NONE` and a
    scalar function); here `reduction=None` gives the `[B]` shares whose mean it is. TF
    Addons configs (`name: None`, `reduction: "none"`) load with `from_config`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> round(float(kml.TripletSemiHardLoss()(labels, embeddings)), 4)
    0.5429

    Reference: Schroff et al., CVPR 2015; `tfa.losses.TripletSemiHardLoss`.
    """,
)
