"""Smooth-AP (pytorch-metric-learning's `SmoothAPLoss`): one minus each anchor's average
precision, its ranks smoothed by a sigmoid."""

from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.soft_rank import own_column, soft_ranks


def smooth_ap_per_anchor(pairs, *, temperature):
    """Smooth-AP loss, one value per anchor: PML's `SmoothAPLoss` for any layout of labels.

    With `S` the cosine similarity and `P_i` the examples of anchor `i`'s class (itself
    included), each `l` in `P_i` has a soft rank among the whole batch and among `P_i`:

    ```
    R(i, l)   = 1 + sum_{m != l}         sigmoid((S[i, m] - S[i, l]) / temperature)
    R_P(i, l) = 1 + sum_{m in P_i, m != l} sigmoid((S[i, m] - S[i, l]) / temperature)
    loss_i    = 1 - mean_{l in P_i} R_P(i, l) / R(i, l)
    ```

    Keras' mean of the values is PML's `MeanReducer` over every anchor. PML 2.9.0 is right
    only when the batch is contiguous blocks of one class each, every block as long as the
    number of classes (`[A, A, A, B, B, B, C, C, C]`): other layouts with equal class counts
    give a wrong value and unequal counts raise. Here the positives come from the labels, so
    any batch works (an anchor alone in its class still ranks itself: `1 - 1 / R(i, i)`).

    Memory: the soft ranks go by blocks of anchors, `[rows, B, B]` tiles recomputed in the
    backward pass (PML holds several `[B, B, B]` tensors); time `O(B^3)` as PML's.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.smooth_ap_loss(labels, embeddings, temperature=0.1)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.0378 0.3042 0.0378 0.3042]

    Reference: Brown et al., "Smooth-AP: Smoothing the Path Towards Large-Scale Image
    Retrieval", ECCV 2020; pytorch-metric-learning's `SmoothAPLoss`.
    """
    similarity = pairs.distances("cosine_similarity")
    same_class = ops.cast(ops.logical_or(pairs.positive, own_column(pairs)), similarity.dtype)
    weights = ops.stack([ops.ones_like(same_class), same_class], axis=-1)
    # The sums over m include m = l, sigmoid(0) = 1/2: 1 + sum_{m != l} = 1/2 + sum_m.
    ranks = 0.5 + soft_ranks(similarity, weights, temperature=temperature)
    precision = ops.sum(same_class * ranks[..., 1] / ranks[..., 0], axis=1)
    return 1.0 - precision / ops.sum(same_class, axis=1)


smooth_ap_loss, SmoothAPLoss = base.declare(
    smooth_ap_per_anchor,
    function="smooth_ap_loss",
    cls="SmoothAPLoss",
    original="PML `SmoothAPLoss`",
    summary="one minus each anchor's average precision, its ranks smoothed by a sigmoid",
    positional=("temperature",),
    hyperparameters=dict(
        temperature=base.positive_real(0.01, "Temperature of the sigmoid, `> 0`."),
    ),
    class_doc="""Smooth-AP loss (`smooth_ap_loss`): with the default reduction the value is
    PML's `SmoothAPLoss(temperature)` wherever PML's is right (see the function).

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.SmoothAPLoss(temperature=0.1)(labels, embeddings)), 4)
    0.171

    Reference: Brown et al., ECCV 2020.
    """,
)
