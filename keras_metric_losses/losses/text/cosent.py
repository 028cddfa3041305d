"""CoSENT (sentence-transformers' `CoSENTLoss`): the pairs of a batch ranked by their labels,
and the ranking core that AnglE shares."""

from keras_metric_losses import backend, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.text.common import columns
from keras_metric_losses.ops import (
    compute_dtype,
    in_dtype_of,
    is_float_dtype,
    l2_normalize,
    masked_logsumexp,
    scalar_like,
    with_non_finite_of,
)

LABELLED_PAIRS = base.Inputs(
    ("y_true", "y_pred"),
    (
        "`[B]` or `[B, 1]` float labels, the expected similarity of each pair (only their "
        "order matters).",
        "`[B, 2, D]`: the two columns (`u`, `v`) of each pair, `keras.ops.stack([u, v], 1)`.",
    ),
    returns="`[B]`: the batch's loss for every example, in the dtype of `y_pred`.",
    example=""">>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> pairs = np.array([[[1.0, 0.0], [0.6, 0.8]], [[0.0, 1.0], [0.28, 0.96]],
...                   [[1.0, 0.2], [-0.6, 0.8]]])  # [3 pairs, 2 columns, 2]
>>> scores = np.array([0.9, 0.5, 0.1])  # the expected similarity of each pair""",
)


def pairwise_similarity(u, v, name):
    """`[N]` similarities of the rows of `u` and `v` `[N, D]`: sentence-transformers'
    `pairwise_cos_sim`, `pairwise_dot_score` or `pairwise_angle_sim` (by name).

    `pairwise_angle_sim` (AnglE): with `x`, `y` the L2-normalised rows (a zero appended to an
    odd `D`), split into halves `x = [re_x, im_x]`, `y = [re_y, im_y]` (complex numbers
    `re + i im`), the absolute sum of the real and imaginary parts of `x / y`:
    `|sum(x * y) + sum(im_x * re_y - re_x * im_y)|`.
    """
    if name == "pairwise_dot_score":
        return ops.sum(u * v, axis=-1)
    u, v = l2_normalize(u), l2_normalize(v)
    if name == "pairwise_cos_sim":
        return ops.sum(u * v, axis=-1)
    dim = u.shape[-1]
    if dim % 2:  # a zero appended: the halves have the same size
        u, v = (ops.pad(x, ((0, 0), (0, 1))) for x in (u, v))
    half = (dim + 1) // 2
    re_u, im_u, re_v, im_v = u[:, :half], u[:, half:], v[:, :half], v[:, half:]
    return ops.abs(ops.sum(u * v, axis=-1) + ops.sum(im_u * re_v - re_u * im_v, axis=-1))


def ranking(scores, labels):
    """`log(1 + sum_{k, l: labels_k < labels_l} exp(scores_k - scores_l))`, a scalar: 0 with a
    zero gradient when no two labels differ. A NaN label is lower and higher than none.

    In `O(N log N)`, without the `[N, N]` differences: the sum is
    `sum_l exp(below_l - scores_l)` with `below_l = log sum_{k: labels_k < labels_l}
    exp(scores_k)`, the cumulative log-sum-exp of the scores in label order
    (`backend.logcumsumexp`) up to the first of `l`'s equal labels (`searchsorted`); a pair
    `l` with no lower label adds nothing (`masked_logsumexp`). NaN labels sort with `+inf`
    (after every finite label, so in no other's prefix) and take no term."""
    unordered = ops.isnan(labels)
    keys = ops.where(unordered, scalar_like(float("inf"), labels), labels)
    order = ops.argsort(keys)
    cumulative = backend.logcumsumexp(ops.take(scores, order))
    lower = ops.searchsorted(ops.take(keys, order), keys, side="left")  # how many are lower
    below = ops.take(cumulative, ops.maximum(lower - 1, 0))
    ranked = ops.logical_and(lower > 0, ops.logical_not(unordered))
    return masked_logsumexp(below - scores, ranked, add_one=True)


def ranked_pairs(y_true, y_pred, *, scale, similarity_fct, tuples):
    """The batch's ranking loss for every example, of CoSENT (`tuples=False`: two columns,
    labels needed) and AnglE (`tuples=True`: `(anchor, positive, negatives...)` columns
    become `n` pairs per example, as `AnglELoss` does)."""
    cols = columns(y_pred, 2, None if tuples else 2)
    batch = ops.shape(cols[0])[0]
    labels = _labels(y_true, y_pred, cols[0].dtype, required=not tuples)
    if cols[0].shape[0] == 0:  # an empty batch (a static shape): no values, a zero gradient
        return in_dtype_of(0.0 * ops.sum(cols[0], axis=-1), y_pred)
    anchors, others = cols[0], cols[1:]
    if len(others) > 1:  # the anchor against each column; the negatives get `1 - labels`
        labels = ops.concatenate([labels] + [1 - labels] * (len(others) - 1), axis=0)
        anchors = ops.concatenate([anchors] * len(others), axis=0)
    similarity = pairwise_similarity(anchors, ops.concatenate(others, axis=0), similarity_fct)
    loss = ranking(scale * similarity, labels)
    # The mask drops the NaN of a pair it leaves out: carried explicitly.
    values = with_non_finite_of(ops.ones((batch,), loss.dtype) * loss, similarity)
    return in_dtype_of(values, y_pred)


def _labels(y_true, y_pred, dtype, required):
    """`[B]` labels: float labels in their own dtype (only their order matters), others in the
    compute dtype; `None`: 1 each (AnglE's triplets), or an error where labels are needed."""
    if y_true is None and not required:
        return ops.ones((ops.shape(ops.convert_to_tensor(y_pred))[0],), dtype)
    y_true = validation.numeric_tensor(y_true, "y_true")
    shape = tuple(y_true.shape)
    if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)):
        raise ValueError(
            "`y_true` must hold one float label per example, of shape [batch] or [batch, 1]. "
            f"Received: y_true.shape={shape}"
        )
    validation.same_batch(y_true, y_pred)
    validation.finite(y_true, "y_true")  # a NaN label, unchecked, ranks with no other
    labels = ops.reshape(y_true, (-1,))
    return labels if is_float_dtype(labels.dtype) else ops.cast(labels, compute_dtype(labels))


SIMILARITIES = ("pairwise_cos_sim", "pairwise_dot_score", "pairwise_angle_sim")


def check_similarity(value, name):
    return validation.one_of(value, name, SIMILARITIES)


def cosent_elements(y_true, y_pred, *, scale, similarity_fct):
    """CoSENT loss, as sentence-transformers' `CoSENTLoss`: the batch's value for every pair.

    With `s_i = scale * sim(u_i, v_i)` the scaled similarity of pair `i` and `y_i` its label,
    every two pairs whose labels differ add one term, large when the pair with the lower label
    scores higher:

    ```
    loss = log(1 + sum_{k, l: y_k < y_l} exp(s_k - s_l))
    ```

    Only the order of the labels matters; ties add nothing, and a batch whose labels are all
    equal gives 0 with a zero gradient. The log-sum-exp is shifted by its largest term (the 1
    included), so large scales do not overflow.

    The loss is a property of the batch, not of a pair: the function returns it for every pair
    (`[B]`), so Keras' mean is sentence-transformers' scalar and the gradient is the scalar's;
    `sample_weight` then scales the batch's value (as `barlow_loss`).

    Differences from sentence-transformers: `y_pred` must be `[B, 2, D]` (its `CoSENTLoss`
    reads the first two columns and ignores any other); `similarity_fct` is a name; a zero
    row has similarity 0 (L2 normalisation by `max(|x|, 1e-12)`, as PyTorch's `normalize`).

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]`, `y_true` not `[B]` or `[B, 1]`, their
            batch sizes differ, or a hyperparameter is out of range. With value checks on
            (`kml.config`), also NaN or inf in `y_true` or `y_pred`.
        TypeError: if `y_true` is not numbers.

    Example:

    >>> losses = kml.cosent_loss(scores, pairs)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [7.2007 7.2007 7.2007]

    Reference: Su, "CoSENT: a more efficient sentence vector scheme than Sentence-BERT", 2022
    (https://kexue.fm/archives/8847); sentence-transformers' `CoSENTLoss`.
    """
    return ranked_pairs(y_true, y_pred, scale=scale, similarity_fct=similarity_fct,
                        tuples=False)  # fmt: skip


cosent_loss, CoSENTLoss = base.declare(
    cosent_elements,
    function="cosent_loss",
    cls="CoSENTLoss",
    original="sentence-transformers `CoSENTLoss`",
    summary="the pairs of the batch ranked by their labels (a batch statistic)",
    positional=("scale", "similarity_fct"),
    inputs=LABELLED_PAIRS,
    hyperparameters=dict(
        scale=base.positive_real(20.0, "Multiplies the similarities (an inverse temperature)."),
        similarity_fct=base.Hyperparameter(
            "pairwise_cos_sim",
            check_similarity,
            '`"pairwise_cos_sim"`, `"pairwise_dot_score"` or `"pairwise_angle_sim"` '
            "(sentence-transformers' `util` functions of the same names).",
        ),
    ),
    class_doc="""CoSENT loss (`cosent_loss`): the pairs of the batch ranked by their labels.

    Every example carries the batch's value, so the default reduction gives
    sentence-transformers' `CoSENTLoss(model, scale)` on the columns `u`, `v` and `labels`
    for `y_pred = keras.ops.stack([u, v], axis=1)`.

    Example:

    >>> round(float(kml.CoSENTLoss()(scores, pairs)), 4)
    7.2007

    Reference: Su, 2022 (https://kexue.fm/archives/8847).
    """,
)
