"""Base class of the package's losses: exact integer labels, Keras' own reduction, full config."""

import keras
from keras import ops

from keras_metric_losses import validation
from keras_metric_losses.api import StrictConfig


class _PerExampleReduction(keras.losses.Loss):
    """Applies Keras' reduction, `sample_weight`, masking and distribution scaling unchanged."""

    def call(self, y_true, y_pred):
        return y_pred


class LabelLoss(StrictConfig, keras.losses.Loss):
    """A Keras `Loss` whose `y_true` keeps its own dtype and whose config round-trips.

    `keras.losses.Loss.__call__` casts `y_true` to the loss dtype, which merges integer class ids
    above 2**24 in float32 (above 2048 in float16). This base class converts `y_pred` to the loss
    dtype as Keras does but leaves `y_true` as given; `call()` returns one loss per example and
    Keras' own reduction then applies `reduction` and `sample_weight`. `get_config` saves every
    constructor argument, `dtype` included, and `from_config` rejects unknown keys by name.

    Subclasses implement `call(y_true, y_pred) -> [B]` and add their hyperparameters to
    `get_config`.
    """

    def __init__(self, name=None, reduction="sum_over_batch_size", dtype=None):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string. Received: name={name!r}")
        try:
            self.dtype_policy = keras.dtype_policies.get(dtype or keras.config.floatx())
        except ValueError as error:
            raise ValueError(
                f"`dtype` must be a float dtype or a dtype policy name. Received: dtype={dtype!r}"
            ) from error
        super().__init__(name=name, reduction=reduction, dtype=self.dtype_policy)

    def __call__(self, y_true, y_pred, sample_weight=None):
        with keras.name_scope(self.name):
            losses = self.call(
                validation.numeric_tensor(y_true, "y_true"),
                ops.convert_to_tensor(y_pred, dtype=self.dtype),
            )
        reduce = _PerExampleReduction(name=self.name, reduction=self.reduction, dtype=self.dtype)
        return reduce(losses, losses, sample_weight=sample_weight)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype_policy.name}
