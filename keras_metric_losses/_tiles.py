"""The frame of the tiled computations (`kml.tiling`, the tiled soft ranks): loops, blocks and
the custom gradient of tiles, with static shapes on every backend."""

from keras_metric_losses import backend
from keras_metric_losses.backend import ops


def tiled(queries, keys, tile_shape, row_data, column_data, forward_block, tile_grads, shapes):
    """`[b, ...]` values of `queries` `[b, D]` against `keys` `[K, D]` by tiles, with the gradient
    of the tiles: the frame of `blockwise_terms`, `blockwise_cross_entropies` and
    `blockwise_sigmoid_sums`.

    Args:
        queries, keys: The unpadded queries and keys.
        tile_shape: `(rows, columns)` of a tile.
        row_data: `[nr, r, ...]` tensors; a row block gets its rows of each (`row`).
        column_data: `[nc, c, ...]` tensors; a tile gets its columns of each (`column`).
        forward_block: `(query_block, row, key_blocks) -> (values, saved)`, the `[r, ...]`
            values of a row block and the `[r, ...]` statistics its backward pass reads.
        tile_grads: `(query_block, row, saved, upstream) -> of`, where `of(key_block, column)`
            is a tile's `[r, c]` logit gradient `G` (`upstream`: the row block's `[r, ...]`
            upstream gradient of the values); `dq = G k` and `dk = G^T q` are accumulated.
        shapes: The trailing shapes of the values and of the saved statistics (`(0,)`: none).
    """
    dtype = queries.dtype
    rows, columns = tile_shape
    value_shape, saved_shape = shapes

    def over_rows(body, buffers, totals, query_blocks):
        """`row_loop` of `body(i, query_block, row)` over the row blocks `i`."""

        def at(i):
            row = tuple(ops.take(x, i, axis=0) for x in row_data)
            return body(i, ops.take(query_blocks, i, axis=0), row)

        return row_loop(at, buffers, totals, ops.shape(query_blocks)[0])

    # Padding and slicing stay outside the custom gradient (autodiff handles them; inside,
    # `keras.ops.pad`'s name registry is a side effect that `torch.compile` refuses).
    @ops.custom_gradient
    def compute(query_blocks, key_blocks):
        count = ops.shape(query_blocks)[0]
        (values, saved), _ = over_rows(
            lambda i, query_block, row: (forward_block(query_block, row, key_blocks), ()),
            (
                ops.zeros((count, rows, *value_shape), dtype),
                ops.zeros((count, rows, *saved_shape), dtype),
            ),
            (),
            query_blocks,
        )

        def grad(*args, upstream=None):
            upstream = backend.upstream_gradient(args, upstream)
            upstream = ops.reshape(upstream, (-1, rows, *value_shape))

            def body(i, query_block, row):
                of = tile_grads(
                    query_block, row, ops.take(saved, i, axis=0), ops.take(upstream, i, axis=0)
                )

                def step(carry, column):
                    key_block = column[0]
                    logit_grad = of(key_block, column[1:])
                    return (
                        carry[0] + ops.matmul(logit_grad, key_block),
                        ops.matmul(ops.transpose(logit_grad), query_block),
                    )

                init = (
                    ops.zeros(ops.shape(query_block), dtype),
                    ops.zeros(ops.shape(key_blocks)[1:], dtype),
                )
                (query_grad, _), (_, key_grads) = scan(step, init, (key_blocks, *column_data))
                return (query_grad,), (key_grads,)

            (query_grads,), (key_grads,) = over_rows(
                body,
                (ops.zeros(ops.shape(query_blocks), dtype),),
                (ops.zeros(ops.shape(key_blocks), dtype),),
                query_blocks,
            )
            return query_grads, key_grads

        return ops.reshape(values, (-1, *value_shape)), grad

    num_rows = ops.shape(queries)[0]
    return compute(blocks(queries, rows), blocks(keys, columns))[:num_rows]


def row_loop(body, buffers, totals, count):
    """`body(i) -> (outputs, terms)` over the row blocks `i < count`: each `[r, ...]` output
    goes to row `i` of its `[nr, r, ...]` buffer, each term is summed into its total. Returns
    `(buffers, totals)`."""

    def loop(i, carry):
        outputs, terms = body(i)
        return (
            tuple(put(buffer, i, x) for buffer, x in zip(carry[0], outputs, strict=True)),
            tuple(total + x for total, x in zip(carry[1], terms, strict=True)),
        )

    return fori_loop(count, loop, (buffers, totals))


def fori_loop(count, body, init):
    """`keras.ops.fori_loop(0, count, body, init)` (written out on PyTorch, see `scan`)."""
    if not backend.PYTHON_LOOPS:
        return ops.fori_loop(0, count, body, init)
    for index in range(count):
        init = body(index, init)
    return init


def scan(step, init, xs):
    """`keras.ops.scan` of `carry = step(carry, x)` over the first axis of the tuple `xs`,
    with the carries (flat tuples of tensors) as outputs: `(last carry, stacked carries)`.

    TensorFlow's `keras.ops.scan` needs each step's output to match the carry. On PyTorch the
    loop is written here: `keras.ops.scan` is a Python loop there too, but its `keras.tree`
    calls stop `torch.compile` inside the `torch.autograd.Function` of `custom_gradient`.
    """
    if not backend.PYTHON_LOOPS:
        return ops.scan(lambda carry, x: (step(carry, x),) * 2, init, xs)
    carries = []
    for index in range(ops.shape(xs[0])[0]):
        init = step(init, tuple(x[index] for x in xs))
        carries.append(init)
    return init, tuple(ops.stack(parts) for parts in zip(*carries, strict=True))


def put(buffer, index, value):
    """`buffer` `[n, ...]` with row `index` replaced by `value`: a `where`, since
    `keras.ops.slice_update` copies the buffer on PyTorch and is an XLA op on TensorFlow."""
    rows = ops.arange(ops.shape(buffer)[0], dtype="int32")
    selected = ops.reshape(ops.equal(rows, index), (-1,) + (1,) * (len(buffer.shape) - 1))
    return ops.where(selected, ops.expand_dims(value, 0), buffer)


def block(size, block_size):
    """Rows of a block: `block_size`, or the whole axis when it is shorter (static)."""
    return min(block_size, size) if isinstance(size, int) else block_size


def padded(size, block):
    return size + (-size) % block


def valid(mask, size):
    return ops.ones((size,), dtype="bool") if mask is None else ops.cast(mask, "bool")


def blocks(x, block, fill=0):
    """`[n, ...]` -> `[ceil(n / block), block, ...]`, the last block padded with `fill`."""
    x = ops.convert_to_tensor(x)
    padding = (-ops.shape(x)[0]) % block
    if not isinstance(padding, int) or padding:
        x = ops.pad(x, [(0, padding)] + [(0, 0)] * (len(x.shape) - 1), constant_values=fill)
    return ops.reshape(x, (-1, block, *ops.shape(x)[1:]))
