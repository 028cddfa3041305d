"""Any loss on labelled embeddings as a two-view loss (pytorch-metric-learning's
`SelfSupervisedLoss`)."""

import keras

from keras_metric_losses import backend, pairs, validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.losses.wrapper import LossFunctionWrapper, PerExampleLoss


@export
class SelfSupervisedLoss(StrictConfig, PerExampleLoss):
    """A loss on class labels and embeddings, turned into a loss of two views of each example:
    PML's `SelfSupervisedLoss`.

    The two views `a_i`, `b_i` of example `i` (`y_pred[i, 0]`, `y_pred[i, 1]`) get the label
    `i`, so each view's only positive is the other view and every other example is a negative:

    ```
    symmetric=True:   loss(concat(labels, labels), concat(a, b))        (2B anchors)
    symmetric=False:  loss(labels, a, ref_embeddings=b, ref_labels=labels)  (B anchors)
    ```

    With `symmetric=True` an example's value is the mean of its two rows' values (the mean of
    the batch is PML's mean over the `2B` rows); with `symmetric=False` the rows of `a` are the
    anchors and the rows of `b` the keys, which needs a loss that takes `ref_embeddings`. When
    the wrapped loss compares with every replica (`cross_replica=True`), replica `r`'s labels
    are `r * B + i`, so that the examples of other replicas are negatives.

    Args:
        loss: A loss of this package on class labels and embeddings (for example
            `kml.NTXentLoss(temperature=0.1)`), with its hyperparameters; its `reduction`,
            `name` and `dtype` are not used.
        symmetric: Both views are anchors. Defaults to `True`.
        name: Name of the loss. Defaults to `"self_supervised_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or dtype policy. Defaults to `keras.config.floatx()`.

    Call arguments:
        y_true: Unused (any value, e.g. `None`).
        y_pred: `[B, 2, D]`: the two views of each example.

    Returns:
        `[B]` per-example values, reduced by `reduction`.

    Raises:
        TypeError: if `loss` is not a loss of this package on class labels and embeddings, or
            `symmetric` is not a bool.
        ValueError: with `symmetric=False`, for a loss that takes no `ref_embeddings`; when
            called, if `y_pred` is not `[B, 2, D]`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])  # [3 examples, 2 views, 2]
    >>> loss = kml.SelfSupervisedLoss(kml.NTXentLoss(temperature=0.5))
    >>> round(float(loss(None, views)), 4)
    0.4521

    Reference: pytorch-metric-learning's `SelfSupervisedLoss`.
    """

    summary = "any loss on labelled embeddings as a loss of two views of each example"

    def __init__(self, loss, symmetric=True, name="self_supervised_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(loss, dict):
            loss = keras.saving.deserialize_keras_object(loss)
        declaration = getattr(loss, "declaration", None)
        if (
            not isinstance(loss, LossFunctionWrapper)
            or declaration is None
            or declaration.inputs.front_end is None
            or declaration.inputs.front_end.get("multi_hot")
        ):
            raise TypeError(
                "`loss` must be a loss of keras_metric_losses on class labels and embeddings "
                f"(for example `kml.NTXentLoss()`). Received: loss={loss!r}"
            )
        self.symmetric = validation.boolean(symmetric, "symmetric")
        if not self.symmetric and not declaration.supports_keys:
            raise ValueError(
                f"`symmetric=False` compares the first views with the second as keys, which "
                f"`{type(loss).__name__}` does not take. Received: symmetric=False"
            )
        self.loss = loss

    def call(self, y_true, y_pred):
        flat, _ = pairs.split_views(y_pred, count=2)
        first, second = ops.split(flat, 2, axis=0)
        labels = self._labels(ops.shape(first)[0])
        if self.symmetric:
            values = self.loss.call(ops.concatenate([labels, labels], axis=0), flat)
            return ops.mean(ops.reshape(values, (2, -1)), axis=0)
        return self.loss.fn(labels, first, ref_embeddings=second, ref_labels=labels,
                            **self.loss.hyperparameters)  # fmt: skip

    def _labels(self, size):
        """`arange(size)`, offset by `replica id * size` when the loss spans replicas."""
        labels = ops.arange(size, dtype="int32")
        if not self.loss.hyperparameters.get("cross_replica", False):
            return labels
        replica, _ = backend.replica_context()
        return labels + ops.cast(replica, "int32") * ops.cast(size, "int32")

    def get_config(self):
        return {
            **super().get_config(),
            "loss": keras.saving.serialize_keras_object(self.loss),
            "symmetric": self.symmetric,
        }
