"""Ranked list loss (pytorch-metric-learning's `RankedListLoss`)."""

from keras_metric_losses import distances, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base


def ranked_list_per_anchor(pairs, *, margin, Tn, imbalance, alpha, Tp, epsilon, distance):
    """Ranked list loss, one value per anchor: PML's `RankedListLoss`.

    With `D` the distance of each pair (Euclidean by default), each anchor's ranked list should
    hold its positives within `alpha - margin` and its negatives beyond `alpha` (`alpha`
    defaults to `1 + margin / 2`). The positives beyond and the negatives within pay their gap,
    weighted by a softmax of the gap at temperatures `Tp` and `Tn`:

    ```
    w+_ij = exp(Tp (D_ij - alpha + margin)),  j in P_i, D_ij > alpha - margin
    w-_ik = exp(Tn (alpha - D_ik)),           k in N_i, D_ik < alpha
    L+_i = sum_j w+_ij (D_ij - alpha + margin) / (sum_j w+_ij + K epsilon)
    L-_i = sum_k w-_ik (alpha - D_ik) / (sum_k w-_ik + K epsilon)
    loss_i = (1 - imbalance) L+_i + imbalance L-_i
    ```

    The weights are differentiated, as in PML. PML adds `1e-5` to the weight of each of the
    `K` columns of the batch (`epsilon=1e-5` with `K = B`), which shrinks every value a little
    and more so in larger batches; `epsilon=0` (default) gives the weighted means themselves.
    The exponents are shifted by their largest before `exp` (PML warns that `Tn` or `Tp`
    above 5 may overflow; here no temperature does). Difference from PML: a negative at a
    distance of exactly 0 (a copy of the anchor under another label) pays its gap; PML drops
    it (it selects the pairs by `D > 0`). Without a paying pair a side adds 0.

    Example:

    >>> losses = kml.ranked_list_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.1528 0.4579 0.1528 0.4579]

    Reference: Wang et al., "Ranked List Loss for Deep Metric Learning", CVPR 2019;
    pytorch-metric-learning's `RankedListLoss`.
    """
    matrix = pairs.distances(distance)
    if alpha is None:
        alpha = 1.0 + margin / 2.0
    extra = epsilon * ops.cast(ops.shape(pairs.keys)[0], matrix.dtype)
    positive, negative = (
        _weighted_mean(gap, temperature, ops.logical_and(mask, gap > 0), extra)
        for mask, gap, temperature in ((pairs.positive, matrix - (alpha - margin), Tp),
                                       (pairs.negative, alpha - matrix, Tn))
    )  # fmt: skip
    return (1.0 - imbalance) * positive + imbalance * negative


def _weighted_mean(gaps, temperature, mask, extra):
    """`sum_j w_j gap_j / (sum_j w_j + extra)` over `mask` per row, `w_j = exp(temperature
    gap_j)`, with the largest exponent (at least 0) taken out first; 0 for an empty row."""
    logits = temperature * gaps
    shift = ops.amax(ops.where(mask, logits, 0.0), axis=1, keepdims=True)
    shift = ops.stop_gradient(ops.maximum(shift, 0.0))
    weights = ops.where(mask, ops.exp(ops.where(mask, logits - shift, 0.0)), 0.0)
    total = ops.sum(weights, axis=1) + extra * ops.exp(-ops.squeeze(shift, 1))
    return ops.divide_no_nan(ops.sum(weights * gaps, axis=1), total)


def _distance_only(value, name):
    """`distances.check`, refusing a similarity: the ranked list's thresholds are distances."""
    value = distances.check(value, name)
    if distances.larger_is_closer(value):
        raise ValueError(
            f"`{name}` must be a distance (smaller is closer): the thresholds `alpha` and "
            f"`alpha - margin` bound distances. Received: {name}={value!r}"
        )
    return value


ranked_list_loss, RankedListLoss = base.declare(
    ranked_list_per_anchor,
    function="ranked_list_loss",
    cls="RankedListLoss",
    original="PML `RankedListLoss`",
    summary="softmax-weighted gaps of the positives beyond and negatives within two distances",
    positional=("margin", "Tn", "imbalance", "alpha", "Tp"),
    options=(base.KEYS, base.CROSS_REPLICA),
    hyperparameters=dict(
        margin=base.real(0.4, "Gap between the positives' bound and the negatives' `alpha`."),
        Tn=base.real(10.0, "Temperature of the negatives' weights."),
        imbalance=base.real(
            0.5,
            "Weight of the negatives' term in `[0, 1]` (the positives': 1 - it).",
            low=0,
            high=1,
        ),
        alpha=base.Hyperparameter(
            None,
            lambda v, n: None if v is None else validation.real(v, n),
            "Distance beyond which negatives pay nothing; `None` is `1 + margin / 2`.",
        ),
        Tp=base.real(0.0, "Temperature of the positives' weights (0: a plain mean)."),
        epsilon=base.real(
            0.0, "Added to the weight of each key in the denominators (PML: `1e-5`).", low=0.0
        ),
        distance=base.Hyperparameter(
            "euclidean", _distance_only, "A distance name or callable (PML's `distance`)."
        ),
        normalize=base.normalize(True),
    ),
    class_doc="""Ranked list loss (`ranked_list_loss`): with `epsilon=1e-5` and the default
    reduction the value is PML's `RankedListLoss(margin, Tn, imbalance, alpha, Tp)`.

    Example:

    >>> round(float(kml.RankedListLoss()(labels, embeddings)), 4)
    0.3053

    Reference: Wang et al., CVPR 2019.
    """,
)
