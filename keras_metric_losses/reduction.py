"""Per-anchor values from the elements of a loss (pairs `[B, K]`, triplets `[B, K, K]`).

A Keras loss returns one value per anchor and Keras averages them (`"sum_over_batch_size"`).
Losses made of many elements per anchor (one per positive pair, one per triplet) therefore need
a rule that turns an anchor's elements into its value. `anchor_mean` is the natural one. The
others reproduce pytorch-metric-learning's reducers (PML 2.9), which average over the elements
of the whole batch: they give anchor `i` its share `B * sum_j v[i, j] / N` of the batch
aggregate `sum v / N`, so that Keras' mean over the `B` anchors equals PML's scalar exactly
(and so do the gradients). `N` depends on the whole batch, so such a value is not a property of
the anchor alone: `sample_weight` then reweights shares of a batch statistic.

| function | PML reducer | `N` |
| --- | --- | --- |
| `anchor_mean` | (none: the mean of each anchor's own elements) | per anchor |
| `batch_mean` | `MeanReducer` | number of elements in the batch |
| `nonzero_mean` | `AvgNonZeroReducer` | number of elements `> 0` in the batch |
| `divided` | `DivisorReducer` | a given divisor |

Every function returns 0 where `N` (or an anchor's count) is 0: no NaN, zero gradient. Under
`cross_replica=True` the batch aggregates are those of each replica's anchors.
"""

from keras_metric_losses import distributed, docstrings, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops

__all__ = ["anchor_mean", "batch_mean", "divided", "nonzero_mean"]

# The `reducer` hyperparameter: each anchor's own mean, or its share of PML's batch aggregate.
REDUCERS = ("anchor", "pml")


def empty_batch_as_zero(result, reduction):
    """A Keras loss's result with 0 for an empty batch: Keras' reductions return the `[]` values
    of a batch of none (`"none"` / `None` keep them)."""
    if reduction not in (None, "none") and tuple(result.shape) == (0,):
        return ops.sum(result)
    return result


def check_reducer(value, name):
    """A hyperparameter check: `"anchor"` or `"pml"`."""
    return validation.one_of(value, name, REDUCERS)


def _row_sums(values, mask):
    masked = ops.where(mask, values, 0.0)
    return ops.reshape(ops.sum(ops.reshape(masked, (ops.shape(values)[0], -1)), axis=1), (-1,))


def count(mask, dtype, axis=None):
    """The number of `True` entries of `mask` (along `axis`), in `dtype`. A total is counted
    without a float copy of the mask (`count_nonzero`: 3 ms against 27 ms for a cast and a sum
    of a `[1024, 8192]` mask on eager torch); per row the cast and the sum are faster."""
    if axis is None:
        # Of a `[1, 1, N]` view: Keras' torch `count_nonzero` transposes its result, which
        # warns below two dimensions.
        total = ops.count_nonzero(ops.reshape(mask, (1, 1, -1)), axis=2)
        return ops.cast(ops.reshape(total, ()), dtype)
    return ops.sum(ops.cast(mask, dtype), axis=axis)


_REDUCER_DOC = """
    Args:
        values: `[B, ...]` element values.
        mask: `[B, ...]` booleans, the elements that exist.{divisor}

    Returns:
        `[B]` values in the dtype of `values`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import reduction
    >>> v = np.array({values})
    >>> keras.ops.convert_to_numpy(reduction.{call}).tolist()
    {shows}
"""


def _reducer_doc(call, values, shows, divisor=""):
    return docstrings.append(_REDUCER_DOC, call=call, values=values, shows=shows, divisor=divisor)


@export
@_reducer_doc("anchor_mean(v, v > 1)", "[[1.0, 3.0], [2.0, 0.0]]", "[3.0, 2.0]")
def anchor_mean(values, mask):
    """The mean of each anchor's elements where `mask` is set (0 for an anchor with none)."""
    values, mask = ops.convert_to_tensor(values), ops.convert_to_tensor(mask)
    flat = ops.reshape(mask, (ops.shape(mask)[0], -1))
    return ops.divide_no_nan(_row_sums(values, mask), count(flat, values.dtype, axis=1))


@export
@_reducer_doc(
    "divided(v, v > -1, 4.0)",
    "[[1.0, 3.0], [2.0, 0.0]]",
    "[2.0, 1.0]",
    divisor="\n        divisor: A scalar (tensor) divisor.",
)
def divided(values, mask, divisor):
    """Each anchor's share `B * sum_j v[i, j] / divisor` of `sum v / divisor` (0 if the divisor
    is 0): Keras' batch mean of the result is PML's `DivisorReducer` scalar."""
    values = ops.convert_to_tensor(values)
    batch = ops.cast(ops.shape(values)[0], values.dtype)
    divisor = ops.cast(divisor, values.dtype)
    return ops.divide_no_nan(batch * _row_sums(values, mask), divisor)


@export
@_reducer_doc("batch_mean(v, v > -1)", "[[1.0, 3.0], [2.0, 0.0]]", "[2.0, 1.0]")
def batch_mean(values, mask):
    """Per-anchor shares of the mean over every element of the batch (PML's `MeanReducer`):
    the example's mean is 1.5, Keras' mean of its shares."""
    values = ops.convert_to_tensor(values)
    return divided(values, mask, count(mask, values.dtype))


@export
@_reducer_doc("nonzero_mean(v, v > -1)", "[[1.0, 2.0], [3.0, 0.0]]", "[2.0, 2.0]")
def nonzero_mean(values, mask):
    """Per-anchor shares of the mean over the elements `> 0` of the batch (PML's
    `AvgNonZeroReducer`): elements equal to 0 add nothing and do not count."""
    values = ops.convert_to_tensor(values)
    positive = ops.logical_and(ops.convert_to_tensor(mask), values > 0)
    return divided(values, mask, count(positive, values.dtype))


def reduce_elements(values, mask, reducer, pml_rule=nonzero_mean):
    """One value per anchor from `[b, ...]` element terms: the anchor's mean (`"anchor"`) or its
    share of PML's batch aggregate (`"pml"`, `pml_rule` one of the functions above)."""
    if reducer == "pml":
        return pml_rule(values, mask)
    return anchor_mean(values, mask)


def reduce_weighted(values, weights, reducer):
    """`reduce_elements(values, weights > 0, reducer, batch_mean)` with each element counted
    `weights` times (PML's lists that hold a pair more than once): the anchor's weighted mean
    (`"anchor"`), or its share of the batch's weighted mean (`"pml"`)."""
    values = ops.convert_to_tensor(values)
    weights = ops.cast(weights, values.dtype)
    selected = weights > 0
    weighted = ops.where(selected, values * weights, 0.0)
    if reducer == "pml":
        return divided(weighted, selected, ops.sum(weights))
    return ops.divide_no_nan(_row_sums(weighted, selected), ops.sum(weights, axis=1))


def batch_sum(x, cross_replica):
    """The sum of the scalar `x` over every replica's batch under `cross_replica=True`, `x`
    itself otherwise; differentiable (each replica's gradient flows back to its own `x`)."""
    if not cross_replica:
        return x
    return ops.sum(distributed.all_gather(ops.reshape(x, (1,))))


def batch_total(x, cross_replica):
    """The sum of the scalar `x` over every replica's batch (no gradient): the global batch's
    count under `cross_replica=True`, `x` itself otherwise."""
    x = ops.stop_gradient(ops.cast(x, "float32"))
    if not cross_replica:
        return x
    return ops.sum(distributed.all_gather(ops.reshape(x, (1,))))


def share(row_sums, count, num_rows, enabled=True):
    """Each anchor's share `N * row_sum / count` of `sum / count` (0 where not `enabled` or
    where `count` is 0): Keras' mean over the `N` anchors of the (global) batch is the batch
    aggregate."""
    rows = ops.cast(num_rows, row_sums.dtype)
    values = ops.divide_no_nan(rows * row_sums, ops.cast(count, row_sums.dtype))
    return ops.where(enabled, values, 0.0)
