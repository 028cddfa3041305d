"""The `keras.losses.Loss` of every declared loss: Keras' reduction around per-example values."""

import keras

from keras_metric_losses import reduction, validation
from keras_metric_losses.api import StrictConfig


class _PerExample(keras.losses.Loss):
    """Keras' `Loss.__call__` around `loss.call(labels, y_pred)`, with `labels` kept as given.

    Keras converts `y_pred` to the loss dtype, reads its mask, and reduces with
    `sample_weight`, as for its own losses; its `y_true` (converted to the loss dtype, which
    would merge integer ids above 2**24 in float32) is a placeholder here.
    """

    def __init__(self, loss, labels):
        super().__init__(name=loss.name, reduction=loss.reduction, dtype=loss.dtype_policy)
        self.loss, self.labels = loss, labels

    def call(self, placeholder, y_pred):
        return self.loss.call(self.labels, y_pred)


class PerExampleLoss(keras.losses.Loss):
    """A Keras `Loss` whose `call(labels, y_pred)` returns one value per example and whose
    labels keep their own dtype.

    `keras.losses.Loss.__call__` casts `y_true` to the loss dtype, which merges integer class
    ids above 2**24 in float32 (above 2048 in float16); here `y_true` reaches `call()` as
    given (`None` stays `None`, for losses that take no labels). `y_pred` is converted to the
    loss dtype, its Keras mask read, and the values reduced with `reduction` and
    `sample_weight`, as for Keras' own losses; an empty batch gives 0.
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
        labels = None if y_true is None else validation.numeric_tensor(y_true, "y_true")
        result = _PerExample(self, labels)(0.0, y_pred, sample_weight=sample_weight)
        return reduction.empty_batch_as_zero(result, self.reduction)

    def get_config(self):
        return {"name": self.name, "reduction": self.reduction, "dtype": self.dtype_policy.name}


class LossFunctionWrapper(StrictConfig, PerExampleLoss):
    """A Keras `Loss` that computes a per-example loss function with declared hyperparameters.

    - `y_true` keeps its own dtype (`PerExampleLoss`); `y_pred` is converted to the loss
      dtype as in Keras.
    - `call()` returns one value per example; Keras' own reduction then applies `reduction`,
      `sample_weight` and a Keras mask on `y_pred`, so `reduction=None` gives the `[B]` values.
    - Each hyperparameter is checked when the class is built (errors name the argument) and
      stored as an attribute; `get_config` saves them all with `name`, `reduction` and `dtype`,
      and `from_config` names unknown keys. A callable hyperparameter (a distance) is saved by
      its registered name.

    Args:
        fn: A declared loss function (`declare`).
        name: Name of the loss.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or dtype policy. Defaults to `keras.config.floatx()`.
        **hyperparameters: Every hyperparameter that `fn` declares.
    """

    declaration = None

    def __init__(self, fn, name=None, reduction="sum_over_batch_size", dtype=None, **values):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.fn = fn
        self._hyperparameter_names = tuple(values)
        for key, value in fn.check_hyperparameters(values).items():
            setattr(self, key, value)

    @property
    def hyperparameters(self):
        """The hyperparameters passed to the loss function, by name."""
        return {key: getattr(self, key) for key in self._hyperparameter_names}

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.hyperparameters)

    def per_example(self, y_true, y_pred, keys):
        """The `[B]` values of this loss against explicit `keys` (a `pairs.Keys`), as
        `kml.layers.CrossBatchMemory` calls it."""
        return self.fn.per_example(y_true, y_pred, keys=keys, **self.hyperparameters)

    def get_config(self):
        config = super().get_config()
        for key, value in self.hyperparameters.items():
            config[key] = _config_value(key, value)
        return config


def _config_value(key, value):
    """A hyperparameter as saved in a config: objects with a config (a miner) as Keras
    serializes them, callables by their registered name."""
    if hasattr(value, "get_config"):
        return keras.saving.serialize_keras_object(value)
    if not callable(value):
        return value
    name = keras.saving.get_registered_name(value)
    if keras.saving.get_registered_object(name) is not value:
        raise ValueError(
            f"A callable `{key}` must be registered with "
            "`@keras.saving.register_keras_serializable()` to be saved in a config. "
            f"Received: {key}={value!r}"
        )
    return name
