"""P2SGrad (pytorch-metric-learning's `P2SGradLoss`): the squared error of the class cosines
against the one-hot labels."""

from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import (
    ClassLogits,
    Targets,
    checked_inputs,
    checked_logits,
)
from keras_metric_losses.losses.proxy import common
from keras_metric_losses.ops import in_dtype_of, with_non_finite_of


def _squared_errors(cosines, targets):
    """`[B]`: the mean over the classes of `(clip(cos_ic, -1, 1) - [c = y_i])^2`; 0 for a row
    without a valid label."""
    clipped = ops.clip(cosines, -1.0, 1.0)
    errors = targets.put(clipped, targets.take(clipped) - 1.0)  # no [B, C] one-hot
    return ops.where(targets.valid, ops.mean(ops.square(errors), axis=-1), 0.0)


def p2sgrad_elements(labels, embeddings, proxies):
    """P2SGrad loss per example, as pytorch-metric-learning's `P2SGradLoss`: the mean squared
    error of the cosines to the class weights against the one-hot labels,

    ```
    loss_i = (1 / C) sum_c (clip(cos_ic, -1, 1) - [c = y_i])^2
    ```

    whose gradient is the paper's P2SGrad (Eq. 11): no scale, no margin to tune. PML's mean over
    the `B x C` entries is Keras' mean of the `[B]` values.

    PML keeps its weight as `weight` `[D, C]` (here `proxies` is its transpose) and, on every
    call, writes each column rescaled to unit norm back into it before the product; here the
    proxies are normalised inside the loss and nothing is written. The values are PML's; the
    proxies' gradient is the part of PML's that is tangent to the unit sphere (divided by the
    proxy's norm): PML's radial part is what its next call's rescaling removes.

    Example:

    >>> loss = kml.p2sgrad_loss(labels, x, proxies)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.3335 0.0066 0.3339 0.3619]

    Reference: Zhang et al., "P2SGrad: Refined Gradients for Optimizing Deep Face Models",
    CVPR 2019.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies)
    losses = _squared_errors(ClassLogits(x, p).logits, Targets(labels, num_classes))
    return in_dtype_of(losses, embeddings)


def p2sgrad_of_cosines(y_true, y_pred):
    """`p2sgrad_elements` of the `[B, C]` cosines of `ClassProxies`."""
    labels, cosines = checked_logits(y_true, y_pred)
    losses = _squared_errors(cosines, Targets(labels, ops.shape(cosines)[1]))
    return in_dtype_of(with_non_finite_of(losses, cosines), y_pred)  # the clip drops inf


p2sgrad_loss, P2SGradLoss = common.declare(
    p2sgrad_elements,
    p2sgrad_of_cosines,
    function="p2sgrad_loss",
    cls="P2SGradLoss",
    positional=(),
    class_positional=(),
    original="PML `P2SGradLoss`",
    summary="squared error of the cosines to the class weights against the one-hot labels",
    hyperparameters={},
    logits=common.takes_logits(),
    class_doc="""P2SGrad loss (`p2sgrad_loss`) of the `[B, C]` cosines of
    `layers.ClassProxies(num_classes)`, which owns the class weights.

    With the same weights the values are `p2sgrad_loss`'s, and with the default reduction PML's
    `P2SGradLoss(descriptors_dim, num_classes)` (its `weight` is the layer's proxies
    transposed). Compile with it, or give it to the layer (`ClassProxies(num_classes,
    loss=kml.P2SGradLoss())`).

    Example:

    >>> layer = kml.layers.ClassProxies(3)
    >>> layer.set_proxies(proxies)
    >>> loss = kml.P2SGradLoss(reduction=None)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.3335 0.0066 0.3339 0.3619]

    Reference: Zhang et al., CVPR 2019.
    """,
)
