"""The exact k-NN search, block by block: each step compares `rows` queries with `width`
references (one matrix of at most `BLOCK_ENTRIES` distances), takes each query's `k` best
references of the block with an exact two-stage top-k, and merges them into its running `k`
best. When the whole reference set fits one block's width, one step per block of queries
finishes it.

Ranking keys: larger first (a distance negated, a similarity as it is), equal keys by lower
reference index, kept exactly through the blocks: a block's top-k takes equal keys by lower
column (`top_k`), and a merge puts the running best (lower indices: the blocks of a query
arrive in increasing order) before the block's.

The built-in distances that rank as an inner product (`linear_form`) compute a block's keys as
one matrix product, `min(a(q) . b(r), ceiling(q))`, with no pass over the block for the
distance itself; the `k` distances found are then computed row-wise
(`distances.rowwise`). Other distances (`"manhattan"`, `"snr"`, a user's callable), and
embeddings whose norms could overflow the product, rank `distance(q, r)` itself and check each
value is finite.

Embeddings given as NumPy arrays stay on the host: each block is converted when it is used (a
block of references once for a group of queries), so the backend never holds a copy of the
whole set.
"""

import functools
import math

import keras
import numpy as np

from keras_metric_losses import backend, distances
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import l2_normalize

# A block's distance matrix holds at most this many entries (32 MiB in float32: larger outputs
# halve the throughput of the CPU matrix products, and PyTorch maps fresh pages for each one).
BLOCK_ENTRIES = 2**23
# Queries per block at least (the reference set is then split into blocks of its width).
MIN_ROWS = 128
# With several blocks of references, the running best of at most this many (query, neighbour)
# pairs is kept while each block of references is met by the queries in turn.
STATE_ENTRIES = 2**22


def ranking_keys(matrix, larger_is_closer):
    """`matrix` as keys whose larger values rank first: negated for a distance, and `-0.0` made
    `0.0` so that the two tie (and go by index)."""
    keys = matrix if larger_is_closer else -matrix
    return ops.where(keys == 0, ops.zeros_like(keys), keys)


def _squared_norms(x):
    return ops.sum(ops.square(x), axis=1)


def _augmented_query(q):
    return ops.concatenate([q, ops.ones_like(q[:, :1])], axis=1)


def _augmented_reference(r):
    return ops.concatenate([2.0 * r, -_squared_norms(r)[:, None]], axis=1)


def _one(q):
    return ops.ones_like(q[:, 0])


# distance: (query side a, reference side b, ceiling of a query's keys), each None or a
# function of the embeddings: the key of `(q, r)` is `min(a(q) . b(r), ceiling(q))`, ordered as
# the distance, ties included (a distance clamped at 0 is a key at its ceiling). `b` is applied
# to one block of references at a time.
_LINEAR = {
    distances.inner_product: (None, None, None),
    distances.cosine_similarity: (l2_normalize, l2_normalize, None),
    distances.cosine: (None, None, _one),  # max(1 - q.r, 0)
    distances.angular: (l2_normalize, l2_normalize, _one),
    # max(|q|^2 + |r|^2 - 2 q.r, 0) ranks as min([q, 1] . [2 r, -|r|^2], |q|^2): the norm term
    # is part of the product.
    distances.squared_euclidean: (_augmented_query, _augmented_reference, _squared_norms),
    distances.euclidean: (_augmented_query, _augmented_reference, _squared_norms),
}


def linear_form(fn):
    """`(a, b, ceiling)` of a built-in distance that ranks as an inner product, else `None`."""
    return _LINEAR.get(fn)


def bounded(query, reference):
    """Whether every key of the linear form is finite: the embeddings are finite and their
    norms cannot overflow `2 |q| |r| + |r|^2 + |q|^2` in their dtype (read on the host)."""
    largest = [float(np.max(_host_squared_norms(x))) for x in (query, reference)]
    limit = float(np.finfo(np.dtype(keras.backend.standardize_dtype(query.dtype))).max) / 8
    return all(math.isfinite(s) for s in largest) and sum(largest) * 2 < limit


def _host_squared_norms(x):
    if isinstance(x, np.ndarray):
        return np.einsum("ij,ij->i", x, x)
    return ops.convert_to_numpy(_squared_norms(x))


def group_size(width, k):
    """Columns per group of `top_k`: the power of two at or below `sqrt(width / k)`, so that
    the group maxima (`width / group`) and the candidates (`k * group`) are both few; 1 (one
    plain top-k) below 4."""
    group = 2 ** int(math.log2(math.sqrt(width / k))) if width >= 16 * k else 1
    return group if group >= 4 else 1


def grouped(references, k):
    """The rows of a block of references `[width, ...]` in the order `top_k` reads its keys
    for `k`: reference `c * g + i` (group `c` of `g = group_size(width, k)` consecutive
    references) at row `i * s + c` (`s = width // g`), so that each group's maximum is a
    reduction over the middle axis of `[rows, g, s]`: `g` contiguous rows of `s` keys, the
    elementwise maximum of `g` vectors. A reduction over a last axis of 16 was 8-10x slower
    (eager torch: 4.8 ms against 0.6 ms for `[167, 50000]` keys). The `width % g` last
    references stay last, in order."""
    width = references.shape[0]
    group = group_size(width, k)
    if group == 1:
        return references
    full = width - width % group
    head = ops.reshape(references[:full], (full // group, group, -1))
    head = ops.reshape(ops.transpose(head, (1, 0, 2)), (full, *references.shape[1:]))
    return ops.concatenate([head, references[full:]], axis=0) if full < width else head


def top_k(keys, k, ceiling=None):
    """The `k` largest keys of each row of `min(keys, ceiling)` (`keys` `[rows, width]` in the
    column order of `grouped(references, k)`, an optional `[rows]` ceiling) and the int32
    positions of their references, larger first and equal keys by lower position, exactly.

    In two stages: the `k` largest maxima of groups of consecutive references (ties: lower
    group) are groups that hold the `k` largest keys, ties at the `k`-th key included (a group
    whose maximum is above the `k`-th largest maximum is chosen, and among groups whose maximum
    equals it the lowest are, which hold the lowest equal keys); one top-k over their
    references, in order, finishes. The keys are read once, for the maxima (the ceiling is
    applied to the maxima and the candidates: `max(min(x, c)) = min(max(x), c)`).
    """
    rows, width = keys.shape
    group = group_size(width, k)
    if group == 1:
        keys = keys if ceiling is None else ops.minimum(keys, ceiling[:, None])
        values, columns = backend.top_k_first_index(keys, k)
        return values, ops.cast(columns, "int32")
    full = width - width % group
    stride = full // group
    maxima = ops.max(ops.reshape(keys[:, :full], (rows, group, stride)), axis=1)
    if full < width:  # the last, shorter group
        maxima = ops.concatenate([maxima, ops.max(keys[:, full:], axis=1, keepdims=True)], 1)
    if ceiling is not None:
        maxima = ops.minimum(maxima, ceiling[:, None])
    chosen = ops.sort(ops.cast(backend.top_k_first_index(maxima, k)[1], "int32"), axis=1)
    offsets = ops.arange(group, dtype="int32")
    references = ops.reshape(chosen[:, :, None] * group + offsets, (rows, k * group))
    # The key column of reference `r`: `(r % g) * s + r // g` in the groups, `r` past them.
    columns = ops.where(
        references < full, (references % group) * stride + references // group, references
    )
    candidates = ops.take_along_axis(keys, ops.minimum(columns, width - 1), axis=1)
    candidates = ops.where(references < width, candidates, -math.inf)
    if ceiling is not None:
        candidates = ops.minimum(candidates, ceiling[:, None])
    values, positions = backend.top_k_first_index(candidates, k)
    return values, ops.take_along_axis(references, positions, axis=1)


def merge(best, found, k):
    """The `k` best of `best` and `found` (`(keys, indices)` pairs, each sorted), `best` first
    on equal keys: every index in it is lower than those found."""
    keys = ops.concatenate([best[0], found[0]], axis=1)
    indices = ops.concatenate([best[1], found[1]], axis=1)
    keys, positions = backend.top_k_first_index(keys, k)
    return keys, ops.take_along_axis(indices, positions, axis=1)


@functools.lru_cache(maxsize=16)
def step_functions(fn, larger_is_closer, k, exclude_self, linear, merges, jit_compile):
    """`(step, select, measure)`, compiled with `backend.compile_function(..., jit_compile)`.

    `step(query, reference, reference_start, best, finite) -> (best, finite)` updates a block
    of queries' best `(keys, indices)` (`k + exclude_self` of them) and all-finite flags with a
    block of references (with `linear`, `b(reference)` of the linear form, transposed).
    `select(start, best) -> (keys, indices)`: the `k` nearest, with query `start + i`'s own
    index `i` dropped when `exclude_self` (the last of the `k + 1` when it is not among them).
    `measure(query, neighbours, keys, finite)`: their distances, NaN where not all finite
    (with `linear` computed from the neighbours' embeddings `[c, k, D]`, else from the keys).

    `linear`: the keys are the linear form's, known finite (`bounded`); else `fn`'s matrix,
    checked. `merges`: whether the block is one of several (else its top-k is the best).
    """
    a, _, ceiling = linear_form(fn) if linear else (None,) * 3
    kept = k + exclude_self

    def step(query, reference, reference_start, best, finite):
        if linear:
            keys = ops.matmul(a(query) if a else query, reference)
            limit = None if ceiling is None else ceiling(query)
        else:
            matrix = fn(query, reference)
            keys, limit = ranking_keys(matrix, larger_is_closer), None
            finite = finite & ops.all(ops.isfinite(matrix), axis=1)
        values, columns = top_k(keys, min(kept, keys.shape[1]), limit)
        found = (values, columns + reference_start)
        return merge(best, found, kept) if merges else found, finite

    def select(start, best):
        keys, indices = best
        if exclude_self:
            own = indices == start + ops.arange(indices.shape[0], dtype="int32")[:, None]
            positions = ops.arange(kept, dtype="int32")[None, :]
            missing = ops.logical_not(ops.any(own, axis=1, keepdims=True))
            dropped = own | (missing & (positions == k))
            order = backend.top_k_first_index(ops.where(dropped, -kept, -positions), k)[1]
            keys = ops.take_along_axis(keys, order, axis=1)
            indices = ops.take_along_axis(indices, order, axis=1)
        return keys, indices

    def measure(query, neighbours, keys, finite):
        if linear:  # the distances themselves, from the embeddings
            pairs = distances.rowwise(fn)(
                ops.repeat(query, k, axis=0), ops.reshape(neighbours, (-1, query.shape[1]))
            )
            nearest = ops.reshape(pairs, keys.shape)
        else:  # `+ 0.0`: a distance of 0 is `+0.0`, not the negated key's `-0.0`
            nearest = keys if larger_is_closer else ops.negative(keys) + 0.0
        return ops.where(finite[:, None], nearest, math.nan)

    return tuple(backend.compile_function(f, jit_compile) for f in (step, select, measure))


def layout(num_queries, num_references, k, chunk_size):
    """`(rows, width)`: queries and references per block, `rows * width <= BLOCK_ENTRIES`
    (or one query against a reference set larger than that).

    `rows` is `chunk_size`, or by default as many as fit the whole reference set in a block, at
    least `MIN_ROWS`; the reference set is split into blocks of `BLOCK_ENTRIES // rows`, unless
    the `k` best of each (a quarter of a block or more) would cost as much as the block: then
    one block holds every reference (`rows` by default as many as fit).
    """
    rows = chunk_size or max(MIN_ROWS, BLOCK_ENTRIES // num_references)
    width = max(1, BLOCK_ENTRIES // rows)
    if 4 * k > width or width >= num_references:
        rows = chunk_size or max(1, BLOCK_ENTRIES // num_references)
        width = num_references
    return min(rows, num_queries), width


def search(query, reference, k, *, fn, exclude_self, chunk_size, jit_compile, progress=None):
    """Yields `(start, distances [c, k], indices [c, k])` for each block of `c` queries from
    row `start`: the distances of its `k` nearest references, nearest first (NaN for a query
    whose distances are not all finite), and their int32 indices. `progress(done, total)` is
    called after each step.

    With `exclude_self` (query `i` is reference `i`), the `k + 1` best are searched and the
    query's own index is dropped from them (the last one when it is not among them): the `k`
    best of the others, with no mask over the blocks. With several blocks of references, each
    is prepared once and met by the blocks of up to `STATE_ENTRIES // (k + 1)` queries in turn
    (their running best kept), then the next; the blocks of a query still come in order.
    """
    num_queries, num_references = query.shape[0], reference.shape[0]
    kept = k + exclude_self
    rows, width = layout(num_queries, num_references, kept, chunk_size)
    linear = linear_form(fn) is not None and bounded(query, reference)
    options = (exclude_self, linear, width < num_references, jit_compile)
    step, select, measure = step_functions(fn, distances.larger_is_closer(fn), k, *options)
    side = linear_form(fn)[1] if linear else None
    starts, reference_starts = range(0, num_queries, rows), range(0, num_references, width)
    total, done = len(starts) * len(reference_starts), 0
    group = max(1, STATE_ENTRIES // (rows * kept))  # blocks of queries kept at once
    for first in range(0, len(starts), group):
        states = {}
        for reference_start in reference_starts:
            part = ops.convert_to_tensor(reference[reference_start : reference_start + width])
            part = grouped(part, min(kept, part.shape[0]))  # the key order `top_k` reads
            if linear:  # prepared once for the queries of the group: `b(r)`, transposed
                part = backend.contiguous(ops.transpose(side(part) if side else part))
            offset = ops.convert_to_tensor(reference_start, "int32")
            for start in starts[first : first + group]:
                block = ops.convert_to_tensor(query[start : start + rows])
                state = states.get(start) or _initial(block.shape[0], kept, query.dtype)
                states[start] = step(block, part, offset, *state)
                done += 1
                if progress is not None:
                    progress(done, total)
        for start, (best, finite) in states.items():
            keys, indices = select(ops.convert_to_tensor(start, "int32"), best)
            neighbours = _rows(reference, indices) if linear else keys
            block = ops.convert_to_tensor(query[start : start + rows])
            yield start, measure(block, neighbours, keys, finite), indices


def _rows(x, indices):
    """`x[indices]`: on the host for a NumPy `x`, else on the backend."""
    if isinstance(x, np.ndarray):
        return ops.convert_to_tensor(x[ops.convert_to_numpy(indices)])
    return ops.take(x, indices, axis=0)


def _initial(count, kept, dtype):
    """No reference yet: keys `-inf` (any reference's are larger) at index 0."""
    dtype = keras.backend.standardize_dtype(dtype)
    best = (ops.full((count, kept), -math.inf, dtype), ops.zeros((count, kept), "int32"))
    return best, ops.ones((count,), "bool")
