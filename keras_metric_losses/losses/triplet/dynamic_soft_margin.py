"""Dynamic soft margin loss (pytorch-metric-learning's `DynamicSoftMarginLoss`): triplet margins
weighted by the running distribution of `d_ap - d_an`."""

import dataclasses

from keras_metric_losses import mining, reduction, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.pairs import build, keys_of


def dynamic_soft_margin_per_anchor(
    pairs, *, min_val, num_bins, momentum, distance, negatives, histogram_gradient,
    unpaired_zeros, reducer, histogram=None,
):  # fmt: skip
    """Dynamic soft margin loss, one value per anchor: PML's `DynamicSoftMarginLoss`.

    Each triplet (anchor, positive, negative) gives `x = d_ap - d_an` (Euclidean distances of
    unit embeddings), weighted by the share of the running histogram of `x` at or below its
    bin, a CDF that grows with `x` and so acts as a soft, data-driven margin:

    ```
    t      = (x - min_val) / delta,  delta = 2 |min_val| / num_bins,  clipped to [0, num_bins - 1]
    counts = sum over the triplets of (1 - frac(t)) at bin floor(t), frac(t) at floor(t) + 1
    hist   = normalise((1 - momentum) histogram + momentum counts)   (momentum 1 on an empty one)
    loss   = mean over the triplets of cumsum(hist)[floor(t)] * x
    ```

    `negatives="all"` uses every triplet (PML with labels); `"hardest"` each positive pair
    with the nearest negative of its anchor's row and of its positive's column (PML without
    labels: `y_true = arange(B)`, `ref_labels = arange(R)` pair row `i` with reference row `i`).
    `histogram` is the running histogram before this batch (`None`: an empty one); the layer
    `kml.layers.DynamicSoftMargin` keeps it across steps. `histogram_gradient=False` (default)
    holds the updated histogram constant, a statistic of the batch; `True` differentiates
    through its update as PML does. A batch without a triplet gives 0 and leaves the
    histogram as it was. `unpaired_zeros=True` reproduces PML's padding without labels: with
    `R != B` reference rows, each row of the longer side without a partner adds a value
    `x = 0` to the histogram and to the mean (a quirk of PML's; off by default).

    Per-anchor values (`reducer`): `"anchor"` (default) the anchor's mean over its triplets;
    `"pml"` its share of the mean over the batch's triplets, so that Keras' mean is PML's
    scalar. Unlike PML (which fails when `t` leaves `[0, num_bins - 1)`), `t` is clipped to the
    histogram.

    Example:

    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.dynamic_soft_margin_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [-0.1689  0.061  -0.1689  0.061 ]

    Reference: Zhang and Rusinkiewicz, "Learning Local Descriptors with a CDF-Based Dynamic
    Soft Margin", ICCV 2019; pytorch-metric-learning's `DynamicSoftMarginLoss`.
    """
    data, mask = margin_data(pairs, distance, negatives)
    zeros = _unpaired(pairs, data.dtype) if unpaired_zeros else 0.0
    updated = updated_histogram(data, mask, histogram, min_val, num_bins, momentum, zeros)
    if not histogram_gradient:
        updated = ops.stop_gradient(updated)
    bins = ops.arange(num_bins, dtype=data.dtype)
    index = ops.floor(_position(data, min_val, num_bins))
    below = ops.expand_dims(bins, 0) <= ops.expand_dims(ops.reshape(index, (-1,)), 1)
    cdf = ops.sum(ops.where(below, updated, 0.0), axis=1)
    terms = ops.where(mask, ops.reshape(cdf, ops.shape(data)) * data, 0.0)
    if reducer == "pml":
        return reduction.divided(terms, mask, ops.sum(ops.cast(mask, data.dtype)) + zeros)
    return reduction.anchor_mean(terms, mask)


def running_histogram(y_true, y_pred, histogram=None, *, ref_embeddings=None, ref_labels=None,
                      **hyperparameters):  # fmt: skip
    """The `[num_bins]` running histogram after a batch, without gradient: what
    `kml.layers.DynamicSoftMargin` keeps between steps. It takes the arguments of
    `dynamic_soft_margin_loss` (the ones that do not shape the histogram are ignored).

    Raises:
        TypeError: for an argument that `dynamic_soft_margin_loss` does not take.
    """
    declared = DynamicSoftMarginLoss.declaration.hyperparameters
    unknown = sorted(set(hyperparameters) - set(declared))
    if unknown:
        raise TypeError(
            f"`dynamic_soft_margin_loss` takes {sorted(declared)}. Received: "
            + ", ".join(f"{name}={hyperparameters[name]!r}" for name in unknown)
        )
    settings = dynamic_soft_margin_loss.check_hyperparameters(
        {name: hyperparameters.get(name, h.default) for name, h in declared.items()}
    )
    keys = keys_of(ref_embeddings, ref_labels)
    batch = build(y_true, y_pred, keys, normalize=settings["normalize"], warn=False)
    if batch.is_empty:
        return ops.zeros((settings["num_bins"],)) if histogram is None else histogram
    data, mask = margin_data(batch, settings["distance"], settings["negatives"])
    zeros = _unpaired(batch, data.dtype) if settings["unpaired_zeros"] else 0.0
    updated = updated_histogram(data, mask, histogram, settings["min_val"],
                                settings["num_bins"], settings["momentum"], zeros)  # fmt: skip
    return ops.stop_gradient(updated)


def margin_data(pairs, distance, negatives):
    """`(x, mask)`: `x = d_ap - d_an` of every triplet, `[b, K, K]` (`"all"`), or of every
    positive pair with its hardest negative, `[b, K]` (`"hardest"`), and the ones that exist."""
    matrix = pairs.distances(distance)
    if negatives == "all":
        data = ops.expand_dims(matrix, 2) - ops.expand_dims(matrix, 1)
        return data, mining.triplet_mask(pairs.positive, pairs.negative)
    far = ops.stop_gradient(ops.amax(matrix)) + 1.0
    row = ops.amin(ops.where(pairs.negative, matrix, far), axis=1, keepdims=True)
    column = ops.amin(ops.where(pairs.negative, matrix, far), axis=0, keepdims=True)
    nearest = ops.minimum(row, column)
    has_negative = ops.logical_or(ops.any(pairs.negative, 1, keepdims=True),
                                  ops.any(pairs.negative, 0, keepdims=True))  # fmt: skip
    return matrix - nearest, ops.logical_and(pairs.positive, has_negative)


def updated_histogram(data, mask, histogram, min_val, num_bins, momentum, zeros=0.0):
    """The `[num_bins]` running histogram after the batch's `x` (where `mask`, and `zeros`
    more values 0): blended with `momentum` into `histogram` (`None` or all zeros: replaced),
    normalised; unchanged if the batch has no triplet."""
    flat_mask = ops.reshape(mask, (-1, 1))
    counts = ops.sum(ops.where(flat_mask, _split(data, min_val, num_bins), 0.0), axis=0)
    counts = counts + zeros * _split(ops.zeros((1,), data.dtype), min_val, num_bins)[0]
    found = ops.any(flat_mask)
    if histogram is None:
        blended = counts
        histogram = ops.zeros((num_bins,), dtype=data.dtype)
    else:
        histogram = ops.cast(histogram, data.dtype)
        empty = ops.equal(ops.sum(histogram), 0.0)
        rate = ops.where(empty, 1.0, momentum)
        blended = (1.0 - rate) * histogram + rate * counts
    normalised = blended / ops.where(found, ops.sum(blended), 1.0)
    return ops.where(found, normalised, histogram)


def _split(data, min_val, num_bins):
    """`[N, num_bins]`: each value's linear split between the bins `floor(t)` and `floor(t) + 1`
    (differentiable in `t` as PML's)."""
    position = ops.reshape(_position(data, min_val, num_bins), (-1, 1))
    index = ops.floor(position)
    fraction = position - index
    bins = ops.arange(num_bins, dtype=data.dtype)
    weights = ops.where(ops.equal(bins, index), 1.0 - fraction, 0.0)
    return weights + ops.where(ops.equal(bins, index + 1.0), fraction, 0.0)


def _unpaired(pairs, dtype):
    """The number of queries and keys without a positive (PML's padding without labels)."""
    positive = ops.cast(pairs.positive, dtype)
    return ops.sum(ops.cast(ops.amax(positive, axis=1) == 0, dtype)) + ops.sum(
        ops.cast(ops.amax(positive, axis=0) == 0, dtype)
    )


def _position(data, min_val, num_bins):
    """`t = (x - min_val) / delta` clipped to the histogram's `[0, num_bins - 1]`."""
    delta = 2.0 * abs(min_val) / num_bins
    return ops.clip((data - min_val) / delta, 0.0, num_bins - 1.0)


def _negative(value, name):
    value = validation.real(value, name)
    if value >= 0:
        raise ValueError(f"`{name}` must be a finite number < 0. Received: {name}={value!r}")
    return value


dynamic_soft_margin_loss, DynamicSoftMarginLoss = base.declare(
    dynamic_soft_margin_per_anchor,
    function="dynamic_soft_margin_loss",
    cls="DynamicSoftMarginLoss",
    original="PML `DynamicSoftMarginLoss`",
    summary="triplet margins `d_ap - d_an` weighted by the CDF of their running histogram",
    positional=("min_val", "num_bins", "momentum"),
    options=(base.KEYS,),
    inputs=dataclasses.replace(
        base.EMBEDDINGS,
        keywords=(
            (
                "histogram",
                "`[num_bins]` running histogram before this batch, or `None` (an empty one: "
                "the batch's own).",
            ),
        ),
    ),
    hyperparameters=dict(
        min_val=base.Hyperparameter(
            -2.0, _negative, "Lower end of the histogram of `d_ap - d_an`, `< 0`."
        ),
        num_bins=base.Hyperparameter(
            10,
            lambda v, n: validation.positive_int(v, n, low=2),
            "Number of bins, of width `2 |min_val| / num_bins`.",
        ),
        momentum=base.Hyperparameter(
            0.01,
            lambda v, n: validation.real(v, n, low=0.0, high=1.0, low_open=True),
            "Weight of the batch's counts in the running histogram, in `(0, 1]`.",
        ),
        distance=base.one_of(
            "euclidean",
            ("euclidean", "squared_euclidean"),
            '`"euclidean"` (PML\'s `LpDistance()`) or `"squared_euclidean"` (`power=2`).',
        ),
        normalize=base.normalize(True),
        negatives=base.one_of(
            "all",
            ("all", "hardest"),
            '`"all"` triplets, or each positive pair with its `"hardest"` negative.',
        ),
        histogram_gradient=base.boolean(
            False, "Differentiate through the histogram's update (PML's gradient)."
        ),
        unpaired_zeros=base.boolean(
            False,
            "Count each query and key without a positive as one more value `x = 0` (in the "
            'histogram and, with `reducer="pml"`, the mean): PML\'s padding without labels '
            "when `ref_emb` and `embeddings` differ in length.",
        ),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""Dynamic soft margin loss (`dynamic_soft_margin_loss`) of one batch: with
    `reducer="pml"` and the default reduction the value is that of a new PML
    `DynamicSoftMarginLoss(min_val, num_bins, momentum)` on its first batch. The class keeps no
    state: for PML's running histogram across steps use `kml.layers.DynamicSoftMargin`.

    Example:

    >>> round(float(kml.DynamicSoftMarginLoss(reducer="pml")(labels, embeddings)), 4)
    -0.054

    Reference: Zhang and Rusinkiewicz, ICCV 2019.
    """,
)
