"""SigLIP's pairwise sigmoid loss (open_clip's `SigLipLoss`)."""

from keras_metric_losses import tiling
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.clip import common
from keras_metric_losses.ops import in_dtype_of, scalar_like, sigmoid_signs


def siglip_rows(images, all_texts, columns, *, scale, bias=None, block_size=None):
    """`[b]` SigLIP row sums of a replica's `b` images against every replica's texts, the
    positive of image `i` at column `columns[i]`: `sum_j softplus(-z[i, j] x[i, j])` with
    `x = (scale * images) @ all_texts^T (+ bias)`. Dense, or by tiles of `block_size`
    (`tiling.blockwise_sigmoid_sums`). The cross-replica path calls it after the gather."""
    queries = common.scaled(images, scale)
    if block_size is not None:
        if bias is not None:  # x = [s I, bias] . [T, 1]
            column = ops.ones((ops.shape(queries)[0], 1), queries.dtype)
            queries = ops.concatenate([queries, column * scalar_like(bias, queries)], axis=1)
            all_texts = ops.concatenate([all_texts, ops.ones_like(all_texts[:, :1])], axis=1)
        return tiling.blockwise_sigmoid_sums(queries, all_texts, columns, block_size=block_size)
    logits = ops.matmul(queries, ops.transpose(all_texts))
    if bias is not None:
        logits = logits + scalar_like(bias, logits)
    keys = ops.arange(ops.shape(all_texts)[0], dtype="int32")
    flipped, _ = sigmoid_signs(logits, keys, columns)
    return ops.sum(ops.softplus(flipped), axis=-1)


def siglip_values(images, texts, *, scale, bias=None, cross_replica=False, block_size=None):
    """`[b]` per-image SigLIP losses of `[b, D]` images and texts (what
    `kml.layers.LogitScale` calls with `scale = exp(t)` and its bias)."""
    return siglip_rows(images, common.gathered(texts, cross_replica),
                       common.own_columns(images, cross_replica), scale=scale, bias=bias,
                       block_size=block_size)  # fmt: skip


def siglip_elements(y_true, y_pred, *, scale, bias, cross_replica, block_size):
    """SigLIP's pairwise sigmoid loss, one value per image, as open_clip's `SigLipLoss`.

    With `I`, `T` the image and text features (`y_pred[:, 0]`, `y_pred[:, 1]`), every
    (image, text) pair is a binary classification, positive for the pair's own text:

    ```
    x = s I T^T + bias                    z[i, j] = +1 if i == j else -1
    loss_i = -sum_j log sigmoid(z[i, j] x[i, j])
    ```

    Keras' mean over the images is open_clip's value, `sum_ij / B`: divided by the number of
    rows, not of pairs, so it grows with the batch (each row sums its `B - 1` negatives).
    `scale` is the multiplier itself (open_clip's loss receives `logit_scale.exp()`); the
    defaults are open_clip_train's SigLIP init (`s = 10`, `bias = -10`), and
    `kml.layers.LogitScale(loss=SigLipLoss())` learns both. The features are used as given
    (open_clip's model normalises them).

    With `cross_replica=True` each replica's images are scored against every replica's texts
    (gathered with `kml.distributed.all_gather`), its own pairs' diagonal positive and every
    other pair negative, divided by the local batch: open_clip's per-rank value, whose mean
    over the replicas is the global loss. open_clip exchanges the texts between neighbouring
    ranks instead (`dist_impl`), the same values; Keras has no portable neighbour exchange,
    and with `block_size` the gathered texts are read by tiles, so memory stays
    `O(b * block_size)` for the logits.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]`, `scale <= 0`; with value checks on, also
            non-finite features.
        TypeError: if `cross_replica` is not a bool.

    Example:

    >>> losses = kml.siglip_loss(None, y_pred)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [ 2.1451  0.7113 13.4399]

    Reference: Zhai et al., "Sigmoid Loss for Language Image Pre-Training", ICCV 2023;
    open_clip's `SigLipLoss`.
    """
    images, texts = common.image_text(y_pred)
    values = siglip_values(images, texts, scale=scale, bias=bias, cross_replica=cross_replica,
                           block_size=block_size)  # fmt: skip
    return in_dtype_of(values, y_pred)


siglip_loss, SigLipLoss = base.declare(
    siglip_elements,
    function="siglip_loss",
    cls="SigLipLoss",
    original="open_clip `SigLipLoss`",
    summary="a sigmoid binary classification of every (image, text) pair of the batch",
    inputs=common.IMAGE_TEXT,
    options=(base.CROSS_REPLICA, base.TILING),
    hyperparameters=common.hyperparameters(
        10.0,
        -10.0,
        "The logits' multiplier `s = exp(t)`, already exponentiated (open_clip_train's SigLIP "
        "init `10`).",
        "A scalar added to every logit (open_clip_train's SigLIP init `-10`).",
    ),
    class_doc="""SigLIP's pairwise sigmoid loss (`siglip_loss`): with the default reduction
    the value is open_clip's `SigLipLoss()(image, text, logit_scale=scale, logit_bias=bias)`
    for `y_pred = keras.ops.stack([image, text], axis=1)`; `y_true` is unused.

    Example:

    >>> round(float(kml.SigLipLoss()(None, y_pred)), 4)
    5.4321

    Reference: Zhai et al., ICCV 2023.
    """,
)
