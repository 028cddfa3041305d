"""Instance loss (pytorch-metric-learning's `InstanceLoss`): a softmax over the batch's
scaled cosine similarities, with a target column from the label's rank."""

from keras import ops

from keras_metric_losses import distances, mining, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import compute_dtype


def label_ranks(labels):
    """`[B]` int32 rank of each label among the sorted distinct labels of the batch (what
    `torch.unique(labels, return_inverse=True)` returns), by a sort and a binary search: the
    distinct values of the sorted labels are counted up to each label's first position."""
    ordered = ops.sort(labels)
    first = ops.concatenate(
        [ops.ones_like(ordered[:1], dtype="bool"), ops.not_equal(ordered[1:], ordered[:-1])]
    )
    ranks = ops.cumsum(ops.cast(first, "int32")) - 1
    # A NaN label (value checks off) is sorted last and found past the end: clipped.
    position = ops.minimum(ops.searchsorted(ordered, labels, side="left"), ops.shape(labels)[0] - 1)
    return ops.take(ranks, position)


@export
@hyperparameters(gamma=lambda v, n: validation.real(v, n, low=0.0, low_open=True))
def instance_loss(y_true, y_pred, *, gamma=64.0):
    """Instance loss of a batch of embeddings, one value per example, as
    pytorch-metric-learning's `InstanceLoss`.

    With `S` the `[B, B]` cosine similarities of the batch (the diagonal included) and
    `t_i` the rank of `y_true[i]` among the sorted distinct labels of the batch:

    ```
    loss_i = log sum_j exp(gamma * S[i, j]) - gamma * S[i, t_i]
    ```

    a softmax cross-entropy whose classes are the batch's columns. The target is a *column*,
    so it is the example itself only when the batch's labels are `0..B-1` in batch order (the
    instance-classification setting of the paper: pass `y_true = arange(B)`, or per-batch
    instance ids in order); with other labels the target is whichever example sits in column
    `t_i`, as in pytorch-metric-learning. PML's `MeanReducer` is the mean over all rows, so
    Keras' default reduction gives PML's value.

    Every batch gives a finite value: a batch of one gives 0, an empty batch `[]`.

    Args:
        y_true: `[B]` or `[B, 1]` integer labels.
        y_pred: `[B, D]` embeddings (normalised here, as PML's `CosineSimilarity`).
        gamma: Keyword-only. Scale of the similarities, `> 0`. Defaults to 64.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: for `gamma <= 0`, labels not `[B]`/`[B, 1]`, `y_pred` not rank 2, or
            different batch sizes. With value checks on, also non-integral labels and
            non-finite embeddings.
        TypeError: if the labels are not numbers.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> losses = kml.instance_loss(np.arange(3), embeddings, gamma=4.0)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.199  0.5015 0.3837]

    Reference: Zheng et al., "Dual-Path Convolutional Image-Text Embeddings with Instance
    Loss", ACM TOMM 2020.
    """
    # The embedding front end's checks, without its [B, B] label masks (unused here).
    labels = validation.class_labels(validation.numeric_tensor(y_true, "y_true"))
    embeddings = ops.convert_to_tensor(y_pred)
    validation.rank(embeddings, 2, "a [batch, dim] matrix of embeddings", "y_pred")
    validation.same_batch(labels, embeddings)
    validation.integral_labels(labels, "y_true")
    validation.finite(embeddings, "y_pred")
    unit = ops.normalize(ops.cast(embeddings, compute_dtype(embeddings)), axis=-1)
    logits = distances.inner_product(unit, unit) * gamma
    if logits.shape[0] == 0:  # an empty batch: no max to take
        return ops.cast(ops.sum(logits, axis=-1), ops.convert_to_tensor(y_pred).dtype)
    targets = label_ranks(labels)
    # The target's logit is subtracted before the log-sum-exp, so its term is exactly 0 and
    # the loss is not the difference of two numbers of size `gamma`.
    shifted = logits - ops.expand_dims(mining.take_rows(logits, targets), -1)
    losses = ops.logsumexp(shifted, axis=-1)
    return ops.cast(losses, ops.convert_to_tensor(y_pred).dtype)


@export
class InstanceLoss(LossFunctionWrapper):
    """Instance loss over a batch of embeddings (`instance_loss`), one value per example.

    With the default reduction the value is pytorch-metric-learning's `InstanceLoss()`.

    Args:
        gamma: Scale of the cosine similarities, `> 0`. Defaults to 64.
        name: Name of the loss. Defaults to `"instance_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> round(float(kml.InstanceLoss(gamma=4.0)(np.arange(3), embeddings)), 4)
    0.3614

    Reference: Zheng et al., ACM TOMM 2020.
    """

    def __init__(
        self, gamma=64.0, name="instance_loss", reduction="sum_over_batch_size", dtype=None
    ):
        super().__init__(instance_loss, name=name, reduction=reduction, dtype=dtype, gamma=gamma)
