"""PN loss (TensorFlow Similarity's `PNLoss`): a triplet loss whose negative distance also
counts the distance from the mined positive to the mined negative."""

from keras import ops

from keras_metric_losses import backend, distances, mining, pairs, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import (
    LossFunctionWrapper,
    TensorFlowSimilarityConfig,
    hyperparameters,
)
from keras_metric_losses.ops import positive_part, safe_sqrt

STRATEGY_CHECKS = {
    "positive_mining_strategy": lambda v, n: validation.one_of(v, n, mining.POSITIVE_STRATEGIES),
    "negative_mining_strategy": lambda v, n: validation.one_of(v, n, mining.NEGATIVE_STRATEGIES),
}


def _margin_unused_when_soft(values):
    """`margin` has no effect with the soft margin: refuse a margin other than the default."""
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
    (`pn_step=False`, the negative distance is the anchor's own)."""
    if pairs.queries.shape[0] == 0:  # no anchors; TensorFlow cannot take the max of an empty row
        return ops.sum(pairs.queries, axis=1)  # `[0]`, with a (empty) gradient
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
        triplets = ops.normalize(triplets, axis=-1)
    gram = ops.matmul(triplets, ops.transpose(triplets, (0, 2, 1)))
    return distance_of(gram, 0, 1), distance_of(gram, 0, 2), distance_of(gram, 1, 2)


@export
@hyperparameters(
    _margin_unused_when_soft,
    distance=distances.check,
    soft_margin=validation.boolean,
    margin=validation.real,
    cross_replica=validation.boolean,
    **STRATEGY_CHECKS,
)
def pn_loss(
    y_true,
    y_pred,
    *,
    distance="cosine",
    positive_mining_strategy="hard",
    negative_mining_strategy="semi-hard",
    soft_margin=False,
    margin=1.0,
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """PN loss of a batch of embeddings, one value per anchor, as TensorFlow Similarity 0.17.1.

    With `D = distance(y_pred, y_pred)`, for each anchor `i` a positive `p` (same label,
    `p != i`) and a negative `n` (other label) are mined from row `i` of `D`:

    - positive: `"hard"` = farthest positive, `"easy"` = closest positive;
    - negative: `"hard"` = closest negative, `"easy"` = farthest negative, `"semi-hard"` =
      closest negative farther than the anchor's *farthest* positive (whatever the positive
      strategy), or the farthest negative when none is.

    Ties go to the first index. Then (PN step) the negative distance is the smaller of the
    anchor's and the positive's distance to the negative:

    ```
    d_pos = D[i, p]
    d_neg = min(D[i, n], D[p, n])
    loss_i = softplus(d_pos - d_neg)            # soft_margin=True
    loss_i = max(d_pos - d_neg + margin, 0)     # otherwise
    ```

    Anchors without a positive (the only one of their class in the batch) or without a
    negative (a batch of one class) get loss 0 and zero gradient. They still count in a mean:
    `PNLoss` with the default `"sum_over_batch_size"` divides by the whole batch size. This
    departs from TensorFlow Similarity, which mines such anchors anyway from fill values
    (`row min - 1e-6` etc.) and gives them an arbitrary, usually non-zero, loss. For batches
    where every anchor has a positive and a negative the values are the same.

    Other differences: `softplus` is computed stably (TensorFlow Similarity's
    `log(exp(-x) + 1) + x` form overflows to `inf` for `x < -88` in float32 and rounds values
    below ~1e-7 to 0); float16/bfloat16 embeddings are computed in float32.

    With `ref_embeddings` / `ref_labels` the anchors are mined against those keys instead of
    the batch (a gallery, a cross-batch memory; no key is the anchor itself), and the PN step
    takes the distance between the two mined keys. `cross_replica=True` mines against the
    embeddings of every replica (`tf.distribute`, `torch.distributed`).

    Cost: one `[B, B]` distance matrix, a few masked `argmin`/`argmax` reductions over it and
    `[B]` gathers: memory `O(B^2)` (`O(B^2 D)` for `"manhattan"`). With a built-in distance the
    matrix only mines (no gradient) and the three mined distances of each anchor are recomputed
    from the embeddings, so the backward pass is `O(B D)`; a user's callable distance is
    differentiated through its matrix.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings (L2-normalised for `"cosine"`, which does not normalise).
        distance: A name from `keras_metric_losses.distances` (`"cosine"`, `"euclidean"`/
            `"l2"`, `"squared_euclidean"`/`"sql2"`, `"manhattan"`/`"l1"`,
            `"inner_product"`/`"ip"`, case-insensitive), or a callable
            `fn(query, key) -> [Q, K]`. `"inner_product"` is a similarity used as is, like in
            TensorFlow Similarity: the mining rules then pick by largest/smallest product,
            not by closeness. Defaults to `"cosine"`.
        positive_mining_strategy: `"hard"` or `"easy"`. Defaults to `"hard"`.
        negative_mining_strategy: `"hard"`, `"semi-hard"` or `"easy"`. Defaults to
            `"semi-hard"`.
        soft_margin: Use `softplus(d_pos - d_neg)` instead of the hinge. Defaults to `False`.
        margin: Hinge margin, a finite float. With `soft_margin=True` it has no effect and
            only the default is accepted (TensorFlow Similarity 0.13's rule); a TensorFlow
            Similarity 0.17 config with `margin: None` loads through `PNLoss.from_config`.
            Defaults to 1.0.
        cross_replica: Mine against the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys to mine from instead of the batch.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Degenerate batches: an empty batch gives `[]`; a batch of one, a batch of one class and a
    batch where every label differs give 0 for every anchor.

    Raises:
        ValueError: for an unknown strategy or distance, a margin other than 1.0 with
            `soft_margin=True`, a non-finite margin, `y_true` not `[B]`/`[B, 1]`, `y_pred` not
            rank 2, or different batch sizes. With value checks on (`kml.config`), also if
            float labels are not integral or `y_pred` holds NaN or inf.
        TypeError: if the labels are not numbers (strings).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    >>> embeddings = np.eye(4, dtype="float32")[labels]
    >>> losses = kml.pn_loss(labels, embeddings, soft_margin=True)
    >>> print(keras.ops.convert_to_numpy(losses).round(5))
    [0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326]

    Reference: Szubert et al., "Structure-preserving visualisation of high dimensional
    single-cell datasets" (ivis), Scientific Reports 2019; TensorFlow Similarity's `PNLoss`.
    """
    pairs_ = pairs.embedding_pairs(
        y_true,
        y_pred,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        cross_replica=cross_replica,
    )
    losses = mined_per_anchor(
        pairs_,
        distance,
        positive_mining_strategy,
        negative_mining_strategy,
        soft_margin,
        margin,
        pn_step=True,
    )
    return ops.cast(losses, ops.convert_to_tensor(y_pred).dtype)


@export
class PNLoss(TensorFlowSimilarityConfig, LossFunctionWrapper):
    """PN loss over a batch of `[B, D]` embeddings with integer labels (`pn_loss`), one value
    per anchor.

    `reduction=None` gives the `[B]` values of TensorFlow Similarity 0.17.1's `PNLoss` (for
    batches where every anchor has a positive and a negative), the default
    `"sum_over_batch_size"` their mean, and `sample_weight` weights anchors. Anchors without a
    positive or negative contribute 0 but still count in the batch size that
    `"sum_over_batch_size"` divides by (use `sample_weight` or `"mean_with_sample_weight"` to
    exclude them). Integer labels are compared exactly.

    Configs saved by TensorFlow Similarity 0.17 (`margin: None`, no `soft_margin`,
    `reduction: "auto"`, the distance as a name or a `{"config": {"name": ...}}` dict) load
    with `from_config`.

    Args:
        distance: Distance name or registered callable, see `pn_loss`. Defaults to `"cosine"`.
        positive_mining_strategy: `"hard"` or `"easy"`. Defaults to `"hard"`.
        negative_mining_strategy: `"hard"`, `"semi-hard"` or `"easy"`. Defaults to
            `"semi-hard"`.
        soft_margin: Use `softplus(d_pos - d_neg)`. Defaults to `False`.
        margin: Hinge margin, unused (and only accepted at its default) with
            `soft_margin=True`. Defaults to 1.0.
        name: Name of the loss. Defaults to `"PNLoss"` (TensorFlow Similarity 0.17's name).
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy; half precision is computed in float32. Defaults to
            `keras.config.floatx()`.
        cross_replica: Under `tf.distribute` or `torch.distributed`, compare each replica's
            anchors with the embeddings of every replica (the global batch); a no-op on one
            device and under JAX, whose sharded `fit` already sees the global batch. See the
            distributed training guide. Defaults to `False`.

    Raises:
        ValueError: for an unknown strategy or distance name, or a margin other than 1.0 with
            `soft_margin=True`. A callable distance that is not registered with
            `keras.saving.register_keras_serializable` is accepted, but `get_config` (and so
            `model.save`) raises `ValueError` for it.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    >>> embeddings = np.eye(4, dtype="float32")[labels]
    >>> round(float(kml.PNLoss(soft_margin=True)(labels, embeddings)), 5)
    0.31326

    Reference: Szubert et al., Scientific Reports 2019 (ivis); Hermans et al., "In Defense of
    the Triplet Loss for Person Re-Identification", arXiv:1703.07737 (soft margin).
    """

    def __init__(
        self,
        distance="cosine",
        positive_mining_strategy="hard",
        negative_mining_strategy="semi-hard",
        soft_margin=False,
        margin=1.0,
        name="PNLoss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            pn_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            distance=distance,
            positive_mining_strategy=positive_mining_strategy,
            negative_mining_strategy=negative_mining_strategy,
            soft_margin=soft_margin,
            margin=margin,
            cross_replica=cross_replica,
        )
