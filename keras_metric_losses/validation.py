"""Static argument checks that raise errors naming the argument and what was received.

Checks only use static shapes, so they run at trace time under `jax.jit`,
`tf.function(jit_compile=True)` and `torch.compile`; unknown dimensions are not checked.
"""

import keras
import numpy as np
from keras import ops

_NUMERIC_PREFIXES = ("int", "uint", "float", "bfloat", "bool")


def _shape(x):
    return tuple(x.shape)


def numeric_tensor(x, name):
    """Converts `x` to a backend tensor, first checking that it holds numbers (or booleans).

    Raises:
        TypeError: for strings or other non-numeric data, which the backends would otherwise
            reject deep inside their conversion code (or, in TensorFlow, accept silently).
    """
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
    return ops.convert_to_tensor(x)


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
    """Checks that a flag is a Python bool.

    Raises:
        TypeError: if `value` is not a bool.
    """
    if not isinstance(value, bool):
        raise TypeError(f"`{name}` must be a bool. Received: {name}={value!r}")


def same_batch(y_true, y_pred):
    """Checks that `y_true` and `y_pred` agree on the batch (first) dimension."""
    true_batch, pred_batch = _shape(y_true)[0], _shape(y_pred)[0]
    if None not in (true_batch, pred_batch) and true_batch != pred_batch:
        raise ValueError(
            "`y_true` and `y_pred` must have the same batch size. Received: "
            f"y_true.shape={_shape(y_true)} and y_pred.shape={_shape(y_pred)}"
        )


def rank(x, expected, what, name):
    """Checks that `x` has rank `expected`; `what` describes the expected layout."""
    if len(_shape(x)) != expected:
        raise ValueError(f"`{name}` must be {what}. Received: {name}.shape={_shape(x)}")
