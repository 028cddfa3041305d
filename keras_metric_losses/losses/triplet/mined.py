"""One mined triplet per anchor: the core of `pn_loss`, `triplet_loss` and `triplet_hard_loss`.

Each anchor mines one positive and one negative from its row of the `[b, K]` distance matrix
(`kml.mining`, ties to the first column), and its loss is a hinge or a softplus of the
difference of the two distances; PN's step (`pn_step=True`) also counts the distance from the
mined positive to the mined negative.
"""

import dataclasses

from keras_metric_losses import backend, distances, mining
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import l2_normalize, positive_part, safe_sqrt

# Four classes of two one-hot embeddings: the inputs of the mined losses' examples.
INPUTS = dataclasses.replace(
    base.EMBEDDINGS,
    example=""">>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
>>> embeddings = np.eye(4, dtype="float32")[labels]""",
)

# The hyperparameters of TensorFlow Similarity's mined losses (`PNLoss`, `TripletLoss`).
DISTANCE = base.Hyperparameter(
    "cosine",
    distances.check,
    'A distance name of `kml.distances` (TF Similarity\'s names: `"cosine"`, '
    '`"euclidean"`/`"l2"`, `"squared_euclidean"`/`"sql2"`, `"manhattan"`/`"l1"`, '
    '`"inner_product"`/`"ip"`, `"snr"`; case-insensitive), or a callable '
    '`fn(query, key) -> [Q, K]`. `"cosine"` does not normalise: pass unit embeddings.',
)
POSITIVE_STRATEGY = base.one_of(
    "hard", mining.POSITIVE_STRATEGIES, '`"hard"` (farthest positive) or `"easy"` (closest).'
)
NEGATIVE_STRATEGY = base.one_of(
    "semi-hard",
    mining.NEGATIVE_STRATEGIES,
    '`"hard"` (closest negative), `"semi-hard"` (closest negative farther than the farthest '
    'positive, else the farthest negative) or `"easy"` (farthest negative).',
)


def soft_margin_of_none(values):
    """A joint check: `margin=None` (TensorFlow Similarity's soft margin) is `soft_margin=True`
    with the default margin 1.0."""
    if values["margin"] is None:
        return {**values, "soft_margin": True, "margin": 1.0}
    return values


def margin_unused_when_soft(values):
    """A joint check: `margin` has no effect with the soft margin, so only its default 1.0 is
    accepted with `soft_margin=True`."""
    if values["soft_margin"] and values["margin"] != 1.0:
        raise ValueError(
            "`margin` has no effect with `soft_margin=True` (the soft margin is "
            "`softplus(positive - negative)`): pass one or the other. Received: "
            f"soft_margin=True, margin={values['margin']!r}"
        )


def mined_per_anchor(
    pairs, distance, positive_strategy, negative_strategy, soft_margin, margin, pn_step
):
    """Per-anchor losses `[b]` in the compute dtype, on the `Pairs` of the front end, of a
    triplet mined per anchor: PN (`pn_step=True`) or TensorFlow Similarity's `TripletLoss`
    (`pn_step=False`, the negative distance is the anchor's own). An anchor without a
    positive or a negative gets 0 and a zero gradient."""
    distance_fn = distances.get(distance)
    paired = distances.rowwise(distance_fn)
    if paired is not None:  # mine without gradient; the 2-3 b selected distances are recomputed
        dist = ops.stop_gradient(_MINING.get(distance_fn, distance_fn)(pairs.queries, pairs.keys))
    else:
        dist = distance_fn(pairs.queries, pairs.keys)
    positive, has_positive = mining.mine_positives(dist, pairs.positive, positive_strategy)
    threshold = None
    if negative_strategy == "semi-hard":  # beyond the *farthest* positive, whatever the strategy
        if positive_strategy == "hard":  # a [b] gather rather than a second [b, B] max
            threshold = mining.take_rows(dist, positive)
        else:
            threshold = mining.masked_max(dist, pairs.positive)
    negative, has_negative = mining.mine_negatives(
        dist, pairs.negative, negative_strategy, threshold=threshold
    )
    if (
        paired is not None
        and pairs.keys_are_queries
        and distance_fn in _GRAM
        and backend.eager_torch()
    ):
        positive_distance, negative_distance, positive_to_negative = _mined_from_gram(
            distance_fn, pairs.queries, positive, negative
        )
        if pn_step:
            negative_distance = ops.minimum(negative_distance, positive_to_negative)
    elif paired is not None:  # the PN step's D[positive, negative] is recomputed likewise
        positive_keys = ops.take(pairs.keys, positive, axis=0)
        negative_keys = ops.take(pairs.keys, negative, axis=0)
        positive_distance = paired(pairs.queries, positive_keys)
        negative_distance = paired(pairs.queries, negative_keys)
        if pn_step:
            positive_to_negative = paired(positive_keys, negative_keys)
            negative_distance = ops.minimum(negative_distance, positive_to_negative)
    else:
        positive_distance = mining.take_rows(dist, positive)
        negative_distance = mining.take_rows(dist, negative)
        if pn_step:  # the negative is as close as the nearer of the anchor and mined positive
            if pairs.keys_are_queries:  # read D[positive, negative] from the matrix
                num_keys = ops.shape(dist)[1]
                flat = ops.reshape(dist, (-1,))
                positive_to_negative = ops.take(flat, positive * num_keys + negative)
            else:  # the mined keys' distance, from their embeddings: [b, b] at most
                keys = pairs.keys
                pair = distance_fn(
                    ops.take(keys, positive, axis=0), ops.take(keys, negative, axis=0)
                )
                positive_to_negative = ops.diagonal(pair)
            negative_distance = ops.minimum(negative_distance, positive_to_negative)
    difference = positive_distance - negative_distance
    losses = ops.softplus(difference) if soft_margin else ops.relu(difference + margin)
    return ops.where(ops.logical_and(has_positive, has_negative), losses, 0)


# The mining matrix (no gradient) of a distance, where a cheaper formula gives the same values:
# `max(x, 0)` is `positive_part(x)` bit for bit (both give 0 for x <= 0 and x itself above),
# one `[B, B]` pass where `positive_part` runs three (it exists for the backward pass).
_MINING = {
    distances.cosine: lambda q, k: ops.relu(1.0 - ops.matmul(q, ops.transpose(k))),
}


def _gram_cosine(gram, i, j):
    return positive_part(1.0 - gram[:, i, j])


def _gram_squared_euclidean(gram, i, j):
    return positive_part(gram[:, i, i] - 2.0 * gram[:, i, j] + gram[:, j, j])


# Distances that are a function of the Gram matrix of the two rows: `(normalise the rows first,
# distance(gram, i, j))`, the formulas of `distances.rowwise` on the entries of the Gram matrix.
_GRAM = {
    distances.cosine: (False, _gram_cosine),
    distances.angular: (True, _gram_cosine),
    distances.euclidean: (False, lambda g, i, j: safe_sqrt(_gram_squared_euclidean(g, i, j))),
    distances.squared_euclidean: (False, _gram_squared_euclidean),
    distances.inner_product: (False, lambda g, i, j: g[:, i, j]),
    distances.cosine_similarity: (True, lambda g, i, j: g[:, i, j]),
}


def _mined_from_gram(distance_fn, embeddings, positive, negative):
    """`(D[a, p], D[a, n], D[p, n])`, `[b]` each, of the mined triplets of a square batch, from
    the `[b, 3, 3]` Gram matrices of the rows (anchor, positive, negative).

    One `[b, 3, D]` gather and one batched matmul, and their backward: about 7 kernels over
    `[b, D]`-sized data where two gathers and three row-wise products run about 20, each its
    own multi-threaded kernel in eager torch. Eager torch only: compilers (XLA, inductor) fuse
    the row-wise products, and there the batched matmul was 5-20% slower at B = 1024; TF's
    graph without XLA was ~5% slower too.
    """
    normalise, distance_of = _GRAM[distance_fn]
    anchors = ops.arange(ops.shape(embeddings)[0], dtype="int32")
    rows = ops.stack([anchors, ops.cast(positive, "int32"), ops.cast(negative, "int32")], 1)
    triplets = ops.take(embeddings, rows, axis=0)  # [b, 3, D]
    if normalise:
        triplets = l2_normalize(triplets)
    gram = ops.matmul(triplets, ops.transpose(triplets, (0, 2, 1)))
    return distance_of(gram, 0, 1), distance_of(gram, 0, 2), distance_of(gram, 1, 2)
