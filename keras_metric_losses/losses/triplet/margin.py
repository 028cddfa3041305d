"""Margin loss (Wu et al. 2017) as pytorch-metric-learning 2.9's `MarginLoss`: positives
closer than `beta - margin`, negatives farther than `beta + margin`, over all triplets."""

import numpy as np

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.triplet import common


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


def margin_parts(pairs, distance, margin, beta):
    """`(positive_part, negative_part)`, two `[b, K]` tensors (0 off the positive / negative
    masks): PML's `relu(D[a, p] - beta + margin)` and `relu(beta - D[a, n] + margin)` (signs
    swapped for a similarity). Triplet `(a, p, n)` has the loss `positive_part[a, p] +
    negative_part[a, n]`."""
    dist = pairs.distances(distance)
    if isinstance(beta, list):  # one boundary per class, by the anchor's label
        table = ops.convert_to_tensor(np.asarray(beta), dtype=dist.dtype)
        labels = ops.cast(pairs.labels, "int32")
        validation.class_ids_in_range(labels, len(beta), "y_true")
        beta = ops.expand_dims(ops.take(table, ops.clip(labels, 0, len(beta) - 1)), 1)
    if distances.larger_is_closer(distance):
        positive_part, negative_part = (beta - dist) + margin, (dist - beta) + margin
    else:
        positive_part, negative_part = (dist - beta) + margin, (beta - dist) + margin
    positive_part = ops.where(pairs.positive, ops.relu(positive_part), 0)
    negative_part = ops.where(pairs.negative, ops.relu(negative_part), 0)
    return positive_part, negative_part


def margin_per_anchor(
    pairs, *, margin, nu, beta, triplets_per_anchor, learn_beta, distance, reducer
):  # fmt: skip
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
      part is `> 0`: the batch mean is PML's loss exactly (0 when `N = 0`, as in PML). With
      `cross_replica=True` the count `N` is each replica's.

    A triplet's loss is the sum of a pair term of `(a, p)` and one of `(a, n)`, so the sums
    and counts over triplets come from the `[B, K]` pair terms (weighted by the number of
    negatives / positives of the anchor): `O(B^2)` memory, although the loss is over all
    `O(B^3)` triplets.

    `beta` is fixed: PML's `learn_beta=True` (a trainable `beta`, with its regulariser weight
    `nu`) needs a variable, which a loss of this package does not hold, and is refused; `nu` is
    accepted and, as in PML with a fixed `beta`, has no effect. A
    list `beta` gives one boundary per class (PML's `num_classes` betas, fixed), indexed by
    the anchor's label: labels must then be `0 .. len(beta) - 1` (checked when value checks
    are on; otherwise clipped into range).

    Raises:
        ValueError: for `learn_beta=True`, a non-finite `margin`, `nu` or
            `beta`, an empty `beta` list, an unknown distance or reducer, or bad shapes. With
            value checks on (`kml.config`), also for non-integral float labels, NaN or inf in
            `y_pred`, and labels outside `[0, len(beta))` with a list `beta`.
        TypeError: if the labels are not numbers or a flag is not a bool.

    Example:

    >>> losses = kml.margin_loss(labels, embeddings, beta=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6282 0.8368 0.8368 0.6282]

    Reference: Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017;
    pytorch-metric-learning's `MarginLoss`.
    """
    positive_part, negative_part = margin_parts(pairs, distance, margin, beta)
    dtype = positive_part.dtype
    num_positives = ops.sum(ops.cast(pairs.positive, dtype), axis=1)
    num_negatives = ops.sum(ops.cast(pairs.negative, dtype), axis=1)
    # Over the triplets of anchor a: each positive pair meets every negative and vice versa.
    triplet_sums = num_negatives * ops.sum(positive_part, axis=1)
    triplet_sums += num_positives * ops.sum(negative_part, axis=1)
    if reducer == "anchor":
        return ops.divide_no_nan(triplet_sums, num_positives * num_negatives)
    positive_count = ops.sum(ops.cast(positive_part > 0, dtype), axis=1)
    negative_count = ops.sum(ops.cast(negative_part > 0, dtype), axis=1)
    divisor = ops.sum(num_negatives * positive_count + num_positives * negative_count)
    sums = ops.expand_dims(triplet_sums, 1)
    return reduction.divided(sums, ops.ones_like(sums, dtype="bool"), divisor)


margin_loss, MarginLoss = base.declare(
    margin_per_anchor,
    inputs=common.PML_INPUTS,
    function="margin_loss",
    cls="MarginLoss",
    original="PML 2.9 `MarginLoss`",
    summary=(
        "margin loss around a fixed `beta` (one or per class) over all triplets, in O(B²) memory"
    ),
    positional=(
        "margin",
        "nu",
        "beta",
        "triplets_per_anchor",
        "learn_beta",
        "distance",
        "normalize_embeddings",
        "reducer",
    ),
    options=(base.KEYS, base.CROSS_REPLICA),
    hyperparameters=dict(
        margin=base.real(0.2, "The margin around `beta`."),
        nu=base.real(
            0.0,
            "Weight of PML's regulariser of a learned `beta`: with a fixed `beta` it has no "
            "effect, as in PML (which ignores it unless `learn_beta=True`).",
        ),
        beta=base.Hyperparameter(
            1.2,
            check_beta,
            "The boundary between positive and negative distances, a finite float or one per "
            "class (a list indexed by the anchor's label).",
        ),
        triplets_per_anchor=common.TRIPLETS_PER_ANCHOR,
        learn_beta=base.Hyperparameter(
            False, check_learn_beta, "Only `False` (a learned `beta` needs a variable)."
        ),
        distance=common.PML_DISTANCE,
        normalize_embeddings=base.normalize(True),
        reducer=base.reducer(
            '`"anchor"` (each anchor\'s mean) or `"pml"` (shares of PML\'s `DivisorReducer`), '
            "see the function."
        ),
    ),
    class_doc="""pytorch-metric-learning 2.9's `MarginLoss` (`margin_loss`) with a fixed `beta`,
    one value per anchor.

    `MarginLoss(reducer="pml")` with the default reduction equals PML's loss (with
    `learn_beta=False`, its default).

    Example:

    >>> round(float(kml.MarginLoss(beta=0.5, reducer="pml")(labels, embeddings)), 4)
    0.4186

    Reference: Wu et al., ICCV 2017; pytorch-metric-learning's `MarginLoss`.
    """,
)
