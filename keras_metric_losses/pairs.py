"""The front end: what every loss on labels and embeddings (and every retrieval metric) takes.

`build(y_true, y_pred, keys)` checks the inputs once and returns `Pairs`: the queries (the
batch's embeddings, in the compute dtype), the keys they are compared with, the labels of both
and, computed when first read, the `[b, K]` positive / negative masks. The keys come from one
explicit source, a `Keys`:

| source | keys | a query's own column |
| --- | --- | --- |
| `Keys()` (default) | the batch itself | the diagonal (not its own positive) |
| `Keys.reference(embeddings, labels)` | a gallery (`ref_embeddings` / `ref_labels`) | none |
| `Keys.replicas()` | every replica's embeddings (`cross_replica=True`) | its global row |
| `Keys.memory(...)` | a cross-batch memory's slots, only those that hold data | its slot |

Labels are class ids `[b]` (or `[b, 1]`) or, with `multi_hot=True`, multi-hot `[b, C]` (a key is
a positive when it shares a label, weighted by the overlap). There is no module state: a
cross-batch memory passes its slots as a `Keys.memory`, so replicas running in threads cannot
see each other's keys.

A loss computes one value per query from the `Pairs` (0 with zero gradient for a query without
a positive or a negative), then `Pairs.finish` turns them into the loss's output: the mean over
the views of each example, a NaN wherever the inputs hold a non-finite value (so that Keras'
`TerminateOnNaN` stops such a training, though masks select with `where`), in the dtype of
`y_pred`.
"""

import dataclasses
import functools
import warnings

from keras_metric_losses import distances as distances_lib
from keras_metric_losses import distributed, mining, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import (
    compute_dtype,
    in_dtype_of,
    l2_normalize,
    label_equality,
    with_non_finite_of,
)

EMBEDDINGS = "a [batch, dim] matrix of embeddings"


@dataclasses.dataclass(frozen=True)
class Keys:
    """Where the keys of a batch come from (see the module docstring); build one with a class
    method. `Keys()` is the batch itself.

    Attributes:
        embeddings: `[K, D]` key embeddings, or `None` for the batch (or every replica's).
        labels: `[K]` (or `[K, C]`) labels of `embeddings`.
        cross_replica: The keys are every replica's embeddings.
        valid: `[K]` booleans, the slots that hold keys (a memory), or `None` for all.
        self_columns: `[b]` int32 key column of each query itself (a memory), or `None`.
        anchors: `[b]` booleans, the queries that are anchors (a memory's enqueue mask), or
            `None` for all.
    """

    embeddings: object = None
    labels: object = None
    cross_replica: bool = False
    valid: object = None
    self_columns: object = None
    anchors: object = None

    @classmethod
    def reference(cls, embeddings, labels):
        """A gallery: `[K, D]` embeddings and their `[K]` labels; no key is a query."""
        return cls(embeddings, labels)

    @classmethod
    def replicas(cls):
        """The embeddings of every replica (`tf.distribute`, `torch.distributed`)."""
        return cls(cross_replica=True)

    @classmethod
    def memory(cls, embeddings, labels, valid, self_columns=None, anchors=None):
        """A cross-batch memory's `[M, D]` slots and labels, `valid` `[M]` the filled ones,
        `self_columns` `[b]` each query's own slot (`-1`: none), `anchors` `[b]` the queries
        that are anchors."""
        return cls(embeddings, labels, False, valid, self_columns, anchors)

    @property
    def is_reference(self):
        return self.embeddings is not None


def keys_of(ref_embeddings=None, ref_labels=None, cross_replica=False):
    """The `Keys` of a loss function's `ref_embeddings`, `ref_labels` and `cross_replica`.

    Raises:
        ValueError: if only one of `ref_embeddings` / `ref_labels` is given, or they are
            combined with `cross_replica=True`.
    """
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError(
            "`ref_embeddings` and `ref_labels` go together: pass both or neither. Received: "
            f"ref_embeddings={_shape_of(ref_embeddings)}, ref_labels={_shape_of(ref_labels)}"
        )
    if ref_embeddings is None:
        return Keys(cross_replica=cross_replica)
    if cross_replica:
        raise ValueError(
            "`ref_embeddings` replaces the keys, so it cannot be combined with "
            "`cross_replica=True` (gather the reference set yourself). Received: "
            "cross_replica=True"
        )
    return Keys.reference(ref_embeddings, ref_labels)


class _computed_once:
    """A property computed on first read and kept (`functools.cached_property` without its
    lock, which `torch.compile` cannot trace on Python 3.11)."""

    def __init__(self, fn):
        self.fn, self.__doc__ = fn, fn.__doc__

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, instance, owner=None):
        if instance is None:
            return self
        value = self.fn(instance)
        object.__setattr__(instance, self.name, value)
        return value


@dataclasses.dataclass(frozen=True)
class Pairs:
    """Queries, keys and their labels, with the masks of their pairs (computed when read).

    Attributes:
        queries: `[b, D]` embeddings of the batch, in the compute dtype (float32 at least).
        keys: `[K, D]` embeddings the queries are compared with (`queries` itself by default).
        labels: `[b]` class labels in their own dtype, or `[b, C]` multi-hot labels.
        key_labels: `[K]` (or `[K, C]`) labels of the keys.
        source: The `Keys` they come from.
        self_columns: `[b]` int32 key column of each query, or `None` (no key is a query).
        num_rows: Number of anchors of the global batch (every replica's with `cross_replica`).
        views: Views of each example (`y_pred` `[B, V, D]`), 1 for `[B, D]`.
        y_pred: The predictions as given (their dtype is the output's).
        triplets: `[b, K, K]` booleans, the (anchor, positive, negative) triplets a miner
            selected, or `None`: every positive of an anchor with every negative.
        unmined: With a miner's selection (`restricted`), these pairs before it (their masks
            are every pair's); `None` otherwise.
    """

    queries: object
    keys: object
    labels: object
    key_labels: object
    source: Keys
    self_columns: object
    num_rows: object
    views: int
    y_pred: object
    triplets: object = None
    unmined: object = None

    @property
    def multi_hot(self):
        return len(tuple(self.labels.shape)) == 2

    @property
    def keys_are_queries(self):
        """Whether the keys are the queries themselves (a square `[b, b]` problem)."""
        return self.keys is self.queries

    @property
    def cross_replica(self):
        return self.source.cross_replica

    def normalized(self):
        """These pairs with L2-normalised queries and keys (`ops.l2_normalize`)."""
        queries = l2_normalize(self.queries)
        keys = queries if self.keys_are_queries else l2_normalize(self.keys)
        return dataclasses.replace(self, queries=queries, keys=keys)

    def restricted(self, positive, negative, triplets=None):
        """These pairs with only the `[b, K]` positive and negative pairs given as well (a
        miner's selection, `kml.miners`), and the `[b, K, K]` `triplets` if given."""
        restricted = dataclasses.replace(self, triplets=triplets, unmined=self)
        object.__setattr__(restricted, "positive", ops.logical_and(self.positive, positive))
        object.__setattr__(restricted, "negative", ops.logical_and(self.negative, negative))
        return restricted

    def distances(self, distance):
        """`[b, K]` matrix `distance(queries, keys)` for a distance name or callable."""
        return distances_lib.get(distance)(self.queries, self.keys)

    @_computed_once
    def overlap(self):
        """`[b, K]` number of labels each query shares with each key (multi-hot labels)."""
        dtype = self.queries.dtype
        return ops.matmul(
            ops.cast(self.labels, dtype), ops.transpose(ops.cast(self.key_labels, dtype))
        )

    @_computed_once
    def candidates(self):
        """`[b, K]` booleans: the pairs that exist (not a query with itself, a valid slot and
        an anchor), or `None` when every pair does."""
        masks = []
        if self.self_columns is not None:
            columns = ops.arange(ops.shape(self.keys)[0], dtype="int32")
            masks.append(
                ops.not_equal(ops.expand_dims(columns, 0), ops.expand_dims(self.self_columns, 1))
            )
        for mask, axis in ((self.source.valid, 0), (self.source.anchors, 1)):
            if mask is not None:
                masks.append(ops.expand_dims(ops.convert_to_tensor(mask), axis))
        return functools.reduce(ops.logical_and, masks) if masks else None

    def _existing(self, mask):
        return mask if self.candidates is None else ops.logical_and(mask, self.candidates)

    @_computed_once
    def positive(self):
        """`[b, K]` booleans: same label (a shared label), not the query itself."""
        same = self.overlap > 0 if self.multi_hot else label_equality(self.labels, self.key_labels)
        return self._existing(same)

    @_computed_once
    def negative(self):
        """`[b, K]` booleans: another label (no label in common)."""
        if self.multi_hot:
            return self._existing(ops.equal(self.overlap, 0.0))
        return self._existing(ops.logical_not(label_equality(self.labels, self.key_labels)))

    @_computed_once
    def positive_weights(self):
        """`[b, K]` weights of the positives in the compute dtype: 1, or the label overlap."""
        if self.multi_hot:
            return ops.where(self.positive, self.overlap, 0.0)
        return ops.cast(self.positive, self.queries.dtype)

    def triplet_mask(self):
        """`[b, K, K]` booleans: the triplets (anchor, positive, negative), those a miner
        selected if any."""
        every = mining.triplet_mask(self.positive, self.negative)
        return every if self.triplets is None else ops.logical_and(every, self.triplets)

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

    @property
    def is_empty(self):
        """Whether there is no query or no key (static shapes): reductions over an empty axis
        fail on some backends, so the losses return zeros without computing anything."""
        return self.queries.shape[0] == 0 or self.keys.shape[0] == 0

    def zeros(self):
        """`[b]` zeros in the compute dtype, connected to the queries (a zero gradient)."""
        return ops.sum(self.queries, axis=1) * 0.0

    def finish(self, values):
        """The loss's output from `[b]` per-query values: each example's mean over its views,
        NaN where the queries or keys hold a NaN or inf (`0 * sum` adds nothing otherwise, and
        no gradient), in the dtype of `y_pred`."""
        keys = () if self.keys_are_queries else (self.keys,)
        values = with_non_finite_of(values, self.queries, *keys)
        if self.views > 1:
            values = ops.mean(ops.reshape(values, (self.views, -1)), axis=0)
        return in_dtype_of(values, self.y_pred)


def class_labels(y_true, name="y_true"):
    """Checked `[b]` class ids from `[b]` or `[b, 1]` numbers (integral floats accepted)."""
    labels = validation.class_labels(validation.numeric_tensor(y_true, name), name)
    validation.integral_labels(labels, name)
    return labels


def multi_hot_labels(y_true, name="y_true", what="a multi-hot [batch, num_classes] label matrix"):
    """Checked `[b, C]` multi-hot labels (any numbers: non-binary entries act as weights)."""
    labels = validation.numeric_tensor(y_true, name)
    validation.rank(labels, 2, what, name)
    validation.finite(labels, name)
    return labels


def embeddings(y_pred, name="y_pred", what=EMBEDDINGS):
    """Checked `[b, D]` embeddings in the compute dtype (float32 at least)."""
    y_pred = ops.convert_to_tensor(y_pred)
    validation.rank(y_pred, 2, what, name)
    validation.finite(y_pred, name)
    return ops.cast(y_pred, compute_dtype(y_pred))


def split_views(y_pred, count=None):
    """`([V * B, D] embeddings, V)` of `[B, V, D]` views, view by view
    (`concat(y_pred[:, 0], ..., y_pred[:, V - 1])`); `[B, D]` is one view. With `count` the
    input must be `[B, count, D]`.

    A list or tuple of `V` `[B, D]` matrices is stacked first (`validation.stacked`).

    Raises:
        ValueError: for another shape.
    """
    y_pred = ops.convert_to_tensor(validation.stacked(y_pred, "y_pred"))
    shape = tuple(y_pred.shape)
    if count is not None:
        if len(shape) != 3 or shape[1] != count:
            raise ValueError(
                f"`y_pred` must hold the {count} views of each example as [batch, {count}, dim] "
                f"(e.g. `keras.ops.stack([za, zb], axis=1)`). Received: y_pred.shape={shape}"
            )
    elif len(shape) == 2:
        return y_pred, 1
    elif len(shape) != 3 or shape[1] is None or shape[2] == 1:
        raise ValueError(
            "`y_pred` must be a [batch, dim] matrix of embeddings or [batch, views, dim] "
            "(several views of each example, each of dimension 2 or more: a trailing axis of "
            f"size 1 is taken for a mistake). Received: y_pred.shape={shape}"
        )
    flat = ops.reshape(ops.transpose(y_pred, (1, 0, 2)), (-1, ops.shape(y_pred)[2]))
    return flat, shape[1]


def build(y_true, y_pred, keys=None, *, multi_hot=False, views=False, normalize=False,
          warn=True):  # fmt: skip
    """Checks labels and embeddings and builds the `Pairs` of a batch against its `keys`.

    Args:
        y_true: `[b]` or `[b, 1]` integer class labels (integral floats accepted), or `[b, C]`
            multi-hot labels with `multi_hot=True`.
        y_pred: `[b, D]` embeddings, or `[b, V, D]` (`V` views of each example) with `views`.
        keys: A `Keys`. Defaults to `Keys()`, the batch itself.
        multi_hot: The labels are multi-hot. Defaults to `False`.
        views: Accept `[b, V, D]` views (each view keeps its example's label). Defaults to
            `False`.
        normalize: L2-normalise queries and keys. Defaults to `False`.
        warn: With value checks on, warn once for a batch without a positive or a negative pair
            (a loss whose labels are not classes, such as Instance's, turns it off). Defaults
            to `True`.

    Returns:
        A `Pairs`.

    Raises:
        ValueError: if the labels are not `[b]` / `[b, 1]` (`[b, C]`), the embeddings not rank 2
            (or 3), the batch sizes differ, or the keys do not match the batch. With value
            checks on (`kml.config`), also for non-integral float labels and non-finite values.
        TypeError: if the labels are not numbers.
    """
    keys = Keys() if keys is None else keys
    labels = _labels(y_true, multi_hot)
    flat, count = split_views(y_pred) if views else (y_pred, 1)
    queries = embeddings(flat)
    validation.same_batch(labels, y_pred if count > 1 else queries)
    if count > 1:  # each view keeps its example's label
        labels = ops.tile(labels, (count, 1) if multi_hot else (count,))
    if keys.is_reference:
        key_embeddings, key_labels = _reference(keys, queries, labels, multi_hot)
        self_columns = keys.self_columns
    elif keys.cross_replica:
        key_embeddings, key_labels, self_columns = distributed.gather_keys(queries, labels)
    else:
        key_embeddings, key_labels = queries, labels
        self_columns = ops.arange(ops.shape(labels)[0], dtype="int32")
    rows = key_embeddings if keys.cross_replica else queries
    result = Pairs(queries, key_embeddings, labels, key_labels, keys, self_columns,
                   ops.shape(rows)[0], count, y_pred)  # fmt: skip
    if warn and not multi_hot:
        _warn_once_without_positive(result)
    return result.normalized() if normalize else result


def _labels(y_true, multi_hot):
    return multi_hot_labels(y_true) if multi_hot else class_labels(y_true)


def _reference(keys, queries, labels, multi_hot):
    """The checked `(embeddings, labels)` of reference keys, embeddings in the queries' dtype."""
    key_embeddings = ops.convert_to_tensor(keys.embeddings)
    validation.rank(key_embeddings, 2, "a [num_keys, dim] matrix of embeddings", "ref_embeddings")
    if multi_hot:
        key_labels = multi_hot_labels(
            keys.labels, "ref_labels", "a multi-hot [num_keys, num_classes] label matrix"
        )
    else:
        key_labels = class_labels(keys.labels, "ref_labels")
    key_shape, label_shape = tuple(key_embeddings.shape), tuple(key_labels.shape)
    if None not in (key_shape[0], label_shape[0]) and key_shape[0] != label_shape[0]:
        raise ValueError(
            "`ref_embeddings` and `ref_labels` must have the same number of rows. Received: "
            f"ref_embeddings.shape={key_shape} and ref_labels.shape={label_shape}"
        )
    pairs_ = [((key_shape[1], queries.shape[1]), "y_pred's dimension")]
    if multi_hot:
        pairs_.append(((label_shape[1], labels.shape[1]), "y_true's classes"))
    for (a, b), what in pairs_:
        if None not in (a, b) and a != b:
            raise ValueError(
                f"`ref_embeddings` / `ref_labels` must match {what}. Received: "
                f"ref_embeddings.shape={key_shape}, ref_labels.shape={label_shape}, "
                f"y_pred.shape={tuple(queries.shape)}, y_true.shape={tuple(labels.shape)}"
            )
    validation.finite(key_embeddings, "ref_embeddings")
    return ops.cast(key_embeddings, queries.dtype), key_labels


def embedding_pairs(y_true, y_pred, *, ref_embeddings=None, ref_labels=None, cross_replica=False):
    """`build` with the keys of a loss function's arguments (release 0.1.0's front end)."""
    return build(y_true, y_pred, keys_of(ref_embeddings, ref_labels, cross_replica))


_WARNED = {"no_positive": False, "no_negative": False}


def _warn_once_without_positive(pairs):
    """With value checks on (`kml.config`), warns once per process for a concrete batch in
    which no anchor has a positive, and once for one in which none has a negative (a batch of
    one class): a pair loss is then 0 and learns nothing from it."""
    if not validation.reads_values(pairs.queries) or 0 in tuple(pairs.queries.shape):
        return
    for key, mask, what in (
        ("no_positive", pairs.positive, "no positive pair (no two of its samples share a label)"),
        ("no_negative", pairs.negative, "no negative pair (all its samples share one label)"),
    ):
        if _WARNED[key] or bool(ops.convert_to_numpy(ops.any(mask))):
            continue
        _WARNED[key] = True
        warnings.warn(
            f"keras_metric_losses: a batch has {what}, so a pair or triplet loss is 0 on it and "
            "learns nothing. Build batches of several classes and several samples per class "
            "with `kml.data.ClassBalancedSampler(x, y, classes_per_batch=2 or more, "
            "samples_per_class=2 or more)`. (Shown once; value checks are on.)",
            UserWarning,
            stacklevel=4,
        )


def _shape_of(x):
    return None if x is None else f"<shape {tuple(ops.shape(x))}>"
