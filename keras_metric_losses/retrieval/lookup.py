"""The checks, match masks, per-query class counts and averages that TensorFlow Similarity's
retrieval metrics (`tfsim`) share, on `lookup_labels` `[num_queries, num_lookups]`."""

import math
import numbers
from collections.abc import Mapping

import numpy as np

from keras_metric_losses import validation
from keras_metric_losses.backend import ops

_AVERAGES = ("micro", "macro")

FLOAT = "float32"  # TF Similarity computes in its floatx


def settings(k, average, drop_closest_lookup):
    return (
        validation.positive_int(k, "k"),
        validation.one_of(average, "average", _AVERAGES),
        validation.boolean(drop_closest_lookup, "drop_closest_lookup"),
    )


def threshold(value):
    """`distance_threshold`: any number but NaN (`math.inf` counts every neighbour)."""
    if (
        not isinstance(value, numbers.Real)
        or isinstance(value, (bool, np.bool_))
        or math.isnan(value)
    ):
        raise ValueError(
            "`distance_threshold` must be a number (math.inf for no threshold). "
            f"Received: distance_threshold={value!r}"
        )
    return float(value)


def class_sizes(r):
    """`r` as a dict class id -> count >= 0 sorted by id, or `None`."""
    if r is None:
        return None
    if not isinstance(r, Mapping) or not r:
        raise ValueError(
            "`r` must be None or a non-empty mapping class id -> number of examples of that "
            f"class in the index. Received: r={r!r}"
        )
    for label in r:
        if not isinstance(label, numbers.Real) or isinstance(label, (bool, np.bool_)):
            raise ValueError(f"`r` must map class ids (numbers). Received: r key {label!r}")
    return {label: validation.positive_int(r[label], f"r[{label!r}]", low=0) for label in sorted(r)}


def match_mask(query_labels, lookup_labels, k, columns, reason):
    """`(query_labels, m)`: the labels as a tensor and the `[num_queries, num_lookups]` mask."""
    query_labels = validation.numeric_tensor(query_labels, "query_labels")
    lookup_labels = validation.numeric_tensor(lookup_labels, "lookup_labels")
    queries, lookups = tuple(query_labels.shape), tuple(lookup_labels.shape)
    if len(queries) not in (1, 2) or len(lookups) != len(queries) + 1:
        raise ValueError(
            "`lookup_labels` must be [num_queries, num_lookups] for class ids `query_labels` "
            "[num_queries], or [num_queries, num_lookups, num_classes] for multi-hot "
            f"`query_labels` [num_queries, num_classes]. Received: query_labels.shape={queries} "
            f"and lookup_labels.shape={lookups}"
        )
    for query_size, lookup_size in zip(queries, lookups[:1] + lookups[2:], strict=True):
        if None not in (query_size, lookup_size) and query_size != lookup_size:
            raise ValueError(
                "`lookup_labels` must hold one row of neighbours per query (and the classes of "
                f"multi-hot `query_labels`). Received: query_labels.shape={queries} and "
                f"lookup_labels.shape={lookups}"
            )
    if lookups[1] is not None and lookups[1] < columns:
        raise ValueError(
            f"`lookup_labels` must have at least {columns} columns for k={k} ({reason}). "
            f"Received: lookup_labels.shape={lookups}"
        )
    if len(queries) == 1:
        return query_labels, ops.equal(lookup_labels, ops.expand_dims(query_labels, 1))
    shared = ops.logical_and(
        ops.not_equal(lookup_labels, 0), ops.expand_dims(ops.not_equal(query_labels, 0), 1)
    )
    return query_labels, ops.any(shared, axis=-1)


def class_ids_for(query_labels, average, r=None):
    """Refuses multi-hot `query_labels` where class ids are needed (macro averaging, `r`)."""
    if len(query_labels.shape) == 1:
        return
    if average == "macro":
        raise ValueError(
            "`average` must be 'micro' for multi-hot `query_labels`: 'macro' averages over "
            f"class ids. Received: average='macro' and query_labels.shape="
            f"{tuple(query_labels.shape)}"
        )
    if r is not None:
        raise ValueError(
            "`r` must be None for multi-hot `query_labels`: it maps class ids to class sizes. "
            f"Received: r with {len(r)} entries and query_labels.shape="
            f"{tuple(query_labels.shape)}"
        )


def class_counts(query_labels, mask, r, k, drop):
    """`[num_queries]` float32 divisors `c_i`: `r[label]` (0 if absent) or `k`, minus 1 (at
    least 0) with `drop`."""
    if r is None:
        counts = ops.zeros_like(mask[:, 0], dtype=FLOAT) + float(k)
    else:
        labels = ops.convert_to_tensor(list(r), dtype=query_labels.dtype)
        sizes = ops.convert_to_tensor(list(r.values()), dtype=FLOAT)
        index = ops.minimum(ops.searchsorted(labels, query_labels), len(r) - 1)
        found = ops.equal(ops.take(labels, index), query_labels)
        counts = ops.where(found, ops.take(sizes, index), 0.0)
    return ops.maximum(counts - 1.0, 0.0) if drop else counts


def average(per_query, query_labels, average):
    """Mean over the queries (`"micro"`), or over the labels of the per-label means
    (`"macro"`: each query weighs `1 / size of its label`, normalised)."""
    if average == "micro":
        return ops.mean(per_query)
    present = ops.sort(query_labels)
    sizes = ops.searchsorted(present, query_labels, side="right") - ops.searchsorted(
        present, query_labels, side="left"
    )
    weights = 1.0 / ops.cast(sizes, FLOAT)
    return ops.sum(per_query * weights) / ops.sum(weights)
