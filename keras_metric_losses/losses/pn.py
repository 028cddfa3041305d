"""PN loss (TensorFlow Similarity's `PNLoss`): a triplet loss whose negative distance also
counts the distance from the mined positive to the mined negative."""

import math
import numbers

from keras import ops

from keras_metric_losses import distances, distributed, mining, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LabelLoss
from keras_metric_losses.ops import compute_dtype


class _DefaultMargin(float):
    """The default `margin`: the float 1.0, but distinguishable from an explicit `margin=1.0`."""

    def __repr__(self):
        return "1.0"


DEFAULT_MARGIN = _DefaultMargin(1.0)


def _soft_margin(soft_margin, margin):
    """Validates the margin arguments; returns `(soft, margin)` with `margin` a float or None."""
    if not isinstance(soft_margin, bool):
        raise ValueError(f"`soft_margin` must be a bool. Received: soft_margin={soft_margin!r}")
    if margin is None:
        return True, None
    explicit = margin is not DEFAULT_MARGIN
    if soft_margin and explicit:
        raise ValueError(
            "`margin` has no effect with `soft_margin=True` (the soft margin is "
            "`softplus(positive - negative)`): pass one or the other. Received: "
            f"soft_margin=True, margin={margin!r}"
        )
    if soft_margin:
        return True, None
    if (
        isinstance(margin, bool)
        or not isinstance(margin, numbers.Real)
        or not math.isfinite(margin)
    ):
        raise ValueError(f"`margin` must be a finite number or None. Received: margin={margin!r}")
    return False, float(margin)


def _pn_per_anchor(
    y_true, y_pred, distance_fn, positive_strategy, negative_strategy, margin, cross_replica=False
):
    """Per-anchor PN losses `[b]` in `compute_dtype(y_pred)`; `margin=None` is the soft margin.

    With `cross_replica`, the local anchors are compared with the keys of every replica
    (`distributed.gather_keys`); otherwise the batch is compared with itself.
    """
    labels = validation.class_labels(validation.numeric_tensor(y_true, "y_true"))
    embeddings = ops.convert_to_tensor(y_pred)
    validation.rank(embeddings, 2, "a [batch, dim] matrix of embeddings", "y_pred")
    validation.same_batch(labels, embeddings)
    validation.integral_labels(labels, "y_true")
    validation.finite(embeddings, "y_pred")
    embeddings = ops.cast(embeddings, compute_dtype(embeddings))
    if embeddings.shape[0] == 0:  # no anchors; TensorFlow cannot take the max of an empty row
        return ops.sum(embeddings, axis=1)  # `[0]`, with a (empty) gradient

    if cross_replica:
        keys, key_labels, self_columns = distributed.gather_keys(embeddings, labels)
    else:
        keys, key_labels, self_columns = embeddings, None, None
    dist = distance_fn(embeddings, keys)
    positive_mask, negative_mask = mining.label_masks(labels, key_labels, self_columns)
    positive, has_positive = mining.mine_positives(dist, positive_mask, positive_strategy)
    threshold = None
    if negative_strategy == "semi-hard":  # beyond the *farthest* positive, whatever the strategy
        if positive_strategy == "hard":  # a [b] gather rather than a second [b, B] max
            threshold = mining.take_rows(dist, positive)
        else:
            threshold = mining.masked_max(dist, positive_mask)
    negative, has_negative = mining.mine_negatives(
        dist, negative_mask, negative_strategy, threshold=threshold
    )

    positive_distance = mining.take_rows(dist, positive)
    # PN step: the negative is as close as the nearer of the anchor and the mined positive.
    if cross_replica:  # the mined keys' distance, from their embeddings: [b, b] at most
        pair = distance_fn(ops.take(keys, positive, axis=0), ops.take(keys, negative, axis=0))
        positive_to_negative = ops.diagonal(pair)
    else:  # the keys are the anchors: read D[positive, negative] from the matrix
        num_keys = ops.shape(dist)[1]
        positive_to_negative = ops.take(ops.reshape(dist, (-1,)), positive * num_keys + negative)
    negative_distance = ops.minimum(mining.take_rows(dist, negative), positive_to_negative)

    difference = positive_distance - negative_distance
    soft = margin is None
    losses = ops.softplus(difference) if soft else ops.relu(difference + margin)
    return ops.where(ops.logical_and(has_positive, has_negative), losses, 0)


@export
def pn_loss(
    y_true,
    y_pred,
    *,
    distance="cosine",
    positive_mining_strategy="hard",
    negative_mining_strategy="semi-hard",
    soft_margin=False,
    margin=DEFAULT_MARGIN,
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
    loss_i = softplus(d_pos - d_neg)            # soft_margin=True (or margin=None)
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

    Cost: one `[B, B]` distance matrix, a few masked `argmin`/`argmax` reductions over it and
    `[B]` gathers: memory `O(B^2)` (`O(B^2 D)` for `"manhattan"`).

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
        margin: Hinge margin. `None` also selects the soft margin (TensorFlow Similarity 0.17's
            convention). Passing a margin explicitly together with `soft_margin=True` is an
            error, even `margin=1.0`: the default is a sentinel that equals 1.0.
            Defaults to 1.0.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Degenerate batches: an empty batch gives `[]`; a batch of one, a batch of one class and a
    batch where every label differs give 0 for every anchor.

    Raises:
        ValueError: for an unknown strategy or distance, an explicit `margin` with
            `soft_margin=True`, a non-finite margin, `y_true` not `[B]`/`[B, 1]`, `y_pred` not
            rank 2, or different batch sizes. For concrete (eager) inputs also if float labels
            are not integral or `y_pred` holds NaN or inf; inside a compiled function values are
            not checked.
        TypeError: if the labels are not numbers (strings).

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    >>> embeddings = np.eye(4, dtype="float32")[labels]
    >>> losses = kml.pn_loss(labels, embeddings, soft_margin=True)  # [B] of 0.31326

    Reference: Szubert et al., "Structure-preserving visualisation of high dimensional
    single-cell datasets" (ivis), Scientific Reports 2019; TensorFlow Similarity's `PNLoss`.
    """
    distance_fn = distances.get(distance)
    mining.check_strategy(
        "positive_mining_strategy", positive_mining_strategy, mining.POSITIVE_STRATEGIES
    )
    mining.check_strategy(
        "negative_mining_strategy", negative_mining_strategy, mining.NEGATIVE_STRATEGIES
    )
    soft, margin = _soft_margin(soft_margin, margin)
    y_pred = ops.convert_to_tensor(y_pred)
    losses = _pn_per_anchor(
        y_true,
        y_pred,
        distance_fn,
        positive_mining_strategy,
        negative_mining_strategy,
        None if soft else margin,
    )
    return ops.cast(losses, y_pred.dtype)


_TFSIM_REDUCTIONS = {"auto": "sum_over_batch_size"}


@export
class PNLoss(LabelLoss):
    """PN loss over a batch of `[B, D]` embeddings with integer labels, one value per anchor.

    Computes `pn_loss` per anchor and lets Keras reduce: `reduction=None` gives the `[B]`
    values of TensorFlow Similarity 0.17.1's `PNLoss` (for batches where every anchor has a
    positive and a negative), the default `"sum_over_batch_size"` their mean, and
    `sample_weight` weights anchors. Anchors without a positive or negative contribute 0 but
    still count in the batch size that `"sum_over_batch_size"` divides by (use
    `sample_weight` or `"mean_with_sample_weight"` to exclude them). Integer labels are
    compared exactly.

    Configs saved by TensorFlow Similarity 0.17 (`margin: None`, no `soft_margin`,
    `reduction: "auto"`, the distance as a name or a `{"config": {"name": ...}}` dict) load
    with `from_config`.

    Args:
        distance: Distance name or registered callable, see `pn_loss`. Defaults to `"cosine"`.
        positive_mining_strategy: `"hard"` or `"easy"`. Defaults to `"hard"`.
        negative_mining_strategy: `"hard"`, `"semi-hard"` or `"easy"`. Defaults to
            `"semi-hard"`.
        soft_margin: Use `softplus(d_pos - d_neg)`. Defaults to `False`.
        margin: Hinge margin; `None` means soft margin. An explicit margin with
            `soft_margin=True` raises. Defaults to 1.0.
        name: Name of the loss. Defaults to `"PNLoss"` (TensorFlow Similarity 0.17's name).
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy; half precision is computed in float32. Defaults to
            `keras.config.floatx()`.
        cross_replica: Under `tf.distribute` or `torch.distributed`, compare each replica's
            anchors with the embeddings of every replica (the global batch); a no-op on one
            device and under JAX, whose sharded `fit` already sees the global batch. See the
            distributed training guide. Defaults to `False`.

    Raises:
        ValueError: for an unknown strategy or distance name, or an explicit margin with
            `soft_margin=True`. A callable distance that is not registered with
            `keras.saving.register_keras_serializable` is accepted, but `get_config` (and so
            `model.save`) raises `ValueError` for it.

    Example:

    ```python
    model = keras.Sequential([keras.layers.Dense(64), keras.layers.UnitNormalization()])
    model.compile(optimizer="adam", loss=kml.PNLoss(soft_margin=True))
    model.fit(x, labels, batch_size=64)  # labels: [B] integer classes
    ```

    Reference: Szubert et al., Scientific Reports 2019 (ivis); Hermans et al., "In Defense of
    the Triplet Loss for Person Re-Identification", arXiv:1703.07737 (soft margin).
    """

    def __init__(
        self,
        distance="cosine",
        positive_mining_strategy="hard",
        negative_mining_strategy="semi-hard",
        soft_margin=False,
        margin=DEFAULT_MARGIN,
        name="PNLoss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        reduction = _TFSIM_REDUCTIONS.get(reduction, reduction)
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        if isinstance(distance, dict):  # a TensorFlow Similarity Distance object's config
            distance = distance.get("config", {}).get("name", distance)
        self._distance_fn = distances.get(distance)
        mining.check_strategy(
            "positive_mining_strategy", positive_mining_strategy, mining.POSITIVE_STRATEGIES
        )
        mining.check_strategy(
            "negative_mining_strategy", negative_mining_strategy, mining.NEGATIVE_STRATEGIES
        )
        self.soft_margin, self.margin = _soft_margin(soft_margin, margin)
        self.distance = distance
        self.positive_mining_strategy = positive_mining_strategy
        self.negative_mining_strategy = negative_mining_strategy
        validation.boolean(cross_replica, "cross_replica")
        self.cross_replica = cross_replica

    def call(self, y_true, y_pred):
        return _pn_per_anchor(
            y_true,
            y_pred,
            self._distance_fn,
            self.positive_mining_strategy,
            self.negative_mining_strategy,
            None if self.soft_margin else self.margin,
            self.cross_replica,
        )

    def get_config(self):
        return {
            **super().get_config(),
            "distance": distances.serialize(self._distance_fn),
            "positive_mining_strategy": self.positive_mining_strategy,
            "negative_mining_strategy": self.negative_mining_strategy,
            "soft_margin": self.soft_margin,
            "margin": self.margin,
            "cross_replica": self.cross_replica,
        }
