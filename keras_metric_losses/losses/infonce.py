"""Softmax contrastive losses on embeddings: NT-Xent (InfoNCE), SupCon and multi-label SupCon.

Each anchor (a row of a `[b, K]` matrix of logits `x = similarity / temperature` against its
keys) is a softmax classification of its positive keys among the keys of its denominator. One
function, `contrastive_terms`, computes these per-anchor log-softmax terms from the logits, the
denominator mask and the positive weights; the losses differ only in what they hand it:

| loss | positive weights `w[i, j]` | denominator of `p[i, j]` |
| --- | --- | --- |
| NT-Xent / InfoNCE | 1 on positives | the positive `j` itself and the anchor's negatives |
| SupCon | 1 on positives | every key but the anchor itself |
| multi-label SupCon | label overlap `|L_i ∩ L_j|` | every key but the anchor itself |

and each anchor's loss is `sum_j w[i, j] * (-log p[i, j]) / sum_j w[i, j]`.

`contrastive_terms` is a row reduction over the key columns: a masked log-sum-exp, then weighted
sums given that log-sum-exp. With `block_size` the losses call its tiled twin,
`kml.tiling.blockwise_terms` (row blocks x column blocks, an online log-sum-exp, a backward pass
that recomputes the tiles): the `[B, B]` matrices are never built, and the memory grows with `B`.
Both give an `AnchorStats`, from which the reducers compute the values.

Inputs: `y_true` labels and `y_pred` embeddings `[B, D]` (pytorch-metric-learning's form), or
`[B, V, D]`: `V` views of each example (SimCLR / SupCon's multi-view batch). A multi-view batch
is flattened view by view (`concat(y_pred[:, 0], ..., y_pred[:, V - 1])`, each view keeping the
example's label), and each example's value is the mean of its `V` anchors' values.
"""

import dataclasses

from keras import ops

from keras_metric_losses import distances, distributed, pairs, tiling, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import compute_dtype, lowest_finite, masked_logsumexp

REDUCERS = ("anchor", "pml")


def check_temperature(value, name):
    """A temperature: a finite float `> 0`."""
    return validation.real(value, name, low=0.0, low_open=True)


def check_reducer(value, name):
    return validation.one_of(value, name, REDUCERS)


def check_block_size(value, name):
    """`None` (dense) or the rows and columns of a tile: an int `>= 1`."""
    return None if value is None else validation.positive_int(value, name)


# --- the core: per-anchor log-softmax terms ------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Terms:
    """Per-anchor sums of `-log p[i, j]` over the positive keys.

    Attributes:
        weighted_sum: `[b]` `sum_j w[i, j] * (-log p[i, j])`.
        total_weight: `[b]` `sum_j w[i, j]`.
        pair_terms: `[b, K]` `-log p[i, j]` for every key (pairwise form only), else `None`.
    """

    weighted_sum: object
    total_weight: object
    pair_terms: object = None

    @property
    def anchor_mean(self):
        """`[b]` weighted mean of `-log p` over each anchor's positives (0 without one)."""
        return ops.divide_no_nan(self.weighted_sum, self.total_weight)


@dataclasses.dataclass(frozen=True)
class AnchorStats:
    """What the reducers need of each anchor, computed densely or by tiles.

    Attributes:
        terms: `Terms` (`weighted_sum` has the gradient).
        positive_pairs: `[b]` number of keys with a positive weight.
        negative_pairs: `[b]` number of negative keys.
        num_rows: Number of anchors of the (global) batch.
    """

    terms: Terms
    positive_pairs: object
    negative_pairs: object
    num_rows: object

    @property
    def has_positive(self):
        return self.positive_pairs > 0

    @property
    def has_negative(self):
        return self.negative_pairs > 0


def contrastive_terms(logits, positive_weights, denominator, *, pairwise=False):
    """Per-anchor log-softmax terms of a `[b, K]` logit matrix.

    With `lse[i] = log sum_{k in denominator[i]} exp(logits[i, k])`:

    ```
    pairwise=False:  -log p[i, j] = lse[i] - logits[i, j]
    pairwise=True:   -log p[i, j] = log(1 + exp(lse[i] - logits[i, j]))
    ```

    The first is SupCon's (the positives are part of the denominator); the second NT-Xent's
    (positive `j` against a denominator of negatives). In the pairwise form an anchor with an
    empty denominator (no negative) has `p = 1` and terms 0. The log-sum-exp is
    `ops.masked_logsumexp` (0 and a zero gradient for an empty row), so neither values nor
    gradients are `inf` or NaN for any mask.

    Everything is a reduction over the key columns: a row maximum, a masked log-sum-exp, then
    weighted sums given it. A tiled version (row blocks x column blocks) computes the maximum
    and log-sum-exp online over column blocks, then the weighted sums block by block.

    Args:
        logits: `[b, K]` float logits (finite).
        positive_weights: `[b, K]` non-negative weights of the positives, in the logits' dtype
            (0 elsewhere).
        denominator: `[b, K]` booleans, the keys of each anchor's softmax denominator.
        pairwise: The NT-Xent form (one softmax per positive pair). Defaults to `False`.

    Returns:
        A `Terms`.
    """
    logits, positive_weights = (
        ops.convert_to_tensor(logits),
        ops.convert_to_tensor(positive_weights),
    )
    if logits.shape[-1] == 0:  # no keys (an empty batch): nothing to sum, no max to take
        zeros = ops.sum(logits, axis=-1)
        return Terms(zeros, zeros, logits if pairwise else None)
    # Logits relative to the row's largest logit among the keys used (a constant for the
    # gradient): `lse - logits` is then a sum of a log of a number >= 1 and a difference of
    # nearby logits, accurate and >= 0 even when both are ~1 / temperature.
    used = ops.logical_or(denominator, positive_weights > 0)
    largest = ops.amax(ops.where(used, logits, lowest_finite(logits.dtype)), axis=-1, keepdims=True)
    shift = ops.where(ops.any(used, axis=-1, keepdims=True), largest, 0.0)
    logits = logits - ops.stop_gradient(shift)
    lse = ops.expand_dims(masked_logsumexp(logits, denominator), -1)
    if pairwise:
        has_denominator = ops.any(denominator, axis=-1, keepdims=True)
        pair_terms = ops.where(has_denominator, ops.softplus(lse - logits), 0.0)
    else:
        pair_terms = lse - logits
    weighted_sum = ops.sum(positive_weights * pair_terms, axis=-1)
    total_weight = ops.sum(positive_weights, axis=-1)
    return Terms(weighted_sum, total_weight, pair_terms if pairwise else None)


# --- inputs: views, keys, logits -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Contrast:
    """What the softmax losses need of a batch: logits against the keys and the masks.

    Attributes:
        logits: `[b, K]` `similarity / temperature` (a distance is negated), compute dtype.
        positive: `[b, K]` positive weights (1 or the label overlap; 0 elsewhere).
        negative: `[b, K]` booleans, keys of another class (no label in common).
        candidates: `[b, K]` booleans, every key but the anchor itself.
        num_rows: Number of anchors of the (global) batch, for pytorch-metric-learning's
            batch averages.
    """

    logits: object
    positive: object
    negative: object
    candidates: object
    num_rows: object


def split_views(y_true, y_pred, multilabel=False):
    """Flattens a `[B, V, D]` multi-view batch to `[V * B, D]`, view by view, with the labels
    repeated for every view. `[B, D]` embeddings pass unchanged (`V = 1`).

    Returns:
        `(labels, embeddings, views)`.
    """
    y_pred = ops.convert_to_tensor(y_pred)
    shape = tuple(y_pred.shape)
    if len(shape) == 2:
        return y_true, y_pred, 1
    if len(shape) != 3 or shape[1] is None:
        raise ValueError(
            "`y_pred` must be a [batch, dim] matrix of embeddings or [batch, views, dim] "
            f"(several views of each example). Received: y_pred.shape={shape}"
        )
    labels = validation.numeric_tensor(y_true, "y_true")
    if multilabel:
        check_multi_hot(labels, "y_true")
        repeats = (shape[1], 1)
    else:
        labels = validation.class_labels(labels)
        repeats = (shape[1],)
    validation.same_batch(labels, y_pred)
    embeddings = ops.reshape(ops.transpose(y_pred, (1, 0, 2)), (-1, ops.shape(y_pred)[2]))
    return ops.tile(labels, repeats), embeddings, shape[1]


def merge_views(values, y_pred, views):
    """`[V * B]` anchor values -> `[B]`: the mean over each example's views."""
    if views == 1:
        return values
    return ops.mean(ops.reshape(values, (views, ops.shape(y_pred)[0])), axis=0)


def check_multi_hot(labels, name):
    validation.rank(labels, 2, "a multi-hot [batch, num_classes] label matrix", name)


def similarity_logits(queries, keys, distance, temperature):
    """`[b, K]` `similarity / temperature`: a similarity as is, a distance negated."""
    matrix = distances.get(distance)(queries, keys)
    sign = 1.0 if distances.larger_is_closer(distance) else -1.0
    return matrix * (sign / temperature)


def _num_rows(queries, keys, cross_replica, reference):
    """Anchors of the global batch: with `cross_replica` (and no reference set) every
    replica's anchors are the keys."""
    rows = keys if cross_replica and not reference else queries
    return ops.shape(rows)[0]


def class_contrast(y_true, embeddings, distance, temperature, cross_replica, ref_embeddings,
                   ref_labels):  # fmt: skip
    """`Contrast` of integer class labels (through the embedding front end: with a reference
    set no key is the anchor itself, unless a cross-batch memory says which one is)."""
    pairs_ = pairs.embedding_pairs(
        y_true,
        embeddings,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        cross_replica=cross_replica,
    )
    logits = similarity_logits(pairs_.queries, pairs_.keys, distance, temperature)
    return Contrast(
        logits,
        ops.cast(pairs_.positive, logits.dtype),
        pairs_.negative,
        ops.logical_or(pairs_.positive, pairs_.negative),
        _num_rows(pairs_.queries, pairs_.keys, cross_replica, ref_embeddings is not None),
    )


def multilabel_contrast(y_true, embeddings, distance, temperature, cross_replica,
                        ref_embeddings, ref_labels):  # fmt: skip
    """`Contrast` of multi-hot labels: positive weights are the label overlaps."""
    batch = batch_keys(y_true, embeddings, cross_replica, ref_embeddings, ref_labels,
                       multilabel=True)  # fmt: skip
    logits = similarity_logits(batch.queries, batch.keys, distance, temperature)
    dtype = logits.dtype
    overlap = ops.matmul(
        ops.cast(batch.labels, dtype), ops.transpose(ops.cast(batch.key_labels, dtype))
    )
    if batch.self_columns is None:
        candidates = ops.ones_like(overlap, dtype="bool")
    else:
        columns = ops.arange(ops.shape(batch.keys)[0], dtype="int32")
        candidates = ops.not_equal(
            ops.expand_dims(columns, 0), ops.expand_dims(batch.self_columns, 1)
        )
    positive = ops.where(candidates, overlap, 0.0)
    negative = ops.logical_and(candidates, ops.equal(overlap, 0.0))
    return Contrast(logits, positive, negative, candidates, batch.num_rows)


@dataclasses.dataclass(frozen=True)
class BatchKeys:
    """Checked anchors and keys without any `[b, K]` mask (what the tiled losses start from).

    Attributes:
        queries: `[b, D]` embeddings in the compute dtype.
        labels: `[b]` class labels or `[b, C]` multi-hot labels.
        keys: `[K, D]` key embeddings (`queries` itself by default).
        key_labels: `[K]` or `[K, C]` labels of the keys.
        self_columns: `[b]` int32 key column of each anchor, or `None`.
        key_valid: `[K]` booleans, the keys that take part (a cross-batch memory), or `None`.
        anchor_valid: `[b]` booleans, the anchors that have pairs, or `None`.
        num_rows: Number of anchors of the (global) batch.
    """

    queries: object
    labels: object
    keys: object
    key_labels: object
    self_columns: object
    key_valid: object
    anchor_valid: object
    num_rows: object


def batch_keys(y_true, embeddings, cross_replica, ref_embeddings, ref_labels, multilabel):
    """The checks and keys of `pairs.embedding_pairs` (class labels) or of the multi-label
    losses, without the masks: a `BatchKeys`."""
    labels = validation.numeric_tensor(y_true, "y_true")
    if multilabel:
        check_multi_hot(labels, "y_true")
    else:
        labels = validation.class_labels(labels)
    embeddings = ops.convert_to_tensor(embeddings)
    validation.rank(embeddings, 2, "a [batch, dim] matrix of embeddings", "y_pred")
    validation.same_batch(labels, embeddings)
    if multilabel:
        validation.finite(labels, "y_true")
    else:
        validation.integral_labels(labels, "y_true")
    validation.finite(embeddings, "y_pred")
    queries = ops.cast(embeddings, compute_dtype(embeddings))
    if (ref_embeddings is None) != (ref_labels is None):
        raise ValueError(
            "`ref_embeddings` and `ref_labels` go together: pass both or neither. Received: "
            f"ref_embeddings={_shape_of(ref_embeddings)}, ref_labels={_shape_of(ref_labels)}"
        )
    self_columns = key_valid = anchor_valid = None
    if ref_embeddings is not None:
        if cross_replica:
            raise ValueError(
                "`ref_embeddings` replaces the keys, so it cannot be combined with "
                "`cross_replica=True`. Received: cross_replica=True"
            )
        if multilabel:
            keys, key_labels = _multilabel_reference(ref_embeddings, ref_labels, queries, labels)
        else:  # the embedding front end's keys, and a cross-batch memory's slots
            keys, key_labels = pairs._reference_keys(ref_embeddings, ref_labels, queries)
            memory = pairs._memory
            self_columns, key_valid, anchor_valid = (
                memory["self_columns"],
                memory["valid"],
                memory["queries"],
            )
    elif cross_replica:
        keys, key_labels, self_columns = distributed.gather_keys(queries, labels)
    else:
        keys, key_labels = queries, labels
        self_columns = ops.arange(ops.shape(queries)[0], dtype="int32")
    rows = _num_rows(queries, keys, cross_replica, ref_embeddings is not None)
    return BatchKeys(queries, labels, keys, key_labels, self_columns, key_valid, anchor_valid,
                     rows)  # fmt: skip


def _multilabel_reference(ref_embeddings, ref_labels, queries, labels):
    keys = ops.convert_to_tensor(ref_embeddings)
    validation.rank(keys, 2, "a [num_keys, dim] matrix of embeddings", "ref_embeddings")
    key_labels = validation.numeric_tensor(ref_labels, "ref_labels")
    check_multi_hot(key_labels, "ref_labels")
    key_shape, label_shape = tuple(keys.shape), tuple(key_labels.shape)
    if None not in (key_shape[0], label_shape[0]) and key_shape[0] != label_shape[0]:
        raise ValueError(
            "`ref_embeddings` and `ref_labels` must have the same number of rows. Received: "
            f"ref_embeddings.shape={key_shape} and ref_labels.shape={label_shape}"
        )
    for (a, b), what in (((key_shape[1], queries.shape[1]), "y_pred's dimension"),
                         ((label_shape[1], labels.shape[1]), "y_true's classes")):  # fmt: skip
        if None not in (a, b) and a != b:
            raise ValueError(
                f"`ref_embeddings` / `ref_labels` must match {what}. Received: "
                f"ref_embeddings.shape={key_shape}, ref_labels.shape={label_shape}, "
                f"y_pred.shape={tuple(queries.shape)}, y_true.shape={tuple(labels.shape)}"
            )
    validation.finite(keys, "ref_embeddings")
    validation.finite(key_labels, "ref_labels")
    return ops.cast(keys, queries.dtype), key_labels


def _shape_of(x):
    return None if x is None else f"<shape {tuple(ops.shape(x))}>"


# --- per-anchor statistics: dense or tiled --------------------------------------------------

# Distances the tiled losses compute: an inner product of (normalised) embeddings.
_TILED_DISTANCES = {distances.cosine_similarity: True, distances.inner_product: False}


def dense_stats(contrast, pairwise):
    """`AnchorStats` of a `Contrast` (its `[b, K]` matrices)."""
    denominator = contrast.negative if pairwise else contrast.candidates
    terms = contrastive_terms(contrast.logits, contrast.positive, denominator, pairwise=pairwise)
    dtype = contrast.logits.dtype
    return AnchorStats(
        terms,
        ops.sum(ops.cast(contrast.positive > 0, dtype), axis=-1),
        ops.sum(ops.cast(contrast.negative, dtype), axis=-1),
        contrast.num_rows,
    )


def tiled_stats(y_true, embeddings, distance, temperature, cross_replica, ref_embeddings,
                ref_labels, multilabel, pairwise, block_size):  # fmt: skip
    """`AnchorStats` by tiles of `block_size` rows and columns (`tiling.blockwise_terms`)."""
    fn = distances.get(distance)
    if fn not in _TILED_DISTANCES:
        raise ValueError(
            "`block_size` computes the logits as inner products of the embeddings: it supports "
            "`distance='cosine_similarity'` and `'inner_product'`. Received: "
            f"distance={distance!r}, block_size={block_size}"
        )
    batch = batch_keys(y_true, embeddings, cross_replica, ref_embeddings, ref_labels,
                       multilabel)  # fmt: skip
    queries, keys = batch.queries, batch.keys
    if _TILED_DISTANCES[fn]:  # cosine similarity: the inner product of unit vectors
        normalized = ops.normalize(queries, axis=-1)
        keys = normalized if keys is queries else ops.normalize(keys, axis=-1)
        queries = normalized
    stats = tiling.blockwise_terms(
        queries,
        keys,
        batch.labels,
        batch.key_labels,
        scale=1.0 / temperature,
        pairwise=pairwise,
        block_size=block_size,
        multilabel=multilabel,
        self_columns=batch.self_columns,
        key_valid=batch.key_valid,
        anchor_valid=batch.anchor_valid,
    )
    column = lambda k: stats[:, k]  # noqa: E731
    return AnchorStats(
        Terms(column(tiling.WEIGHTED_SUM), column(tiling.TOTAL_WEIGHT)),
        column(tiling.POSITIVE_PAIRS),
        column(tiling.NEGATIVE_PAIRS),
        batch.num_rows,
    )


# --- pytorch-metric-learning's batch aggregates --------------------------------------------


def batch_total(x, cross_replica):
    """The sum of the scalar `x` over every replica's batch (no gradient): the global batch's
    count under `cross_replica=True`, `x` itself otherwise."""
    x = ops.stop_gradient(ops.cast(x, "float32"))
    if not cross_replica:
        return x
    return ops.sum(distributed.all_gather(ops.reshape(x, (1,))))


def pml_has_pairs(stats, cross_replica):
    """pytorch-metric-learning computes a pair loss only when the batch has a positive pair and
    a negative pair, and not at most one of each (`GenericPairLoss`)."""
    positives = batch_total(ops.sum(stats.positive_pairs), cross_replica)
    negatives = batch_total(ops.sum(stats.negative_pairs), cross_replica)
    some = ops.logical_and(positives > 0, negatives > 0)
    return ops.logical_and(some, ops.logical_or(positives > 1, negatives > 1))


def pml_share(row_sums, count, num_rows, enabled):
    """Each anchor's share `N * row_sum / count` of `sum / count` (0 where not `enabled` or
    where `count` is 0): Keras' mean over the `N` anchors is the batch aggregate."""
    rows = ops.cast(num_rows, row_sums.dtype)
    share = ops.divide_no_nan(rows * row_sums, ops.cast(count, row_sums.dtype))
    return ops.where(enabled, share, 0.0)


# --- the losses' per-anchor values -----------------------------------------------------------


def ntxent_values(stats, reducer, cross_replica):
    """Per-anchor NT-Xent values `[b]` of `AnchorStats` (pairwise terms)."""
    terms = stats.terms
    if reducer == "anchor":
        return terms.anchor_mean
    # MeanReducer over the positive pairs of the batch.
    count = batch_total(ops.sum(terms.total_weight), cross_replica)
    enabled = pml_has_pairs(stats, cross_replica)
    return pml_share(terms.weighted_sum, count, stats.num_rows, enabled)


def supcon_values(stats, reducer, cross_replica):
    """Per-anchor SupCon values `[b]` of `AnchorStats` (single- or multi-label)."""
    losses = stats.terms.anchor_mean
    if reducer == "anchor":
        valid = ops.logical_and(stats.has_positive, stats.has_negative)
        return ops.where(valid, losses, 0.0)
    # AvgNonZeroReducer over the anchors: those with a loss > 0 count.
    count = batch_total(ops.sum(ops.cast(losses > 0, "float32")), cross_replica)
    enabled = pml_has_pairs(stats, cross_replica)
    return pml_share(losses, count, stats.num_rows, enabled)


def _in_input_dtype(values, y_pred):
    return ops.cast(values, ops.convert_to_tensor(y_pred).dtype)


def _stats_of(y_true, y_pred, distance, temperature, cross_replica, ref_embeddings, ref_labels,
              multilabel, pairwise, block_size):  # fmt: skip
    """`(AnchorStats, views)` of a batch: dense, or by tiles with a `block_size`."""
    labels, embeddings, views = split_views(y_true, y_pred, multilabel)
    if block_size is not None:
        stats = tiled_stats(labels, embeddings, distance, temperature, cross_replica,
                            ref_embeddings, ref_labels, multilabel, pairwise,
                            block_size)  # fmt: skip
        return stats, views
    build = multilabel_contrast if multilabel else class_contrast
    contrast = build(labels, embeddings, distance, temperature, cross_replica, ref_embeddings,
                     ref_labels)  # fmt: skip
    return dense_stats(contrast, pairwise), views


_COMMON_CHECKS = {
    "temperature": check_temperature,
    "distance": distances.check,
    "reducer": check_reducer,
    "cross_replica": validation.boolean,
    "block_size": check_block_size,
}


@export
@hyperparameters(**_COMMON_CHECKS)
def ntxent_loss(
    y_true,
    y_pred,
    *,
    temperature=0.07,
    distance="cosine_similarity",
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
    block_size=None,
):
    """NT-Xent (InfoNCE) loss of a batch of embeddings, one value per example, as
    pytorch-metric-learning's `NTXentLoss`.

    With logits `x[i, j] = S(e_i, k_j) / temperature` (`S` the cosine similarity by default; a
    distance is negated), every positive pair `(i, j)` (same label, `j` not `i` itself) is a
    softmax classification of `j` against the anchor's negatives `N_i` (other labels); the
    anchor's other positives are left out:

    ```
    l[i, j] = -log( exp(x[i, j]) / (exp(x[i, j]) + sum_{k in N_i} exp(x[i, k])) )
    loss_i  = mean_{j in P_i} l[i, j]                      (reducer="anchor")
    loss_i  = B * sum_{j in P_i} l[i, j] / sum_i |P_i|     (reducer="pml")
    ```

    - `reducer="anchor"` (default): each anchor's mean over its positives (0 without one).
    - `reducer="pml"`: pytorch-metric-learning's `MeanReducer` over all positive pairs of the
      batch, as per-anchor shares: Keras' mean of the values is PML's scalar. A batch without a
      positive pair or without a negative pair gives 0 (PML's `zero_loss`).

    Forms:

    - Supervised: class labels `y_true` `[B]`, embeddings `y_pred` `[B, D]`.
    - SimCLR (two views of `N` examples): `y_pred = concat(view1, view2)` `[2N, D]` with
      `y_true = concat(arange(N), arange(N))` (PML's form); or `y_pred` `[N, 2, D]` (the views
      stacked, as a Keras model outputs them) with `y_true` any `[N]` ids that differ within the
      batch, e.g. the examples' indices. Then each example's value is the mean over its views.
    - CLIP-style two towers: anchors `y_pred` (e.g. images) against keys `ref_embeddings`
      (e.g. texts) with `ref_labels`; `y_true = ref_labels = arange(B)` pairs row `i` with
      key `i`. No key is the anchor itself. For CLIP's symmetric loss add the call with the
      towers swapped.

    With `cross_replica=True` (`tf.distribute`, `torch.distributed`) each replica's anchors are
    compared with the embeddings of every replica; the loss and gradients are those of one device
    on the global batch (also with `reducer="pml"`, whose counts are summed over replicas).

    Differences from pytorch-metric-learning: PML adds float32's smallest normal number inside
    the log, which caps a pair's loss at 87.3 (reached only when a negative's logit exceeds the
    positive's by more than 87, i.e. `temperature < 0.023` with cosine similarities); here the
    loss is exact. Under `reducer="anchor"` an anchor without a positive or a negative has loss
    0 with zero gradient. Half-precision embeddings are computed in float32.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings, or `[B, V, D]`: `V` views of each example.
        temperature: Keyword-only. Softmax temperature, `> 0`. Defaults to 0.07.
        distance: Keyword-only. A name from `keras_metric_losses.distances` or a registered
            callable; a distance (`larger_is_closer` false) is negated. Defaults to
            `"cosine_similarity"` (normalises the embeddings, as PML's `CosineSimilarity`).
            PML's `LpDistance()` is `"euclidean"` of unit-norm embeddings (normalise them in
            the model, e.g. `keras.layers.UnitNormalization`).
        reducer: Keyword-only. `"anchor"` or `"pml"`, see above. Defaults to `"anchor"`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults to
            `False`.
        ref_embeddings: Keyword-only. Optional `[K, D]` keys (the other tower, a gallery).
        ref_labels: Keyword-only. `[K]` labels of `ref_embeddings`.
        block_size: Keyword-only. `None` (default) computes the `[B, K]` logits at once; an
            int computes the loss by tiles of `block_size` rows and columns (the same values
            and gradients, memory that grows with `B` rather than `B**2`; see
            `kml.tiling`). Only for `distance` `"cosine_similarity"` or `"inner_product"`.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: for a temperature `<= 0`, an unknown distance or reducer, labels not
            `[B]`/`[B, 1]`, `y_pred` not rank 2 or 3, different batch sizes, or a reference set
            that does not match. With value checks on, also non-integral labels and non-finite
            embeddings.
        TypeError: if the labels are not numbers or `cross_replica` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])  # [3 examples, 2 views, 2]
    >>> losses = kml.ntxent_loss(np.arange(3), views, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.4741 0.6074 0.2747]

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), ICML 2020; Oord et al., "Representation Learning with
    Contrastive Predictive Coding" (InfoNCE), 2018; Radford et al., CLIP, ICML 2021.
    """
    stats, views = _stats_of(y_true, y_pred, distance, temperature, cross_replica, ref_embeddings,
                             ref_labels, False, True, block_size)  # fmt: skip
    values = ntxent_values(stats, reducer, cross_replica)
    return _in_input_dtype(merge_views(values, y_pred, views), y_pred)


def ntxent_pair_losses(y_true, y_pred, *, temperature=0.07, distance="cosine_similarity"):
    """pytorch-metric-learning's unreduced NT-Xent elements: `([b, K] l[i, j], [b, K] positive
    mask)` of `[B, D]` embeddings. PML's element list is `l` at the mask's row-major order
    (empty when the batch has no positive or no negative pair)."""
    contrast = class_contrast(y_true, y_pred, distance, temperature, False, None, None)
    return dense_stats(contrast, pairwise=True).terms.pair_terms, contrast.positive > 0


@export
@hyperparameters(**_COMMON_CHECKS)
def supcon_loss(
    y_true,
    y_pred,
    *,
    temperature=0.1,
    distance="cosine_similarity",
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
    block_size=None,
):
    """Supervised contrastive (SupCon) loss of a batch of embeddings, one value per example, as
    pytorch-metric-learning's `SupConLoss`.

    With logits `x[i, j] = S(e_i, k_j) / temperature` (cosine similarity by default), positives
    `P_i` (same label, not `i` itself) and the denominator `A_i` = every key but `i` itself:

    ```
    l_i    = -1/|P_i| sum_{j in P_i} ( x[i, j] - log sum_{k in A_i} exp(x[i, k]) )
    loss_i = l_i                                          (reducer="anchor")
    loss_i = B * l_i / |{i : l_i > 0}|                    (reducer="pml")
    ```

    - `reducer="anchor"` (default): `l_i`, and 0 (zero gradient) for an anchor without a
      positive or without a negative key.
    - `reducer="pml"`: pytorch-metric-learning's `AvgNonZeroReducer` (the mean over the anchors
      whose `l_i > 0`) as per-anchor shares: Keras' mean of the values is PML's scalar. An anchor
      whose only other key is its one positive has `l_i = 0` and does not count. A batch without
      a positive pair or without a negative pair gives 0.

    The multi-view form `y_pred` `[B, V, D]` is SupCon's original batch (features
    `[batch, n_views, dim]`): every view is an anchor, the example's other views are positives,
    and each example's value is the mean over its views. `ref_embeddings` / `ref_labels` and
    `cross_replica` work as in `ntxent_loss`. `SupConMultilabelLoss` takes multi-hot labels.

    Differences from pytorch-metric-learning: see `reducer`; half-precision embeddings are
    computed in float32.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings, or `[B, V, D]`.
        temperature: Keyword-only. Softmax temperature, `> 0`. Defaults to 0.1.
        distance: Keyword-only. Distance name or registered callable (a distance is negated).
            Defaults to `"cosine_similarity"`.
        reducer: Keyword-only. `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults to
            `False`.
        ref_embeddings: Keyword-only. Optional `[K, D]` keys.
        ref_labels: Keyword-only. `[K]` labels of `ref_embeddings`.
        block_size: Keyword-only. `None` (default) computes the `[B, K]` logits at once; an
            int computes the loss by tiles of `block_size` rows and columns (the same values
            and gradients, memory that grows with `B` rather than `B**2`; see
            `kml.tiling`). Only for `distance` `"cosine_similarity"` or `"inner_product"`.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: as `ntxent_loss`.
        TypeError: as `ntxent_loss`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> losses = kml.supcon_loss(np.array([0, 0, 1, 1]), embeddings, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.2333 0.6271 0.6271 0.2333]

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """
    stats, views = _stats_of(y_true, y_pred, distance, temperature, cross_replica, ref_embeddings,
                             ref_labels, False, False, block_size)  # fmt: skip
    values = supcon_values(stats, reducer, cross_replica)
    return _in_input_dtype(merge_views(values, y_pred, views), y_pred)


@export
@hyperparameters(**_COMMON_CHECKS)
def supcon_multilabel_loss(
    y_true,
    y_pred,
    *,
    temperature=0.1,
    distance="cosine_similarity",
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
    block_size=None,
):
    """Multi-label supervised contrastive loss, one value per example: SupCon with positives
    weighted by their label overlap.

    With multi-hot labels `Y` `[B, C]`, the overlap `w[i, j] = Y_i . Y_j` (the number of labels
    `i` and `j` share, as in `npairs_multilabel_loss`) for every key `j` but `i` itself, and the
    denominator `A_i` = every key but `i` itself:

    ```
    l_i = -1 / sum_j w[i, j] * sum_j w[i, j] ( x[i, j] - log sum_{k in A_i} exp(x[i, k]) )
    ```

    A key sharing two labels with the anchor pulls twice as hard as one sharing one; keys with
    no common label are negatives. With one-hot labels `w` is the same-class mask and the loss
    equals `supcon_loss` exactly (both reducers). Non-binary entries act as weights.

    - `reducer="anchor"` (default): `l_i`; 0 with zero gradient for an anchor with no positive
      (no label, or no key sharing one) or no negative (every key shares a label with it).
    - `reducer="pml"`: the `AvgNonZeroReducer` shares of `supcon_loss`.

    No library has this loss (pytorch-metric-learning issues #231, #669); it is the SupCon
    counterpart of TF Addons' multilabel N-pair loss. Multi-view `y_pred` `[B, V, D]`,
    `ref_embeddings` with multi-hot `ref_labels` `[K, C]`, and `cross_replica` work as in
    `supcon_loss`.

    Args:
        y_true: `[B, C]` multi-hot labels.
        y_pred: `[B, D]` embeddings, or `[B, V, D]`.
        temperature: Keyword-only. Softmax temperature, `> 0`. Defaults to 0.1.
        distance: Keyword-only. Distance name or registered callable. Defaults to
            `"cosine_similarity"`.
        reducer: Keyword-only. `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults to
            `False`.
        ref_embeddings: Keyword-only. Optional `[K, D]` keys.
        ref_labels: Keyword-only. `[K, C]` multi-hot labels of `ref_embeddings`.
        block_size: Keyword-only. `None` (default) computes the `[B, K]` logits at once; an
            int computes the loss by tiles of `block_size` rows and columns (the same values
            and gradients, memory that grows with `B` rather than `B**2`; see
            `kml.tiling`). Only for `distance` `"cosine_similarity"` or `"inner_product"`.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_true` is not rank 2, `y_pred` not rank 2 or 3, the batch sizes differ,
            or for bad hyperparameters. With value checks on, also non-finite labels or
            embeddings.
        TypeError: if the labels are not numbers or `cross_replica` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    >>> losses = kml.supcon_multilabel_loss(labels, embeddings, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [1.0333 0.6271 1.4271 0.2333]

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (the loss);
    Sohn, NeurIPS 2016 (overlap-weighted multilabel targets).
    """
    stats, views = _stats_of(y_true, y_pred, distance, temperature, cross_replica, ref_embeddings,
                             ref_labels, True, False, block_size)  # fmt: skip
    values = supcon_values(stats, reducer, cross_replica)
    return _in_input_dtype(merge_views(values, y_pred, views), y_pred)


class _SoftmaxContrastiveLoss(LossFunctionWrapper):
    def __init__(self, fn, name, reduction, dtype, temperature, distance, reducer,
                 cross_replica, block_size):  # fmt: skip
        super().__init__(fn, name=name, reduction=reduction, dtype=dtype,
                         temperature=temperature, distance=distance, reducer=reducer,
                         cross_replica=cross_replica, block_size=block_size)  # fmt: skip


@export
class NTXentLoss(_SoftmaxContrastiveLoss):
    """NT-Xent (InfoNCE) loss over labelled embeddings (`ntxent_loss`), one value per example.

    `y_pred` is `[B, D]` embeddings with `[B]` labels, or `[B, V, D]` with `V` views of each
    example (a SimCLR model outputs `keras.ops.stack([z1, z2], axis=1)`; pass the examples'
    indices as `y_true`). With `reducer="pml"` the default reduction gives
    pytorch-metric-learning's `NTXentLoss()` value; with `reducer="anchor"` (default) the mean
    of the anchors' own means, which is the same for SimCLR batches (one positive per anchor).

    Args:
        temperature: Softmax temperature, `> 0`. Defaults to 0.07 (PML's default).
        distance: Distance name or registered callable. Defaults to `"cosine_similarity"`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"ntxent_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica
            (`tf.distribute`, `torch.distributed`): the global batch's loss and gradients.
            Defaults to `False`.
        block_size: Keyword-only. `None` (dense, default) or the tile size of the tiled
            computation (see the loss function). Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
    >>> round(float(kml.NTXentLoss(temperature=0.5)(np.arange(3), views)), 4)
    0.4521

    Reference: Chen et al., SimCLR, ICML 2020.
    """

    def __init__(
        self,
        temperature=0.07,
        distance="cosine_similarity",
        reducer="anchor",
        name="ntxent_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
        block_size=None,
    ):
        super().__init__(ntxent_loss, name, reduction, dtype, temperature, distance, reducer,
                         cross_replica, block_size)  # fmt: skip


@export
class SupConLoss(_SoftmaxContrastiveLoss):
    """Supervised contrastive loss over labelled embeddings (`supcon_loss`), one value per
    example.

    With `reducer="pml"` the default reduction gives pytorch-metric-learning's `SupConLoss()`
    value (its `AvgNonZeroReducer`); with `reducer="anchor"` (default) the mean over all
    examples of their own losses (anchors without a positive or negative count as 0).

    Args:
        temperature: Softmax temperature, `> 0`. Defaults to 0.1 (PML's default).
        distance: Distance name or registered callable. Defaults to `"cosine_similarity"`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"supcon_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults to
            `False`.
        block_size: Keyword-only. `None` (dense, default) or the tile size of the tiled
            computation (see the loss function). Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(kml.SupConLoss(temperature=0.5)(np.array([0, 0, 1, 1]), embeddings)), 4)
    0.4302

    Reference: Khosla et al., NeurIPS 2020.
    """

    def __init__(
        self,
        temperature=0.1,
        distance="cosine_similarity",
        reducer="anchor",
        name="supcon_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
        block_size=None,
    ):
        super().__init__(supcon_loss, name, reduction, dtype, temperature, distance, reducer,
                         cross_replica, block_size)  # fmt: skip


@export
class SupConMultilabelLoss(_SoftmaxContrastiveLoss):
    """Multi-label supervised contrastive loss (`supcon_multilabel_loss`), one value per
    example: `y_true` is multi-hot `[B, C]`, positives are weighted by label overlap.

    With one-hot labels it equals `SupConLoss` exactly.

    Args:
        temperature: Softmax temperature, `> 0`. Defaults to 0.1.
        distance: Distance name or registered callable. Defaults to `"cosine_similarity"`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"supcon_multilabel_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Compare with the embeddings (and gather the labels) of
            every replica. Defaults to `False`.
        block_size: Keyword-only. `None` (dense, default) or the tile size of the tiled
            computation (see the loss function). Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    >>> round(float(kml.SupConMultilabelLoss(temperature=0.5)(labels, embeddings)), 4)
    0.8302

    Reference: Khosla et al., NeurIPS 2020.
    """

    def __init__(
        self,
        temperature=0.1,
        distance="cosine_similarity",
        reducer="anchor",
        name="supcon_multilabel_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
        block_size=None,
    ):
        super().__init__(supcon_multilabel_loss, name, reduction, dtype, temperature, distance,
                         reducer, cross_replica, block_size)  # fmt: skip
