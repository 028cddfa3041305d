"""Triplet losses on labels and embeddings, as TF Addons, TensorFlow Similarity and
pytorch-metric-learning define them.

| loss | original | triplets of an anchor | its value |
| --- | --- | --- | --- |
| `triplet_semihard_loss` | TF Addons 0.23 | each positive, its semi-hard negative | batch share |
| `triplet_hard_loss` | TF Addons 0.23 | hardest positive, hardest negative | its own loss |
| `triplet_loss` | TF Similarity 0.17.1 | one mined positive and negative | its own loss |
| `triplet_margin_loss` | PML 2.9 | all (or a miner's) triplets | per `reducer` |

The TF Addons and TF Similarity losses mine from the `[B, K]` distance matrix (`O(B K)` memory,
`O(B K log K)` time for the semi-hard one); `triplet_margin_loss` enumerates every triplet as a
dense `[B, K, K]` tensor (`O(B K^2)`, see `keras_metric_losses.mining`). PML's `MarginLoss` is
in `losses/margin.py`.
"""

import dataclasses
import inspect

from keras import ops

from keras_metric_losses import distances, mining, pairs, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import (
    LossFunctionWrapper,
    TensorFlowSimilarityConfig,
    hyperparameters,
)
from keras_metric_losses.losses.pn import (
    STRATEGY_CHECKS,
    _margin_unused_when_soft,
    mined_per_anchor,
)
from keras_metric_losses.ops import label_equality, safe_sqrt

REDUCERS = ("anchor", "pml")

# ---------------------------------------------------------------------------------------------
# Shared pieces


def _no_anchors(pairs_):
    """Whether the batch is statically empty (sorting or reducing empty rows fails on some
    backends); the loss is then `[0]`, still connected to `y_pred`."""
    return pairs_.queries.shape[0] == 0


def _empty_losses(pairs_):
    return ops.sum(pairs_.queries, axis=1)


def _in_input_dtype(losses, y_pred):
    return ops.cast(losses, ops.convert_to_tensor(y_pred).dtype)


def check_distance_metric(value, name):
    """`distances.check`, with a clear error for TF Addons' one-argument callables.

    TF Addons calls `distance_metric(embeddings) -> [B, B]`; the losses of this package call
    `distance(query, key) -> [Q, K]` (the keys may be the global batch or a memory).
    """
    if callable(value) and _takes_one_argument(value):
        raise ValueError(
            f"A callable `{name}` takes two arguments here, `fn(query, key) -> [Q, K]` "
            "(TF Addons' `fn(embeddings) -> [B, B]` is called with `query = key = y_pred`): "
            "for example `lambda x: x @ tf.transpose(x)` becomes "
            "`lambda q, k: keras.ops.matmul(q, keras.ops.transpose(k))`. "
            f"Received: {name}={value!r}"
        )
    return distances.check(value, name)


def _takes_one_argument(fn):
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: let them be called
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in parameters) == 1


def pml_pairs(y_true, y_pred, normalize_embeddings, cross_replica, ref_embeddings, ref_labels):
    """The front end's `Pairs`, with queries and keys L2-normalised when
    `normalize_embeddings` (PML's distances do it by default), in the compute dtype."""
    pairs_ = pairs.embedding_pairs(
        y_true,
        y_pred,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        cross_replica=cross_replica,
    )
    if not normalize_embeddings:
        return pairs_
    queries = _unit_rows(pairs_.queries)
    keys = queries if pairs_.keys_are_queries else _unit_rows(pairs_.keys)
    return dataclasses.replace(pairs_, queries=queries, keys=keys)


def _unit_rows(x):
    """PML's `normalize`: `x / max(|x|, 1e-12)` per row; a zero row stays 0 with a finite
    gradient (the norm is `safe_sqrt`)."""
    norm = safe_sqrt(ops.sum(ops.square(x), axis=-1, keepdims=True))
    return x / ops.maximum(norm, 1e-12)


def _only_default_when(unused_if, name, default, why):
    """A joint check: `name` must keep its default while `unused_if(values)`."""

    def check(values):
        if unused_if(values) and values[name] != default:
            raise ValueError(f"`{name}` has no effect {why}. Received: {name}={values[name]!r}")

    return check


# ---------------------------------------------------------------------------------------------
# TF Addons 0.23


def _semihard_per_anchor(pairs_, distance_metric, margin):
    """Shares `[b]` of TF Addons' semi-hard triplet loss, in the compute dtype."""
    if _no_anchors(pairs_):
        return _empty_losses(pairs_)
    dist = pairs_.distances(distance_metric)
    # One semi-hard negative per (anchor, positive): the threshold is D[a, p] itself.
    negative, has_negative = mining.semi_hard_negatives(dist, pairs_.negative, dist)
    losses = ops.relu((margin + dist) - mining.take_rows(dist, negative))
    counted = ops.logical_and(pairs_.positive, ops.expand_dims(has_negative, 1))
    row_sums = ops.sum(ops.where(counted, losses, 0), axis=1)
    num_keys = ops.cast(ops.shape(dist)[1], dist.dtype)
    if pairs_.keys_are_queries:
        num_positive_pairs = ops.sum(ops.cast(pairs_.positive, dist.dtype))
    else:  # cross_replica: the ordered positive pairs of the global batch
        same = ops.cast(label_equality(pairs_.key_labels), dist.dtype)
        num_positive_pairs = ops.sum(same) - num_keys
    return ops.divide_no_nan(num_keys * row_sums, num_positive_pairs)


@export
@hyperparameters(
    margin=validation.real,
    distance_metric=check_distance_metric,
    cross_replica=validation.boolean,
)
def triplet_semihard_loss(y_true, y_pred, margin=1.0, distance_metric="L2", *, cross_replica=False):
    """Semi-hard triplet loss (TF Addons 0.23), as one share per anchor of the batch loss.

    With `D = distance_metric(y_pred, y_pred)`, for every ordered positive pair `(a, p)`
    (same label, `p != a`) the negative is the *semi-hard* one: the closest negative farther
    from the anchor than the positive, or, if there is none, the anchor's farthest negative:

    ```
    d_neg(a, p) = min {D[a, n] : y_n != y_a, D[a, n] > D[a, p]}    (else max_n D[a, n])
    l(a, p)     = max(margin + D[a, p] - d_neg(a, p), 0)
    loss        = sum_{(a, p)} l(a, p) / #P                          (TF Addons' scalar)
    v_a         = B * sum_p l(a, p) / #P                             (returned, [B])
    ```

    `#P` is the number of ordered positive pairs of the batch. TF Addons returns the scalar
    `loss`; this function returns each anchor's share `v_a`, whose mean over the batch is
    exactly that scalar (so `TripletSemiHardLoss()` with its default reduction equals TF
    Addons). A share depends on the whole batch through `#P`: `sample_weight` reweights
    shares of the batch mean, not independent per-anchor losses.

    Degenerate batches: a batch without positive pairs (every label distinct, a batch of one)
    gives 0 for every anchor and zero gradients (TF Addons: NaN, tensorflow/addons#2447); an
    anchor without a negative (a batch of one class) gives 0 (TF Addons falls back to the row
    minimum and returns `margin + mean D[a, p]`).

    Cost: the `[B, B]` distance matrix, one sort of each row's negatives and a binary search per
    pair: `O(B^2)` memory and `O(B^2 log B)` time (TF Addons builds a `[B^2, B]` tensor).

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        margin: The margin, a finite float. Defaults to 1.0.
        distance_metric: `"L2"` (Euclidean), `"squared-L2"`, `"angular"` (cosine distance of
            the L2-normalised embeddings), any name of `keras_metric_losses.distances`
            (case-insensitive), or a callable `fn(query, key) -> [Q, K]` (TF Addons'
            callables take one argument, `fn(embeddings)`: write `lambda q, k: ...` instead;
            a one-argument callable raises). Defaults to `"L2"`.
        cross_replica: Compare each replica's anchors with the embeddings of every replica
            (`tf.distribute`, `torch.distributed`); `#P` and `B` are then the global batch's,
            so the mean of the shares over all replicas is the global batch's loss. Defaults
            to `False`.

    Returns:
        `[B]` per-anchor shares in the dtype of `y_pred` (float16/bfloat16 are computed in
        float32).

    Raises:
        ValueError: for a non-finite margin, an unknown distance or a one-argument callable,
            `y_true` not `[B]`/`[B, 1]`, `y_pred` not rank 2, or different batch sizes. With
            value checks on (`kml.config`), also for non-integral float labels and NaN or inf
            in `y_pred`.
        TypeError: if the labels are not numbers.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0])
    >>> embeddings = np.array([[0.0, 1.0], [1.0, 0.0]], "float32")
    >>> # TF Addons' example has no negative: 2.4142137 there, 0 here.
    >>> print(keras.ops.convert_to_numpy(kml.triplet_semihard_loss(labels, embeddings)))
    [0. 0.]
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> losses = kml.triplet_semihard_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.5858 0.     1.5858 0.    ]

    Reference: Schroff et al., "FaceNet: A Unified Embedding for Face Recognition and
    Clustering", CVPR 2015; `tfa.losses.triplet_semihard_loss`.
    """
    pairs_ = pairs.embedding_pairs(y_true, y_pred, cross_replica=cross_replica)
    return _in_input_dtype(_semihard_per_anchor(pairs_, distance_metric, margin), y_pred)


@export
@hyperparameters(
    margin=validation.real,
    soft=validation.boolean,
    distance_metric=check_distance_metric,
    cross_replica=validation.boolean,
)
def triplet_hard_loss(
    y_true, y_pred, margin=1.0, soft=False, distance_metric="L2", *, cross_replica=False
):
    """Batch-hard triplet loss (TF Addons 0.23), one value per anchor.

    With `D = distance_metric(y_pred, y_pred)`, each anchor `a` takes its farthest positive
    and its closest negative:

    ```
    x_a = max_{p: y_p = y_a, p != a} D[a, p] - min_{n: y_n != y_a} D[a, n]
    v_a = softplus(x_a)                 # soft=True (margin unused, as in TF Addons)
    v_a = max(x_a + margin, 0)          # otherwise
    ```

    TF Addons returns the mean of `v_a` over the batch, which is what `TripletHardLoss` with
    its default reduction returns.

    Degenerate anchors: an anchor without a positive (a class of one) or without a negative
    (a batch of one class) has no triplet and gets 0 with zero gradient. TF Addons keeps them,
    with the row minimum (the self distance, 0) as the positive distance or the row maximum
    as the negative distance, e.g. `max(margin - min_n D[a, n], 0)` for an anchor without
    positive. The softplus is stable (TF Addons' `log1p(exp(x))` overflows above `x ~ 88`).

    Cost: the `[B, B]` distance matrix and two masked reductions over it.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        margin: The margin, a finite float; unused with `soft=True`. Defaults to 1.0.
        soft: Use the soft margin `softplus(x_a)`. Defaults to `False`.
        distance_metric: As in `triplet_semihard_loss`. Defaults to `"L2"`.
        cross_replica: Mine from the embeddings of every replica. Defaults to `False`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for a non-finite margin, an unknown distance or a one-argument callable,
            `y_true` not `[B]`/`[B, 1]`, `y_pred` not rank 2, or different batch sizes. With
            value checks on, also for non-integral float labels and NaN or inf in `y_pred`.
        TypeError: if the labels are not numbers, or `soft` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> losses = kml.triplet_hard_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.5858 1.     2.     0.    ]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    arXiv:1703.07737, 2017; `tfa.losses.triplet_hard_loss`.
    """
    pairs_ = pairs.embedding_pairs(y_true, y_pred, cross_replica=cross_replica)
    losses = mined_per_anchor(pairs_, distance_metric, "hard", "hard", soft, margin, pn_step=False)
    return _in_input_dtype(losses, y_pred)


@export
class TripletSemiHardLoss(LossFunctionWrapper):
    """Semi-hard triplet loss of TF Addons 0.23 (`triplet_semihard_loss`), one share per anchor.

    With the default `"sum_over_batch_size"` reduction the value is TF Addons' scalar (for
    batches with a positive pair and a negative; TF Addons gives NaN without positive pairs,
    this class 0). TF Addons' class always reduces to that scalar (`reduction=NONE` and a
    scalar function); here `reduction=None` gives the `[B]` shares whose mean it is.

    Args:
        margin: The margin. Defaults to 1.0.
        distance_metric: `"L2"`, `"squared-L2"`, `"angular"`, another distance name, or a
            callable `fn(query, key) -> [Q, K]` (see `triplet_semihard_loss`). Defaults to
            `"L2"`.
        name: Name of the loss. Defaults to `"triplet_semihard_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy; half precision is computed in float32. Defaults to
            `keras.config.floatx()`.
        cross_replica: Compare with the embeddings of every replica (the global batch).
            Defaults to `False`.

    Raises:
        ValueError: for a non-finite margin or an unknown distance. A callable distance that is
            not registered with `keras.saving.register_keras_serializable` cannot be saved.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> round(float(kml.TripletSemiHardLoss()(labels, embeddings)), 4)
    0.5429

    Reference: Schroff et al., CVPR 2015; `tfa.losses.TripletSemiHardLoss`.
    """

    def __init__(
        self,
        margin=1.0,
        distance_metric="L2",
        name="triplet_semihard_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            triplet_semihard_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            margin=margin,
            distance_metric=distance_metric,
            cross_replica=cross_replica,
        )


@export
class TripletHardLoss(LossFunctionWrapper):
    """Batch-hard triplet loss of TF Addons 0.23 (`triplet_hard_loss`), one value per anchor.

    With the default `"sum_over_batch_size"` reduction the value is TF Addons' scalar (for
    batches where every anchor has a positive and a negative); `reduction=None` gives the
    `[B]` per-anchor losses and `sample_weight` weights anchors.

    Args:
        margin: The margin, unused with `soft=True`. Defaults to 1.0.
        soft: Use the soft margin `softplus(d_pos - d_neg)`. Defaults to `False`.
        distance_metric: `"L2"`, `"squared-L2"`, `"angular"`, another distance name, or a
            callable `fn(query, key) -> [Q, K]`. Defaults to `"L2"`.
        name: Name of the loss. Defaults to `"triplet_hard_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Mine from the embeddings of every replica. Defaults to `False`.

    Raises:
        ValueError: for a non-finite margin or an unknown distance.
        TypeError: if `soft` is not a bool.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[0, 0], [0, 1], [1, 1], [3, 1]], "float32")
    >>> round(float(kml.TripletHardLoss()(labels, embeddings)), 4)
    0.8964

    Reference: Hermans et al., arXiv:1703.07737; `tfa.losses.TripletHardLoss`.
    """

    def __init__(
        self,
        margin=1.0,
        soft=False,
        distance_metric="L2",
        name="triplet_hard_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            triplet_hard_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            margin=margin,
            soft=soft,
            distance_metric=distance_metric,
            cross_replica=cross_replica,
        )


# ---------------------------------------------------------------------------------------------
# TensorFlow Similarity 0.17.1


def _optional(check):
    return lambda value, name: None if value is None else check(value, name)


def _resolve_soft_margin(values):
    """TensorFlow Similarity's `margin=None` (soft margin) and PNLoss' `soft_margin` flag, made
    one canonical pair: `soft_margin` a bool, `margin` a float (1.0 when soft).

    `soft_margin=None` (the default) means: soft exactly when `margin` is None.
    """
    soft = values["soft_margin"]
    if soft is None:
        soft = values["margin"] is None
    if values["margin"] is None:
        values["margin"] = 1.0
    values["soft_margin"] = soft
    _margin_unused_when_soft(values)


@export
@hyperparameters(
    _resolve_soft_margin,
    distance=distances.check,
    margin=_optional(validation.real),
    soft_margin=_optional(validation.boolean),
    cross_replica=validation.boolean,
    **STRATEGY_CHECKS,
)
def triplet_loss(
    y_true,
    y_pred,
    *,
    distance="cosine",
    positive_mining_strategy="hard",
    negative_mining_strategy="semi-hard",
    margin=None,
    soft_margin=None,
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Triplet loss with one mined triplet per anchor, as TensorFlow Similarity 0.17.1's
    `TripletLoss`.

    With `D = distance(y_pred, y_pred)`, each anchor `i` mines a positive and a negative from
    row `i` exactly as `pn_loss` does (ties to the first column):

    - positive: `"hard"` = farthest, `"easy"` = closest;
    - negative: `"hard"` = closest, `"easy"` = farthest, `"semi-hard"` = closest negative
      farther than the anchor's *farthest* positive, else the farthest negative.

    ```
    x_i    = D[i, p] - D[i, n]
    loss_i = softplus(x_i)               # soft margin (TF Similarity's margin=None, the default)
    loss_i = max(x_i + margin, 0)        # margin given
    ```

    It is `pn_loss` without the PN step (`d_neg = D[i, n]`, not `min(D[i, n], D[p, n])`).

    Margin arguments: `margin=None` (default) is TensorFlow Similarity 0.17's soft margin and
    `margin=0.5` its hinge, so its calls work unchanged. `soft_margin` is `PNLoss`' flag:
    `soft_margin=True` asks for the soft margin (any margin other than the default 1.0 then
    raises, as in `PNLoss`), `soft_margin=False` for the hinge (margin 1.0 unless given). The
    checked values are stored as a bool `soft_margin` and a float `margin`.

    Anchors without a positive or a negative get 0 with zero gradient (TF Similarity mines
    them from fill values and gives them an arbitrary loss); they still count in the batch
    size that `"sum_over_batch_size"` divides by. The softplus is stable (TF Similarity's
    `log(exp(-x) + 1) + x` overflows for `x < -88` in float32).

    Cost: one `[B, B]` distance matrix and masked reductions over it (`O(B^2)` memory).

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings (L2-normalised for `"cosine"`, which does not normalise).
        distance: A distance name of `keras_metric_losses.distances` (TF Similarity's names:
            `"cosine"`, `"euclidean"`/`"l2"`, `"squared_euclidean"`/`"sql2"`,
            `"manhattan"`/`"l1"`, `"inner_product"`/`"ip"`, `"snr"`), or a callable
            `fn(query, key) -> [Q, K]`. Defaults to `"cosine"`.
        positive_mining_strategy: `"hard"` or `"easy"`. Defaults to `"hard"`.
        negative_mining_strategy: `"hard"`, `"semi-hard"` or `"easy"`. Defaults to
            `"semi-hard"`.
        margin: `None` for the soft margin, or the hinge margin (a finite float). Defaults to
            `None`.
        soft_margin: `None` (soft exactly when `margin` is None), `True` or `False`. Defaults
            to `None`.
        cross_replica: Mine against the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys to mine from instead of the batch.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for an unknown strategy or distance, a margin other than 1.0 with
            `soft_margin=True`, a non-finite margin, or bad shapes (as `pn_loss`).
        TypeError: if the labels are not numbers, or `soft_margin` is not a bool or None.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    >>> embeddings = np.eye(4, dtype="float32")[labels]
    >>> print(keras.ops.convert_to_numpy(kml.triplet_loss(labels, embeddings)).round(5))
    [0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    arXiv:1703.07737, 2017 (soft margin); TensorFlow Similarity's `TripletLoss`.
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
        pn_step=False,
    )
    return _in_input_dtype(losses, y_pred)


@export
class TripletLoss(TensorFlowSimilarityConfig, LossFunctionWrapper):
    """TensorFlow Similarity 0.17.1's `TripletLoss` (`triplet_loss`), one value per anchor.

    `TripletLoss()` is TF Similarity's default (cosine distance, hard positives, semi-hard
    negatives, soft margin) and `TripletLoss(margin=0.5)` its hinge. With the default
    `"sum_over_batch_size"` reduction the value is TF Similarity's (for batches where every
    anchor has a positive and a negative); `reduction=None` gives the `[B]` values.
    Configs saved by TF Similarity 0.17 (`margin: None`, `reduction: "auto"`, the distance as
    a name or a `{"config": {"name": ...}}` dict) load with `from_config`.

    Args:
        distance: Distance name or callable, see `triplet_loss`. Defaults to `"cosine"`.
        positive_mining_strategy: `"hard"` or `"easy"`. Defaults to `"hard"`.
        negative_mining_strategy: `"hard"`, `"semi-hard"` or `"easy"`. Defaults to
            `"semi-hard"`.
        margin: `None` (soft margin) or the hinge margin. Defaults to `None`.
        name: Name of the loss. Defaults to `"TripletLoss"` (TF Similarity 0.17's name).
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        soft_margin: `PNLoss`' flag, see `triplet_loss`. Defaults to `None`.
        cross_replica: Mine against the embeddings of every replica. Defaults to `False`.

    Raises:
        ValueError: for an unknown strategy or distance, or a margin other than 1.0 with
            `soft_margin=True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    >>> embeddings = np.eye(4, dtype="float32")[labels]
    >>> round(float(kml.TripletLoss()(labels, embeddings)), 5)
    0.31326
    >>> round(float(kml.TripletLoss(margin=1.1)(labels, embeddings)), 5)
    0.1

    Reference: Hermans et al., arXiv:1703.07737; TensorFlow Similarity's `TripletLoss`.
    """

    def __init__(
        self,
        distance="cosine",
        positive_mining_strategy="hard",
        negative_mining_strategy="semi-hard",
        margin=None,
        name="TripletLoss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        soft_margin=None,
        cross_replica=False,
    ):
        super().__init__(
            triplet_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            distance=distance,
            positive_mining_strategy=positive_mining_strategy,
            negative_mining_strategy=negative_mining_strategy,
            margin=margin,
            soft_margin=soft_margin,
            cross_replica=cross_replica,
        )


# ---------------------------------------------------------------------------------------------
# pytorch-metric-learning 2.9


def check_triplets_per_anchor(value, name):
    """Only PML's default `"all"`: random subsampling of triplets is not offered."""
    if value != "all":
        raise ValueError(
            f"`{name}` must be 'all' (every triplet is used; select triplets with "
            f"`type_of_triplets` instead of sampling them). Received: {name}={value!r}"
        )
    return value


PML_CHECKS = {
    "distance": distances.check,
    "normalize_embeddings": validation.boolean,
    "triplets_per_anchor": check_triplets_per_anchor,
    "reducer": lambda value, name: validation.one_of(value, name, REDUCERS),
    "cross_replica": validation.boolean,
}


def triplet_margin_elements(
    pairs_, distance, margin, swap, smooth_loss, type_of_triplets, miner_margin
):
    """`(losses, mask)`, two `[b, K, K]` tensors `[anchor, positive, negative]`: PML's triplet
    loss of every triplet (0 where `mask` is off) and the triplets used (all valid ones, or
    those `mining.triplet_margin_mask` selects). The only `O(b K^2)` code of the losses."""
    larger_is_closer = distances.larger_is_closer(distance)
    dist = pairs_.distances(distance)
    if type_of_triplets is None:
        mask = mining.triplet_mask(pairs_.positive, pairs_.negative)
    else:
        mask = mining.triplet_margin_mask(
            dist,
            pairs_.positive,
            pairs_.negative,
            miner_margin,
            type_of_triplets,
            larger_is_closer,
        )
    anchor_positive, anchor_negative = ops.expand_dims(dist, 2), ops.expand_dims(dist, 1)
    if swap:  # the negative's distance to the positive, when that is closer
        if pairs_.keys_are_queries:
            key_distances = dist
        else:
            key_distances = distances.get(distance)(pairs_.keys, pairs_.keys)
        closer = ops.maximum if larger_is_closer else ops.minimum
        anchor_negative = closer(anchor_negative, ops.expand_dims(key_distances, 0))
    if larger_is_closer:
        violation = (anchor_negative - anchor_positive) + margin
    else:
        violation = (anchor_positive - anchor_negative) + margin
    losses = ops.softplus(violation) if smooth_loss else ops.relu(violation)
    return ops.where(mask, losses, 0), mask


def _type_of_triplets(value, name):
    return None if value is None else validation.one_of(value, name, mining.TYPES_OF_TRIPLETS)


@export
@hyperparameters(
    _only_default_when(
        lambda v: v["type_of_triplets"] is None,
        "miner_margin",
        0.2,
        "without a miner (`type_of_triplets=None`)",
    ),
    margin=validation.real,
    swap=validation.boolean,
    smooth_loss=validation.boolean,
    type_of_triplets=_type_of_triplets,
    miner_margin=validation.real,
    **PML_CHECKS,
)
def triplet_margin_loss(
    y_true,
    y_pred,
    *,
    margin=0.05,
    swap=False,
    smooth_loss=False,
    triplets_per_anchor="all",
    distance="euclidean",
    normalize_embeddings=True,
    type_of_triplets=None,
    miner_margin=0.2,
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
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
      loss exactly (0 when no triplet has a positive loss, as in PML).

    Cost: every triplet is a dense `[B, K, K]` entry (`B^3` for a batch): 64 MiB per float32
    tensor at `B = 256`, 4 GiB at `B = 1024`. For large batches prefer `triplet_semihard_loss`
    or `triplet_hard_loss` (`O(B^2)`).

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        margin: The loss margin. Defaults to 0.05 (PML's default).
        swap: Use the positive-negative distance when it is smaller (Balntas et al.).
            Defaults to `False`.
        smooth_loss: `softplus` instead of the hinge. Defaults to `False`.
        triplets_per_anchor: Only `"all"` (PML's default; its random subsampling is not
            offered). Defaults to `"all"`.
        distance: A distance of `keras_metric_losses.distances`: `"euclidean"` (PML's
            `LpDistance`), `"squared_euclidean"` (`LpDistance(power=2)`), `"manhattan"`
            (`LpDistance(p=1)`), `"cosine_similarity"` (`CosineSimilarity`),
            `"inner_product"` (`DotProductSimilarity`), `"snr"` (`SNRDistance`), or a
            callable `fn(query, key) -> [Q, K]` (with `larger_is_closer = True` for a
            similarity). Defaults to `"euclidean"`.
        normalize_embeddings: L2-normalise the embeddings first, as PML's distances do by
            default (its `normalize_embeddings=True`). Defaults to `True`.
        type_of_triplets: `None` (all triplets) or a `TripletMarginMiner` type: `"all"`,
            `"hard"`, `"semihard"`, `"easy"`. The miner uses `distance` too. Defaults to
            `None`.
        miner_margin: The miner's margin (only with `type_of_triplets`). Defaults to 0.2
            (PML's `TripletMarginMiner` default).
        reducer: `"anchor"` or `"pml"`, see above. Defaults to `"anchor"`.
        cross_replica: Compare with the embeddings of every replica. With `reducer="pml"` the
            count `N` is each replica's. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys (PML's `ref_emb`).
        ref_labels: Optional `[K]` labels of `ref_embeddings` (PML's `ref_labels`).

    Returns:
        `[B]` per-anchor values in the dtype of `y_pred`.

    Raises:
        ValueError: for an unknown distance, reducer or type of triplets, non-finite margins,
            a `miner_margin` without `type_of_triplets`, `triplets_per_anchor` other than
            `"all"`, or bad shapes. With value checks on, also for non-integral float labels
            and NaN or inf in `y_pred`.
        TypeError: if the labels are not numbers or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], "float32")
    >>> losses = kml.triplet_margin_loss(labels, embeddings, margin=0.1)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.181  0.5368 0.5368 0.181 ]

    Reference: Weinberger and Saul, "Distance Metric Learning for Large Margin Nearest
    Neighbor Classification", JMLR 2009; Balntas et al., "Learning local feature descriptors
    with triplets and shallow convolutional neural networks", BMVC 2016 (swap);
    pytorch-metric-learning's `TripletMarginLoss` and `TripletMarginMiner`.
    """
    pairs_ = pml_pairs(
        y_true, y_pred, normalize_embeddings, cross_replica, ref_embeddings, ref_labels
    )
    if _no_anchors(pairs_):
        return _in_input_dtype(_empty_losses(pairs_), y_pred)
    losses, mask = triplet_margin_elements(
        pairs_, distance, margin, swap, smooth_loss, type_of_triplets, miner_margin
    )
    reduce = reduction.nonzero_mean if reducer == "pml" else reduction.anchor_mean
    return _in_input_dtype(reduce(losses, mask), y_pred)


@export
class TripletMarginLoss(LossFunctionWrapper):
    """pytorch-metric-learning 2.9's `TripletMarginLoss` (`triplet_margin_loss`), one value
    per anchor.

    `TripletMarginLoss(reducer="pml")` with the default reduction equals PML's loss;
    `type_of_triplets` adds PML's `TripletMarginMiner` as a mask. Every triplet is a dense
    `[B, B, B]` entry: see the cost in `triplet_margin_loss`.

    Args:
        margin: The loss margin. Defaults to 0.05.
        swap: Use the positive-negative distance when smaller. Defaults to `False`.
        smooth_loss: `softplus` instead of the hinge. Defaults to `False`.
        triplets_per_anchor: Only `"all"`. Defaults to `"all"`.
        distance: Distance name or callable, see `triplet_margin_loss`. Defaults to
            `"euclidean"`.
        normalize_embeddings: L2-normalise the embeddings first. Defaults to `True`.
        type_of_triplets: `None`, or the miner's `"all"`, `"hard"`, `"semihard"`, `"easy"`.
            Defaults to `None`.
        miner_margin: The miner's margin. Defaults to 0.2.
        reducer: `"anchor"` (each anchor's mean) or `"pml"` (shares of PML's
            `AvgNonZeroReducer`). Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"triplet_margin_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Compare with the embeddings of every replica. Defaults to `False`.

    Raises:
        ValueError: for an unknown distance, reducer or type of triplets, or a margin that is
            not a finite number.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], "float32")
    >>> round(float(kml.TripletMarginLoss(margin=0.1, reducer="pml")(labels, embeddings)), 4)
    0.4785

    Reference: Weinberger and Saul, JMLR 2009; pytorch-metric-learning's `TripletMarginLoss`.
    """

    def __init__(
        self,
        margin=0.05,
        swap=False,
        smooth_loss=False,
        triplets_per_anchor="all",
        distance="euclidean",
        normalize_embeddings=True,
        type_of_triplets=None,
        miner_margin=0.2,
        reducer="anchor",
        name="triplet_margin_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            triplet_margin_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            margin=margin,
            swap=swap,
            smooth_loss=smooth_loss,
            triplets_per_anchor=triplets_per_anchor,
            distance=distance,
            normalize_embeddings=normalize_embeddings,
            type_of_triplets=type_of_triplets,
            miner_margin=miner_margin,
            reducer=reducer,
            cross_replica=cross_replica,
        )
