"""The margin-softmax core: softmax cross-entropy of scaled class logits with a margin on the
true class (ArcFace, Sub-center ArcFace, CosFace, SphereFace, Large-Margin Softmax).

`declare` makes a margin-softmax loss from its function's elements: the function on `(labels,
embeddings, proxies)` and the class, which the layer computes (`ClassProxies(num_classes,
loss=...)` applies the class's margin in training, then the class's scaled cross-entropy) and
which raises when called on logits directly (`common.MarginSoftmaxLoss`). Each row is one
example: PML's default (mean) reducer is Keras' mean of the `[B]` values.
"""

from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import (
    MARGINS,
    ClassLogits,
    Targets,
    checked_inputs,
    checked_logits,
    class_cross_entropy,
)
from keras_metric_losses.losses import base
from keras_metric_losses.losses.proxy import common
from keras_metric_losses.ops import in_dtype_of

_MARGIN_DOCS = {
    "additive_angular": "Additive angular margin in degrees, in `[0, 180]`.",
    "additive_cosine": "Additive cosine margin.",
    "multiplicative_angular": "Integer angular multiplier `m >= 1`.",
}


def margin(margin_type):
    """The `margin` hyperparameter of a margin type: PML's default and the type's check."""
    default, check = MARGINS[margin_type]
    return base.Hyperparameter(default, check, _MARGIN_DOCS[margin_type])


def margin_softmax(labels, embeddings, proxies, margin_type, margin, scale, sub_centers=1,
                   normalize_embeddings=True, normalize_proxies=True):  # fmt: skip
    """`[B]` cross-entropy of the scaled logits with a margin, in the dtype of `embeddings`."""
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies, sub_centers)
    targets = Targets(labels, num_classes)
    logits = ClassLogits(x, p, scale, sub_centers, normalize_embeddings=normalize_embeddings,
                         normalize_proxies=normalize_proxies)  # fmt: skip
    loss = class_cross_entropy(logits.with_margin(targets, margin_type, margin), targets)
    return in_dtype_of(loss, embeddings)


def scaled_cross_entropy(y_true, y_pred, *, scale, **layer_logits):
    """`CE(scale * y_pred)` of logits with the margin already applied (by the layer); the
    hyperparameters that declare the layer's logits (`margin`, ...) are not used here."""
    labels, logits = checked_logits(y_true, y_pred)
    loss = class_cross_entropy(scale * logits, Targets(labels, ops.shape(logits)[1]))
    return in_dtype_of(loss, y_pred)


def declare(elements, *, function, cls, margin_type, hyperparameters, positional, original,
            summary, class_doc, fixed=None, **from_hyperparameters):  # fmt: skip
    """`(function, class)` of a margin-softmax loss: `elements` of `(labels, embeddings,
    proxies)` for the function (positional hyperparameters `positional`, as 0.1.0's), and the
    class on the layer's logits, which takes `scale` positionally (as 0.1.0's) and the others
    keyword-only. `margin_type`, `fixed` and `from_hyperparameters` declare the layer's logits
    (`common.takes_logits`)."""
    return common.declare(
        elements,
        scaled_cross_entropy,
        function=function,
        cls=cls,
        hyperparameters=hyperparameters,
        positional=positional,
        class_positional=("scale",),
        original=original,
        summary=summary,
        class_doc=class_doc,
        logits=common.takes_logits(margin_type, fixed, **from_hyperparameters),
    )


LAYER_NOTE = """`layers.ClassProxies(num_classes, loss={cls}(...))`, which owns the class
    weights, computes the logits this loss declares, applies its margin to the true class in
    training (its `margin_variable`, which can warm up), adds the loss (`scale` and the
    cross-entropy) of the labels it is called with, and returns the logits without margin (for
    accuracy metrics and inference); the model is compiled without a loss. Called on logits
    directly (`model.compile(loss=...)`) the class raises a `ValueError`; one restored from a
    config of release 0.1.0 keeps 0.1.0's behaviour (see `common.MarginSoftmaxLoss`)."""
