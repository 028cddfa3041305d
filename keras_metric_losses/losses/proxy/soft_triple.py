"""SoftTriple loss (pytorch-metric-learning's `SoftTripleLoss`)."""

from keras_metric_losses import validation
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


def soft_triple_elements(labels, embeddings, proxies, *, centers_per_class, la, gamma, margin):
    """SoftTriple loss per example, as pytorch-metric-learning's `SoftTripleLoss` (which adds no
    centre regulariser).

    With `s_ick` the cosine of `x_i` and centre `k` of class `c` (`proxies` holds `K =
    centers_per_class` centres per class: PML's `fc` transposed),

    ```
    S_ic   = sum_k softmax_k(s_ick / gamma) s_ick
    loss_i = CE(lambda (S_i - margin onehot(y_i)), y_i)
    ```

    PML stores `1 / gamma` and multiplies; the values are the same.

    Example:

    >>> centres = np.repeat(proxies, 2, axis=0) + [[0.0, 0.1], [0.0, -0.1]] * 3
    >>> loss = kml.soft_triple_loss(labels, x, centres, centers_per_class=2, la=4.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0446 0.0459 0.0689 0.6929]

    Reference: Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies, centers_per_class)
    targets = Targets(labels, num_classes)
    logits = ClassLogits(x, p, la, centers_per_class, "softmax", gamma)  # la * S
    loss = class_cross_entropy(logits.with_margin(targets, "additive_cosine", margin), targets)
    return in_dtype_of(loss, embeddings)


def soft_triple_of_similarities(y_true, y_pred, *, la, margin, **layer_logits):
    """`CE(la * (S - margin onehot(y)))` of the pooled similarities `S` of `ClassProxies`: only
    the true class's logit moves (the centres and their pooling are the layer's)."""
    labels, similarity = checked_logits(y_true, y_pred)
    targets = Targets(labels, ops.shape(similarity)[1])
    lowered = targets.put(similarity, targets.take(similarity) - margin)
    return in_dtype_of(class_cross_entropy(la * lowered, targets), y_pred)


HYPERPARAMETERS = dict(
    centers_per_class=base.Hyperparameter(
        10, validation.positive_int, "Centres per class `K` (the layer's `sub_centers`)."
    ),
    la=base.positive_real(20.0, "The scale `lambda > 0`."),
    gamma=base.positive_real(
        0.1, "The temperature `gamma > 0` of the softmax over a class's centres."
    ),
    margin=base.real(0.01, "The margin `delta`."),
)
_SUMMARY = "softmax over classes of several centres, pooled by a softmax, with a margin"

soft_triple_loss, SoftTripleLoss = common.declare(
    soft_triple_elements,
    soft_triple_of_similarities,
    function="soft_triple_loss",
    cls="SoftTripleLoss",
    positional=("centers_per_class", "la", "gamma", "margin"),
    class_positional=("la", "margin"),
    original="PML `SoftTripleLoss`",
    summary=_SUMMARY,
    hyperparameters=HYPERPARAMETERS,
    logits=common.takes_logits(
        fixed={"sub_center_pooling": "softmax"}, sub_centers="centers_per_class", gamma="gamma"
    ),
    class_doc="""SoftTriple loss (`soft_triple_loss`) of the pooled class similarities of
    `layers.ClassProxies`.

    `y_pred` is the `[B, C]` output of `ClassProxies(num_classes, sub_centers=K,
    sub_center_pooling="softmax", gamma=gamma)`: `S_ic = sum_k softmax_k(s_ick / gamma)
    s_ick`. Per example `loss_i = CE(lambda (S_i - margin onehot(y_i)), y_i)`, equal to
    `soft_triple_loss`; with the default reduction, PML's `SoftTripleLoss`. Given to the layer
    (`ClassProxies(num_classes, loss=kml.SoftTripleLoss())`), the loss sets the layer's
    centres and pooling from `centers_per_class` and `gamma`; compiled on the layer's output,
    the layer's own arguments decide them.

    Example:

    >>> centres = np.repeat(proxies, 2, axis=0) + [[0.0, 0.1], [0.0, -0.1]] * 3
    >>> loss = kml.SoftTripleLoss(la=4.0, centers_per_class=2, reduction=None)
    >>> layer = kml.layers.ClassProxies(3, loss=loss)
    >>> layer.set_proxies(centres)
    >>> print(keras.ops.convert_to_numpy(layer.loss_values(x, labels)).round(4))
    [0.0446 0.0459 0.0689 0.6929]

    Reference: Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019.
    """,
)
