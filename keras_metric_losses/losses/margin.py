"""Margin loss (Wu et al. 2017) as pytorch-metric-learning 2.9's `MarginLoss`: positives
closer than `beta - margin`, negatives farther than `beta + margin`, over all triplets."""

import numpy as np
from keras import ops

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.losses.triplet import PML_CHECKS, pml_pairs


def check_beta(value, name):
    """One boundary (a finite float), or one per class (a non-empty list of finite floats,
    indexed by the anchor's label), returned as a float or a list of floats."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if not isinstance(value, (list, tuple)):
        return validation.real(value, name)
    error = ValueError(
        f"`{name}` must be a finite number, or a non-empty list of finite numbers (one per "
        f"class). Received: {name}={value!r}"
    )
    if not value:
        raise error
    try:
        return [validation.real(v, name) for v in value]
    except ValueError:
        raise error from None


def check_learn_beta(value, name):
    """`learn_beta=True` needs a trainable variable, which losses here do not hold."""
    if validation.boolean(value, name):
        raise ValueError(
            f"`{name}=True` is not supported: the losses of keras-metric-losses hold no "
            "weights, and a learned `beta` is a trainable variable. Pass a fixed `beta` (one "
            f"value, or one per class). Received: {name}={value!r}"
        )
    return False


def check_nu(value, name):
    """`nu` only weighs PML's regulariser of a learned `beta`: only its default 0 is accepted."""
    nu = validation.real(value, name)
    if nu != 0:
        raise ValueError(
            f"`{name}` weighs the regulariser of a learned `beta` (`learn_beta=True`, not "
            f"supported): it has no effect and must be 0. Received: {name}={value!r}"
        )
    return nu


def margin_parts(pairs_, distance, margin, beta):
    """`(positive_part, negative_part)`, two `[b, K]` tensors (0 off the positive / negative
    masks): PML's `relu(D[a, p] - beta + margin)` and `relu(beta - D[a, n] + margin)` (signs
    swapped for a similarity). Triplet `(a, p, n)` has the loss `positive_part[a, p] +
    negative_part[a, n]`."""
    dist = pairs_.distances(distance)
    if isinstance(beta, list):  # one boundary per class, by the anchor's label
        table = ops.convert_to_tensor(np.asarray(beta), dtype=dist.dtype)
        labels = ops.cast(pairs_.labels, "int32")
        validation.class_ids_in_range(labels, len(beta), "y_true")
        beta = ops.expand_dims(ops.take(table, ops.clip(labels, 0, len(beta) - 1)), 1)
    if distances.larger_is_closer(distance):
        positive_part, negative_part = (beta - dist) + margin, (dist - beta) + margin
    else:
        positive_part, negative_part = (dist - beta) + margin, (beta - dist) + margin
    positive_part = ops.where(pairs_.positive, ops.relu(positive_part), 0)
    negative_part = ops.where(pairs_.negative, ops.relu(negative_part), 0)
    return positive_part, negative_part


@export
@hyperparameters(
    margin=validation.real,
    nu=check_nu,
    beta=check_beta,
    learn_beta=check_learn_beta,
    **PML_CHECKS,
)
def margin_loss(
    y_true,
    y_pred,
    *,
    margin=0.2,
    nu=0.0,
    beta=1.2,
    triplets_per_anchor="all",
    learn_beta=False,
    distance="euclidean",
    normalize_embeddings=True,
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Margin loss over all triplets of the batch, as pytorch-metric-learning 2.9's
    `MarginLoss`, one value per anchor.

    With `D = distance(y_pred, y_pred)` (on L2-normalised embeddings by default), every valid
    triplet `(a, p, n)` (`y_p = y_a`, `p != a`, `y_n != y_a`) has the loss

    ```
    l(apn) = max(D[a, p] - beta + margin, 0) + max(beta - D[a, n] + margin, 0)
    ```

    (for a similarity: `max(beta - S[a, p] + margin, 0) + max(S[a, n] - beta + margin, 0)`).
    The value of anchor `a` depends on `reducer`:

    - `"anchor"` (default): the mean of its triplets' losses (0 without triplets);
    - `"pml"`: its share `B * sum_{p, n} l(apn) / N` of PML's `DivisorReducer` scalar, with
      `N` the number of triplets whose positive part is `> 0` plus the number whose negative
      part is `> 0`: the batch mean is PML's loss exactly (0 when `N = 0`, as in PML).

    A triplet's loss is the sum of a pair term of `(a, p)` and one of `(a, n)`, so the sums
    and counts over triplets come from the `[B, K]` pair terms (weighted by the number of
    negatives / positives of the anchor): `O(B^2)` memory, although the loss is over all
    `O(B^3)` triplets.

    `beta` is fixed: PML's `learn_beta=True` (a trainable `beta`, with its regulariser weight
    `nu`) needs a variable, which a loss of this package does not hold, and is refused. A
    list `beta` gives one boundary per class (PML's `num_classes` betas, fixed), indexed by
    the anchor's label: labels must then be `0 .. len(beta) - 1` (checked when value checks
    are on; otherwise clipped into range).

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        margin: The margin around `beta`. Defaults to 0.2.
        nu: Weight of the `beta` regulariser; only 0 (no learned `beta`). Defaults to 0.
        beta: The boundary between positive and negative distances, a float or one float per
            class. Defaults to 1.2.
        triplets_per_anchor: Only `"all"`. Defaults to `"all"`.
        learn_beta: Only `False`. Defaults to `False`.
        distance: A distance name or callable, as in `triplet_margin_loss`. Defaults to
            `"euclidean"`.
        normalize_embeddings: L2-normalise the embeddings first (PML's default). Defaults to
            `True`.
        reducer: `"anchor"` or `"pml"`, see above. Defaults to `"anchor"`.
        cross_replica: Compare with the embeddings of every replica. With `reducer="pml"` the
            count `N` is each replica's. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys (PML's `ref_emb`).
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor values in the dtype of `y_pred`.

    Raises:
        ValueError: for `learn_beta=True`, `nu` other than 0, a non-finite `margin` or
            `beta`, an empty `beta` list, an unknown distance or reducer, or bad shapes. With
            value checks on, also for labels outside `[0, len(beta))` with a list `beta`.
        TypeError: if the labels are not numbers or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], "float32")
    >>> losses = kml.margin_loss(labels, embeddings, beta=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6282 0.8368 0.8368 0.6282]

    Reference: Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017;
    pytorch-metric-learning's `MarginLoss`.
    """
    pairs_ = pml_pairs(
        y_true, y_pred, normalize_embeddings, cross_replica, ref_embeddings, ref_labels
    )
    positive_part, negative_part = margin_parts(pairs_, distance, margin, beta)
    dtype = positive_part.dtype
    num_positives = ops.sum(ops.cast(pairs_.positive, dtype), axis=1)
    num_negatives = ops.sum(ops.cast(pairs_.negative, dtype), axis=1)
    # Over the triplets of anchor a: each positive pair meets every negative and vice versa.
    triplet_sums = num_negatives * ops.sum(positive_part, axis=1)
    triplet_sums += num_positives * ops.sum(negative_part, axis=1)
    if reducer == "anchor":
        losses = ops.divide_no_nan(triplet_sums, num_positives * num_negatives)
    else:
        positive_count = ops.sum(ops.cast(positive_part > 0, dtype), axis=1)
        negative_count = ops.sum(ops.cast(negative_part > 0, dtype), axis=1)
        divisor = ops.sum(num_negatives * positive_count + num_positives * negative_count)
        sums = ops.expand_dims(triplet_sums, 1)
        losses = reduction.divided(sums, ops.ones_like(sums, dtype="bool"), divisor)
    return ops.cast(losses, ops.convert_to_tensor(y_pred).dtype)


@export
class MarginLoss(LossFunctionWrapper):
    """pytorch-metric-learning 2.9's `MarginLoss` (`margin_loss`) with a fixed `beta`, one
    value per anchor.

    `MarginLoss(reducer="pml")` with the default reduction equals PML's loss (with
    `learn_beta=False`, its default).

    Args:
        margin: The margin around `beta`. Defaults to 0.2.
        nu: Only 0. Defaults to 0.
        beta: The boundary, a float or one float per class. Defaults to 1.2.
        triplets_per_anchor: Only `"all"`. Defaults to `"all"`.
        learn_beta: Only `False`. Defaults to `False`.
        distance: Distance name or callable, see `triplet_margin_loss`. Defaults to
            `"euclidean"`.
        normalize_embeddings: L2-normalise the embeddings first. Defaults to `True`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"margin_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Compare with the embeddings of every replica. Defaults to `False`.

    Raises:
        ValueError: for `learn_beta=True`, `nu` other than 0, a bad `margin` or `beta`, or an
            unknown distance or reducer.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], "float32")
    >>> round(float(kml.MarginLoss(beta=0.5, reducer="pml")(labels, embeddings)), 4)
    0.4186

    Reference: Wu et al., ICCV 2017; pytorch-metric-learning's `MarginLoss`.
    """

    def __init__(
        self,
        margin=0.2,
        nu=0.0,
        beta=1.2,
        triplets_per_anchor="all",
        learn_beta=False,
        distance="euclidean",
        normalize_embeddings=True,
        reducer="anchor",
        name="margin_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            margin_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            margin=margin,
            nu=nu,
            beta=beta,
            triplets_per_anchor=triplets_per_anchor,
            learn_beta=learn_beta,
            distance=distance,
            normalize_embeddings=normalize_embeddings,
            reducer=reducer,
            cross_replica=cross_replica,
        )
