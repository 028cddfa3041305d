"""Batch-hard triplet loss (TF Addons' `triplet_hard_loss`), one value per anchor."""

from keras_metric_losses.losses import base
from keras_metric_losses.losses.triplet import common, mined


def hard_elements(pairs, *, margin, soft, distance_metric):
    """Batch-hard triplet loss (TF Addons 0.23), one value per anchor.

    With `D = distance_metric(y_pred, y_pred)`, each anchor `a` takes its farthest positive
    and its closest negative:

    ```
    x_a = max_{p: y_p = y_a, p != a} D[a, p] - min_{n: y_n != y_a} D[a, n]
    v_a = softplus(x_a)                 # soft=True (margin unused, as in TF Addons)
    v_a = max(x_a + margin, 0)          # otherwise
    ```

    TF Addons returns the mean of `v_a` over the batch, which is what `TripletHardLoss` with
    its default reduction returns.

    Degenerate anchors: an anchor without a positive (a class of one) or without a negative
    (a batch of one class) has no triplet and gets 0 with zero gradient. TF Addons keeps them,
    with the row minimum (the self distance, 0) as the positive distance or the row maximum
    as the negative distance, e.g. `max(margin - min_n D[a, n], 0)` for an anchor without
    positive. The softplus is stable (TF Addons' `log1p(exp(x))` overflows above `x ~ 88`).

    Cost: the `[B, B]` distance matrix and two masked reductions over it.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> losses = kml.triplet_hard_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.5858 1.     2.     0.    ]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    arXiv:1703.07737, 2017; `tfa.losses.triplet_hard_loss`.
    """
    return mined.mined_per_anchor(
        pairs, distance_metric, "hard", "hard", soft, margin, pn_step=False
    )


triplet_hard_loss, TripletHardLoss = base.declare(
    hard_elements,
    function="triplet_hard_loss",
    cls="TripletHardLoss",
    original="`tfa.losses.TripletHardLoss`",
    summary="batch-hard triplet loss (farthest positive, closest negative), hinge or soft",
    positional=("margin", "soft", "distance_metric"),
    function_positional=True,
    options=(base.CROSS_REPLICA,),
    hyperparameters=dict(
        margin=base.real(1.0, "The margin, a finite float; unused with `soft=True`."),
        soft=base.boolean(False, "Use the soft margin `softplus(d_pos - d_neg)`."),
        distance_metric=common.DISTANCE_METRIC,
    ),
    class_doc="""Batch-hard triplet loss of TF Addons 0.23 (`triplet_hard_loss`), one value per
    anchor.

    With the default `"sum_over_batch_size"` reduction the value is TF Addons' scalar (for
    batches where every anchor has a positive and a negative); `reduction=None` gives the
    `[B]` per-anchor losses and `sample_weight` weights anchors. TF Addons configs
    (`name: None`, `reduction: "none"`) load with `from_config`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> round(float(kml.TripletHardLoss()(labels, embeddings)), 4)
    0.8964

    Reference: Hermans et al., arXiv:1703.07737; `tfa.losses.TripletHardLoss`.
    """,
)
