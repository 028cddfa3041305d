"""The two halves of every loss: a per-example function and a class that declares it.

A loss function computes one value per example with `keras.ops` and declares its
hyperparameters with `@hyperparameters(name=check, ...)`; the checks run on every call of the
function and once when a class is built. A loss class is a declaration:

```python
@export
class TripletHardLoss(LossFunctionWrapper):
    def __init__(self, margin=1.0, soft=False, distance_metric="L2", name="triplet_hard_loss",
                 reduction="sum_over_batch_size", dtype=None):
        super().__init__(triplet_hard_loss, name=name, reduction=reduction, dtype=dtype,
                         margin=margin, soft=soft, distance_metric=distance_metric)
```

`get_config` / `from_config` follow from the declared hyperparameters; reduction,
`sample_weight`, masks and distribution scaling are Keras' own.
"""

import functools
import inspect

import keras

from keras_metric_losses import validation
from keras_metric_losses.api import StrictConfig


def hyperparameters(*joint_checks, **checks):
    """Declares the hyperparameters of a loss function and how each one is checked.

    Args:
        *joint_checks: Callables `check(values)` on the dict of all declared hyperparameters
            (defaults filled in), for rules that involve several of them; they raise.
        **checks: `name=check` for keyword arguments of the decorated function, with
            `check(value, name)` returning the accepted value (normalised, e.g. a NumPy int
            as an int) or raising an error that names `name` and the value received.

    Returns:
        A decorator. The decorated function checks the hyperparameters it is called with, then
        runs; `check_hyperparameters(fn, values)` checks them without running it.
    """

    def decorate(fn):
        parameters = inspect.signature(fn).parameters
        undeclared = set(checks) - set(parameters)
        if undeclared:
            raise TypeError(f"{fn.__name__} has no argument(s) {sorted(undeclared)}")
        names = list(parameters)
        defaults = {name: parameters[name].default for name in checks}

        def check(values):
            checked = {name: checks[name](value, name) for name, value in values.items()}
            for joint in joint_checks:
                joint(checked)
            return checked

        @functools.wraps(fn)
        def checked_fn(*args, **kwargs):
            # Plain dict work (no `Signature.bind`), so that `torch.compile` traces through it.
            given = {name: value for name, value in zip(names, args, strict=False)}
            given.update(kwargs)
            checked = check({name: given.get(name, defaults[name]) for name in checks})
            # Every checked value reaches `fn`, defaults included (a joint check may normalise
            # one, e.g. `margin=None` -> 1.0 with `soft_margin=True`).
            args = [checked.get(name, value) for name, value in zip(names, args, strict=False)]
            positional = names[: len(args)]
            kwargs.update({name: v for name, v in checked.items() if name not in positional})
            return fn(*args, **kwargs)

        checked_fn.check_hyperparameters = check
        return checked_fn

    return decorate


def check_hyperparameters(fn, values):
    """`values` (every declared hyperparameter of `fn`) checked and normalised by `fn`'s checks."""
    return fn.check_hyperparameters(values)


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


class LossFunctionWrapper(StrictConfig, keras.losses.Loss):
    """A Keras `Loss` that computes a per-example loss function with declared hyperparameters.

    - `y_true` keeps its own dtype (`keras.losses.Loss.__call__` casts it to the loss dtype,
      which merges integer class ids above 2**24 in float32, above 2048 in float16); `y_pred`
      is converted to the loss dtype as in Keras.
    - `call()` returns one value per example; Keras' own reduction then applies `reduction`,
      `sample_weight` and a Keras mask on `y_pred`, so `reduction=None` gives the `[B]` values.
    - Each hyperparameter is checked when the class is built (errors name the argument) and
      stored as an attribute; `get_config` saves them all with `name`, `reduction` and `dtype`,
      and `from_config` names unknown keys. A callable hyperparameter (a distance) is saved by
      its registered name.

    Args:
        fn: The loss function `fn(y_true, y_pred, **hyperparameters) -> [B]`, decorated with
            `hyperparameters`.
        name: Name of the loss.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or dtype policy. Defaults to `keras.config.floatx()`.
        **hyperparameters: Every hyperparameter that `fn` declares.
    """

    def __init__(self, fn, name=None, reduction="sum_over_batch_size", dtype=None, **values):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string. Received: name={name!r}")
        try:
            self.dtype_policy = keras.dtype_policies.get(dtype or keras.config.floatx())
        except ValueError as error:
            raise ValueError(
                f"`dtype` must be a float dtype or a dtype policy name. Received: dtype={dtype!r}"
            ) from error
        super().__init__(name=name, reduction=reduction, dtype=self.dtype_policy)
        self.fn = fn
        self._hyperparameter_names = tuple(values)
        for key, value in check_hyperparameters(fn, values).items():
            setattr(self, key, value)

    @property
    def hyperparameters(self):
        """The hyperparameters passed to the loss function, by name."""
        return {key: getattr(self, key) for key in self._hyperparameter_names}

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels = validation.numeric_tensor(y_true, "y_true")
        return _PerExample(self, labels)(0.0, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.hyperparameters)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction, "dtype": self.dtype_policy.name}
        for key, value in self.hyperparameters.items():
            config[key] = _config_value(key, value)
        return config


def _config_value(key, value):
    """A hyperparameter as saved in a config: callables by their registered name."""
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


class TensorFlowSimilarityConfig:
    """Mixin (listed before `LossFunctionWrapper`): `from_config` also loads the configs that
    TensorFlow Similarity 0.17 saves: `reduction: "auto"`, a distance as a `Distance` object's
    config dict, and `margin: None` for the soft margin."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("reduction") == "auto":
            config["reduction"] = "sum_over_batch_size"
        distance = config.get("distance")
        if isinstance(distance, dict):
            config["distance"] = distance.get("config", {}).get("name", distance)
        if "margin" in config and config["margin"] is None:
            config.update(soft_margin=True, margin=1.0)
        return super().from_config(config)
