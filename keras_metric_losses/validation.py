"""Argument checks that raise errors naming the argument and what was received.

Hyperparameter checks (`positive_int`, `boolean`, `one_of`, `real`) run on Python values.
Shape and dtype checks only use static shapes, so they run at trace time under `jax.jit`,
`tf.function(jit_compile=True)` and `torch.compile`; unknown dimensions are not checked.

Value checks (`finite`, `integral_labels`, `class_ids_in_range`) read the tensor, so they only
run when switched on (`keras_metric_losses.config.enable_value_checks`, off by default: no host
read in a training step) and the tensor is concrete (`is_concrete`): eager code, NumPy inputs.
Inside a compiled program a value cannot raise; there they are skipped.
"""

import math
import numbers

import keras
import numpy as np

from keras_metric_losses import backend, config
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import is_float_dtype

_NUMERIC_PREFIXES = ("int", "uint", "float", "bfloat", "bool")


def _shape(x):
    return tuple(x.shape)


def numeric_tensor(x, name):
    """Converts `x` to a dense backend tensor, first checking that it holds numbers (or bools).

    A sparse tensor of the backend (`tf.SparseTensor` on TensorFlow, a JAX `BCOO` on JAX) is
    densified, as TF Addons densifies sparse labels.

    Raises:
        TypeError: for strings or other non-numeric data, which the backends would otherwise
            reject deep inside their conversion code (or, in TensorFlow, accept silently), and
            for sparse data the backend has no sparse tensors for (SciPy, PyTorch sparse).
    """
    if is_sparse(x):
        if not backend.backend_sparse(x):
            raise TypeError(
                f"`{name}` is sparse ({type(x).__module__}.{type(x).__name__}), which the "
                f"{keras.backend.backend()} backend does not take: pass a dense array "
                "(sparse labels are accepted as a `tf.SparseTensor` on TensorFlow and a "
                f"`jax.experimental.sparse.BCOO` on JAX). Received: {name}={type(x).__name__}"
            )
        return ops.convert_to_tensor(x, sparse=False)
    return ops.convert_to_tensor(numeric_array(x, name))


def numeric_array(x, name):
    """`x` itself, or a NumPy array of it when it has no dtype (a list), checked to hold numbers
    (or bools).

    Raises:
        TypeError: for `None`, strings or other non-numeric data.
    """
    if x is None:
        raise TypeError(
            f"`{name}` must hold numbers (integer class labels or floats). Received: {name}=None"
        )
    dtype = getattr(x, "dtype", None)
    if dtype is None:
        x = np.asarray(x)
        dtype = x.dtype
    try:
        dtype = keras.backend.standardize_dtype(dtype)
    except ValueError:
        dtype = str(dtype)
    if not dtype.startswith(_NUMERIC_PREFIXES):
        raise TypeError(
            f"`{name}` must hold numbers (integer class labels or floats). "
            f"Received: {name}.dtype={dtype}"
        )
    return x


def stacked(x, name):
    """`x`, or the `[B, V, D]` stack of a list or tuple of `V` `[B, D]` matrices (the views or
    columns of each example, given apart: `[image, text]`, `[anchor, positive, negative]`).

    Raises:
        ValueError: if the matrices are not all `[batch, dim]` of one shape.
        TypeError: if one of them does not hold numbers.
    """
    if not isinstance(x, list | tuple):
        return x
    parts = [numeric_tensor(part, name) for part in x]
    shapes = [tuple(part.shape) for part in parts]
    if not parts or any(len(shape) != 2 for shape in shapes) or len(set(shapes)) > 1:
        raise ValueError(
            f"`{name}` given as a list must hold [batch, dim] matrices of one shape (the views "
            "or columns of each example, stacked on axis 1). Received: a list of shapes "
            f"{shapes}"
        )
    return ops.stack(parts, axis=1)


def is_sparse(x):
    """Whether `x` is a sparse array of some library (SciPy, TensorFlow, JAX, PyTorch)."""
    kind = type(x).__name__
    return (
        type(x).__module__.startswith("scipy.sparse")
        or kind in ("SparseTensor", "BCOO", "BCSR")
        or str(getattr(x, "layout", "torch.strided")) != "torch.strided"
    )


def class_labels(y_true, name="y_true"):
    """Flattens integer class labels of shape `[B]` or `[B, 1]` to `[B]`.

    Raises:
        ValueError: if `y_true` has another rank or shape.
    """
    shape = _shape(y_true)
    if len(shape) == 2 and shape[1] == 1:
        return ops.reshape(y_true, (-1,))
    if len(shape) != 1:
        raise ValueError(
            f"`{name}` must hold one integer class label per example, of shape [batch] or "
            f"[batch, 1]. Received: {name}.shape={shape}"
        )
    return y_true


def square_similarity(y_pred, name="y_pred"):
    """Checks that `y_pred` is a `[B, B]` similarity matrix."""
    shape = _shape(y_pred)
    if len(shape) != 2 or (None not in shape and shape[0] != shape[1]):
        raise ValueError(
            f"`{name}` must be a square [batch, batch] similarity matrix (for example "
            "`anchors @ positives.T`; a [batch, global_batch] matrix from "
            "`PairwiseSimilarity(cross_replica=True)` needs `cross_replica=True` on the loss "
            f"too). Received: {name}.shape={shape}"
        )


def similarity_to_keys(y_pred, key_labels, name="y_pred"):
    """Checks that `y_pred` is a `[b, B]` matrix with one column per row of `key_labels`."""
    shape, keys = _shape(y_pred), _shape(key_labels)
    if len(shape) != 2 or (None not in (shape[1], keys[0]) and shape[1] != keys[0]):
        raise ValueError(
            f"`{name}` must be a [batch, num_keys] similarity matrix with one column per key "
            "label (with `cross_replica=True`, build it with "
            "`PairwiseSimilarity(cross_replica=True)`). Received: "
            f"{name}.shape={shape} and key_labels.shape={keys}"
        )


def boolean(value, name):
    """Checks that a flag is a bool (Python or NumPy) and returns it as a Python bool.

    Raises:
        TypeError: if `value` is not a bool.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")
    return bool(value)


def positive_int(value, name, low=1):
    """Checks that a count is an integer (Python or NumPy) of at least `low` (default 1) and
    returns it as an int.

    Raises:
        ValueError: if `value` is not an integer (bools and floats such as `2.0` are refused)
            or is below `low`.
    """
    integer = isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))
    if not integer or value < low:
        what = "a positive int" if low == 1 else f"an int >= {low}"
        raise ValueError(f"`{name}` must be {what}. Received: {name}={value!r}")
    return int(value)


def one_of(value, name, allowed):
    """Checks that `value` is one of the strings `allowed` and returns it.

    Raises:
        ValueError: naming `name`, the allowed values and what was received.
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"`{name}` must be one of {list(allowed)}. Received: {name}={value!r}")
    return value


def real(value, name, low=-math.inf, high=math.inf, low_open=False):
    """Checks that `value` is a finite real number in `[low, high]` and returns it as a float.

    `low_open=True` excludes `low` itself (for example a temperature `> 0`). Python and NumPy
    numbers are accepted; bools, strings and `None` are not.

    Raises:
        ValueError: naming `name`, the allowed range and what was received.
    """
    number = (
        isinstance(value, numbers.Real)
        and not isinstance(value, (bool, np.bool_))
        and math.isfinite(value)
    )
    if not number or value > high or value < low or (low_open and value == low):
        bounds = []
        if low > -math.inf:
            bounds.append(f"{'>' if low_open else '>='} {low:g}")
        if high < math.inf:
            bounds.append(f"<= {high:g}")
        what = " and ".join(bounds)
        raise ValueError(
            f"`{name}` must be a finite number{' ' + what if what else ''}. "
            f"Received: {name}={value!r}"
        )
    return float(value)


def initializer(identifier, name):
    """Checks a Keras initializer argument and returns the initializer.

    Raises:
        ValueError: naming `name`, for what `keras.initializers.get` refuses.
    """
    try:
        return keras.initializers.get(identifier)
    except ValueError as error:
        raise ValueError(
            f"`{name}` must be a Keras initializer, its name or its config. "
            f"Received: {name}={identifier!r}"
        ) from error


def regularizer(identifier, name):
    """Checks a Keras regularizer argument (or `None`) and returns the regularizer.

    Raises:
        ValueError: naming `name`, for what `keras.regularizers.get` refuses.
    """
    try:
        return keras.regularizers.get(identifier)
    except ValueError as error:
        raise ValueError(
            f"`{name}` must be a Keras regularizer, its name, its config or None. "
            f"Received: {name}={identifier!r}"
        ) from error


def is_shape_pair(shape):
    """Whether a layer's `input_shape` is that of two inputs (`[embeddings, labels]`)."""
    return (
        isinstance(shape, (list, tuple)) and len(shape) == 2 and isinstance(shape[0], (list, tuple))
    )


def positive_real(value, name):
    """A hyperparameter check: a finite number `> 0`, returned as a float."""
    return real(value, name, low=0.0, low_open=True)


def same_batch(y_true, y_pred, true_name="y_true", pred_name="y_pred"):
    """Checks that `y_true` and `y_pred` agree on the batch (first) dimension."""
    true_batch, pred_batch = _shape(y_true)[0], _shape(y_pred)[0]
    if None not in (true_batch, pred_batch) and true_batch != pred_batch:
        raise ValueError(
            f"`{true_name}` and `{pred_name}` must have the same batch size. Received: "
            f"{true_name}.shape={_shape(y_true)} and {pred_name}.shape={_shape(y_pred)}"
        )


def rank(x, expected, what, name):
    """Checks that `x` has rank `expected`; `what` describes the expected layout."""
    if len(_shape(x)) != expected:
        raise ValueError(f"`{name}` must be {what}. Received: {name}.shape={_shape(x)}")


def reads_values(x):
    """Whether the value checks run on `x`: switched on, and `x` concrete (not traced)."""
    return config.value_checks_enabled() and backend.is_concrete(x)


def _host(x):
    """`x` as a NumPy array, without its gradient (PyTorch warns when reading a tensor that
    requires grad); bfloat16 through float32 (TensorFlow has no bfloat16 NumPy conversion)."""
    x = ops.stop_gradient(x)
    if keras.backend.standardize_dtype(x.dtype) == "bfloat16":
        x = ops.cast(x, "float32")
    return np.asarray(ops.convert_to_numpy(x))


def _count(mask):
    return int(_host(mask).sum())


def _first_index(mask):
    """The index of the first `True` of a boolean tensor known to hold one, as a tuple."""
    host = _host(mask)
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(host)), host.shape))


def finite(x, name, allow_negative_inf=False):
    """Checks that a concrete float tensor `x` holds no NaN or `inf` (or `-inf`, if allowed).

    Raises:
        ValueError: naming `name`, with the number of NaN and infinite values and the first
            offending index. Only when value checks are on and `x` is concrete
            (`reads_values`).
    """
    if not reads_values(x) or not is_float_dtype(x.dtype):
        return
    # Fast path, one reduction: the sum is finite (or -inf, if allowed) iff no NaN or +inf is
    # present and no -inf unless allowed; a sum that overflows goes on to the exact check.
    total = float(_host(ops.sum(ops.cast(x, "float32"))))
    if math.isfinite(total) or (allow_negative_inf and total == float("-inf")):
        return
    bad = ops.logical_not(ops.isfinite(x))
    if allow_negative_inf:
        bad = ops.logical_and(bad, ops.not_equal(x, float("-inf")))
    if not _host(ops.any(bad)):
        return
    nan = _count(ops.isnan(x))
    allowed = " (-inf is allowed)" if allow_negative_inf else ""
    raise ValueError(
        f"`{name}` must be finite{allowed}; it holds {nan} NaN and {_count(bad) - nan} inf "
        f"values (first at index {_first_index(bad)}). Received: {name}.shape={_shape(x)}"
    )


def integral_labels(labels, name):
    """Checks that concrete float class ids are integral (`3.0` is accepted, `0.5` is not).

    Raises:
        ValueError: naming `name`, with the first offending value. Skipped for integer
            dtypes, and unless value checks are on and `labels` is concrete (`reads_values`).
    """
    if not reads_values(labels) or not is_float_dtype(labels.dtype):
        return
    integral = ops.logical_and(ops.isfinite(labels), ops.equal(labels, ops.floor(labels)))
    bad = ops.logical_not(integral)
    if not _host(ops.any(bad)):
        return
    index = _first_index(bad)
    value = float(_host(ops.cast(labels, "float32"))[index])
    raise ValueError(
        f"`{name}` must hold integer class ids (floats such as 3.0 are accepted); "
        f"{_count(bad)} of its values are not integral (first: {value} at index {index}). "
        f"Received: {name}.shape={_shape(labels)}"
    )


def class_ids_in_range(labels, num_classes, name):
    """Checks that concrete class ids lie in `[0, num_classes)`.

    Raises:
        ValueError: naming `name`, with the smallest and largest id. Only when value checks
            are on and `labels` is concrete (`reads_values`).
    """
    if not reads_values(labels) or not _shape(labels) or 0 in _shape(labels):
        return
    host = _host(labels)
    low, high = host.min(), host.max()
    if low < 0 or high >= num_classes:
        raise ValueError(
            f"`{name}` must be class ids in [0, num_classes) with num_classes={num_classes}. "
            f"Received: {name} with min={low} and max={high}"
        )
