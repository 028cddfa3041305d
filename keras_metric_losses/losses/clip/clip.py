"""CLIP's symmetric contrastive loss (open_clip's `ClipLoss`)."""

from keras_metric_losses import tiling
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.clip import common
from keras_metric_losses.ops import (
    diagonal_cross_entropies,
    in_dtype_of,
    scalar_like,
    soft_target_cross_entropy,
)


def cross_entropies(queries, keys, columns, *, scale, bias=None, block_size=None):
    """`[b]` softmax cross-entropies of the rows of `x = (scale * queries) @ keys^T (+ bias)`,
    the target of row `i` at column `columns[i]`: `logsumexp_j x[i, j] - x[i, columns[i]]`.

    Dense (`ops.soft_target_cross_entropy`: its gradient `softmax - target` is exact where
    the target's probability is ~1), or by tiles of `block_size`
    (`tiling.blockwise_cross_entropies`, where the scalar bias, which cancels in the softmax,
    is left out).
    """
    queries = common.scaled(queries, scale)
    if block_size is None:
        logits = ops.matmul(queries, ops.transpose(keys))
        if bias is not None:  # shifts every logit of a row: it cancels (open_clip adds it)
            logits = logits + scalar_like(bias, logits)
        if logits.shape[-1] == 0:  # an empty batch: no rows, no maximum to take
            return ops.sum(logits, axis=-1)
        # Relative to the row's largest logit (a constant): `logsumexp - target` is then exact
        # for logits of ~s = 100, where JAX's form of the cross-entropy differences them.
        logits = logits - ops.stop_gradient(ops.amax(logits, axis=-1, keepdims=True))
        targets = ops.one_hot(columns, ops.shape(keys)[0], dtype=logits.dtype)
        return soft_target_cross_entropy(targets, logits)
    return tiling.blockwise_cross_entropies(queries, keys, columns, block_size=block_size)


def clip_rows(images, texts, all_images, all_texts, columns, *, scale, bias=None,
              block_size=None):  # fmt: skip
    """`([b] image-to-text, [b] text-to-image)` cross-entropies of a replica's `b` pairs
    against every replica's: image `i` classifies its text (column `columns[i]`) among
    `all_texts`, text `i` its image among `all_images`. On one device `all_* = *` and
    `columns = arange(B)`; the cross-replica path calls it after the gather."""
    image_to_text = cross_entropies(images, all_texts, columns, scale=scale, bias=bias,
                                    block_size=block_size)  # fmt: skip
    text_to_image = cross_entropies(texts, all_images, columns, scale=scale, bias=bias,
                                    block_size=block_size)  # fmt: skip
    return image_to_text, text_to_image


def symmetric_cross_entropies(images, texts, *, scale, bias=None):
    """`[B]` means of both directions' cross-entropies from one `[B, B]` product, `x = (scale *
    images) @ texts^T (+ bias)`: image `i` is row `i` of `x`, text `i` its column `i`, both
    targets on the diagonal (`ops.diagonal_cross_entropies`)."""
    logits = ops.matmul(common.scaled(images, scale), ops.transpose(texts))
    if bias is not None:  # shifts every logit of a row and of a column: it cancels
        logits = logits + scalar_like(bias, logits)
    return diagonal_cross_entropies(logits, both_directions=True)


def clip_values(images, texts, *, scale, bias=None, cross_replica=False, block_size=None):
    """`[b]` per-pair CLIP losses of `[b, D]` images and texts: the mean of both directions'
    cross-entropies (what `kml.layers.LogitScale` calls with `scale = exp(t)`). On one device
    and untiled, both directions read one product (`symmetric_cross_entropies`)."""
    if not cross_replica and block_size is None:
        return symmetric_cross_entropies(images, texts, scale=scale, bias=bias)
    columns = common.own_columns(images, cross_replica)
    image_to_text, text_to_image = clip_rows(
        images, texts, common.gathered(images, cross_replica),
        common.gathered(texts, cross_replica), columns, scale=scale, bias=bias,
        block_size=block_size,
    )  # fmt: skip
    return (image_to_text + text_to_image) / 2.0


def clip_elements(y_true, y_pred, *, scale, bias, cross_replica, block_size):
    """CLIP's symmetric contrastive loss, one value per (image, text) pair, as open_clip's
    `ClipLoss`.

    With `I`, `T` the image and text features (`y_pred[:, 0]`, `y_pred[:, 1]`) and `s` the
    scale, each image classifies its own text among the batch's texts and each text its own
    image:

    ```
    x = s I T^T (+ bias)                      (logits_per_image; logits_per_text = s T I^T)
    loss_i = (CE(x[i, :], i) + CE(x^T[i, :], i)) / 2
    ```

    Keras' mean over the pairs is open_clip's `(CE(logits_per_image) + CE(logits_per_text)) /
    2`. `scale` is the multiplier itself (open_clip's loss receives `logit_scale.exp()`; the
    temperature is `1 / scale`): to learn it, use `kml.layers.LogitScale(loss=ClipLoss())`,
    which owns `t = log(scale)`. The features are used as given: open_clip's model normalises
    them (`encode_image(normalize=True)`), so normalise them in the model. A scalar `bias`
    shifts every logit of a row and cancels in the softmax (the same values, a zero gradient).
    Duplicated pairs are each other's negatives: the target is always the pair's own column.

    With `cross_replica=True` each replica's images are scored against every replica's texts
    and its texts against every replica's images, the targets offset by the replica's first
    row (open_clip's `local_loss=True, gather_with_grad=True`): the replicas' mean is the loss
    of the global batch, and so are the gradients summed over the replicas. `block_size`
    computes the cross-entropies by tiles (`kml.tiling`): memory `O(B * block_size)`.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]`, `scale <= 0`; with value checks on, also
            non-finite features.
        TypeError: if `cross_replica` is not a bool.

    Example:

    >>> losses = kml.clip_loss(None, y_pred, scale=10.0)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [ 0.9668  0.0726 10.692 ]

    Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", ICML 2021; open_clip's `ClipLoss`.
    """
    images, texts = common.image_text(y_pred)
    values = clip_values(images, texts, scale=scale, bias=bias, cross_replica=cross_replica,
                         block_size=block_size)  # fmt: skip
    return in_dtype_of(values, y_pred)


clip_loss, ClipLoss = base.declare(
    clip_elements,
    function="clip_loss",
    cls="ClipLoss",
    original="open_clip `ClipLoss`",
    summary="each image classifies its text among the batch's texts, and each text its image",
    inputs=common.IMAGE_TEXT,
    options=(base.CROSS_REPLICA, base.TILING),
    hyperparameters=common.hyperparameters(
        1 / 0.07,
        None,
        "The logits' multiplier `s = exp(t)`, already exponentiated (open_clip's init "
        "`1 / 0.07`; the temperature is `1 / s`).",
        "A scalar added to every logit (open_clip's `logit_bias`; it cancels in the softmax).",
    ),
    class_doc="""CLIP's symmetric contrastive loss (`clip_loss`): with the default reduction
    the value is open_clip's `ClipLoss()(image, text, logit_scale=scale)` for
    `y_pred = keras.ops.stack([image, text], axis=1)`; `y_true` is unused.

    Example:

    >>> round(float(kml.ClipLoss(scale=10.0)(None, y_pred)), 4)
    3.9105

    Reference: Radford et al., ICML 2021.
    """,
)
