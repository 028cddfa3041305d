"""Exact k nearest neighbours on the backend, one chunk of queries at a time.

Each chunk of `chunk_size` queries is compared with the whole reference set: the distance matrix
of a chunk is `[chunk_size, N_ref]`, so the peak memory is `O(chunk_size * N_ref)` whatever the
number of queries (pytorch-metric-learning's `AccuracyCalculator` builds the whole query set's
k-NN search at once, its out-of-memory reports #353 and #566).

Ranking: ascending distance, or descending similarity for a distance that is larger-is-closer
(`distances.larger_is_closer`); equal values go to the lower reference index, exactly, on every
backend (`backend.top_k_first_index`). When the query set is its own reference (or the first
rows of it), query `i`'s own row `i` is excluded by its index, not by its distance.
"""

import math
import warnings

import keras

from keras_metric_losses import backend, distances, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops

# A chunk's distance matrix holds at most this many entries by default (64 MiB in float32).
CHUNK_ENTRIES = 2**24


def embeddings(x, name):
    """`x` as a `[N, D]` float tensor: float32 for integers and half precisions, else its own
    float dtype.

    Raises:
        ValueError: if `x` is not a matrix or holds no row.
        TypeError: if `x` does not hold numbers.
    """
    x = validation.numeric_tensor(x, name)
    validation.rank(x, 2, "a [num_embeddings, dim] matrix of embeddings", name)
    if x.shape[0] == 0:
        raise ValueError(
            f"`{name}` must hold at least one embedding. Received: {name}.shape={tuple(x.shape)}"
        )
    if keras.backend.standardize_dtype(x.dtype) not in ("float32", "float64"):
        x = ops.cast(x, "float32")
    return x


def check_dims(query, reference):
    """Checks that queries and references have the same embedding dimension."""
    if query.shape[1] != reference.shape[1]:
        raise ValueError(
            "`query` and `reference` must have the same embedding dimension. Received: "
            f"query.shape={tuple(query.shape)} and reference.shape={tuple(reference.shape)}"
        )


def chunk_rows(chunk_size, num_references):
    """The number of queries per chunk: `chunk_size`, or by default as many as keep a chunk's
    `[chunk, N_ref]` matrix within `CHUNK_ENTRIES` entries (at least one)."""
    if chunk_size is None:
        return max(1, CHUNK_ENTRIES // num_references)
    return validation.positive_int(chunk_size, "chunk_size")


def ranking_keys(matrix, larger_is_closer):
    """`matrix` as keys whose larger values rank first: negated for a distance, and `-0.0` made
    `0.0` so that the two tie (and go by index)."""
    keys = matrix if larger_is_closer else -matrix
    return ops.where(keys == 0, ops.zeros_like(keys), keys)


def search(query, reference, k, *, distance, exclude_self, chunk_size):
    """Yields `(start, distances [c, k], indices [c, k])` for each chunk of `c` queries from
    row `start`, nearest first, as backend tensors.

    `query` `[Nq, D]` and `reference` `[Nr, D]` are checked float tensors; `k` is at most the
    number of references a query can have (`Nr`, or `Nr - 1` with `exclude_self`, where query
    `i` is reference row `i`). A query whose distances to the references are not all finite
    gets NaN distances (its indices are then meaningless).
    """
    fn = distances.get(distance)
    if fn is distances.cosine:
        _warn_unless_unit(query, "query")
        if reference is not query:
            _warn_unless_unit(reference, "reference")
    larger_is_closer = distances.larger_is_closer(distance)
    num_queries, num_references = query.shape[0], reference.shape[0]
    rows = chunk_rows(chunk_size, num_references)
    for start in range(0, num_queries, rows):
        stop = min(start + rows, num_queries)
        matrix = fn(query[start:stop], reference)  # [c, Nr]
        keys = ranking_keys(matrix, larger_is_closer)
        if exclude_self:
            own = ops.one_hot(ops.arange(start, stop), num_references, dtype="bool")
            keys = ops.where(own, -math.inf, keys)
        _, indices = backend.top_k_first_index(keys, k)
        nearest = ops.take_along_axis(matrix, indices, axis=1)
        finite = ops.all(ops.isfinite(matrix), axis=1, keepdims=True)
        yield start, ops.where(finite, nearest, math.nan), indices


def _warn_unless_unit(x, name):
    """`"cosine"` is `1 - q.k` of unit embeddings (the losses' convention): on others it ranks
    by the inner product, silently. Warns (eagerly; nothing is read when traced)."""
    if not backend.is_concrete(x):
        return
    norms = ops.convert_to_numpy(ops.sqrt(ops.sum(ops.square(x), axis=1)))
    off = abs(norms - 1.0) > 1e-3
    if off.any():
        warnings.warn(
            f'distance="cosine" is 1 - q.k of unit-normalised embeddings, but {off.sum()} rows '
            f"of `{name}` are not unit (norms from {norms.min():.3g} to {norms.max():.3g}): the "
            'ranking is then the inner product\'s. Use distance="cosine_similarity", which '
            "normalises them.",
            stacklevel=3,
        )


@export
def nearest_neighbors(
    query, reference=None, *, k=1, distance="squared_euclidean", exclude_self=None, chunk_size=None
):
    """The exact `k` nearest references of each query, searched one chunk of queries at a time.

    For query `q_i` the references `r_j` are ranked by `d(q_i, r_j)` ascending (descending for
    a similarity such as `"cosine_similarity"`), equal values by lower index `j`, and the first
    `k` are returned. With `exclude_self`, reference row `i` is query `i` itself and is left
    out of its ranking (by index: a duplicate of the query at another row is kept).

    Args:
        query: `[Nq, D]` embeddings.
        reference: `[Nr, D]` embeddings; `None` (default) searches the queries themselves.
        k: The number of neighbours, a positive int. A `k` larger than the references a query
            can have is cut to that number (`Nr`, or `Nr - 1` with `exclude_self`): the result
            has fewer columns, never padding. Defaults to 1.
        distance: A name of `distances.names()` or a callable `fn(query, key) -> [Q, K]`
            (see `distances.get`). Defaults to `"squared_euclidean"` (the ranking of
            pytorch-metric-learning's default `FaissKNN`).
        exclude_self: Whether reference row `i` is query `i` and is excluded from its
            neighbours. Defaults to `True` when `reference` is `None`, else `False`.
        chunk_size: Queries per chunk; each chunk builds a `[chunk_size, Nr]` distance matrix.
            Defaults to as many as fit `2**24` entries (64 MiB in float32), at least one.

    Returns:
        `(distances, indices)`, both `[Nq, min(k, available)]`, nearest first: the distances
        (in the embeddings' float dtype, float32 for lower precisions) and the int32 reference
        indices. A query whose distances are not all finite (NaN or inf embeddings, overflow)
        has NaN distances and meaningless indices.

    Raises:
        ValueError: for embeddings that are not non-empty matrices, query and reference
            dimensions that differ, `exclude_self=True` with fewer references than queries,
            `exclude_self=False` without `reference`, or a `k` below 1.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import retrieval
    >>> x = np.array([[0.0], [1.0], [3.0], [1.0]])
    >>> distances, indices = retrieval.nearest_neighbors(x, k=2)
    >>> keras.ops.convert_to_numpy(indices).tolist()
    [[1, 3], [3, 0], [1, 3], [1, 0]]

    Reference: the exact search of pytorch-metric-learning's `FaissKNN` (`faiss.IndexFlatL2`),
    whose search of all queries at once is replaced by chunks.
    """
    query = embeddings(query, "query")
    reference = query if reference is None else embeddings(reference, "reference")
    check_dims(query, reference)
    exclude_self = self_excluded(exclude_self, query, reference, "exclude_self")
    k = validation.positive_int(k, "k")
    k = min(k, reference.shape[0] - exclude_self)
    chunks = search(
        query, reference, k, distance=distance, exclude_self=exclude_self, chunk_size=chunk_size
    )
    parts = list(chunks)
    return (
        ops.concatenate([nearest for _, nearest, _ in parts], axis=0),
        ops.concatenate([indices for _, _, indices in parts], axis=0),
    )


def self_excluded(flag, query, reference, name):
    """Resolves whether query `i` is reference row `i`: `None` means "`reference` is the
    queries" (the same tensor, as when the caller passed no reference).

    Raises:
        ValueError: for `False` when the queries are their own reference, and for `True` with
            fewer reference rows than queries.
    """
    own = reference is query
    if flag is None:
        return own
    flag = validation.boolean(flag, name)
    if own and not flag:
        raise ValueError(
            f"Without `reference` the queries are their own reference: `{name}` must be True "
            f"or None. Received: {name}={flag}"
        )
    if flag and reference.shape[0] < query.shape[0]:
        raise ValueError(
            f"With `{name}=True` the first rows of `reference` are the queries, so it needs at "
            f"least as many rows. Received: query.shape={tuple(query.shape)} and "
            f"reference.shape={tuple(reference.shape)}"
        )
    return flag
