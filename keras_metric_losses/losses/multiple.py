"""A weighted sum of losses of one output (pytorch-metric-learning's `MultipleLosses`)."""

import math
import numbers

import keras

from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.losses.wrapper import PerExampleLoss


@export
class MultipleLosses(StrictConfig, PerExampleLoss):
    """The weighted sum of several losses of the same output: PML's `MultipleLosses`.

    Each loss gives its per-example values on the same `y_true` and `y_pred`, and the
    example's value is their weighted sum:

    ```
    loss(x) = w_1 loss_1(x) + ... + w_n loss_n(x)
    ```

    This loss's `reduction` and `sample_weight` then reduce the sums once, so with the default
    mean the value is `w_1 mean(loss_1) + ... + w_n mean(loss_n)`: PML's value when each loss
    is PML's (`kml.compat.pml.loss`). The losses' own `reduction`, `name` and `dtype` are not
    used: they are computed in this loss's dtype. Keras' `loss_weights` weighs the losses of
    different outputs; this class weighs losses of one output.

    PML's `miners` (one per loss) are not an argument: a loss of this package mines with its
    own settings (for example `TripletMarginLoss(type_of_triplets="semihard")`).

    Args:
        losses: A list of losses of this package, or a dict of them by name (PML's two forms).
            They take the same inputs (for example class labels and `[B, D]` embeddings).
        weights: The weight of each loss: a list as long as `losses`, or a dict with the same
            keys, of finite numbers. Defaults to `None`: 1 each.
        name: Name of the loss. Defaults to `"multiple_losses"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or dtype policy. Defaults to `keras.config.floatx()`.

    Raises:
        TypeError: if `losses` is not a non-empty list or dict of losses of this package, or
            `weights` not a list or dict of numbers.
        ValueError: if `weights` does not match `losses` or holds a non-finite number.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> loss = kml.MultipleLosses([kml.BatchContrastiveLoss(), kml.TripletMarginLoss()], [1.0, 0.5])
    >>> total = loss(labels, embeddings)
    >>> contrastive = kml.BatchContrastiveLoss()(labels, embeddings)
    >>> triplet = kml.TripletMarginLoss()(labels, embeddings)
    >>> bool(np.isclose(total, contrastive + 0.5 * triplet))
    True

    Reference: pytorch-metric-learning's `MultipleLosses`.
    """

    summary = "the weighted sum of several losses of one output"

    def __init__(self, losses, weights=None, name="multiple_losses",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.names = list(losses) if isinstance(losses, dict) else None
        listed = list(losses.values()) if isinstance(losses, dict) else losses
        if not isinstance(listed, list | tuple) or not listed:
            raise TypeError(
                "`losses` must be a non-empty list or dict of losses of keras_metric_losses. "
                f"Received: losses={losses!r}"
            )
        self.losses = [_loss(loss, f"losses[{key!r}]") for key, loss in _items(losses)]
        self.weights = _weights(weights, losses)

    def call(self, y_true, y_pred):
        values = [loss.call(y_true, y_pred) for loss in self.losses]
        return sum(weight * value for weight, value in zip(self.weights, values, strict=True))

    def get_config(self):
        serialized = [keras.saving.serialize_keras_object(loss) for loss in self.losses]
        named = self.names is not None
        return {
            **super().get_config(),
            "losses": dict(zip(self.names, serialized, strict=True)) if named else serialized,
            "weights": dict(zip(self.names, self.weights, strict=True)) if named else self.weights,
        }


def _items(losses):
    return losses.items() if isinstance(losses, dict) else enumerate(losses)


def _loss(loss, name):
    """A loss of this package (deserialized from its config if need be)."""
    if isinstance(loss, dict):
        loss = keras.saving.deserialize_keras_object(loss)
    if not isinstance(loss, PerExampleLoss):
        raise TypeError(
            f"`{name}` must be a loss of keras_metric_losses (for example "
            f"`kml.BatchContrastiveLoss()`). Received: {name}={loss!r}"
        )
    return loss


def _weights(weights, losses):
    """The weights as a list in the order of `losses` (1 each by default)."""
    if weights is None:
        return [1.0] * len(losses)
    if not isinstance(weights, list | tuple | dict):
        raise TypeError(f"`weights` must be a list or a dict. Received: weights={weights!r}")
    if isinstance(losses, dict) != isinstance(weights, dict) or (
        isinstance(weights, dict) and set(weights) != set(losses)
    ):
        raise ValueError(
            "`weights` must be a dict with the keys of `losses` when `losses` is a dict, and "
            f"a list as long as `losses` otherwise. Received: weights={weights!r} for "
            f"losses {list(losses) if isinstance(losses, dict) else len(losses)}"
        )
    listed = [weights[key] for key in losses] if isinstance(weights, dict) else list(weights)
    if len(listed) != len(losses):
        raise ValueError(
            f"`weights` must hold one weight per loss ({len(losses)}). Received: "
            f"weights={weights!r}"
        )
    for weight in listed:
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(f"`weights` must hold numbers. Received: weights={weights!r}")
        if not math.isfinite(weight):
            raise ValueError(f"`weights` must be finite. Received: weights={weights!r}")
    return [float(weight) for weight in listed]
