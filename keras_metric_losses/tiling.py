"""Blockwise (tiled) softmax contrastive terms: memory that grows with the batch, not its square.

The softmax contrastive losses (`ntxent_loss`, `supcon_loss`, `supcon_multilabel_loss`) reduce
a `[b, K]` matrix of logits `x[i, j] = scale * q_i . k_j` row by row: a masked log-sum-exp over
each anchor's denominator, then sums over its positives given that log-sum-exp. Here the
matrix is never built. Row blocks of queries meet column blocks of keys (`block_size` rows and
columns at a time, the batch padded to a multiple of it with masked rows and columns), and the
label masks of each tile are built from the labels of its rows and columns:

1. an online log-sum-exp over the column blocks (a running maximum `m_i` and a running sum
   `l_i = sum_j exp(x[i, j] - m_i)` rescaled when the maximum grows), with the counts of
   positive and negative keys;
2. the sums over the positives, `sum_j w[i, j] * t(lse_i - x[i, j])` with `t` the identity
   (SupCon) or `softplus` (NT-Xent, whose denominator holds the negatives only), and their
   slopes `a_i = sum_j w[i, j] * t'(lse_i - x[i, j])`: for SupCon in the same sweep, as
   `W_i log l_i + sum_j w[i, j] (m_i - x[i, j])` (`W_i = sum_j w[i, j]`, two sums of terms
   >= 0, the second moved along with `m_i`), and `a_i = W_i`; for NT-Xent, whose `softplus`
   needs the final `lse_i`, in a second sweep;
3. the backward pass (`keras.ops.custom_gradient`) recomputes each tile's softmax from the
   saved `lse_i` and `a_i`, as flash attention and Inf-CL (Wang et al., 2024) do, and
   accumulates `dq = G k` and `dk = G^T q` with the tile's logit gradient
   `G[i, j] = u_i * scale * (a_i p[i, j] - w[i, j] t'(lse_i - x[i, j]))`.

`blockwise_cross_entropies` is the same scheme for losses with one positive per row (CLIP,
MNRL): the positive's logit is gathered from its tile, and a tile needs no label masks.

The loops are `keras.ops.scan`s with static shapes (a compiled loop under `jax.jit` and
`tf.function`; a Python loop in eager PyTorch, unrolled by `torch.compile`). What is kept is
`O((b + K) * D)`: the padded embeddings, their gradients, and per-row statistics; each step
holds a few `[block_size, block_size]` tiles.
"""

from keras_metric_losses import _tiles
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import lowest_finite, shifted_exp, sigmoid_signs

# Columns of the `[b, 4]` statistics that `blockwise_terms` returns.
WEIGHTED_SUM, TOTAL_WEIGHT, POSITIVE_PAIRS, NEGATIVE_PAIRS = range(4)


def blockwise_terms(pairs, *, scale, pairwise, block_size):
    """Per-anchor softmax contrastive statistics of `x = scale * queries @ keys^T`, by tiles.

    With `w[i, j]` the positive weight of key `j` for anchor `i` (1 for the same class, or the
    label overlap `Y_i . Y_j` for multi-hot labels; 0 for the anchor itself, keys that are not
    valid and anchors that are not anchors), the negatives `N_i` (no label in common) and the
    denominator `A_i` (every key but the anchor itself, or `N_i` with `pairwise=True`), `lse_i`
    the log-sum-exp of `x[i, A_i]` (0 when `A_i` is empty):

    ```
    weighted_sum_i = sum_j w[i, j] * (lse_i - x[i, j])                  (pairwise=False)
    weighted_sum_i = sum_j w[i, j] * log(1 + exp(lse_i - x[i, j]))      (pairwise=True,
                                                                         0 if N_i is empty)
    ```

    These equal the `weighted_sum` of `keras_metric_losses.losses.softmax.core.contrastive_terms`
    on the same pairs (exactly, up to rounding); only `weighted_sum` has a gradient. Only the
    queries, keys, labels, each query's own column and the validity of keys and anchors are
    read from `pairs`: its `[b, K]` masks are not built.

    Args:
        pairs: The `Pairs` of the front end (`kml.pairs.build`): `queries` `[b, D]`, `keys`
            `[K, D]` (may be `queries` itself), `labels` / `key_labels` (class ids or
            multi-hot), `self_columns` (`[b]` key column of each anchor, not its positive nor in
            its denominator, or `None`), `source.valid` (`[K]` keys that take part, or `None`)
            and `source.anchors` (`[b]` anchors that have pairs, or `None`).
        scale: Python float, the logits' factor (`1 / temperature`).
        pairwise: NT-Xent's form (a softmax per positive against the negatives).
        block_size: Python int, rows and columns per tile.

    Returns:
        `[b, 4]` statistics in the queries' dtype, by column: `weighted_sum`, `total_weight`
        (`sum_j w[i, j]`), the number of positive keys (`w > 0`), the number of negatives.
    """
    queries, keys, labels, key_labels = pairs.queries, pairs.keys, pairs.labels, pairs.key_labels
    multilabel, self_columns = pairs.multi_hot, pairs.self_columns
    key_valid, anchor_valid = pairs.source.valid, pairs.source.anchors
    dtype = queries.dtype
    num_rows, num_keys = ops.shape(queries)[0], ops.shape(keys)[0]
    if 0 in (num_rows, num_keys):  # nothing to pair: zero statistics and zero gradients
        return ops.zeros((num_rows, 4), dtype) + 0.0 * ops.sum(queries) + 0.0 * ops.sum(keys)
    rows = _tiles.block(num_rows, block_size)
    columns = _tiles.block(num_keys, block_size)
    if self_columns is None:
        self_columns = ops.full((num_rows,), -1, dtype="int32")
    row_data = (
        _tiles.blocks(labels, rows),
        _tiles.blocks(ops.cast(self_columns, "int32"), rows, fill=-1),
        _tiles.blocks(_tiles.valid(anchor_valid, num_rows), rows, fill=False),
    )
    column_data = (
        _tiles.blocks(key_labels, columns),
        ops.reshape(ops.arange(_tiles.padded(num_keys, columns), dtype="int32"), (-1, columns)),
        _tiles.blocks(_tiles.valid(key_valid, num_keys), columns, fill=False),
    )
    lowest = lowest_finite(dtype)

    def tile(query_block, row, key_block, column):
        """Logits, positive weights, negatives and denominator of one tile."""
        (row_labels, row_self, row_valid), (column_labels, column_index, column_valid) = row, column
        logits = ops.matmul(query_block, ops.transpose(key_block)) * scale
        candidates = ops.logical_and(
            ops.logical_and(ops.expand_dims(row_valid, 1), ops.expand_dims(column_valid, 0)),
            ops.not_equal(ops.expand_dims(column_index, 0), ops.expand_dims(row_self, 1)),
        )
        if multilabel:
            overlap = ops.matmul(
                ops.cast(row_labels, dtype), ops.transpose(ops.cast(column_labels, dtype))
            )
            weights = ops.where(candidates, overlap, 0.0)
            negative = ops.logical_and(candidates, ops.equal(overlap, 0.0))
        else:
            same = ops.equal(ops.expand_dims(row_labels, 1), ops.expand_dims(column_labels, 0))
            weights = ops.cast(ops.logical_and(candidates, same), dtype)
            negative = ops.logical_and(candidates, ops.logical_not(same))
        return logits, weights, negative, negative if pairwise else candidates

    def slope(t):
        """`t'` of the term `t(lse - x)` of a positive: `sigmoid` for softplus, else 1."""
        return ops.sigmoid(t) if pairwise else ops.ones_like(t)

    def sweep(step, init, query_block, row, key_blocks):
        """`step(carry, tile)` over the column blocks of one row block; the last carry."""

        def body(carry, column):
            return step(carry, tile(query_block, row, column[0], column[1:]))

        return _tiles.scan(body, init, (key_blocks, *column_data))[0]

    def online(carry, tile_):
        """Online log-sum-exp over the denominator, and the counts of pairs. Without
        `pairwise`, also `gap_i = sum_j w[i, j] * (m_i - x[i, j])` (>= 0: SupCon's positives
        are in the denominator, so `x[i, j] <= m_i`), moved along as the maximum `m_i` grows."""
        maximum, total, weight, positives, negatives, *gap = carry
        logits, weights, negative, denominator = tile_
        masked = ops.where(denominator, logits, lowest)
        new_maximum = ops.maximum(maximum, ops.amax(masked, axis=-1))
        shifted = ops.where(denominator, ops.exp(masked - ops.expand_dims(new_maximum, 1)), 0.0)
        if gap:  # sum_j w (m' - x) = sum_j w (m - x) + W (m' - m), plus this tile's terms
            moved = ops.where(weight > 0, weight * (new_maximum - maximum), 0.0)  # m: lowest
            gap = [
                gap[0]
                + moved
                + ops.sum(weights * (ops.expand_dims(new_maximum, 1) - logits), axis=-1)
            ]
        return (
            new_maximum,
            total * ops.exp(maximum - new_maximum) + ops.sum(shifted, axis=-1),
            weight + ops.sum(weights, axis=-1),
            positives + ops.sum(ops.cast(weights > 0, dtype), axis=-1),
            negatives + ops.sum(ops.cast(negative, dtype), axis=-1),
            *gap,
        )

    def forward_block(query_block, row, key_blocks):
        """`[r, 4]` statistics and the saved `[r, 4]` (maximum, log l, slopes, direct) of a
        row block: `lse = m + log l` kept in two parts, so that the backward pass computes
        `lse - x` as `log l - (x - m)`, exact for large logits (`m + log l` rounds to `m`'s
        ulp)."""
        zeros = ops.zeros((rows,), dtype)
        init = (ops.full((rows,), lowest, dtype), zeros, zeros, zeros, zeros)
        maximum, total, weight, positives, negatives, *gap = sweep(
            online, init if pairwise else (*init, zeros), query_block, row, key_blocks
        )
        has_denominator = total > 0
        log_total = ops.log(ops.where(has_denominator, total, 1.0))
        maximum = ops.where(has_denominator, maximum, 0.0)
        if not pairwise:
            # SupCon in one sweep: sum_j w (lse - x) = W log l + sum_j w (m - x), two terms
            # >= 0 (no cancellation); each positive's slope is 1, so a_i = W_i.
            weighted_sum = weight * log_total + gap[0]
            stats = ops.stack([weighted_sum, weight, positives, negatives], axis=-1)
            return stats, ops.stack([maximum, log_total, weight, ops.ones_like(total)], axis=-1)

        def positive_sums(carry, tile_):
            """NT-Xent's second sweep: `softplus(lse - x)` needs the final `lse`."""
            weighted_sum, slopes = carry
            logits, weights = tile_[:2]
            # `lse - x` as `log l - (x - m)`: the difference of nearby logits is exact.
            t = ops.expand_dims(log_total, 1) - (logits - ops.expand_dims(maximum, 1))
            return (
                weighted_sum + ops.sum(weights * ops.softplus(t), axis=-1),
                slopes + ops.sum(weights * slope(t), axis=-1),
            )

        weighted_sum, slopes = sweep(positive_sums, (zeros, zeros), query_block, row, key_blocks)
        # Without a negative: p = 1, the terms are 0 (`direct` turns off the positives' own
        # gradient).
        direct = ops.cast(has_denominator, dtype)
        stats = ops.stack([weighted_sum * direct, weight, positives, negatives], axis=-1)
        return stats, ops.stack([maximum, log_total, slopes * direct, direct], axis=-1)

    def tile_grads(query_block, row, saved, upstream):
        """The logit gradient of a tile of the row block, from its saved statistics."""
        maximum, log_total, slopes, direct = (ops.expand_dims(saved[:, k], 1) for k in range(4))
        factor = ops.expand_dims(upstream[:, WEIGHTED_SUM] * scale, 1)

        def of(key_block, column):
            logits, weights, _, denominator = tile(query_block, row, key_block, column)
            t = log_total - (logits - maximum)
            probabilities = ops.exp(ops.where(denominator, -t, lowest))
            return (slopes * probabilities - weights * slope(t) * direct) * factor

        return of

    return _tiles.tiled(queries, keys, (rows, columns), row_data, column_data, forward_block,
                  tile_grads, ((4,), (4,)))  # fmt: skip


def blockwise_cross_entropies(queries, keys, targets, *, block_size, self_columns=None):
    """`[b]` softmax cross-entropies `lse_i - x[i, targets[i]]` of `x = queries @ keys^T` by
    tiles, `lse_i` the log-sum-exp of row `i` over every key but `self_columns[i]`: CLIP's and
    MNRL's one positive per row.

    The positive's logit is read from its tile (one gathered entry a row), so a tile is a
    product, a maximum, an `exp` and a sum forward (no label masks, as `blockwise_terms`
    builds), and a product, an `exp`, the positive's `-1` and two products backward. `lse_i -
    x` is computed as `log l_i - (x - m_i)` (see `blockwise_terms`): exact for large logits.
    Every row's positive is among its keys (a row whose keys are all left out is not
    supported).

    Args:
        queries: `[b, D]` floating queries, the scale already applied.
        keys: `[K, D]` keys.
        targets: `[b]` integer column of each row's positive, in `[0, K)`.
        block_size: Python int, rows and columns per tile.
        self_columns: `[b]` integer column left out of each row's log-sum-exp (`-1`: none), or
            `None`.

    Returns:
        `[b]` cross-entropies in the queries' dtype (0 for a row without a key).
    """
    dtype = queries.dtype
    num_rows, num_keys = ops.shape(queries)[0], ops.shape(keys)[0]
    if 0 in (num_rows, num_keys):  # nothing to pair: zero values and zero gradients
        return ops.zeros((num_rows,), dtype) + 0.0 * ops.sum(queries) + 0.0 * ops.sum(keys)
    targets = ops.cast(targets, "int32")
    rows, columns = _tiles.block(num_rows, block_size), _tiles.block(num_keys, block_size)
    padded = not isinstance(num_keys, int) or num_keys % columns != 0
    lowest = lowest_finite(dtype)
    row_data = [_tiles.blocks(targets, rows, fill=-1)]
    if self_columns is not None:
        row_data.append(_tiles.blocks(ops.cast(self_columns, "int32"), rows, fill=-1))
    column_data = [
        ops.reshape(ops.arange(_tiles.padded(num_keys, columns), dtype="int32"), (-1, columns))
    ]
    if padded:  # the padding keys' logits are raised to the lowest value
        column_data.append(_tiles.blocks(ops.zeros((num_keys,), dtype), columns, fill=lowest))

    def tile(query_block, row, key_block, column):
        """The tile's logits, left-out columns at the lowest finite value."""
        logits = ops.matmul(query_block, ops.transpose(key_block))
        if padded:
            logits = logits + ops.expand_dims(column[1], 0)
        if self_columns is not None:
            own = ops.equal(ops.expand_dims(column[0], 0), ops.expand_dims(row[1], 1))
            logits = ops.where(own, lowest, logits)
        return logits

    def online(query_block, row):
        """`step(carry, column)`: online log-sum-exp, and the positive's logit of its tile."""

        def step(carry, column):
            maximum, total, positive = carry
            key_block, *column = column
            logits = tile(query_block, row, key_block, column)
            new_maximum = ops.maximum(maximum, ops.amax(logits, axis=-1))
            shifted = shifted_exp(logits - ops.expand_dims(new_maximum, 1))
            local = row[0] - column[0][0]
            inside = ops.logical_and(local >= 0, local < columns)
            index = ops.expand_dims(ops.clip(local, 0, columns - 1), 1)
            own_logit = ops.take_along_axis(logits, index, axis=1)[:, 0]
            return (
                new_maximum,
                total * shifted_exp(maximum - new_maximum) + ops.sum(shifted, axis=-1),
                positive + ops.where(inside, own_logit, 0.0),
            )

        return step

    def forward_block(query_block, row, key_blocks):
        """`[r]` values and the saved `[r, 3]` (maximum, log l, `p_t - 1`) of a row block."""
        zeros = ops.zeros((rows,), dtype)
        init = (ops.full((rows,), lowest, dtype), zeros, zeros)
        maximum, total, positive = _tiles.scan(
            online(query_block, row), init, (key_blocks, *column_data)
        )[0]
        has_keys = total > 0
        log_total = ops.log(ops.where(has_keys, total, 1.0))
        maximum = ops.where(has_keys, maximum, 0.0)
        values = ops.where(has_keys, (maximum - positive) + log_total, 0.0)
        # The positive's logit gradient `p_t - 1`, from the value (the backward pass would
        # read `p_t` from its recomputed logit, which can differ from the saved maximum by an
        # ulp: for a loss of ~0, `p_t - 1` would then be ~1e-5 instead of ~0).
        return values, ops.stack([maximum, log_total, ops.exp(-values) - 1.0], axis=-1)

    def tile_grads(query_block, row, saved, upstream):
        """The logit gradient `u_i (p[i, j] - [j = t_i])` of a tile of the row block."""
        maximum, log_total, own_grad = (ops.expand_dims(saved[:, k], 1) for k in range(3))
        factor = ops.expand_dims(upstream, 1)

        def of(key_block, column):
            logits = tile(query_block, row, key_block, column)
            probabilities = shifted_exp((logits - maximum) - log_total)
            # `p_t - 1` at the positive, entry by entry: a sum of `p k` over the row minus `k_t`
            # would lose the difference to rounding.
            own = ops.equal(ops.expand_dims(column[0], 0), ops.expand_dims(row[0], 1))
            return ops.where(own, own_grad, probabilities) * factor

        return of

    return _tiles.tiled(queries, keys, (rows, columns), row_data, column_data, forward_block,
                  tile_grads, ((), (3,)))  # fmt: skip


def blockwise_sigmoid_sums(queries, keys, columns, *, block_size):
    """Per-row sums of SigLIP's sigmoid terms of `x = queries @ keys^T`, by tiles.

    ```
    values_i = sum_j softplus(-z[i, j] * x[i, j])     z = +1 at column `columns[i]`, else -1
    ```

    (`softplus(-z x) = -log sigmoid(z x)`). Each step holds a `[block_size, block_size]` tile;
    the backward pass (`keras.ops.custom_gradient`) recomputes the tiles with the logit
    gradient `G[i, j] = -u_i z[i, j] sigmoid(-z[i, j] x[i, j])` and accumulates `dq = G k` and
    `dk = G^T q`, so what is kept is `O((b + K) * D)`. A bias of the logits is a column of the
    queries against a column of ones of the keys (SigLIP's tiled path).

    Args:
        queries: `[b, D]` float queries (SigLIP: the scaled images `s * I`).
        keys: `[K, D]` keys, in the queries' dtype (the texts).
        columns: `[b]` int column of each query's positive key.
        block_size: Python int, rows and columns per tile.

    Returns:
        `[b]` values in the queries' dtype, differentiable in `queries` and `keys`.
    """
    dtype = queries.dtype
    num_rows, num_keys = ops.shape(queries)[0], ops.shape(keys)[0]
    if 0 in (num_rows, num_keys):  # nothing to sum: zero values and zero gradients
        return ops.zeros((num_rows,), dtype) + 0.0 * (ops.sum(queries) + ops.sum(keys))
    rows, width = _tiles.block(num_rows, block_size), _tiles.block(num_keys, block_size)
    row_columns = _tiles.blocks(ops.cast(columns, "int32"), rows, fill=-1)
    column_data = (
        ops.reshape(ops.arange(_tiles.padded(num_keys, width), dtype="int32"), (-1, width)),
        _tiles.blocks(_tiles.valid(None, num_keys), width, fill=False),
    )

    def tile(query_block, positives, key_block, index, valid):
        """`-z x` of one tile, its valid entries and `-z`."""
        logits = ops.matmul(query_block, ops.transpose(key_block))
        flipped, signs = sigmoid_signs(logits, index, positives)
        return flipped, ops.expand_dims(valid, 0), signs

    def forward_block(query_block, row, key_blocks):
        def step(carry, column):
            flipped, valid, _ = tile(query_block, row[0], *column)
            return (carry[0] + ops.sum(ops.where(valid, ops.softplus(flipped), 0.0), -1),)

        values = _tiles.scan(step, (ops.zeros((rows,), dtype),), (key_blocks, *column_data))[0][0]
        return values, ops.zeros((rows, 0), dtype)  # the backward pass reads nothing saved

    def tile_grads(query_block, row, saved, upstream):
        factor = ops.expand_dims(upstream, 1)

        def of(key_block, column):
            flipped, valid, signs = tile(query_block, row[0], key_block, *column)
            return ops.where(valid, signs * ops.sigmoid(flipped), 0.0) * factor

        return of

    return _tiles.tiled(queries, keys, (rows, width), (row_columns,), column_data, forward_block,
                  tile_grads, ((), (0,)))  # fmt: skip
