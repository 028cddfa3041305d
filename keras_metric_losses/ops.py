"""Numerical helpers shared by the losses, written against `keras.ops`."""

import functools

import keras
import numpy as np

from keras_metric_losses import backend
from keras_metric_losses.backend import ops

_HALF_PRECISION = ("float16", "bfloat16")


def compute_dtype(x):
    """The dtype a loss computes in for input `x`: float32 for half precision, else `x`'s dtype.

    Softmax over logits of magnitude ~80 already overflows float16, so half-precision inputs are
    up-cast; float32 and float64 are kept.
    """
    dtype = keras.backend.standardize_dtype(x.dtype)
    return "float32" if dtype in _HALF_PRECISION or not is_float_dtype(dtype) else dtype


def is_float_dtype(dtype):
    """Whether `dtype` (a name or a backend dtype) is a floating-point dtype."""
    return keras.backend.standardize_dtype(dtype).startswith(("float", "bfloat"))


# The floor of the squared norm in `l2_normalize`: rows shorter than 1e-12 are divided by 1e-12.
_NORM_FLOOR_SQUARED = 1e-24


def l2_normalize(x, axis=-1):
    """`x / max(|x|, 1e-12)` along `axis`: the package's one L2 normalisation.

    The rule of `torch.nn.functional.normalize`, which pytorch-metric-learning's distances use
    (TF Similarity's `tf.math.l2_normalize` floors the norm at 1e-6 instead, `keras.ops.normalize`
    the squared norm at 1e-7: they differ only for rows shorter than that). Computed as
    `x / sqrt(max(|x|^2, 1e-24))`, so a zero row stays 0 with a finite gradient, and in the dtype
    of `x` (float64 stays float64 on every backend).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import ops
    >>> x = np.array([[3.0, 4.0], [0.0, 0.0]])
    >>> print(keras.ops.convert_to_numpy(ops.l2_normalize(x)).round(4))
    [[0.6 0.8]
     [0.  0. ]]
    """
    x = ops.convert_to_tensor(x)
    squared = ops.sum(ops.square(x), axis=axis, keepdims=True)
    return x / ops.sqrt(ops.maximum(squared, scalar_like(_NORM_FLOOR_SQUARED, squared)))


def scalar_like(value, x):
    """`value`, a Python number or a scalar tensor (a variable), in the dtype of tensor `x`.

    A Python number becomes a tensor of that dtype directly: `ops.cast` of a Python float on
    TensorFlow makes a float32 tensor first, so `ops.cast(0.35, "float64")` is 0.3499999940...
    """
    if isinstance(value, (int, float)):
        return ops.convert_to_tensor(value, x.dtype)
    return ops.cast(value, x.dtype)


def in_dtype_of(values, reference):
    """`values` cast to the dtype of `reference` when that is a float dtype (a loss returns the
    dtype of its predictions), else left in the compute dtype (float32 for integer input)."""
    dtype = ops.convert_to_tensor(reference).dtype
    return ops.cast(values, dtype) if is_float_dtype(dtype) else values


def with_non_finite_of(values, *tensors):
    """`values` plus `0 * sum(tensor)` for each tensor: a NaN or inf in any of them makes every
    value NaN (so that Keras' `TerminateOnNaN` sees it, though masks select with `where`, which
    drops it), and nothing changes otherwise; no gradient flows through the sums."""
    for tensor in tensors:
        carry = ops.sum(ops.cast(ops.stop_gradient(tensor), values.dtype))
        values = values + 0.0 * carry
    return values


def label_equality(labels, key_labels=None):
    """`[B, K]` boolean matrix, `True` where `labels[i] == key_labels[j]`.

    Without `key_labels` the keys are the rows themselves: `[B, B]`, diagonal included. Labels
    are compared in their own dtype, so integer ids stay exact at any magnitude.
    """
    keys = labels if key_labels is None else key_labels
    return ops.equal(ops.expand_dims(labels, 1), ops.expand_dims(keys, 0))


def diagonal_cross_entropies(logits, both_directions=False):
    """`[N]` cross-entropies of `[N, K]` logits (`K >= N`) whose targets are the diagonal.

    `-log_softmax(logits)[i, i]` along row `i`; with `both_directions`, averaged with column
    `i`'s own, `-log_softmax(logits[:, :N], axis=0)[i, i]` over the `N` rows: the two
    directions of a contrastive pair from one product (CLIP's image-to-text and text-to-image,
    MNRL's query-to-doc and doc-to-query), as open_clip reads `logits_per_image.T`. Each
    `log_softmax` shifts by its own maximum: for logits of ~100 a loss of ~0 is off by a few
    ulps of 1, not of 100 (as `logsumexp - logit` would be), and it is one fused pass forward
    and backward on torch and TensorFlow.

    Args:
        logits: `[N, K]` float logits, `K >= N`.
        both_directions: Average each row's cross-entropy with its column's. Defaults to
            `False`.

    Returns:
        `[N]` cross-entropies in the dtype of `logits`.
    """
    by_row = ops.diagonal(ops.log_softmax(logits, axis=-1))
    if not both_directions:
        return -by_row
    by_column = ops.diagonal(ops.log_softmax(logits[:, : ops.shape(logits)[0]], axis=0))
    return -(by_row + by_column) / 2.0


def sigmoid_signs(logits, keys, columns):
    """`(-z x, -z)` of SigLIP's `[b, k]` logits `x`: `-z = -1` at each row's positive (key
    `keys[j] == columns[i]`), `+1` elsewhere. The constant multiplies the logits: one pass
    forward and one backward, where a `where` between `x` and `-x` takes three of each on
    eager torch."""
    positive = ops.equal(ops.expand_dims(keys, 0), ops.expand_dims(columns, 1))
    signs = ops.where(positive, scalar_like(-1.0, logits), scalar_like(1.0, logits))
    return logits * signs, signs


def soft_target_cross_entropy(target_weights, logits):
    """Per-row softmax cross-entropy of `logits` against row-normalised `target_weights`.

    `loss[i] = -sum_j t[i, j] * log_softmax(logits[i])[j]` with
    `t[i, j] = target_weights[i, j] / sum_k target_weights[i, k]`. A row whose weights are all
    zero has no target: its loss is 0 and its gradient is 0 (not 0 / 0). Logits of `-inf` are
    excluded exactly (a way to mask pairs): they take no probability and, where their target is
    0, add nothing (not `0 * -inf`).

    Args:
        target_weights: `[B, N]` non-negative weights, in the dtype of `logits`.
        logits: `[B, N]` floating logits.

    Returns:
        `[B]` losses in the dtype of `logits`.

    Computed as `-sum_j w[i, j] * log_softmax(logits[i])[j] / sum_j w[i, j]`, the
    log-probabilities from one `log_softmax` (a single fused pass on torch and TensorFlow) with
    `-inf` raised to the dtype's lowest finite value, so that a zero weight adds exactly 0. The
    gradient is written out (`keras.ops.custom_gradient`):
    `d loss[i] / d logits[i, j] = softmax(logits[i])[j] - t[i, j]`, four `[B, N]` passes, where
    automatic differentiation of the forward ran about eleven in eager torch (the backward of
    `logsumexp`, of the product and of a clamp of the logits, whose `eq`/`lt`/`where` masks
    took a fifth of the step). The gradient with respect to `target_weights`,
    `(sum_k t[i, k] log_p[i, k] - log_p[i, j]) / sum_k w[i, k]`, is exact too; eager torch
    computes it only when the weights require a gradient, graphs prune it when unused.

    JAX (always XLA) keeps the differentiated `logsumexp(logits[i]) - sum_j w[i, j] *
    max(logits[i, j], lowest) / sum_j w[i, j]`: XLA fuses its backward, and both the
    written-out gradient and the `log_softmax` forward were ~5% slower there (B = 1024).
    """
    if backend.ALWAYS_COMPILED:
        count = ops.sum(target_weights, axis=-1)
        finite_logits = ops.maximum(logits, lowest_finite(logits.dtype))
        weighted_logits = ops.sum(target_weights * finite_logits, axis=-1)
        cross_entropy = ops.logsumexp(logits, axis=-1) - ops.divide_no_nan(weighted_logits, count)
        return ops.where(count > 0, cross_entropy, 0)
    return _soft_target_cross_entropy_with_gradient(target_weights, logits)


def _soft_target_cross_entropy(target_weights, logits):
    """`(loss, gradient function)` of `soft_target_cross_entropy`, for
    `keras.ops.custom_gradient`."""
    # Eager torch runs the whole gradient function: skip the weights' [B, N] passes where they
    # need no gradient (targets from labels). Graphs (TF, JAX, `torch.compile`) prune it.
    weights_gradient = getattr(target_weights, "requires_grad", True)
    log_probabilities = ops.log_softmax(logits, axis=-1)  # one fused pass on torch and TF
    # -inf logits (masked pairs) have -inf log-probabilities: raised to the lowest finite value,
    # a zero weight adds exactly 0 to the weighted sum (not 0 * -inf = NaN).
    finite = ops.maximum(log_probabilities, lowest_finite(logits.dtype))
    count = ops.sum(target_weights, axis=-1)
    has_target = count > 0
    mean_log_probability = ops.divide_no_nan(ops.sum(target_weights * finite, axis=-1), count)
    loss = ops.where(has_target, -mean_log_probability, 0)

    def grad(*args, upstream=None):
        upstream = backend.upstream_gradient(args, upstream)
        upstream = ops.where(has_target, upstream, 0)  # rows without a target: no gradient
        per_weight = ops.expand_dims(ops.where(has_target, upstream / count, 0), -1)
        upstream = ops.expand_dims(upstream, -1)
        d_logits = ops.exp(finite) * upstream - target_weights * per_weight
        if not weights_gradient:
            return None, d_logits
        d_weights = (ops.expand_dims(mean_log_probability, -1) - finite) * per_weight
        return d_weights, d_logits

    return loss, grad


_soft_target_cross_entropy_with_gradient = ops.custom_gradient(_soft_target_cross_entropy)


def masked_logsumexp(x, mask, axis=-1, add_one=False):
    """`log(sum_j mask[i, j] * exp(x[i, j]))` along `axis`; 0 where the row has nothing to sum.

    With `add_one=True`, `log(1 + sum_j mask[i, j] * exp(x[i, j]))` (a softplus of the
    log-sum-exp, the form of the multi-similarity and circle losses), which is also 0 for an
    empty row. The maximum is subtracted before `exp` (as a constant, so the gradient is the
    exact softmax) and masked entries never reach `exp`, so neither the value nor the gradient
    is `inf` or NaN: an empty row has zero gradient. A NaN among a row's kept entries makes its
    value and gradient NaN.

    Args:
        x: floating tensor.
        mask: boolean tensor broadcastable to `x`.
        axis: the axis to reduce. Defaults to `-1`.
        add_one: include an implicit `exp(0) = 1` term. Defaults to `False`.

    Returns:
        `x` reduced along `axis`, in the dtype of `x`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import ops
    >>> x = np.log(np.array([[1.0, 2.0, 4.0], [1.0, 1.0, 1.0]]))
    >>> mask = np.array([[True, False, True], [False, False, False]])
    >>> print(keras.ops.convert_to_numpy(ops.masked_logsumexp(x, mask)).round(4))
    [1.6094 0.    ]
    """
    x = ops.convert_to_tensor(x)
    mask = ops.broadcast_to(mask, ops.shape(x))
    if backend.ALWAYS_COMPILED:  # XLA fuses the differentiated passes
        return _masked_logsumexp(x, mask, axis, add_one)[0]
    return _masked_logsumexp_with_gradient(axis, add_one)(x, mask)


def _masked_logsumexp(x, mask, axis, add_one):
    """`(masked_logsumexp, its gradient function)`; the gradient, `exp(x - result)` where
    `mask` holds (the softmax of the row's masked entries), takes one `[B, K]` product where
    automatic differentiation replays the `where`, subtraction, clamp and `exp` of the forward
    (in eager torch, NCA's step at B = 1024 spent a quarter of its time in `where`)."""
    filled = ops.where(mask, x, lowest_finite(x.dtype))
    # An empty row's shift is the lowest finite value (0 with `add_one`): its terms are then
    # exp(0), all masked out, and its total 0 (1 with `add_one`).
    shift = ops.stop_gradient(ops.amax(filled, axis=axis, keepdims=True))
    if add_one:
        shift = ops.maximum(shift, 0)
    terms = ops.where(mask, shifted_exp(filled - shift), 0)
    total = ops.sum(terms, axis=axis, keepdims=True)
    if add_one:
        total = total + ops.exp(-shift)
    nonempty = ops.logical_not(total <= 0)  # a NaN total is not empty: NaN reaches the value
    total = ops.where(nonempty, total, 1)
    result = ops.squeeze(ops.where(nonempty, ops.log(total) + shift, 0), axis=axis)

    def grad(*args, upstream=None):
        upstream = backend.upstream_gradient(args, upstream)
        return terms * (ops.expand_dims(upstream, axis) / total), None

    return result, grad


@functools.cache
def _masked_logsumexp_with_gradient(axis, add_one):
    """`masked_logsumexp(x, mask)` with its written-out gradient, for one `axis` and `add_one`."""
    return ops.custom_gradient(lambda x, mask: _masked_logsumexp(x, mask, axis, add_one))


def shifted_exp(x):
    """`exp(x)` of arguments shifted by their maximum, so that the terms that count are near 1.

    On PyTorch, arguments below `ceil(log(tiny)) + 1` (-86 in float32, -707 in float64;
    `tiny`: the dtype's smallest normal number) are raised to it first, so each such term is
    `e^-86` (4.4e-38) in float32 instead of a smaller number or 0, and has zero gradient: next
    to a sum of at least 1 the difference is far below the dtype's resolution. PyTorch's CPU
    `exp` takes a path 8-35x slower for arguments that underflow (a `[1024, 1024]` float32
    `exp` of masked logits: 4-25 ms instead of 0.7). float16 (whose smallest normal, 6.1e-5,
    is not negligible) is not clamped, nor are the other backends' arguments (their `exp` has
    no such slow path).
    """
    x = ops.convert_to_tensor(x)
    dtype = keras.backend.standardize_dtype(x.dtype)
    if backend.NAME != "torch" or dtype == "float16":
        return ops.exp(x)
    return ops.exp(ops.maximum(x, float(np.ceil(np.log(np.finfo(dtype).tiny)) + 1)))


def lowest_finite(dtype):
    """The most negative finite value of float `dtype`: a masked logit without `-inf` or NaN."""
    return float(np.finfo(keras.backend.standardize_dtype(dtype)).min)


def mean(losses):
    """Mean over the first axis; 0 for an empty batch (not 0 / 0)."""
    count = ops.cast(ops.shape(losses)[0], losses.dtype)
    return ops.divide_no_nan(ops.sum(losses, axis=0), count)


def positive_part(x):
    """`max(x, 0)`, computed as `(x + |x|) / 2` (exact in floating point below overflow).

    For `[B, B]` distance matrices: `torch.compile`'s CPU backend saves `relu`'s backward mask
    as a boolean `[B, B]` tensor, and stores of boolean tensors are slow there (15 ms for
    1024 x 1024, against 0.3 ms for a float pass); the backward of `abs` needs only `x`. The
    gradient at exactly `x == 0` is 1/2 (`relu`'s is 0).
    """
    return (x + ops.abs(x)) * 0.5


def safe_sqrt(x):
    """`sqrt(x)` for `x >= 0` whose value and gradient are 0 where `x <= 0` (not `inf`/NaN);
    NaN stays NaN.

    `where(x > 0, sqrt(where(x > 0, x, 1)), 0)`: the inner `where` keeps the unused branch away
    from `sqrt(0)`, whose derivative is infinite and would turn `0 * inf` into NaN. No epsilon
    is added, so positive values are exact. The test is `not x <= 0`, so that a NaN takes the
    `sqrt` branch and reaches the loss (`x > 0` is false for NaN and would give 0).
    """
    positive = ops.logical_not(ops.less_equal(x, 0))
    return ops.where(positive, ops.sqrt(ops.where(positive, x, 1.0)), 0.0)
