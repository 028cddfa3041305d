"""Normalized softmax loss (pytorch-metric-learning's `NormalizedSoftmaxLoss`)."""

from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import (
    ClassLogits,
    Targets,
    checked_inputs,
    checked_logits,
    class_cross_entropy,
)
from keras_metric_losses.losses import base
from keras_metric_losses.losses.proxy import common
from keras_metric_losses.ops import in_dtype_of


def normalized_softmax_elements(labels, embeddings, proxies, *, temperature,
                                normalize_embeddings):  # fmt: skip
    """Normalized softmax loss per example, as pytorch-metric-learning's `NormalizedSoftmaxLoss`.

    Softmax cross-entropy of the cosines to the (L2-normalised) class weights over a
    temperature:

    ```
    z_ic = x_i . w_c / (|x_i| |w_c| T)
    loss_i = logsumexp_c z_ic - z_iy_i
    ```

    With `normalize_embeddings=False` the embeddings keep their norm (`z_ic = x_i . w_c /
    (|w_c| T)`). PML's default (mean) reducer is the mean of the `[B]` values.

    Example:

    >>> loss = kml.normalized_softmax_loss(labels, x, proxies, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.2054 0.2459 0.2494 0.7223]

    Reference: Zhai and Wu, "Classification is a Strong Baseline for Deep Metric Learning",
    BMVC 2019.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies)
    logits = ClassLogits(x, p, 1.0 / temperature, normalize_embeddings=normalize_embeddings)
    loss = class_cross_entropy(logits.logits, Targets(labels, num_classes))
    return in_dtype_of(loss, embeddings)


def tempered_cross_entropy(y_true, y_pred, *, temperature, normalize_embeddings):
    """`CE(y_pred / T)` of the cosines of `ClassProxies` (`normalize_embeddings` is the
    layer's)."""
    labels, logits = checked_logits(y_true, y_pred)
    loss = class_cross_entropy(logits / temperature, Targets(labels, ops.shape(logits)[1]))
    return in_dtype_of(loss, y_pred)


HYPERPARAMETERS = dict(
    temperature=base.positive_real(0.05, "Softmax temperature `T > 0`."),
    normalize_embeddings=base.boolean(
        True,
        "Normalise the embeddings (PML's `DotProductSimilarity(normalize_embeddings=...)`; "
        "the class weights are always normalised).",
    ),
)
_SUMMARY = "softmax over the cosines to one weight per class, with a temperature"

normalized_softmax_loss, NormalizedSoftmaxLoss = common.declare(
    normalized_softmax_elements,
    tempered_cross_entropy,
    function="normalized_softmax_loss",
    cls="NormalizedSoftmaxLoss",
    positional=("temperature", "normalize_embeddings"),
    class_positional=("temperature",),
    original="PML `NormalizedSoftmaxLoss`",
    summary=_SUMMARY,
    hyperparameters=HYPERPARAMETERS,
    logits=common.takes_logits(normalize_embeddings="normalize_embeddings"),
    class_doc="""Normalized softmax loss (`normalized_softmax_loss`) of the cosines of
    `layers.ClassProxies`.

    `y_pred` is the `[B, C]` output of `ClassProxies(num_classes)`: the cosines `cos(x_i, w_c)`
    (with `normalize_embeddings=False`, `x_i . w_c / |w_c|`). Per example `loss_i = CE(y_pred /
    T, y_i)`, equal to `normalized_softmax_loss` of the same weights; with the default
    reduction, PML's `NormalizedSoftmaxLoss(temperature=temperature)`. Compile with it, or give
    it to the layer (`ClassProxies(num_classes, loss=...)`), which then takes
    `normalize_embeddings` from it (compiled on the layer's output, the layer's own argument
    decides).

    Example:

    >>> layer = kml.layers.ClassProxies(3)
    >>> layer.set_proxies(proxies)
    >>> loss = kml.NormalizedSoftmaxLoss(temperature=0.5, reduction=None)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.2054 0.2459 0.2494 0.7223]

    Reference: Zhai and Wu, BMVC 2019.
    """,
)
