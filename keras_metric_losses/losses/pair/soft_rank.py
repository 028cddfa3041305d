"""Soft ranks by blocks of anchors: what the ranking losses (PNP, Smooth-AP) share.

An anchor `i` ranks its keys by similarity `S[i, :]`. The smoothed rank of key `l` counts the
keys `m` ranked above it, each through a sigmoid of the gap:

```
R[i, l, t] = sum_m w[i, m, t] sigmoid((S[i, m] - S[i, l]) / T)
```

with one weight column `t` per set of keys counted (the negatives; every key and the
positives). Written directly this is a `[b, K, K]` tensor per weight column, 10^9 elements at
B = 1024 (PML builds several of them, kept for the backward pass). Here anchors go by blocks of
rows: each step holds `[rows, K, K]` tiles (about 2^24 elements), the counts are a batched
matmul of the tile with the weights, and the backward pass (`keras.ops.custom_gradient`)
recomputes each tile instead of keeping it. Time is `O(b K^2)`, as PML's; memory `O(b K)`
besides the tiles. The blocks go by `keras.ops.fori_loop` (a Python loop on PyTorch, unrolled by
`torch.compile`), each writing its rows of a `[blocks, rows, ...]` buffer: `keras.ops.scan`
fails on TensorFlow when the batch size is unknown (`model.fit` on a dataset).
"""

from keras_metric_losses import _tiles, backend
from keras_metric_losses.backend import ops

# Elements of one `[rows, K, K]` tile (the rows per step follow from it).
_TILE_ELEMENTS = 2**24
_ROWS_IF_UNKNOWN = 16


def soft_ranks(similarity, weights, *, temperature, clip=None):
    """`[b, K, k]` soft ranks `R[i, l, t] = sum_m w[i, m, t] sigmoid((S[i, m] - S[i, l]) / T)`.

    Args:
        similarity: `[b, K]` similarities `S` of each anchor to the keys (differentiated).
        weights: `[b, K, k]` weights `w` of the keys counted, one column per count (constants:
            no gradient flows to them).
        temperature: Python float `T > 0`.
        clip: `None`, or a Python float `c`: the sigmoid's argument is clamped to `[-c, c]`
            (PML's `PNPLoss`). Where it is clamped the slope is the sigmoid's at `+-c` (at
            `c = 50`, 2e-22 where PML's is 0: one mask fewer per tile).

    Returns:
        `[b, K, k]` in the dtype of `similarity`.
    """
    num_rows, num_keys = ops.shape(similarity)
    rows = _rows(num_rows, num_keys)
    weights = ops.stop_gradient(ops.cast(weights, similarity.dtype))
    weight_blocks = _tiles.blocks(weights, rows)

    def sigmoids(block):
        """The sigmoids of one block's `[rows, K, K]` gaps (`l` on axis 1, `m` on axis 2)."""
        gaps = (ops.expand_dims(block, 1) - ops.expand_dims(block, 2)) / temperature
        return ops.sigmoid(gaps if clip is None else ops.clip(gaps, -clip, clip))

    @ops.custom_gradient
    def compute(similarity_blocks):
        count = ops.shape(similarity_blocks)[0]

        def forward(i, ranks):
            tile = sigmoids(ops.take(similarity_blocks, i, axis=0))
            return _tiles.put(ranks, i, ops.matmul(tile, ops.take(weight_blocks, i, axis=0)))

        ranks = _tiles.fori_loop(
            count, forward, ops.zeros(ops.shape(weight_blocks), similarity.dtype)
        )

        def grad(*args, upstream=None):
            upstream = backend.upstream_gradient(args, upstream)

            def backward(i, gradient):
                # d R[i, l, t] / d gap[i, l, m] = w[i, m, t] sigmoid (1 - sigmoid) / T
                sigmoid = sigmoids(ops.take(similarity_blocks, i, axis=0))
                weights_t = ops.transpose(ops.take(weight_blocks, i, axis=0), (0, 2, 1))
                outer = ops.matmul(ops.take(upstream, i, axis=0) / temperature, weights_t)
                d_gaps = outer * sigmoid * (1.0 - sigmoid)
                return _tiles.put(gradient, i, ops.sum(d_gaps, axis=1) - ops.sum(d_gaps, axis=2))

            zeros = ops.zeros(ops.shape(similarity_blocks), similarity.dtype)
            return _tiles.fori_loop(count, backward, zeros)

        return ranks, grad

    ranks = compute(_tiles.blocks(similarity, rows))
    return ops.reshape(ranks, (-1, *ops.shape(ranks)[2:]))[:num_rows]


def own_column(pairs):
    """`[b, K]` booleans: each anchor's own key column (a batch's diagonal)."""
    columns = ops.arange(ops.shape(pairs.keys)[0], dtype="int32")
    return ops.equal(ops.expand_dims(columns, 0), ops.expand_dims(pairs.self_columns, 1))


def _rows(num_rows, num_keys):
    """Anchors per block: a tile of about `_TILE_ELEMENTS` (static where the shapes are)."""
    if not isinstance(num_keys, int):
        return _ROWS_IF_UNKNOWN
    rows = max(1, _TILE_ELEMENTS // max(1, num_keys * num_keys))
    return min(rows, num_rows) if isinstance(num_rows, int) else rows
