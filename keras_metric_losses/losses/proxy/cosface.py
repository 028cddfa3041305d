"""CosFace (pytorch-metric-learning's `CosFaceLoss`): an additive cosine margin on the true
class."""

from keras_metric_losses.losses.proxy import common, margin_softmax

COSINE = "additive_cosine"


def cosface_elements(labels, embeddings, proxies, *, margin, scale):
    """CosFace (large margin cosine) loss per example, as pytorch-metric-learning's
    `CosFaceLoss`: with `cos_ic` the cosine of `x_i` and `w_c` (both normalised by the loss),

    ```
    loss_i = CE(s * [cos_i with cos_iy -> cos_iy - m], y_i)
    ```

    Example:

    >>> loss = kml.cosface_loss(labels, x, proxies, margin=0.35, scale=8.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0305 0.0152 0.0742 2.859 ]

    Reference: Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition",
    CVPR 2018.
    """
    return margin_softmax.margin_softmax(labels, embeddings, proxies, COSINE, margin, scale)


cosface_loss, CosFaceLoss = margin_softmax.declare(
    cosface_elements,
    function="cosface_loss",
    cls="CosFaceLoss",
    margin_type=COSINE,
    hyperparameters=dict(margin=margin_softmax.margin(COSINE), scale=common.scale(64.0)),
    positional=("margin", "scale"),
    original="PML `CosFaceLoss`",
    summary="softmax over classes, an additive cosine margin on the true class",
    class_doc=f"""CosFace loss (`cosface_loss`), computed by `layers.ClassProxies`.

    {margin_softmax.LAYER_NOTE.format(cls="CosFaceLoss")}

    With the same weights the values are `cosface_loss`'s, and with the default reduction
    PML's `CosFaceLoss(margin=margin, scale=scale)`.

    Example:

    >>> head = kml.layers.ClassProxies(3, loss=kml.CosFaceLoss(scale=8.0))
    >>> head.set_proxies(proxies)
    >>> print(keras.ops.convert_to_numpy(head.loss_values(x, labels)).round(4))
    [0.0305 0.0152 0.0742 2.859 ]

    Reference: Wang et al., CVPR 2018.
    """,
)
