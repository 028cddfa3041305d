"""Lifted structure loss: pytorch-metric-learning's `LiftedStructureLoss` and TF Addons'
`lifted_struct_loss`, one implementation (they are the same loss up to the margins, the
normalisation and the reduction)."""

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import beyond, masked, pair_matrix
from keras_metric_losses.ops import label_equality, masked_logsumexp


def _negative_logsumexp(matrix, negative, neg_margin, similarity):
    """`(log sum_{l in N_i} exp(neg_margin - D_il), has_negative)` per row (the log-sum-exp is
    0 for a row without negatives; `has_negative` says so)."""
    terms = beyond(neg_margin, matrix, similarity)
    return masked_logsumexp(terms, negative), ops.any(negative, axis=-1)


def _key_negatives(pairs, distance, neg_margin, similarity):
    """`_negative_logsumexp` of each key among the keys (`[K, K]`); only the slots that hold
    keys (`Keys.memory`'s `valid`) count as negatives."""
    key_matrix = distances.get(distance)(pairs.keys, pairs.keys)
    key_negative = ops.logical_not(label_equality(pairs.key_labels))
    if pairs.source.valid is not None:
        valid = ops.convert_to_tensor(pairs.source.valid)
        key_negative = ops.logical_and(key_negative, ops.expand_dims(valid, 0))
    return _negative_logsumexp(key_matrix, key_negative, neg_margin, similarity)


def lifted_structure_elements(pairs, *, distance, neg_margin, pos_margin):
    """The lifted structure terms, dense: `{"loss": (values, mask)}`, one term per ordered
    positive pair `(i, j)` of the `[b, K]` masks (PML's unreduced elements).

    ```
    N_i   = log sum_{l in N_i} exp(neg_margin - D_il)          (the negatives of i)
    N_j   = log sum_{l in N_j} exp(neg_margin - D_jl)          (the negatives of key j)
    t_ij  = max(logaddexp(N_i, N_j) + D_ij - pos_margin, 0)^2 / 2
    ```

    (margins flipped for a similarity). The negatives of key `j` are read from row `j` of the
    matrix in a batch; for other keys (`ref_embeddings`, a memory, every replica) they are the
    key's negatives among the keys, from a `[K, K]` distance matrix. A pair counts if its
    anchor has a positive and a negative (the mask holds only those pairs); an end without
    negatives drops out of the log-sum-exp.
    """
    matrix, similarity = pair_matrix(pairs, distance)
    query_lse, query_has = _negative_logsumexp(matrix, pairs.negative, neg_margin, similarity)
    if pairs.keys_are_queries:
        key_lse, key_has = query_lse, query_has
    else:
        key_lse, key_has = _key_negatives(pairs, distance, neg_margin, similarity)
    query_lse, query_has = ops.expand_dims(query_lse, 1), ops.expand_dims(query_has, 1)
    key_lse, key_has = ops.expand_dims(key_lse, 0), ops.expand_dims(key_has, 0)
    joint = ops.where(
        ops.logical_and(query_has, key_has),
        ops.logaddexp(query_lse, key_lse),
        ops.where(query_has, query_lse, key_lse),
    )
    terms = ops.square(ops.relu(joint + beyond(matrix, pos_margin, similarity))) / 2
    mask = ops.logical_and(pairs.positive, query_has)
    return {"loss": (masked(terms, mask), mask)}


def lifted_structure_per_anchor(pairs, *, reducer, **hyperparameters):
    """Lifted structure loss, one value per anchor: PML's `LiftedStructureLoss`, and TF Addons'
    `lifted_struct_loss` with other settings.

    With `D = distance(y_pred, y_pred)` (embeddings L2-normalised first when `normalize`), each
    ordered positive pair `(i, j)` (same label, `j != i`) pays for its distance and for the
    negatives of *both* its ends in one log-sum-exp:

    ```
    t_ij = max(log(sum_{l in N_i} exp(neg_margin - D_il) + sum_{l in N_j} exp(neg_margin - D_jl))
               + D_ij - pos_margin, 0)^2 / 2
    ```

    (for a similarity the margins flip: `S_il - neg_margin`, `pos_margin - S_ij`). `t` is
    symmetric, so each unordered pair `{i, j}` is counted once at each end.

    Per-anchor values (`reducer`):

    - `"anchor"` (default): the mean of `t_ij` over the anchor's positives;
    - `"pml"`: the anchor's share `B * sum_j t_ij / n_pairs` of the mean over the `n_pairs`
      ordered positive pairs of the batch (PML's `MeanReducer`; TF Addons' reduction, which
      averages over unordered pairs, is the same number). Keras' mean of the values is that
      batch mean, and its gradient too.

    PML's `LiftedStructureLoss(neg_margin, pos_margin)` is `reducer="pml"` with the defaults
    (`LpDistance()`: `distance="euclidean", normalize=True`). TF Addons'
    `lifted_struct_loss(labels, embeddings, margin)` is `neg_margin=margin, pos_margin=0,
    normalize=False, reducer="pml"`, which is what `lifted_struct_loss` calls.

    Anchors without a positive, or without a negative, get 0 and a zero gradient (PML returns 0
    for a batch without positive or negative pairs; TF Addons returns NaN). With
    `ref_embeddings` / `ref_labels` (a gallery, a cross-batch memory) or `cross_replica=True`
    the pairs join the batch to those keys, and the negatives of a key are its negatives among
    the keys (an extra `[K, K]` distance matrix). Cost: `O(B^2)` memory, no `[B, B, B]` tensor.

    Example:

    >>> losses = kml.lifted_structure_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [2.4825 2.4825 2.4825 2.4825]

    Reference: Oh Song et al., "Deep Metric Learning via Lifted Structured Feature Embedding",
    CVPR 2016; pytorch-metric-learning 2.9 `losses.LiftedStructureLoss`.
    """
    values, mask = lifted_structure_elements(pairs, **hyperparameters)["loss"]
    return reduction.reduce_elements(values, mask, reducer, reduction.batch_mean)


def lifted_struct_shares(pairs, *, margin):
    """TF Addons' lifted structure loss, as one share per anchor: the mean of the result is
    `tfa.losses.lifted_struct_loss(labels, embeddings, margin)`.

    With `D` the Euclidean distances of the (not normalised) embeddings and, for every ordered
    positive pair `(i, j)`,

    ```
    J_ij = log(sum_{l: y_l != y_i} exp(margin - D_il) + sum_{l: y_l != y_j} exp(margin - D_jl))
           + D_ij
    ```

    TF Addons returns the scalar `sum_{(i, j)} max(J_ij, 0)^2 / (2 n_pairs)` over the
    `n_pairs` ordered positive pairs (the mean over unordered pairs of `max(J, 0)^2 / 2`),
    which is not a mean of per-anchor terms. Here each unordered pair's term is split evenly
    between its two ends: anchor `i` gets

    ```
    loss_i = B * sum_{j in P_i} max(J_ij, 0)^2 / (2 n_pairs)
    ```

    so `mean_i loss_i` is TF Addons' value (and `LiftedStructLoss` with the default reduction
    returns it). It is `lifted_structure_loss(y_true, y_pred, neg_margin=margin,
    pos_margin=0.0, normalize=False, reducer="pml")`, the same code.

    Differences from TF Addons: a batch without positive pairs, or without negatives, gives
    zeros with a zero gradient (TF Addons: NaN); labels may be `[B]` or `[B, 1]`;
    float16/bfloat16 embeddings are computed in float32 (float64 works too). The values depend
    on the whole batch (the pair count), so `sample_weight` reweights shares of the batch loss.

    Returns:
        `[B]` per-anchor shares in the dtype of `y_pred`.

    Raises:
        ValueError: for labels not `[B]`/`[B, 1]`, `y_pred` not rank 2, different batch sizes
            or a non-finite `margin`. With value checks on (`kml.config`), also for
            non-integral float labels and NaN or inf in `y_pred`.
        TypeError: if the labels are not numbers.

    Example:

    >>> shares = kml.lifted_struct_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(shares).round(4))
    [2.4825 2.4825 2.4825 2.4825]
    >>> round(float(keras.ops.mean(shares)), 5)  # TF Addons' scalar
    2.48251

    Reference: Oh Song et al., "Deep Metric Learning via Lifted Structured Feature Embedding",
    CVPR 2016.
    """
    return lifted_structure_per_anchor(
        pairs, distance="euclidean", neg_margin=margin, pos_margin=0.0, reducer="pml"
    )


lifted_structure_loss, LiftedStructureLoss = base.declare(
    lifted_structure_per_anchor,
    function="lifted_structure_loss",
    cls="LiftedStructureLoss",
    original="PML `LiftedStructureLoss`",
    summary="each positive pair against the negatives of both its ends, one log-sum-exp",
    positional=("neg_margin", "pos_margin", "distance", "normalize", "reducer"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        neg_margin=base.real(1.0, "Negatives farther than about this add little."),
        pos_margin=base.real(0.0, "Subtracted from positive distances."),
        distance=base.Hyperparameter(
            "euclidean",
            distances.check,
            "A distance name or callable (the margins flip for a similarity).",
        ),
        normalize=base.normalize(True),
        reducer=base.reducer(
            '`"anchor"` (the mean of the anchor\'s pair terms) or `"pml"` (its share of the '
            "mean over the batch's positive pairs), see the function."
        ),
    ),
    class_doc="""Lifted structure loss (`lifted_structure_loss`): PML's `LiftedStructureLoss`.

    With `reducer="pml"` and the default reduction the value is PML's
    `LiftedStructureLoss(neg_margin, pos_margin)`; the default `reducer="anchor"` gives each
    anchor the mean of its positive-pair terms. `LiftedStructLoss` is TF Addons' version of the
    same loss.

    Example:

    >>> round(float(kml.LiftedStructureLoss(reducer="pml")(labels, embeddings)), 5)
    2.48251

    Reference: Oh Song et al., CVPR 2016; pytorch-metric-learning 2.9.
    """,
)

lifted_struct_loss, LiftedStructLoss = base.declare(
    lifted_struct_shares,
    function="lifted_struct_loss",
    cls="LiftedStructLoss",
    original="TF Addons `lifted_struct_loss` / `LiftedStructLoss`",
    summary="TF Addons' lifted structure loss, as per-anchor shares of its batch value",
    positional=("margin",),
    function_positional=True,
    inputs=base.Inputs(
        ("y_true", "y_pred"),
        (
            "`[B]` or `[B, 1]` integer class labels (TF Addons' `labels`).",
            "`[B, D]` embeddings (TF Addons' `embeddings`), not normalised.",
        ),
        {},
        example=base.EMBEDDINGS_EXAMPLE,
    ),
    hyperparameters=dict(margin=base.real(1.0, "The margin on the negative distances.")),
    class_doc="""TF Addons' lifted structure loss (`lifted_struct_loss`): with the default
    reduction the value is `tfa.losses.LiftedStructLoss(margin)`'s.

    Each anchor's value is its share of TF Addons' batch loss (each unordered positive pair's
    term split between its two ends; see `lifted_struct_loss`), so `reduction=None` returns
    `[B]` shares whose mean is TF Addons' scalar. The same loss with PML's margins and
    normalisation is `LiftedStructureLoss`: `LiftedStructLoss(margin=m)` equals
    `LiftedStructureLoss(neg_margin=m, pos_margin=0.0, normalize=False, reducer="pml")`.

    Example:

    >>> round(float(kml.LiftedStructLoss()(labels, embeddings)), 5)
    2.48251

    Reference: Oh Song et al., CVPR 2016.
    """,
)
