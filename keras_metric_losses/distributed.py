"""Cross-replica gathering and seeding: the one backend-specific part of the package.

Pairwise losses improve with more negatives. Under data parallelism each replica sees only its
slice of the global batch; the helpers here let a replica compare its own anchors (queries) with
the keys of every replica, so that Keras' reduction plus the usual gradient summation over
replicas gives the loss and gradients of the global batch.

| backend | engine | what happens |
| --- | --- | --- |
| JAX | `keras.distribution.DataParallel` | the jitted step sees the global batch: no gather |
| TensorFlow | `tf.distribute` strategies | `ReplicaContext.all_gather` inside `strategy.run` |
| PyTorch | `torch.distributed` | `all_gather`; its backward all-reduces, then slices |

Sampled losses (NCE, sampled softmax) need no gather but a rule for their random candidates:
`replica_seed` gives every replica its own draw, or one draw shared by all replicas.

Outside a replica context (one device, JAX, a TF cross-replica context, `torch.distributed` not
initialised) every function here is the identity / single-replica answer.
"""

import keras

from keras_metric_losses import backend
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops

__all__ = ["all_gather", "gather_keys", "replica_context", "replica_seed"]


@export
def replica_context():
    """The current replica's id and the number of replicas whose batches form the global batch.

    Returns:
        A tuple `(replica_id, num_replicas)`. `replica_id` is a Python int or a scalar int
            tensor (TensorFlow, inside `strategy.run`); `num_replicas` is a Python int.
            `(0, 1)` outside a replica context: on one device, under JAX (whose jitted step
            sees the global batch), in a TensorFlow cross-replica context, or when
            `torch.distributed` is not initialised.

    This function raises nothing.

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.distributed.replica_context()
    (0, 1)

    Reference: `tf.distribute.ReplicaContext`; `torch.distributed.get_rank`.
    """
    return backend.replica_context()


@export
def all_gather(x):
    """Concatenation of every replica's `x` along axis 0, differentiable.

    Replica `r`'s rows come `r`-th, so on every replica the result is the global batch in the
    same order. The gradient flows back to each replica's own rows: the backward pass sums the
    upstream gradients of all replicas (all-reduce) and keeps this replica's slice, so that
    summing the parameter gradients over replicas (what `MirroredStrategy`, DDP, or an
    all-reduce of the gradients does) gives the gradient of the sum of the replicas' losses.

    Backends:

    - TensorFlow: `tf.distribute.get_replica_context().all_gather(x, axis=0)` inside
      `strategy.run` (what `model.fit` does under a strategy); replicas may hold different
      numbers of rows.
    - PyTorch: `torch.distributed.all_gather` when a process group is initialised; every
      process must hold the same number of rows (use `drop_last=True`).
    - JAX: the identity. Under `keras.distribution.DataParallel` the jitted step already works
      on the global, sharded batch.

    Outside a replica context `x` is returned unchanged.

    Args:
        x: `[b, ...]` tensor of any dtype (floating tensors carry gradients).

    Returns:
        `[sum_r b_r, ...]` tensor: the rows of replica 0, then replica 1, and so on.

    Raises:
        RuntimeError: from the backend's collective, for example when `torch.distributed`
            processes hold different numbers of rows.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> tuple(kml.distributed.all_gather(np.ones((2, 3))).shape)  # one device: unchanged
    (2, 3)

    Reference: `tf.distribute.ReplicaContext.all_gather`; `torch.distributed.all_gather`.
    """
    gathered = backend.all_gather(x)
    return ops.convert_to_tensor(x) if gathered is None else gathered


@export
def gather_keys(embeddings, labels):
    """Keys of the global batch for a loss that compares local anchors with every example.

    A loss that takes embeddings (not a precomputed similarity matrix) calls this to compare its
    own `b` anchors (queries, `embeddings`) with the `B` examples of all replicas (keys): it
    computes a `[b, B]` distance matrix, one loss per local anchor, and lets Keras reduce.
    `self_columns[i]` is the key column of anchor `i` itself, for excluding the trivial
    positive `d(a_i, a_i) = 0` with a mask (`ops.arange(B)[None, :] != self_columns[:, None]`).

    Args:
        embeddings: `[b, D]` local embeddings.
        labels: `[b]` (or `[b, ...]`) local labels.

    Returns:
        A tuple `(keys, key_labels, self_columns)`: `[B, D]` embeddings and `[B, ...]` labels
            of every replica (the inputs themselves outside a replica context, `B = b`), and
            `[b]` int32 global column indices of the local rows.

    Raises:
        RuntimeError: from the backend's collective (see `all_gather`).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> keys, key_labels, self_columns = kml.distributed.gather_keys(
    ...     np.eye(3, dtype="float32"), np.array([0, 1, 0]))
    >>> keras.ops.convert_to_numpy(self_columns).tolist()  # one device: the local rows
    [0, 1, 2]

    Reference: Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020 (local queries
    against a larger key set); Radford et al., CLIP, 2021 (gathered negatives).
    """
    keys, key_labels = all_gather(embeddings), all_gather(labels)
    local_rows = ops.shape(embeddings)[0]
    replica_id, num_replicas = replica_context()
    if num_replicas == 1:
        offset = 0
    else:
        sizes = all_gather(ops.reshape(ops.cast(local_rows, "int32"), (1,)))
        before = ops.less(ops.arange(num_replicas, dtype="int32"), ops.cast(replica_id, "int32"))
        offset = ops.sum(ops.where(before, sizes, ops.zeros_like(sizes)))
    self_columns = ops.add(ops.arange(local_rows, dtype="int32"), ops.cast(offset, "int32"))
    return keys, key_labels, self_columns


# 2**32 / golden ratio**2, below 2**31 so it fits every backend's seed dtype (int32, uint32,
# int64): replica r's seed moves by r times this stride (wrapping in the seed dtype), which keeps
# replicas' seeds far apart (a golden-ratio Weyl sequence), also on PyTorch, which seeds with the
# sum of the two seed words.
_REPLICA_SEED_STRIDE = 0x61C88647


class _DerivedSeed(keras.random.SeedGenerator):
    """A seed for `keras.random`: `derive` of the next state of `generator` (no state of its own).

    `keras.random` accepts an int, `None` or a `SeedGenerator`, whose `next()` it calls; this
    generator advances `generator` as usual and hands `derive(state)` to the random op.
    """

    def __init__(self, generator, derive):
        self.generator, self.derive = generator, derive

    def next(self, ordered=True):
        return self.derive(self.generator.next(ordered))


@export
def replica_seed(seed_generator, cross_replica=False):
    """A seed that gives each replica its own random draw, or one draw shared by all replicas.

    Under `tf.distribute` a layer's `keras.random.SeedGenerator` is a mirrored variable and under
    `torch.distributed` every process starts from the same seed (when seeded alike), so every
    replica would draw the **same** random numbers. With the generator's next state `[s, t]`,
    replica `r` of `R` draws with

    ```
    cross_replica=False:  [s + r * 0x61C88647, t]   (its own stream; wraps in the seed dtype)
    cross_replica=True:   replica 0's [s, t]         (one stream for all replicas)
    ```

    Replica 0's stream is the single-device stream, so with `cross_replica=True` the global step
    draws exactly what one device would. The shared state is replica 0's, gathered with
    `all_gather` (two integers per step), so replicas draw the same even when their generators
    were seeded differently. The generator advances once per call, as usual.

    Outside a replica context (one device; JAX, whose `keras.distribution.DataParallel` step is
    one program over the global batch, so one draw for all devices) `seed_generator` is returned
    unchanged, whatever `cross_replica` says.

    Args:
        seed_generator: The `keras.random.SeedGenerator` of the layer or loss.
        cross_replica: Share one draw between all replicas. Defaults to `False`: each replica
            draws from its own stream.

    Returns:
        A `keras.random.SeedGenerator` to pass as `seed=` to `keras.random` functions (and to
        `log_uniform_candidate_sampler`, `nce_loss`, `sampled_softmax_loss`): `seed_generator`
        itself outside a replica context, else a stateless view of it.

    Raises:
        TypeError: if `seed_generator` is not a `keras.random.SeedGenerator` or `cross_replica`
            is not a bool.

    Example:

    >>> import keras
    >>> import keras_metric_losses as kml
    >>> generator = keras.random.SeedGenerator(1)
    >>> kml.distributed.replica_seed(generator) is generator  # one device: unchanged
    True

    Reference: `tf.random.Generator`, which likewise gives each replica of a `tf.distribute`
    strategy its own stream; Salmon et al., "Parallel random numbers: as easy as 1, 2, 3",
    SC 2011 (counter-based generators, one stream per key).
    """
    if not isinstance(seed_generator, keras.random.SeedGenerator):
        raise TypeError(
            "`seed_generator` must be a `keras.random.SeedGenerator`. Received: "
            f"seed_generator={seed_generator!r}"
        )
    if not isinstance(cross_replica, bool):
        raise TypeError(
            f"`cross_replica` must be a bool. Received: cross_replica={cross_replica!r}"
        )
    replica_id, num_replicas = replica_context()
    if num_replicas == 1:
        return seed_generator
    if cross_replica:
        return _DerivedSeed(seed_generator, lambda state: all_gather(ops.expand_dims(state, 0))[0])

    def own_stream(state):
        offset = ops.cast(replica_id, state.dtype) * _REPLICA_SEED_STRIDE
        return state + ops.stack([offset, ops.zeros_like(offset)])

    return _DerivedSeed(seed_generator, own_stream)
