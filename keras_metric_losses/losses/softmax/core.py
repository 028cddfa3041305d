"""What the softmax contrastive losses share: per-anchor log-softmax terms, dense or by tiles,
and pytorch-metric-learning's batch shares of them.

Each anchor (a row of a `[b, K]` matrix of logits `x = similarity / temperature` against its
keys, from the `Pairs` of the front end) is a softmax classification of its positive keys among
the keys of its denominator. `contrastive_terms` computes these per-anchor log-softmax terms
from the logits, the denominator mask and the positive weights; the losses differ only in what
they hand it:

| loss | positive weights `w[i, j]` | denominator of `p[i, j]` |
| --- | --- | --- |
| NT-Xent / InfoNCE | 1 on positives | the positive `j` itself and the anchor's negatives |
| SupCon, SimCLR | 1 on positives | every key but the anchor itself |
| multi-label SupCon | label overlap `|L_i ∩ L_j|` | every key but the anchor itself |

and each anchor's loss is `sum_j w[i, j] * (-log p[i, j]) / sum_j w[i, j]`.

`contrastive_terms` is a row reduction over the key columns: a masked log-sum-exp, then weighted
sums given that log-sum-exp. With `block_size` the losses call its tiled twin,
`kml.tiling.blockwise_terms` (row blocks x column blocks, an online log-sum-exp, a backward pass
that recomputes the tiles), on the same `Pairs`, whose `[b, K]` masks are then never built.
Both give an `AnchorStats`, from which `ntxent_values` and `supcon_values` compute the values.
"""

import dataclasses

from keras_metric_losses import distances, reduction, tiling
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import lowest_finite, masked_logsumexp

# Distances the tiled losses compute: an inner product of (normalised, for `True`) embeddings.
_TILED_DISTANCES = {distances.cosine_similarity: True, distances.inner_product: False}


def hyperparameters(temperature, reducer_doc):
    """The hyperparameters of the softmax losses on labels and embeddings, in 0.1.0's order."""
    return dict(
        temperature=base.positive_real(temperature, "Softmax temperature, `> 0`."),
        distance=base.Hyperparameter(
            "cosine_similarity",
            distances.check,
            "A name from `kml.distances` or a registered callable; a distance "
            '(`larger_is_closer` false) is negated. `"cosine_similarity"` normalises the '
            "embeddings, as PML's `CosineSimilarity`.",
        ),
        reducer=base.reducer(reducer_doc),
    )


def check_tiling(values):
    """A joint check: `block_size` computes the logits as inner products of the embeddings."""
    block_size, distance = values["block_size"], values["distance"]
    if block_size is not None and distances.get(distance) not in _TILED_DISTANCES:
        raise ValueError(
            "`block_size` computes the logits as inner products of the embeddings: it supports "
            "`distance='cosine_similarity'` and `'inner_product'`. Received: "
            f"distance={distance!r}, block_size={block_size}"
        )


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
    def valid(self):
        """`[b]` booleans: the anchor has a positive and a negative key."""
        return ops.logical_and(self.positive_pairs > 0, self.negative_pairs > 0)


def contrastive_terms(logits, positive_weights, denominator, *, pairwise=False, scale=1.0):
    """Per-anchor log-softmax terms of a `[b, K]` logit matrix `x = scale * logits`.

    With `lse[i] = log sum_{k in denominator[i]} exp(x[i, k])`:

    ```
    pairwise=False:  -log p[i, j] = lse[i] - x[i, j]
    pairwise=True:   -log p[i, j] = log(1 + exp(lse[i] - x[i, j]))
    ```

    The first is SupCon's (the positives are part of the denominator); the second NT-Xent's
    (positive `j` against a denominator of negatives). In the pairwise form an anchor with an
    empty denominator (no negative) has `p = 1` and terms 0. The log-sum-exp is
    `ops.masked_logsumexp` (0 and a zero gradient for an empty row), so neither values nor
    gradients are `inf` or NaN for any mask.

    Args:
        logits: `[b, K]` float logits (finite), or similarities to be scaled by `scale`.
        positive_weights: `[b, K]` non-negative weights of the positives, in the logits' dtype
            (0 elsewhere).
        denominator: `[b, K]` booleans, the keys of each anchor's softmax denominator.
        pairwise: The NT-Xent form (one softmax per positive pair). Defaults to `False`.
        scale: A Python float `> 0` that multiplies `logits` (`1 / temperature`). Defaults to 1.

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
    # nearby logits, accurate and >= 0 even when both are ~1 / temperature. The shift comes
    # before the scale, so that the largest logit is exactly 0 in every fusion a compiler makes
    # of it (`scale * s - max(scale * s)` was not, under `jax.jit` on CPU: 1 ulp of a logit of
    # 20 gave a loss of 1e-6 where the exact one is 0).
    used = ops.logical_or(denominator, positive_weights > 0)
    largest = ops.amax(ops.where(used, logits, lowest_finite(logits.dtype)), axis=-1, keepdims=True)
    shift = ops.where(ops.any(used, axis=-1, keepdims=True), largest, 0.0)
    logits = (logits - ops.stop_gradient(shift)) * scale
    lse = ops.expand_dims(masked_logsumexp(logits, denominator), -1)
    if pairwise:
        has_denominator = ops.any(denominator, axis=-1, keepdims=True)
        pair_terms = ops.where(has_denominator, ops.softplus(lse - logits), 0.0)
    else:
        pair_terms = lse - logits
    weighted_sum = ops.sum(positive_weights * pair_terms, axis=-1)
    total_weight = ops.sum(positive_weights, axis=-1)
    return Terms(weighted_sum, total_weight, pair_terms if pairwise else None)


def similarities(pairs, distance):
    """`[b, K]` similarities of `Pairs`: a similarity as is, a distance negated."""
    matrix = pairs.distances(distance)
    return matrix if distances.larger_is_closer(distance) else -matrix


def dense_terms(pairs, *, distance, temperature, pairwise):
    """`Terms` of `Pairs` from their `[b, K]` logits `similarity / temperature` and masks: the
    positive weights over the negatives (`pairwise`) or over every key but the anchor itself."""
    matrix = similarities(pairs, distance)
    if pairwise:
        denominator = pairs.negative
    elif pairs.candidates is None:  # reference keys: every key
        denominator = ops.ones_like(matrix, dtype="bool")
    else:
        denominator = pairs.candidates
    return contrastive_terms(matrix, pairs.positive_weights, denominator, pairwise=pairwise,
                             scale=1.0 / temperature)  # fmt: skip


def ntxent_pair_terms(pairs, *, temperature, distance="cosine_similarity"):
    """pytorch-metric-learning's unreduced NT-Xent elements of `Pairs`: `([b, K] l[i, j],
    [b, K] positive mask)`. PML's element list is `l` at the mask's row-major order (empty when
    the batch has no positive or no negative pair)."""
    terms = dense_terms(pairs, distance=distance, temperature=temperature, pairwise=True)
    return terms.pair_terms, pairs.positive


def dense_stats(pairs, *, distance, temperature, pairwise):
    """`AnchorStats` of `Pairs` from their `[b, K]` matrices."""
    terms = dense_terms(pairs, distance=distance, temperature=temperature, pairwise=pairwise)
    dtype = terms.weighted_sum.dtype
    return AnchorStats(
        terms,
        ops.sum(ops.cast(pairs.positive_weights > 0, dtype), axis=-1),
        ops.sum(ops.cast(pairs.negative, dtype), axis=-1),
        pairs.num_rows,
    )


def tiled_stats(pairs, *, distance, temperature, pairwise, block_size):
    """`AnchorStats` of `Pairs` by tiles of `block_size` rows and columns
    (`tiling.blockwise_terms`), without their `[b, K]` masks."""
    if _TILED_DISTANCES[distances.get(distance)]:  # cosine: the inner product of unit vectors
        pairs = pairs.normalized()
    stats = tiling.blockwise_terms(
        pairs, scale=1.0 / temperature, pairwise=pairwise, block_size=block_size
    )
    column = lambda k: stats[:, k]  # noqa: E731
    return AnchorStats(
        Terms(column(tiling.WEIGHTED_SUM), column(tiling.TOTAL_WEIGHT)),
        column(tiling.POSITIVE_PAIRS),
        column(tiling.NEGATIVE_PAIRS),
        pairs.num_rows,
    )


def anchor_stats(pairs, *, distance, temperature, pairwise, block_size):
    """`AnchorStats` of `Pairs`: dense, or by tiles with a `block_size`."""
    if block_size is None:
        return dense_stats(pairs, distance=distance, temperature=temperature, pairwise=pairwise)
    return tiled_stats(pairs, distance=distance, temperature=temperature, pairwise=pairwise,
                       block_size=block_size)  # fmt: skip


# --- the losses' per-anchor values: own means, or shares of PML's batch aggregates ----------


def pml_has_pairs(stats, cross_replica):
    """pytorch-metric-learning computes a pair loss only when the batch has a positive pair and
    a negative pair, and not at most one of each (`GenericPairLoss`)."""
    positives = reduction.batch_total(ops.sum(stats.positive_pairs), cross_replica)
    negatives = reduction.batch_total(ops.sum(stats.negative_pairs), cross_replica)
    some = ops.logical_and(positives > 0, negatives > 0)
    return ops.logical_and(some, ops.logical_or(positives > 1, negatives > 1))


def ntxent_values(stats, reducer, cross_replica):
    """Per-anchor NT-Xent values `[b]` of `AnchorStats` (pairwise terms): each anchor's mean,
    or its share of PML's `MeanReducer` over the positive pairs of the batch."""
    terms = stats.terms
    if reducer == "anchor":
        return terms.anchor_mean
    count = reduction.batch_total(ops.sum(terms.total_weight), cross_replica)
    enabled = pml_has_pairs(stats, cross_replica)
    return reduction.share(terms.weighted_sum, count, stats.num_rows, enabled)


def supcon_values(stats, reducer, cross_replica):
    """Per-anchor SupCon values `[b]` of `AnchorStats` (single- or multi-label): each anchor's
    mean (0 without a positive or a negative), or its share of PML's `AvgNonZeroReducer` over
    the anchors (those with a loss `> 0` count)."""
    losses = stats.terms.anchor_mean
    if reducer == "anchor":
        return ops.where(stats.valid, losses, 0.0)
    count = reduction.batch_total(ops.sum(ops.cast(losses > 0, "float32")), cross_replica)
    enabled = pml_has_pairs(stats, cross_replica)
    return reduction.share(losses, count, stats.num_rows, enabled)
