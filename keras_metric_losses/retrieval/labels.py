"""Class labels of retrieval, on the host: which neighbours are relevant to a query, and how
many relevant references each query has (its `R`).

Labels are either one class id per example (`[N]` or `[N, 1]`; a reference is relevant when
its id equals the query's) or multi-hot (`[N, C]` with `C > 1`, 0/1 or bool; relevant when the
two share a class). They stay in their own dtype: unlike pytorch-metric-learning, which casts
labels to float32 (ids at or above `2**24` can merge), ids are compared exactly.
"""

import keras
import numpy as np


def host_labels(labels, num_rows, name, embeddings_name):
    """`labels` as a NumPy array in their own dtype: `[N]` class ids or `[N, C]` bool multi-hot
    rows.

    Raises:
        ValueError: for another rank, or a number of rows other than `num_rows`.
        TypeError: for labels that are not numbers or bools.
    """
    host = np.asarray(keras.ops.convert_to_numpy(labels))
    if host.dtype != bool and not np.issubdtype(host.dtype, np.number):
        raise TypeError(
            f"`{name}` must hold integer class ids or multi-hot rows. "
            f"Received: {name}.dtype={host.dtype}"
        )
    if host.ndim not in (1, 2) or host.shape[0] != num_rows:
        raise ValueError(
            f"`{name}` must hold one class id per row of `{embeddings_name}` ([N] or [N, 1]) "
            f"or one multi-hot row per row ([N, num_classes]), with N={num_rows}. "
            f"Received: {name}.shape={host.shape}"
        )
    if host.ndim == 2 and host.shape[1] == 1:
        return host[:, 0]
    return host if host.ndim == 1 else host != 0


def check_same_kind(query_labels, reference_labels):
    """Checks that both are class ids, or both multi-hot over the same classes."""
    if query_labels.shape[1:] != reference_labels.shape[1:]:
        raise ValueError(
            "`query_labels` and `reference_labels` must both be class ids ([N] or [N, 1]) or "
            "both multi-hot over the same classes ([N, num_classes]). Received: "
            f"query_labels.shape={query_labels.shape} and "
            f"reference_labels.shape={reference_labels.shape}"
        )


def is_multi_hot(labels):
    return labels.ndim == 2


def relevant(query_labels, reference_labels, indices):
    """`[c, k]` bool: whether reference `indices[i, j]` is relevant to query `i`."""
    neighbours = reference_labels[indices]
    if is_multi_hot(query_labels):
        return np.any(neighbours & query_labels[:, None, :], axis=-1)
    return neighbours == query_labels[:, None]


def relevant_counts(query_labels, reference_labels, ref_includes_query, rows):
    """`[Nq]` int: each query's number of relevant references `R`, not counting its own row
    when `ref_includes_query`. Multi-hot overlaps are counted `rows` queries at a time."""
    if is_multi_hot(query_labels):
        references = reference_labels.astype(np.float32).T
        counts = np.concatenate(
            [
                np.count_nonzero(query_labels[i : i + rows].astype(np.float32) @ references, 1)
                for i in range(0, len(query_labels), rows)
            ]
        )
        own = np.any(query_labels, axis=1)
    else:
        classes, sizes = np.unique(reference_labels, return_counts=True)
        position = np.minimum(np.searchsorted(classes, query_labels), len(classes) - 1)
        counts = np.where(classes[position] == query_labels, sizes[position], 0)
        own = np.ones(len(query_labels), bool)
    return counts - (own & ref_includes_query)
