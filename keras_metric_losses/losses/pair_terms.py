"""Parts shared by the pair-based losses (contrastive, lifted, multi-similarity, circle, soft
nearest neighbour, tuplet margin): the front end with optional normalisation, margins that read
a distance or a similarity, and the per-anchor reducers.

Every loss of the family is written as `elements(pairs, ...)` over the `Pairs` of the front end
(`keras_metric_losses.pairs`): the dense `[b, K]` matrices of its pair terms and the masks of
the pairs that exist. The public function builds the `Pairs` from `y_true` / `y_pred` (keys:
the batch, `ref_embeddings`, or every replica) and reduces the elements to one value per anchor.
A cross-batch memory builds its own `Pairs` (`embedding_pairs(..., ref_embeddings=memory,
self_columns=...)`) and calls the same `elements`.
"""

import dataclasses

from keras import ops

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.ops import is_float_dtype
from keras_metric_losses.pairs import embedding_pairs

REDUCERS = ("anchor", "pml")

# PML's `torch.nn.functional.normalize`: x / max(|x|, 1e-12).
_NORM_FLOOR_SQUARED = 1e-24


def check_reducer(value, name):
    """A hyperparameter check: `"anchor"` or `"pml"`."""
    return validation.one_of(value, name, REDUCERS)


def positive_real(value, name):
    """A hyperparameter check: a finite number `> 0`."""
    return validation.real(value, name, low=0.0, low_open=True)


def unit_rows(x):
    """`x / max(|x|, 1e-12)` row by row (PML's and `torch.nn.functional.normalize`'s rule).

    Written as `x / sqrt(max(|x|^2, 1e-24))`, so a zero row stays 0 with a finite (zero)
    gradient instead of `0 / 0`.
    """
    squared = ops.sum(ops.square(x), axis=-1, keepdims=True)
    return x / ops.sqrt(ops.maximum(squared, _NORM_FLOOR_SQUARED))


def normalized(pairs):
    """`pairs` with L2-normalised queries and keys (the keys stay the queries in a batch)."""
    queries = unit_rows(pairs.queries)
    keys = queries if pairs.keys_are_queries else unit_rows(pairs.keys)
    return dataclasses.replace(pairs, queries=queries, keys=keys)


def batch_pairs(
    y_true,
    y_pred,
    *,
    normalize=False,
    ref_embeddings=None,
    ref_labels=None,
    cross_replica=False,
):
    """The checked `Pairs` of a batch (see `embedding_pairs`), normalised if `normalize`.

    With `ref_embeddings` no key is the anchor itself (unless a cross-batch memory says which
    one is, through `pairs.memory_keys`).
    """
    pairs = embedding_pairs(
        y_true,
        y_pred,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        cross_replica=cross_replica,
    )
    return normalized(pairs) if normalize else pairs


def is_empty(pairs):
    """Whether there is no query or no key (static shapes): reductions over an empty axis fail
    on some backends, so the losses return zeros without computing anything."""
    return pairs.queries.shape[0] == 0 or pairs.keys.shape[0] == 0


def zeros(pairs):
    """`[b]` zeros in the compute dtype, connected to the queries (a zero gradient)."""
    return ops.sum(pairs.queries, axis=1) * 0.0


def beyond(x, y, larger_is_closer):
    """How far `x` lies beyond `y` on the wrong side: `x - y` for a distance, `y - x` for a
    similarity (PML's `distance.margin(x, y)`)."""
    return y - x if larger_is_closer else x - y


def pair_matrix(pairs, distance):
    """`([b, K] matrix, larger_is_closer)` of a distance name or callable."""
    return pairs.distances(distance), distances.larger_is_closer(distance)


def masked(values, mask):
    """`values` where `mask` holds, 0 elsewhere (no NaN from the unused entries)."""
    return ops.where(mask, values, ops.zeros_like(values))


def count(mask, dtype):
    """The number of `True` entries of `mask`, as a scalar of `dtype`."""
    return ops.sum(ops.cast(mask, dtype))


def reduce_pairs(values, mask, reducer, pml_rule):
    """One value per anchor from `[b, K]` pair terms: the anchor's mean (`"anchor"`) or its share
    of PML's batch aggregate (`"pml"`, `pml_rule` is a function of `reduction`)."""
    if reducer == "pml":
        return pml_rule(values, mask)
    return reduction.anchor_mean(values, mask)


def in_dtype_of(values, y_pred):
    """Per-anchor values in the dtype of `y_pred` (float32 for non-float input)."""
    dtype = ops.convert_to_tensor(y_pred).dtype
    return ops.cast(values, dtype) if is_float_dtype(dtype) else values
