"""AnglE (sentence-transformers' `AnglELoss`): CoSENT's ranking of an angle similarity."""

import dataclasses

from keras_metric_losses.losses import base
from keras_metric_losses.losses.text.cosent import LABELLED_PAIRS, ranked_pairs

TUPLES = dataclasses.replace(
    LABELLED_PAIRS,
    docs=(
        "`[B]` or `[B, 1]` float labels of the `(anchor, positive)` pairs (only their order "
        "matters), or `None` (1 each).",
        "`[B, C, D]`: `(anchor, positive)` pairs (`C = 2`) or `(anchor, positive, negative_1, "
        "...)` tuples, `keras.ops.stack([anchor, positive, ...], 1)`.",
    ),
)


def angle_elements(y_true, y_pred, *, scale):
    """AnglE loss, as sentence-transformers' `AnglELoss`: CoSENT's ranking of the pairs with
    the angle similarity; the batch's value for every example.

    With `x`, `y` the L2-normalised columns (a zero appended to an odd `D`), split into
    halves `x = [re_x, im_x]` (the complex numbers `re + i im`), the similarity is the absolute
    sum of the real and imaginary parts of `x / y` (sentence-transformers'
    `pairwise_angle_sim`), and the pairs are ranked as in `cosent_loss`:

    ```
    sim(x, y) = |sum(x * y) + sum(im_x * re_y - re_x * im_y)|
    s_i = scale * sim(u_i, v_i)
    loss = log(1 + sum_{k, l: y_k < y_l} exp(s_k - s_l))
    ```

    With more than two columns `(anchor, positive, negative_1, ..., negative_n)`, the anchor
    makes a pair with each of the others: the `(anchor, positive)` pairs keep the labels (1
    each for `y_true=None`) and every `(anchor, negative)` pair gets `1 - label`, and the
    `(n + 1) B` pairs are ranked together. Without labels, two columns give 0.

    Every example carries the batch's value (as `cosent_loss`): Keras' mean is
    sentence-transformers' scalar.

    Differences from sentence-transformers: a zero row has similarity 0 (sentence-transformers
    divides by its norm: NaN).

    Raises:
        ValueError: if `y_pred` is not `[B, C, D]` with `C >= 2`, `y_true` not `None`, `[B]`
            or `[B, 1]`, their batch sizes differ, or `scale <= 0`. With value checks on
            (`kml.config`), also NaN or inf in `y_true` or `y_pred`.
        TypeError: if `y_true` is not numbers.

    Example:

    >>> losses = kml.angle_loss(scores, pairs)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [22.8149 22.8149 22.8149]

    Reference: Li and Li, "AoE: Angle-optimized Embeddings for Semantic Textual Similarity",
    ACL 2024; sentence-transformers' `AnglELoss`.
    """
    return ranked_pairs(y_true, y_pred, scale=scale, similarity_fct="pairwise_angle_sim",
                        tuples=True)  # fmt: skip


angle_loss, AnglELoss = base.declare(
    angle_elements,
    function="angle_loss",
    cls="AnglELoss",
    original="sentence-transformers `AnglELoss`",
    summary="CoSENT's ranking of a complex-angle similarity (a batch statistic)",
    positional=("scale",),
    inputs=TUPLES,
    hyperparameters=dict(
        scale=base.positive_real(20.0, "Multiplies the similarities (an inverse temperature)."),
    ),
    class_doc="""AnglE loss (`angle_loss`): CoSENT's ranking of the angle similarity.

    Every example carries the batch's value, so the default reduction gives
    sentence-transformers' `AnglELoss(model, scale)` on the columns of `y_pred`.

    Example:

    >>> round(float(kml.AnglELoss()(scores, pairs)), 4)
    22.8149

    Reference: Li and Li, ACL 2024.
    """,
)
