"""The front end of the losses that take labels and embeddings.

`embedding_pairs(y_true, y_pred, ...)` checks the inputs once for every such loss and returns a
`Pairs`: the queries (the batch's embeddings, in the compute dtype), the keys they are compared
with, the labels of both, and the `[b, K]` positive and negative masks. The keys are

- the batch itself (default; an anchor is not its own positive: the diagonal is removed);
- `ref_embeddings` / `ref_labels`, as in `keras.losses.circle` (a gallery, a cross-batch
  memory): no key is the anchor itself unless `self_columns` says which one is;
- with `cross_replica=True`, the embeddings of every replica (`kml.distributed.gather_keys`).

A loss then computes its `[b, K]` distance matrix with `Pairs.distances` and one value per
query. Anchors without a positive or a negative (`Pairs.valid` is `False`) get loss 0 with a
zero gradient in every loss of the package.
"""

import dataclasses

from keras import ops

from keras_metric_losses import distances as distances_lib
from keras_metric_losses import distributed, mining, validation
from keras_metric_losses.ops import compute_dtype


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Queries, keys, their labels and the positive / negative masks of a batch.

    Attributes:
        queries: `[b, D]` embeddings of the batch, in `compute_dtype` (float32 at least).
        keys: `[K, D]` embeddings the queries are compared with (`queries` itself by default).
        labels: `[b]` labels of the queries, in their own dtype.
        key_labels: `[K]` labels of the keys.
        positive: `[b, K]` booleans, same label and not the query itself.
        negative: `[b, K]` booleans, another label.
        self_columns: `[b]` int32 key column of each query, or `None` if the queries are not
            among the keys.
    """

    queries: object
    keys: object
    labels: object
    key_labels: object
    positive: object
    negative: object
    self_columns: object = None

    @property
    def keys_are_queries(self):
        """Whether the keys are the queries themselves (a square `[b, b]` problem)."""
        return self.keys is self.queries

    @property
    def has_positive(self):
        """`[b]` booleans: the query has at least one positive key."""
        return ops.any(self.positive, axis=-1)

    @property
    def has_negative(self):
        """`[b]` booleans: the query has at least one negative key."""
        return ops.any(self.negative, axis=-1)

    @property
    def valid(self):
        """`[b]` booleans: the query has a positive and a negative key."""
        return ops.logical_and(self.has_positive, self.has_negative)

    def distances(self, distance):
        """`[b, K]` matrix `distance(queries, keys)` for a distance name or callable."""
        return distances_lib.get(distance)(self.queries, self.keys)


def embedding_pairs(
    y_true,
    y_pred,
    *,
    ref_embeddings=None,
    ref_labels=None,
    cross_replica=False,
    self_columns=None,
):
    """Checks labels and embeddings and builds the `Pairs` of a loss on embeddings.

    Args:
        y_true: `[b]` or `[b, 1]` integer class labels (integral floats accepted).
        y_pred: `[b, D]` embeddings.
        ref_embeddings: Optional `[K, D]` key embeddings. Requires `ref_labels`.
        ref_labels: Optional `[K]` or `[K, 1]` key labels. Requires `ref_embeddings`.
        cross_replica: Compare with the embeddings of every replica (`tf.distribute`,
            `torch.distributed`); the identity on one device and under JAX.
        self_columns: Optional `[b]` int key column of each query (with `ref_embeddings` that
            hold the batch, such as a cross-batch memory): those pairs are not positives.

    Returns:
        A `Pairs`.

    Raises:
        ValueError: if the labels are not `[b]` / `[b, 1]`, the embeddings not rank 2, the batch
            sizes differ, only one of `ref_embeddings` / `ref_labels` is given, they disagree
            with each other or with `y_pred`'s dimension, or `ref_embeddings` is combined with
            `cross_replica=True`. With value checks on (`kml.config`), also for non-integral
            float labels and non-finite embeddings.
        TypeError: if the labels are not numbers.
    """
    labels = validation.class_labels(validation.numeric_tensor(y_true, "y_true"))
    embeddings = ops.convert_to_tensor(y_pred)
    validation.rank(embeddings, 2, "a [batch, dim] matrix of embeddings", "y_pred")
    validation.same_batch(labels, embeddings)
    validation.integral_labels(labels, "y_true")
    validation.finite(embeddings, "y_pred")
    queries = ops.cast(embeddings, compute_dtype(embeddings))
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError(
            "`ref_embeddings` and `ref_labels` go together: pass both or neither. Received: "
            f"ref_embeddings={_shape_of(ref_embeddings)}, ref_labels={_shape_of(ref_labels)}"
        )
    if ref_embeddings is not None:
        if cross_replica:
            raise ValueError(
                "`ref_embeddings` replaces the keys, so it cannot be combined with "
                "`cross_replica=True` (gather the reference set yourself). Received: "
                "cross_replica=True"
            )
        keys, key_labels = _reference_keys(ref_embeddings, ref_labels, queries)
    elif cross_replica:
        keys, key_labels, self_columns = distributed.gather_keys(queries, labels)
    else:
        keys, key_labels = queries, labels
        self_columns = ops.arange(ops.shape(labels)[0], dtype="int32")
    # Without `self_columns` no key is the query itself (-1 is no column); `label_masks`
    # would otherwise remove the "diagonal" columns 0..b-1 of the reference keys.
    own_columns = ops.zeros_like(labels, "int32") - 1 if self_columns is None else self_columns
    positive, negative = mining.label_masks(labels, key_labels, own_columns)
    return Pairs(queries, keys, labels, key_labels, positive, negative, self_columns)


def _reference_keys(ref_embeddings, ref_labels, queries):
    keys = ops.convert_to_tensor(ref_embeddings)
    validation.rank(keys, 2, "a [num_keys, dim] matrix of embeddings", "ref_embeddings")
    key_labels = validation.class_labels(
        validation.numeric_tensor(ref_labels, "ref_labels"), "ref_labels"
    )
    key_shape, label_shape = tuple(keys.shape), tuple(key_labels.shape)
    if None not in (key_shape[0], label_shape[0]) and key_shape[0] != label_shape[0]:
        raise ValueError(
            "`ref_embeddings` and `ref_labels` must have the same number of rows. Received: "
            f"ref_embeddings.shape={key_shape} and ref_labels.shape={label_shape}"
        )
    dims = (key_shape[1], queries.shape[1])
    if None not in dims and dims[0] != dims[1]:
        raise ValueError(
            "`ref_embeddings` must have the dimension of `y_pred`. Received: "
            f"ref_embeddings.shape={key_shape} and y_pred.shape={tuple(queries.shape)}"
        )
    validation.integral_labels(key_labels, "ref_labels")
    validation.finite(keys, "ref_embeddings")
    return ops.cast(keys, queries.dtype), key_labels


def _shape_of(x):
    return None if x is None else f"<shape {tuple(ops.shape(x))}>"
