"""Package settings: the switch for checks that read tensor values.

Checks of shapes, dtypes and hyperparameters always run (they read no tensor values). Checks
that read values (NaN or inf in the inputs, non-integral float labels, class ids out of range)
need a host read of the tensor, which stalls an accelerator and makes PyTorch warn on every
training step, so they are **off by default**, in the manner of `jax_debug_nans` or
`torch.autograd.detect_anomaly`. Turn them on while debugging:

```python
import keras_metric_losses as kml
kml.config.enable_value_checks()
```

or, before the process starts, `KERAS_METRIC_LOSSES_VALUE_CHECKS=1`. Even when on, values are
only read from concrete (eager) tensors: inside `jax.jit`, `tf.function` or `torch.compile` a
value cannot raise, and the checks are skipped (Keras' `TerminateOnNaN` callback stops training
on a NaN loss).
"""

import contextlib
import os

from keras_metric_losses.api import export

__all__ = [
    "disable_value_checks",
    "enable_value_checks",
    "value_checks",
    "value_checks_enabled",
]

ENVIRONMENT_VARIABLE = "KERAS_METRIC_LOSSES_VALUE_CHECKS"
_TRUE = ("1", "true", "yes", "on")
_state = {"enabled": os.environ.get(ENVIRONMENT_VARIABLE, "").strip().lower() in _TRUE}


@export
def value_checks_enabled():
    """Whether the losses read tensor values to check them (see `enable_value_checks`).

    Returns:
        `True` after `enable_value_checks()` or when the process started with
        `KERAS_METRIC_LOSSES_VALUE_CHECKS=1`; `False` by default.

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.config.value_checks_enabled()
    False
    """
    return _state["enabled"]


@export
def enable_value_checks():
    """Turns on the checks that read tensor values, for debugging.

    With value checks on, an eager call of a loss raises a `ValueError` naming the argument for
    NaN or infinite predictions, non-integral float labels (`0.5`; `3.0` is a class id) and
    class ids out of range, instead of returning a NaN or a clipped value. Each check is one
    reduction and one host read per call.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> kml.config.enable_value_checks()
    >>> y_pred = np.array([[1.0, np.nan], [0.0, 1.0]])
    >>> kml.npairs_loss(np.array([0, 1]), y_pred)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: `y_pred` must be finite (-inf is allowed); it holds 1 NaN and 0 inf values ...
    >>> kml.config.disable_value_checks()

    Reference: `jax.config.update("jax_debug_nans", True)`; `torch.autograd.detect_anomaly`.
    """
    _state["enabled"] = True


@export
def disable_value_checks():
    """Turns off the checks that read tensor values (the default).

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.config.disable_value_checks()
    >>> kml.config.value_checks_enabled()
    False
    """
    _state["enabled"] = False


@export
@contextlib.contextmanager
def value_checks(enabled=True):
    """A context in which value checks are on (or off), restoring the setting on exit.

    Args:
        enabled: Whether value checks are on inside the context. Defaults to `True`.

    Example:

    >>> import keras_metric_losses as kml
    >>> with kml.config.value_checks():
    ...     kml.config.value_checks_enabled()
    True
    >>> kml.config.value_checks_enabled()
    False
    """
    previous = _state["enabled"]
    _state["enabled"] = bool(enabled)
    try:
        yield
    finally:
        _state["enabled"] = previous
