"""Numerical helpers shared by the losses, written against `keras.ops`."""

import keras
from keras import ops

_HALF_PRECISION = ("float16", "bfloat16")


def compute_dtype(x):
    """The dtype a loss computes in for input `x`: float32 for half precision, else `x`'s dtype.

    Softmax over logits of magnitude ~80 already overflows float16, so half-precision inputs are
    up-cast; float32 and float64 are kept.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    return "float32" if dtype in _HALF_PRECISION or not _is_float(dtype) else dtype


def _is_float(dtype):
    return dtype.startswith(("float", "bfloat"))


def label_equality(labels, key_labels=None):
    """`[B, K]` boolean matrix, `True` where `labels[i] == key_labels[j]`.

    Without `key_labels` the keys are the rows themselves: `[B, B]`, diagonal included. Labels
    are compared in their own dtype, so integer ids stay exact at any magnitude.
    """
    keys = labels if key_labels is None else key_labels
    return ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(keys, 0))


def soft_target_cross_entropy(target_weights, logits):
    """Per-row softmax cross-entropy of `logits` against row-normalised `target_weights`.

    `loss[i] = -sum_j t[i, j] * log_softmax(logits[i])[j]` with
    `t[i, j] = target_weights[i, j] / sum_k target_weights[i, k]`. A row whose weights are all
    zero has no target: its loss is 0 and its gradient is 0 (not 0 / 0).

    Args:
        target_weights: `[B, N]` non-negative weights, in the dtype of `logits`.
        logits: `[B, N]` floating logits.

    Returns:
        `[B]` losses in the dtype of `logits`.
    """
    targets = ops.divide_no_nan(target_weights, ops.sum(target_weights, axis=-1, keepdims=True))
    return -ops.sum(targets * ops.log_softmax(logits, axis=-1), axis=-1)
