"""Ranking with a penalty on the negatives before each positive (pytorch-metric-learning's
`PNPLoss`)."""

from keras_metric_losses import reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import masked
from keras_metric_losses.losses.pair.soft_rank import own_column, soft_ranks

VARIANTS = ("Ds", "Dq", "Iu", "Ib", "O")
# PML's sigmoid clamps its exponent to [-50, 50].
_CLIP = 50.0


def pnp_per_anchor(pairs, *, b, alpha, anneal, variant, anchor_as_positive, reducer):
    """PNP loss, one value per anchor: PML's `PNPLoss`.

    With `S` the cosine similarity, each positive `l` of anchor `i` counts the negatives ranked
    before it, softly (the sigmoid's argument clamped to `[-50, 50]`, as PML):

    ```
    rk[i, l] = sum_{n in N_i} sigmoid((S[i, n] - S[i, l]) / anneal)
    loss_i   = mean_{l in P_i} f(rk[i, l])       (1 - mean_{l in P_i} f(rk[i, l]) for "Dq")
    ```

    where `f` is the variant's penalty: `"O"` `rk`, `"Ds"` `log(1 + rk)`, `"Dq"`
    `(1 + rk)^-alpha`, `"Iu"` `(1 + rk) log(1 + rk)`, `"Ib"` `(b rk - log(1 + b rk)) / b^2`.
    An anchor without a positive gives 0. PML counts the anchor as its own positive (an extra
    `l = i` in the mean of each anchor that has a positive): `anchor_as_positive=True` does the
    same, the default counts the other examples of its class only. Per-anchor values
    (`reducer`): `"anchor"` (default) `loss_i`; `"pml"` its share of the mean over the anchors
    that have a positive, so that Keras' mean of the values is PML's scalar.

    Memory: the soft ranks go by blocks of anchors, `[rows, B, B]` tiles recomputed in the
    backward pass (PML holds several `[B, B, B]` tensors); time `O(B^3)` as PML's.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.pnp_loss(labels, embeddings, anneal=0.1)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.1195 0.9512 0.1195 0.9512]

    Reference: Li et al., "Rethinking the Optimization of Average Precision: Only Penalizing
    Negative Instances before Positive Ones is Enough", AAAI 2022; pytorch-metric-learning's
    `PNPLoss`.
    """
    similarity = pairs.distances("cosine_similarity")
    positive, has_positive = pairs.positive, pairs.has_positive
    if anchor_as_positive:
        itself = ops.logical_and(own_column(pairs), ops.expand_dims(has_positive, 1))
        positive = ops.logical_or(positive, itself)
    negative = ops.expand_dims(pairs.negative, -1)
    ranks = soft_ranks(similarity, negative, temperature=anneal, clip=_CLIP)[..., 0]
    penalties = masked(_penalty(ranks, variant, b, alpha), positive)
    losses = ops.divide_no_nan(
        ops.sum(penalties, axis=1), ops.sum(ops.cast(positive, penalties.dtype), axis=1)
    )
    if variant == "Dq":
        losses = 1.0 - losses
    losses = ops.where(has_positive, losses, 0.0)
    if reducer == "anchor":
        return losses
    return reduction.share(losses, reduction.count(has_positive, losses.dtype), pairs.num_rows)


def _penalty(ranks, variant, b, alpha):
    """The variant's `f(rk)`."""
    if variant == "Ds":
        return ops.log1p(ranks)
    if variant == "Dq":
        return ops.power(1.0 + ranks, -alpha)
    if variant == "Iu":
        return (1.0 + ranks) * ops.log1p(ranks)
    if variant == "Ib":
        return (b * ranks - ops.log1p(b * ranks)) / b**2
    return ranks


pnp_loss, PNPLoss = base.declare(
    pnp_per_anchor,
    function="pnp_loss",
    cls="PNPLoss",
    original="PML `PNPLoss`",
    summary="a penalty on the soft count of negatives ranked before each positive (variants)",
    positional=("b", "alpha", "anneal", "variant"),
    hyperparameters=dict(
        b=base.positive_real(2.0, 'Scale `b` of the `"Ib"` penalty, `> 0`.'),
        alpha=base.positive_real(1.0, 'Exponent `alpha` of the `"Dq"` penalty, `> 0`.'),
        anneal=base.positive_real(0.01, "Temperature of the sigmoid, `> 0`."),
        variant=base.one_of("O", VARIANTS, "The penalty `f` of the soft rank, see the function."),
        anchor_as_positive=base.boolean(
            False, "Count each anchor that has a positive as its own positive too (PML's)."
        ),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""PNP loss (`pnp_loss`): with `anchor_as_positive=True`, `reducer="pml"` and the
    default reduction the value is PML's `PNPLoss(b, alpha, anneal, variant)`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.PNPLoss(anneal=0.1)(labels, embeddings)), 4)
    0.5354

    Reference: Li et al., AAAI 2022.
    """,
)
