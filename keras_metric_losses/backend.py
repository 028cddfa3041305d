"""Every place where the package does something different per Keras backend.

Library code is written against `keras.ops`; where that cannot express something (a collective,
a tracing test) or where one backend needs another formulation to be fast, the difference is
named here, once, and the rest of the package asks this module.

| name | what differs |
| --- | --- |
| `is_concrete` | whether a tensor's values can be read now (not traced) |
| `eager_torch` | PyTorch outside `torch.compile`: every op its own kernel |
| `ALWAYS_COMPILED` | JAX: every step is an XLA program, elementwise passes fuse |
| `PYTHON_LOOPS` | PyTorch runs `keras.ops` loops in Python (unrolled when compiled) |
| `FIRST_INDEX_ARG_REDUCTIONS` | PyTorch's `argmax`/`argmin` document the first index on ties |
| `top_k_first_index` | JAX's and TensorFlow's `top_k` document the lower index first on ties |
| `upstream_gradient` | how `keras.ops.custom_gradient` passes the upstream gradient |
| `contiguous` | a row-major copy of a PyTorch view (faster matrix products) |
| `logcumsumexp` | each backend's cumulative log-sum-exp (not in `keras.ops`) |
| `compile_function` | `jax.jit`, `tf.function` (XLA or not), `torch.compile` |
| `has_64_bit_types` | every backend but JAX without x64 computes in int64 / float64 |
| `backend_sparse` | the sparse tensor types Keras densifies (TF `SparseTensor`, JAX `BCOO`) |
| `replica_context`, `all_gather` | the collectives of `tf.distribute` and `torch.distributed` |
| `ops` | `keras.ops`, but float64 stays float64 on torch (see `_ops_keeping_float64`) |
"""

import math
import types

import keras

NAME = keras.backend.backend()

ALWAYS_COMPILED = NAME == "jax"
PYTHON_LOOPS = NAME == "torch"
# Whether `ops.argmax`/`ops.argmin` are the selections of `mining`: on torch, whose
# arg-reductions take the first index on ties (documented, also under `torch.compile`) in one
# pass. TensorFlow documents no tie rule for `argmax`, and XLA's CPU arg-reductions are 2-3x
# slower than a max and a search, which it fuses.
FIRST_INDEX_ARG_REDUCTIONS = NAME == "torch"


def top_k_first_index(x, k):
    """`keras.ops.top_k(x, k)`, the `k` largest values along the last axis in decreasing order
    and their indices, with equal values in increasing index order on every backend.

    JAX's `lax.top_k` and TensorFlow's `math.top_k` document that order; PyTorch's `topk` does
    not (among equal values its order varies, and which of them are taken at the `k`-th): there
    `topk` finds the `k`-th value, the keys above it and the lowest-index ones equal to it are
    taken, and a stable sort of those `k` orders them (no sort of the whole row). A row holding
    NaN has meaningless indices.
    """
    if NAME != "torch":
        return keras.ops.top_k(x, k)
    import torch

    kth = torch.topk(x, k, dim=-1).values[..., -1:]
    above, tied = x > kth, x == kth
    # All keys above the k-th, and the lowest-index ones equal to it; then those k columns in
    # increasing index order (the largest `width - index` first), sorted stably by value.
    needed = k - torch.sum(above, dim=-1, keepdim=True)
    taken = above | (tied & (torch.cumsum(tied, dim=-1) <= needed))
    width = x.shape[-1]
    reversed_index = width - torch.arange(width, device=x.device)
    columns = torch.topk(torch.where(taken, reversed_index, 0), k, dim=-1).indices
    values = torch.gather(x, -1, columns)
    values, order = torch.sort(values, dim=-1, descending=True, stable=True)
    return values, torch.gather(columns, -1, order)


def upstream_gradient(args, upstream):
    """The upstream gradient given to a `keras.ops.custom_gradient` gradient function called as
    `grad(*args, upstream=None)`: JAX and TensorFlow pass it positionally (alone), PyTorch by
    name after the inputs."""
    if upstream is not None:
        return upstream
    (upstream,) = args
    return upstream


def contiguous(x):
    """`x` laid out in row-major order: on PyTorch a copy of a transposed view (MKL multiplies
    by a contiguous `[D, N]` matrix 15% faster than by the transposed view of an `[N, D]` one),
    elsewhere `x` itself (TensorFlow and XLA choose their own layouts)."""
    return x.contiguous() if NAME == "torch" else x


def logcumsumexp(x):
    """`log(cumsum(exp(x)))` of a 1-D `x`, each prefix shifted by its own maximum (exact where
    `exp` would overflow or underflow): `keras.ops` has no such op, each backend has one with
    its gradient (`jax.lax.cumlogsumexp`, `tf.math.cumulative_logsumexp`,
    `torch.logcumsumexp`)."""
    if NAME == "jax":
        import jax

        return jax.lax.cumlogsumexp(x, axis=0)
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.math.cumulative_logsumexp(x, axis=0)
    import torch

    return torch.logcumsumexp(x, dim=0)


def compile_function(fn, jit_compile):
    """`fn` compiled as `model.fit` compiles a step: `jit_compile="auto"` as it does by default
    on a CPU-only machine (JAX `jax.jit`, TensorFlow `tf.function` without XLA, PyTorch eager),
    `True` with each backend's compiler (`jax.jit`, `tf.function(jit_compile=True)`,
    `torch.compile`), `False` eagerly (`fn` itself)."""
    if jit_compile is False or (NAME == "torch" and jit_compile == "auto"):
        return fn
    if NAME == "jax":
        import jax

        return jax.jit(fn)
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=jit_compile is True)
    import torch

    return torch.compile(fn, fullgraph=True, dynamic=False)


def is_concrete(x):
    """Whether the values of tensor `x` can be read now, outside any traced program.

    `False` for a `keras.KerasTensor`, a JAX tracer (`jax.jit`, `jax.grad`), inside a
    `tf.function` graph and while `torch.compile` traces; `True` for eager tensors.
    """
    if isinstance(x, keras.KerasTensor):
        return False
    if NAME == "tensorflow":
        import tensorflow as tf

        return tf.executing_eagerly()
    if NAME == "jax":
        import jax

        return not isinstance(x, jax.core.Tracer)
    if NAME == "torch":
        import torch

        return not torch.compiler.is_compiling()
    return True


def eager_torch():
    """Whether this runs on torch outside `torch.compile`, where every op is its own kernel."""
    if NAME != "torch":
        return False
    import torch

    return not torch.compiler.is_compiling()


def has_64_bit_types():
    """Whether the backend computes in int64 and float64: always, except JAX without x64."""
    if NAME != "jax":
        return True
    import jax

    return bool(jax.config.jax_enable_x64)


def backend_sparse(x):
    """Whether `x` is a sparse tensor of the current backend, which Keras densifies."""
    return (NAME, type(x).__name__) in {("tensorflow", "SparseTensor"), ("jax", "BCOO")}


def _tf_replica_context():
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def _torch_process_group():
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        return dist
    return None


def replica_context():
    """`(replica_id, num_replicas)` of `tf.distribute` or `torch.distributed`; `(0, 1)` outside
    a replica context (see `kml.distributed.replica_context`)."""
    if NAME == "tensorflow":
        context = _tf_replica_context()
        if context is not None:
            return context.replica_id_in_sync_group, context.num_replicas_in_sync
    elif NAME == "torch":
        dist = _torch_process_group()
        if dist is not None:
            return dist.get_rank(), dist.get_world_size()
    return 0, 1


def tensorflow_replicas():
    """Whether this runs in a TensorFlow replica context of several replicas (`tf.distribute`),
    where replicas call the layers in parallel threads."""
    return NAME == "tensorflow" and _tf_replica_context() is not None


def all_gather(x):
    """Every replica's `x` concatenated on axis 0 with a gradient to each replica's own rows
    (see `kml.distributed.all_gather`); `None` outside a replica context."""
    if NAME == "tensorflow":
        context = _tf_replica_context()
        if context is not None:
            x = keras.ops.convert_to_tensor(x)
            gathered = context.all_gather(x, axis=0)
            trailing = tuple(x.shape)[1:]
            if None in trailing:
                return gathered
            return keras.ops.reshape(gathered, (-1, *trailing))  # keeps the static inner shape
    elif NAME == "torch":
        dist = _torch_process_group()
        if dist is not None:
            return _torch_all_gather(x, dist)
    return None


def _torch_all_gather(x, dist):
    import torch

    class _AllGather(torch.autograd.Function):
        """Concatenates every rank's `x` on axis 0; backward all-reduces (SUM) then slices."""

        @staticmethod
        def forward(ctx, tensor):
            tensor = tensor.contiguous()
            parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
            dist.all_gather(parts, tensor)
            ctx.rows = tensor.shape[0]
            return torch.cat(parts, dim=0)

        @staticmethod
        def backward(ctx, grad):
            grad = grad.contiguous()
            dist.all_reduce(grad, op=dist.ReduceOp.SUM)
            start = dist.get_rank() * ctx.rows
            return grad[start : start + ctx.rows]

    x = keras.ops.convert_to_tensor(x)
    if x.is_floating_point() and x.requires_grad:
        return _AllGather.apply(x)
    parts = [torch.empty_like(x.contiguous()) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.contiguous())
    return torch.cat(parts, dim=0)


def _ops_keeping_float64():
    """`keras.ops` with the ops that compute float64 in float32 on torch replaced.

    Keras promotes 64-bit dtypes to 32-bit on every backend but TensorFlow (to follow JAX without
    x64), so on torch `ops.matmul`, `ops.maximum`, `ops.cumsum` and a few more return float32
    for float64 inputs, and `ops.mean` computes them in float32, while JAX with x64 and
    TensorFlow keep float64. With a float64 tensor among their arguments, these call torch's own
    op on float64 tensors instead (`clip` and the segment reductions round through float32 too).
    """
    if NAME != "torch":
        return keras.ops
    import torch

    def keeping_float64(keras_op, torch_op, values=None):
        """`values`: how many leading arguments are values (the others, ids, stay as given)."""

        def op(*args, **kwargs):
            if not any(isinstance(a, torch.Tensor) and a.dtype == torch.float64 for a in args):
                return keras_op(*args, **kwargs)
            count = len(args) if values is None else values
            converted = [keras.ops.convert_to_tensor(a, "float64") for a in args[:count]]
            return torch_op(*converted, *args[count:], **kwargs)

        op.__name__ = op.__qualname__ = keras_op.__name__
        op.__doc__ = keras_op.__doc__
        return op

    def mean(x, axis=None, keepdims=False):
        return torch.mean(x, dim=axis, keepdim=keepdims)

    def var(x, axis=None, keepdims=False):
        return torch.var(x, dim=axis, keepdim=keepdims, correction=0)

    def cumsum(x, axis=None):
        return torch.cumsum(x.reshape(-1) if axis is None else x, dim=0 if axis is None else axis)

    def divide_no_nan(x1, x2):
        return torch.where(x2 == 0, torch.zeros_like(x1), x1 / torch.where(x2 == 0, 1.0, x2))

    def segment_reduction(reduction, empty):
        # Keras' torch segment ops reduce in float32. Ids outside [0, n) go to a dropped row.
        def op(data, segment_ids, num_segments=None, sorted=False):
            ids = keras.ops.convert_to_tensor(segment_ids).long()
            n = int(ids.max()) + 1 if num_segments is None else num_segments
            ids = torch.where((ids >= 0) & (ids < n), ids, n)
            index = ids.reshape(-1, *[1] * (data.ndim - 1)).expand_as(data)
            shape = (n + 1, *data.shape[1:])
            result = torch.full(shape, empty, dtype=data.dtype, device=data.device)
            return result.scatter_reduce(0, index, data, reduction)[:-1]

        return op

    namespace = types.ModuleType(keras.ops.__name__, keras.ops.__doc__)
    namespace.__dict__.update(vars(keras.ops))
    replacements = {
        "arctan2": torch.atan2,
        "ceil": torch.ceil,
        "clip": torch.clip,
        "cumsum": cumsum,
        "divide_no_nan": divide_no_nan,
        "floor": torch.floor,
        "logaddexp": torch.logaddexp,
        "matmul": torch.matmul,
        "maximum": torch.maximum,
        "mean": mean,
        "minimum": torch.minimum,
        "var": var,
    }
    for name, torch_op in replacements.items():
        setattr(namespace, name, keeping_float64(getattr(keras.ops, name), torch_op))
    for name, reduction, empty in (("segment_sum", "sum", 0.0), ("segment_max", "amax", -math.inf)):
        torch_op = segment_reduction(reduction, empty)
        setattr(namespace, name, keeping_float64(getattr(keras.ops, name), torch_op, values=1))
    return namespace


ops = _ops_keeping_float64()
