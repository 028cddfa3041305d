"""A layer that computes a loss of this package and adds it to the model (`add_loss`).

`CrossBatchMemory` and `ClassProxies(loss=...)` compute their loss inside the layer (it needs
the layer's state: the memory, the margin) and add it, so the model is compiled without a loss.
`AddsLoss` does what that takes, once:

- the `[B]` per-example values are reduced with the loss's own `reduction` and dtype (a mean
  by default, as Keras reduces a compiled loss);
- under `tf.distribute.MirroredStrategy` with several replicas, the replicas call the layer in
  parallel threads and Keras keeps a layer's added losses in one Python list (`_losses`): each
  replica's model would collect the other replicas' losses too. There the loss is kept per
  thread instead (what Keras' `losses` and `_clear_losses` read and clear), and the division
  by the number of replicas that `Loss.__call__` makes for a compiled loss is undone (Keras
  divides an added loss again, `_aggregate_additional_loss`).
"""

import threading

import keras

from keras_metric_losses import backend, distributed, reduction
from keras_metric_losses.backend import ops


class AddsLoss:
    """Mixin of a `keras.layers.Layer` (listed before it) that adds a loss it computes."""

    def add_reduced_loss(self, loss, values):
        """Adds `values` (`[B]` per-example values of `loss`) reduced with `loss.reduction`
        (`None`: their sum) in the dtype of `loss`."""
        value = reduce(loss, values)
        if backend.tensorflow_replicas():
            self._thread_losses().append(value)
        else:
            self.add_loss(value)

    def _thread_losses(self):
        local = self.__dict__.setdefault("_per_thread_losses", threading.local())
        if not hasattr(local, "losses"):
            local.losses = []
        return local.losses

    def _get_own_losses(self):
        own = super()._get_own_losses()
        return own + self._thread_losses()[:] if backend.tensorflow_replicas() else own

    def _clear_losses(self):
        super()._clear_losses()
        if backend.tensorflow_replicas():
            self._thread_losses().clear()


def deserialized(loss):
    """A layer's `loss` argument: the loss, or its config as saved by `serialized` (the layer's
    `get_config`), or `None`."""
    if isinstance(loss, dict):
        return keras.saving.deserialize_keras_object(loss)
    return loss


def serialized(loss):
    """The layer's `loss` in its config (`None` stays `None`)."""
    return None if loss is None else keras.saving.serialize_keras_object(loss)


class _Reduce(keras.losses.Loss):
    def call(self, y_true, y_pred):
        return y_pred


def reduce(loss, values):
    """The scalar of `[B]` `values` with `loss`'s reduction (a mean by default)."""
    reducer = _Reduce(name=loss.name, reduction=loss.reduction or "sum", dtype=loss.dtype_policy)
    value = reduction.empty_batch_as_zero(reducer(values, values), reducer.reduction)
    if backend.tensorflow_replicas():
        value = ops.multiply(value, ops.cast(distributed.replica_context()[1], value.dtype))
    return value
