"""Exact k nearest neighbours on the backend, one block of queries and references at a time.

The search (`blocks`) compares `rows` queries with `width` references at a time, one matrix of
at most `blocks.BLOCK_ENTRIES` distances, and keeps each query's `k` best: the peak memory is
`O(rows * width + N_query * k)` whatever the number of queries and references
(pytorch-metric-learning's `AccuracyCalculator` builds the whole query set's k-NN search at
once, its out-of-memory reports #353 and #566).

Ranking: ascending distance, or descending similarity for a distance that is larger-is-closer
(`distances.larger_is_closer`); equal values go to the lower reference index, exactly, on every
backend. When the query set is its own reference (or the first rows of it), query `i`'s own row
`i` is excluded by its index, not by its distance.
"""

import warnings

import keras
import numpy as np

from keras_metric_losses import backend, distances, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.retrieval import blocks


def embeddings(x, name):
    """`x` as a `[N, D]` float matrix, float32 for integers and half precisions, else its own
    float dtype: a backend tensor as it is, anything else (NumPy arrays, lists) as a NumPy array
    on the host, whose blocks the search converts one at a time (no copy of the whole set on
    the backend).

    Raises:
        ValueError: if `x` is not a matrix or holds no row.
        TypeError: if `x` does not hold numbers.
    """
    if ops.is_tensor(x) or validation.is_sparse(x):
        x = validation.numeric_tensor(x, name)
    else:
        x = np.asarray(validation.numeric_array(x, name))
    validation.rank(x, 2, "a [num_embeddings, dim] matrix of embeddings", name)
    if x.shape[0] == 0:
        raise ValueError(
            f"`{name}` must hold at least one embedding. Received: {name}.shape={tuple(x.shape)}"
        )
    if keras.backend.standardize_dtype(x.dtype) not in ("float32", "float64"):
        x = x.astype("float32") if isinstance(x, np.ndarray) else ops.cast(x, "float32")
    return x


def all_finite(x):
    """Whether every value of `x` (a NumPy array or a backend tensor) is finite."""
    if isinstance(x, np.ndarray):
        return bool(np.isfinite(x).all())
    return bool(ops.all(ops.isfinite(x)))


def check_dims(query, reference):
    """Checks that queries and references have the same embedding dimension."""
    if query.shape[1] != reference.shape[1]:
        raise ValueError(
            "`query` and `reference` must have the same embedding dimension. Received: "
            f"query.shape={tuple(query.shape)} and reference.shape={tuple(reference.shape)}"
        )


def check_chunk_size(chunk_size):
    """`chunk_size` checked: `None` or a positive int."""
    return None if chunk_size is None else validation.positive_int(chunk_size, "chunk_size")


def check_jit_compile(jit_compile):
    """`jit_compile` checked: `"auto"`, `True` or `False`."""
    if jit_compile is True or jit_compile is False or jit_compile == "auto":
        return jit_compile
    raise ValueError(
        f'`jit_compile` must be "auto", True or False. Received: jit_compile={jit_compile!r}'
    )


def search(
    query, reference, k, *, distance, exclude_self, chunk_size, jit_compile="auto", progress=None
):
    """Yields `(start, distances [c, k], indices [c, k])` for each block of `c` queries from
    row `start`, nearest first, as backend tensors (see `blocks.search` for the schedules).

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
    return blocks.search(
        query,
        reference,
        k,
        fn=fn,
        exclude_self=exclude_self,
        chunk_size=chunk_size,
        jit_compile=jit_compile,
        progress=progress,
    )


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
    query,
    reference=None,
    *,
    k=1,
    distance="squared_euclidean",
    exclude_self=None,
    chunk_size=None,
    jit_compile="auto",
):
    """The exact `k` nearest references of each query, searched block by block.

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
        chunk_size: Queries and references per block of the search: the largest matrix is
            `[chunk_size, chunk_size]`, or `[chunk_size, N_ref]` for a `k` above `chunk_size / 4`.
            Defaults to 4096 (in the second case as many queries as fit `2**24` distances).
        jit_compile: How each block runs: `"auto"` (default) as `model.fit` runs by default
            on a CPU (`jax.jit`, `tf.function`, eager torch), `True` with the backend's compiler
            (`jax.jit`, XLA, `torch.compile`), `False` eagerly.

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
    whose search of all queries at once is replaced by blocks.
    """
    query = embeddings(query, "query")
    own = reference is None
    reference = query if own else embeddings(reference, "reference")
    check_dims(query, reference)
    exclude_self = self_excluded(exclude_self, own, query, reference, "exclude_self")
    k = validation.positive_int(k, "k")
    k = min(k, reference.shape[0] - exclude_self)
    found = search(
        query,
        reference,
        k,
        distance=distance,
        exclude_self=exclude_self,
        chunk_size=check_chunk_size(chunk_size),
        jit_compile=check_jit_compile(jit_compile),
    )
    parts = list(found)
    return (
        ops.concatenate([nearest for _, nearest, _ in parts], axis=0),
        ops.concatenate([indices for _, _, indices in parts], axis=0),
    )


def self_excluded(flag, own, query, reference, name):
    """Resolves whether query `i` is reference row `i`: `None` means `own`, whether the caller
    passed no reference (the queries are their own).

    Raises:
        ValueError: for `False` when the queries are their own reference, and for `True` with
            fewer reference rows than queries.
    """
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
