"""Instance loss (pytorch-metric-learning's `InstanceLoss`): a softmax over the batch's
scaled cosine similarities, with a target column from the label's rank."""

import dataclasses

from keras_metric_losses import distances, mining
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base


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


def instance_elements(pairs, *, gamma):
    """Instance loss of a batch of embeddings, one value per example, as
    pytorch-metric-learning's `InstanceLoss`.

    With `S` the `[B, B]` cosine similarities of the batch (the diagonal included; the
    embeddings are normalised here, as PML's `CosineSimilarity`) and `t_i` the rank of
    `y_true[i]` among the sorted distinct labels of the batch:

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
    pairs = pairs.normalized()
    logits = distances.inner_product(pairs.queries, pairs.keys) * gamma
    # The target's logit is subtracted before the log-sum-exp, so its term is exactly 0 and
    # the loss is not the difference of two numbers of size `gamma`.
    targets = mining.take_rows(logits, label_ranks(pairs.labels))
    return ops.logsumexp(logits - ops.expand_dims(targets, -1), axis=-1)


instance_loss, InstanceLoss = base.declare(
    instance_elements,
    function="instance_loss",
    cls="InstanceLoss",
    original="PML `InstanceLoss`",
    summary="softmax over the batch's columns, the target column from the label's rank",
    positional=("gamma",),
    # Its labels are instance ids, not classes: no warning for a batch without positive pairs.
    inputs=dataclasses.replace(base.EMBEDDINGS, front_end={"warn": False}),
    hyperparameters=dict(gamma=base.positive_real(64.0, "Scale of the similarities, `> 0`.")),
    class_doc="""Instance loss over a batch of embeddings (`instance_loss`), one value per
    example.

    With the default reduction the value is pytorch-metric-learning's `InstanceLoss()`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    >>> round(float(kml.InstanceLoss(gamma=4.0)(np.arange(3), embeddings)), 4)
    0.3614

    Reference: Zheng et al., ACM TOMM 2020.
    """,
)
