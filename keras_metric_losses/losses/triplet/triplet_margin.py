"""Triplet margin loss over every triplet of the batch (pytorch-metric-learning's
`TripletMarginLoss`, with its `TripletMarginMiner` as a mask)."""

from keras_metric_losses import distances, mining, reduction, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.triplet import common


def triplet_margin_elements(
    pairs, distance, margin, swap, smooth_loss, type_of_triplets, miner_margin
):  # fmt: skip
    """`(losses, mask)`, two `[b, K, K]` tensors `[anchor, positive, negative]`: PML's triplet
    loss of every triplet (0 where `mask` is off) and the triplets used (all valid ones, or
    those `mining.triplet_margin_mask` selects). The only `O(b K^2)` code of the losses."""
    larger_is_closer = distances.larger_is_closer(distance)
    dist = pairs.distances(distance)
    if type_of_triplets is None:
        mask = pairs.triplet_mask()
    else:
        mask = mining.triplet_margin_mask(
            dist, pairs.positive, pairs.negative, miner_margin, type_of_triplets, larger_is_closer
        )
        if pairs.triplets is not None:  # a miner's triplets too
            mask = ops.logical_and(mask, pairs.triplets)
    anchor_positive, anchor_negative = ops.expand_dims(dist, 2), ops.expand_dims(dist, 1)
    if swap:  # the negative's distance to the positive, when that is closer
        if pairs.keys_are_queries:
            key_distances = dist
        else:
            key_distances = distances.get(distance)(pairs.keys, pairs.keys)
        closer = ops.maximum if larger_is_closer else ops.minimum
        anchor_negative = closer(anchor_negative, ops.expand_dims(key_distances, 0))
    if larger_is_closer:
        violation = (anchor_negative - anchor_positive) + margin
    else:
        violation = (anchor_positive - anchor_negative) + margin
    losses = ops.softplus(violation) if smooth_loss else ops.relu(violation)
    return ops.where(mask, losses, 0), mask


def triplet_margin_per_anchor(
    pairs, *, margin, swap, smooth_loss, triplets_per_anchor, distance, type_of_triplets,
    miner_margin, reducer
):  # fmt: skip
    """Triplet margin loss over all triplets of the batch, as pytorch-metric-learning 2.9's
    `TripletMarginLoss`, one value per anchor.

    With `D = distance(y_pred, y_pred)` (on L2-normalised embeddings by default), every valid
    triplet `(a, p, n)` (`y_p = y_a`, `p != a`, `y_n != y_a`) has the loss

    ```
    d_an   = D[a, n], or with swap=True min(D[a, n], D[p, n])
    l(apn) = max(D[a, p] - d_an + margin, 0)        # softplus(...) with smooth_loss=True
    ```

    (for a similarity such as `"cosine_similarity"`: `S[a, n] - S[a, p] + margin`, and swap
    takes the larger similarity). With `type_of_triplets` only the triplets that PML's
    `TripletMarginMiner(miner_margin, type_of_triplets)` selects are used
    (`mining.triplet_margin_mask`): PML's `loss(embeddings, labels, miner(embeddings, labels))`.

    The value of anchor `a` depends on `reducer`:

    - `"anchor"` (default): the mean of its triplets' losses (0 without triplets);
    - `"pml"`: its share `B * sum_{p, n} l(apn) / N` of PML's `AvgNonZeroReducer` scalar, `N`
      the number of triplets of the batch with a loss `> 0`: the mean over the batch is PML's
      loss exactly (0 when no triplet has a positive loss, as in PML). With
      `cross_replica=True` the count `N` is each replica's.

    With `ref_embeddings` / `ref_labels` (PML's `ref_emb` / `ref_labels`) the positives and
    negatives are those keys.

    Cost: every triplet is a dense `[B, K, K]` entry (`B^3` for a batch): 64 MiB per float32
    tensor at `B = 256`, 4 GiB at `B = 1024`. For large batches prefer `triplet_semihard_loss`
    or `triplet_hard_loss` (`O(B^2)`).

    Example:

    >>> losses = kml.triplet_margin_loss(labels, embeddings, margin=0.1)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.181  0.5368 0.5368 0.181 ]

    Reference: Weinberger and Saul, "Distance Metric Learning for Large Margin Nearest
    Neighbor Classification", JMLR 2009; Balntas et al., "Learning local feature descriptors
    with triplets and shallow convolutional neural networks", BMVC 2016 (swap);
    pytorch-metric-learning's `TripletMarginLoss` and `TripletMarginMiner`.
    """
    losses, mask = triplet_margin_elements(
        pairs, distance, margin, swap, smooth_loss, type_of_triplets, miner_margin
    )
    return reduction.reduce_elements(losses, mask, reducer)


def _type_of_triplets(value, name):
    return None if value is None else validation.one_of(value, name, mining.TYPES_OF_TRIPLETS)


def _miner_margin_needs_a_miner(values):
    """A joint check: `miner_margin` keeps its default without a miner."""
    if values["type_of_triplets"] is None and values["miner_margin"] != 0.2:
        raise ValueError(
            "`miner_margin` has no effect without a miner (`type_of_triplets=None`). "
            f"Received: miner_margin={values['miner_margin']!r}"
        )


triplet_margin_loss, TripletMarginLoss = base.declare(
    triplet_margin_per_anchor,
    inputs=common.PML_INPUTS,
    function="triplet_margin_loss",
    cls="TripletMarginLoss",
    original="PML 2.9 `TripletMarginLoss` (+ `TripletMarginMiner`)",
    summary=(
        "all triplets (dense `[B, B, B]`, O(B³) memory), or the miner's as a mask "
        '(`type_of_triplets`); `reducer="pml"` gives PML\'s scalar'
    ),
    positional=(
        "margin",
        "swap",
        "smooth_loss",
        "triplets_per_anchor",
        "distance",
        "normalize_embeddings",
        "type_of_triplets",
        "miner_margin",
        "reducer",
    ),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    joint_checks=(_miner_margin_needs_a_miner,),
    hyperparameters=dict(
        margin=base.real(0.05, "The loss margin (PML's default)."),
        swap=base.boolean(
            False, "Use the positive-negative distance when it is smaller (Balntas et al.)."
        ),
        smooth_loss=base.boolean(False, "`softplus` instead of the hinge."),
        triplets_per_anchor=common.TRIPLETS_PER_ANCHOR,
        distance=common.PML_DISTANCE,
        normalize_embeddings=base.normalize(True),
        type_of_triplets=base.Hyperparameter(
            None,
            _type_of_triplets,
            '`None` (all triplets) or a `TripletMarginMiner` type: `"all"`, `"hard"`, '
            '`"semihard"`, `"easy"`. The miner uses `distance` too.',
        ),
        miner_margin=base.real(
            0.2,
            "The miner's margin (only with `type_of_triplets`; PML's `TripletMarginMiner` "
            "default).",
        ),
        reducer=base.reducer(
            '`"anchor"` (each anchor\'s mean) or `"pml"` (shares of PML\'s '
            "`AvgNonZeroReducer`), see the function."
        ),
    ),
    class_doc="""pytorch-metric-learning 2.9's `TripletMarginLoss` (`triplet_margin_loss`), one
    value per anchor.

    `TripletMarginLoss(reducer="pml")` with the default reduction equals PML's loss;
    `type_of_triplets` adds PML's `TripletMarginMiner` as a mask. Every triplet is a dense
    `[B, B, B]` entry: see the cost in `triplet_margin_loss`.

    Example:

    >>> round(float(kml.TripletMarginLoss(margin=0.1, reducer="pml")(labels, embeddings)), 4)
    0.4785

    Reference: Weinberger and Saul, JMLR 2009; pytorch-metric-learning's `TripletMarginLoss`.
    """,
)
