"""Cross-batch memory: a small batch meets the embeddings of many past batches."""

import keras

from keras_metric_losses import backend, distributed, pairs, validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.layers.adds_loss import AddsLoss, deserialized, serialized
from keras_metric_losses.losses.base import DECLARED, LossFunctionWrapper

MODES = ("pml", "tf_similarity")


@export
class CrossBatchMemory(AddsLoss, StrictConfig, keras.layers.Layer):
    """A ring buffer of past embeddings and labels, and the loss of the batch against it.

    Wang et al.'s cross-batch memory (XBM): the embeddings of recent batches are kept (without
    gradient) in non-trainable variables of static shape `[memory_size, D]`, so that a small
    batch is compared with thousands of keys. In training the layer

    1. writes the batch into the memory (inside the compiled train step, on every backend);
    2. computes `loss` with the batch as queries and the memory as keys (`ref_embeddings`), only
       over the slots filled so far, and adds it to the model's losses (`add_loss`);
    3. returns the embeddings unchanged.

    Outside training (`predict`, `evaluate`) it only returns the embeddings. Gradients flow
    through the current batch's embeddings only (the memory holds copies). The memory, its
    position and the step count are weights: they are saved with the model, so training resumes
    with the same memory after a `.keras` save and load.

    Two semantics (`mode`):

    - `"pml"` (pytorch-metric-learning 2.9's `CrossBatchMemory`): the batch is written to slots
      `(position + arange(B)) % memory_size` BEFORE the loss; until the first wrap-around only
      the filled prefix is a key, afterwards the whole buffer. Each query's own slot is not its
      positive; the rest of its batch is. With an `enqueue_mask` input, the masked rows are only
      written and the other rows are only queries (nothing removed). PML keeps a one-row batch
      as its own positive (its self test fails for one row); here it is removed.
    - `"tf_similarity"` (TensorFlow Similarity 0.17's `XBM`): the keys are
      `concat(batch, memory)[:memory_size]`, newest first, with the diagonal removed; for the
      first `warmup_steps` steps the memory is not updated and the keys are the batch alone.

    Every loss declared with keys is accepted (`ref_embeddings` in its function; the layer
    passes its slots to the loss as `kml.pairs.Keys.memory`, and a loss without keys raises when
    the layer is built), but not every one trains against keys without gradient: `PNLoss`
    collapses (see "When the memory helps" on the docs page). Per step the loss costs one
    `[B, memory_size]` distance matrix (plus what the loss adds); the memory costs
    `memory_size * (D + 1)` numbers.

    Distributed training (see the docs page):

    - `cross_replica=True` (`tf.distribute`, `torch.distributed`): each replica gathers the
      global batch (`kml.distributed.all_gather`, replica 0's rows first) and writes all of it,
      so every replica holds the same memory, the one a single device fed the global batches
      holds; each replica's own rows are the queries.
    - `cross_replica=False`: under `torch.distributed` each process's memory holds its own
      rows only; under `tf.distribute` with several replicas it raises (the memory weights are
      mirrored: one value for every replica).
    - JAX's `keras.distribution.DataParallel`: the step sees the global batch, so the memory
      holds the global batches either way (the option changes nothing).

    Args:
        loss: A loss of this package on labels and embeddings (for example
            `kml.MultiSimilarityLoss()`), called with `ref_embeddings` / `ref_labels`; its
            reduction makes the scalar that is added.
        memory_size: Number of slots `M`.
        mode: `"pml"` or `"tf_similarity"`. Defaults to `"pml"`.
        warmup_steps: Steps during which the memory is not updated (`"tf_similarity"` only).
            Defaults to 0.
        cross_replica: Write the global batch of every replica into the memory. Defaults to
            `False`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...). The memory
            has the layer's variable dtype (float32 under mixed precision).

    Call arguments:
        inputs: `[embeddings, labels]` (`[B, D]` floats, `[B]` or `[B, 1]` integer labels), or
            `[embeddings, labels, enqueue_mask]` (`[B]` booleans, `"pml"` mode).

    Returns:
        The embeddings, unchanged.

    Raises:
        ValueError: for a `memory_size` that is not a positive int, an unknown `mode`, negative
            `warmup_steps`, an embedding dimension that is unknown, a batch larger than the
            memory, or `cross_replica=False` under `tf.distribute` with several replicas.
        TypeError: if `loss` is not a loss of this package.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> memory = kml.layers.CrossBatchMemory(kml.MultiSimilarityLoss(), memory_size=8)
    >>> x, y = keras.Input((4,)), keras.Input((), dtype="int32")
    >>> embeddings = keras.layers.UnitNormalization()(keras.layers.Dense(3)(x))
    >>> model = keras.Model([x, y], memory([embeddings, y]))
    >>> model.compile(optimizer="adam")
    >>> data = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    >>> labels = np.array([0, 1, 0, 1, 2, 3, 2, 3], "int32")
    >>> history = model.fit([data, labels], batch_size=4, epochs=1, verbose=0)
    >>> int(keras.ops.convert_to_numpy(memory.position))  # 8 rows written into 8 slots
    0
    >>> sorted(keras.ops.convert_to_numpy(memory.label_memory).tolist())
    [0, 0, 1, 1, 2, 2, 3, 3]

    Reference: Wang et al., "Cross-Batch Memory for Embedding Learning", CVPR 2020;
    pytorch-metric-learning's `CrossBatchMemory`; TensorFlow Similarity's `XBM`.
    """

    def __init__(
        self,
        loss,
        memory_size,
        mode="pml",
        warmup_steps=0,
        cross_replica=False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        loss = deserialized(loss)
        if not isinstance(loss, LossFunctionWrapper):
            raise TypeError(
                "`loss` must be a loss of keras_metric_losses on labels and embeddings (for "
                f"example `kml.PNLoss()`). Received: loss={loss!r}"
            )
        if loss.declaration is not None and (loss.declaration.inputs.front_end or {}).get(
            "multi_hot"
        ):
            raise ValueError(
                f"`{type(loss).__name__}` takes multi-hot labels; the memory holds one class id "
                f"per slot. Received: loss={type(loss).__name__}()"
            )
        if loss.declaration is None or not loss.declaration.supports_keys:
            supported = sorted(d.cls.__name__ for d in DECLARED if d.cls and d.supports_keys)
            raise ValueError(
                f"`{type(loss).__name__}` takes no keys other than its batch, so it cannot "
                f"compare the batch with a memory. Losses that can: {', '.join(supported)}. "
                f"Received: loss={type(loss).__name__}()"
            )
        self.loss = loss
        self.memory_size = validation.positive_int(memory_size, "memory_size")
        self.mode = validation.one_of(mode, "mode", MODES)
        self.warmup_steps = validation.positive_int(warmup_steps, "warmup_steps", low=0)
        self.cross_replica = validation.boolean(cross_replica, "cross_replica")

    def build(self, input_shape):
        dim = input_shape[0][-1]
        if dim is None:
            raise ValueError(
                "The last dimension of the embeddings must be known. Received: "
                f"embeddings.shape={tuple(input_shape[0])}"
            )
        constant = {"trainable": False, "aggregation": "only_first_replica"}
        self.embedding_memory = self.add_weight(
            name="embedding_memory", shape=(self.memory_size, dim), initializer="zeros", **constant
        )
        self.label_memory = self.add_weight(
            name="label_memory", shape=(self.memory_size,), initializer="zeros", dtype="int32",
            **constant,
        )  # fmt: skip
        self.position = self.add_weight(
            name="position", shape=(), initializer="zeros", dtype="int32", **constant
        )
        # Rows written so far, saturating at memory_size ("pml": the filled prefix).
        self.filled = self.add_weight(
            name="filled", shape=(), initializer="zeros", dtype="int32", **constant
        )
        self.steps = self.add_weight(
            name="steps", shape=(), initializer="zeros", dtype="int32", **constant
        )

    def call(self, inputs, training=None):
        embeddings, labels = inputs[0], inputs[1]
        enqueue_mask = inputs[2] if len(inputs) > 2 else None
        if training:
            labels = ops.cast(validation.class_labels(ops.convert_to_tensor(labels)), "int32")
            self.add_reduced_loss(self.loss, self._step(embeddings, labels, enqueue_mask))
        return embeddings

    def _step(self, embeddings, labels, enqueue_mask):
        batch = embeddings.shape[0]
        if batch is not None and batch > self.memory_size and enqueue_mask is None:
            raise ValueError(
                "A batch larger than the memory needs an `enqueue_mask`. Received: "
                f"batch size {batch} and memory_size={self.memory_size}"
            )
        if not self.cross_replica and backend.tensorflow_replicas():
            raise ValueError(
                "Under `tf.distribute` with several replicas `CrossBatchMemory` needs "
                "`cross_replica=True`: its memory weights are mirrored (one value for every "
                "replica, taken from the first), so it cannot hold each replica's own rows. "
                "Received: cross_replica=False"
            )
        values = ops.stop_gradient(ops.cast(embeddings, self.embedding_memory.dtype))
        local_rows = None  # the global rows of this replica's batch (cross_replica)
        if self.cross_replica:
            if enqueue_mask is not None:
                enqueue_mask = distributed.all_gather(ops.cast(enqueue_mask, "int32"))
            values, all_labels, local_rows = distributed.gather_keys(values, labels)
        else:
            all_labels = labels
        if self.mode == "pml":
            keys, key_labels, valid, self_columns, queries = self._pml_write(
                values, all_labels, enqueue_mask
            )
        else:
            keys, key_labels, valid, self_columns, queries = self._tf_similarity_keys(
                values, all_labels
            )
        if local_rows is not None:
            self_columns = ops.take(self_columns, local_rows)
            queries = None if queries is None else ops.take(queries, local_rows)
        memory = pairs.Keys.memory(keys, key_labels, valid, self_columns, queries)
        return self.loss.per_example(labels, embeddings, memory)

    def _pml_write(self, values, labels, enqueue_mask):
        size, rows = self.memory_size, ops.shape(values)[0]
        position = self.position.value
        if enqueue_mask is None:
            written = ops.ones((rows,), dtype="bool")
        else:
            written = ops.reshape(ops.cast(enqueue_mask, "bool"), (-1,))
        # Slot of each written row: position + (its rank among the written rows), mod size.
        rank = ops.cumsum(ops.cast(written, "int32")) - 1
        slots = ops.mod(position + rank, size)
        count = ops.sum(ops.cast(written, "int32"))
        # A scatter of the written rows into their slots; the others (and, when more rows than
        # slots are written, all but the last `size` of them: a ring keeps the latest) go to a
        # scratch row past the end, so every slot has at most one writer.
        kept = ops.logical_and(written, rank >= count - size)
        targets = ops.expand_dims(ops.where(kept, slots, size), 1)
        memory = ops.scatter_update(
            ops.concatenate([self.embedding_memory.value, values[:1]], axis=0), targets, values
        )[:size]
        memory_labels = ops.scatter_update(
            ops.concatenate([self.label_memory.value, labels[:1]], axis=0), targets, labels
        )[:size]
        self.embedding_memory.assign(memory)
        self.label_memory.assign(memory_labels)
        self.position.assign(ops.mod(position + count, size))
        filled = ops.minimum(self.filled.value + count, size)
        self.filled.assign(filled)
        valid = ops.arange(size, dtype="int32") < filled
        if enqueue_mask is None:
            return memory, memory_labels, valid, slots, None
        no_self = ops.full((rows,), -1, dtype="int32")
        return memory, memory_labels, valid, no_self, ops.logical_not(written)

    def _tf_similarity_keys(self, values, labels):
        size, rows = self.memory_size, ops.shape(values)[0]
        keys = ops.concatenate([values, self.embedding_memory.value], axis=0)[:size]
        key_labels = ops.concatenate([labels, self.label_memory.value], axis=0)[:size]
        filled = ops.minimum(self.filled.value + rows, size)
        steps = self.steps.value + 1
        self.steps.assign(steps)
        update = steps > self.warmup_steps
        self.embedding_memory.assign(ops.where(update, keys, self.embedding_memory.value))
        self.label_memory.assign(ops.where(update, key_labels, self.label_memory.value))
        self.filled.assign(ops.where(update, filled, self.filled.value))
        # Warm-up: the keys are the batch alone (the memory stays empty).
        valid = ops.arange(size, dtype="int32") < ops.where(update, filled, rows)
        return keys, key_labels, valid, ops.arange(rows, dtype="int32"), None

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {
            **super().get_config(),
            "loss": serialized(self.loss),
            "memory_size": self.memory_size,
            "mode": self.mode,
            "warmup_steps": self.warmup_steps,
            "cross_replica": self.cross_replica,
        }
