"""What the proxy and margin-softmax losses share: their inputs, and the layer they train with.

Each loss is two declarations over one dict of hyperparameters: the function on `(labels,
embeddings, proxies)` (`FUNCTION_INPUTS`) and the class on the `[B, C]` logits of
`kml.layers.ClassProxies` (`CLASS_INPUTS`). A class also declares to the layer the logits it
takes (`layer_logits`): a margin-softmax class its margin type and margin, which the layer applies
in training. Such a class is given to the layer (`ClassProxies(num_classes, loss=...)`), which
computes it and adds it to the model; called on logits directly it raises (`MarginSoftmaxLoss`).
"""

import warnings

from keras_metric_losses.class_logits import ClassLogitsLoss
from keras_metric_losses.losses import base

_OUT_OF_RANGE = (
    "An id outside `[0, C)` matches no class: its row has no target, loss 0 and zero gradient "
    "(with value checks on, concrete ids out of range raise a `ValueError` instead)."
)
# Four examples of three classes in two dimensions, and one proxy per class: the inputs of the
# family's examples.
EXAMPLE = """>>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
>>> proxies = np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32")
>>> labels = np.array([0, 1, 2, 0])"""
FUNCTION_INPUTS = base.Inputs(
    ("labels", "embeddings", "proxies"),
    (
        f"`[B]` or `[B, 1]` integer class ids in `[0, C)`. {_OUT_OF_RANGE}",
        "`[B, D]` float embeddings.",
        "`[C * K, D]` class weights: row `c * K + k` is sub-centre `k` of class `c` (`K = 1`: "
        "PML's `proxies`, or its `W` / `fc` transposed).",
    ),
    returns="`[B]` per-example losses in the dtype of `embeddings`.",
    example=EXAMPLE,
    raises="""Raises:
    ValueError: for a hyperparameter out of range, `labels` not `[B]`/`[B, 1]`, `embeddings`
        or `proxies` not rank 2, different batch or feature sizes, or a number of proxies that
        is not a multiple of the sub-centres. With value checks on (`kml.config`), also for
        non-integral or out-of-range labels and NaN or inf in `embeddings` or `proxies`.
    TypeError: if the labels are not numbers.""",
)
CLASS_INPUTS = base.Inputs(
    ("y_true", "y_pred"),
    (
        "`[B]` or `[B, 1]` integer class ids in `[0, C)`.",
        "`[B, C]` logits of `kml.layers.ClassProxies`.",
    ),
    returns="`[B]` per-example losses in the dtype of `y_pred`.",
    example=EXAMPLE,
)


def scale(default):
    return base.positive_real(default, "Logit scale `s > 0`.")


class MarginSoftmaxLoss(ClassLogitsLoss):
    """Mixin of a margin-softmax loss class: its logits carry a margin on the true class, which
    only a layer that knows the loss can apply, so the loss is computed by the layer
    (`kml.layers.ClassProxies(num_classes, loss=...)`) and a direct call raises.

    A loss restored (`from_config`) from a config of release 0.1.0 (no `margin`: then the margin
    lived in the layer's own `margin_type` / `margin`) keeps 0.1.0's behaviour, the scaled
    cross-entropy of the logits it is given, with a `DeprecationWarning`.
    """

    _restored_from_0_1_0 = False

    def __call__(self, y_true, y_pred, sample_weight=None):
        if not self._restored_from_0_1_0:
            raise ValueError(_called_directly(self, y_pred))
        return super().__call__(y_true, y_pred, sample_weight=sample_weight)

    @classmethod
    def from_config(cls, config):
        loss = super().from_config(config)
        if "margin" not in config:  # release 0.1.0's config: the margin was the layer's
            loss._restored_from_0_1_0 = True
            warnings.warn(
                f"`{cls.__name__}` restored from a config of keras-metric-losses 0.1.0 (without "
                "`margin`) keeps 0.1.0's behaviour: the scaled cross-entropy of the logits of "
                "a `ClassProxies(..., margin_type=...)` layer, which applies the margin. To "
                f"migrate, give the loss to the layer, which then declares its margin: "
                f"`kml.layers.ClassProxies(num_classes, loss=kml.{cls.__name__}(margin=...))`, "
                "and compile the model without a loss.",
                DeprecationWarning,
                stacklevel=2,
            )
        return loss

    def get_config(self):
        config = super().get_config()
        if self._restored_from_0_1_0:  # saved again as 0.1.0 saved it
            for key in self.LOGITS_FROM.values():
                config.pop(key)
        return config


def _called_directly(loss, y_pred):
    return _computed_by_the_layer(
        loss,
        y_pred,
        f"is computed by the layer that applies its margin (margin_type={loss.margin_type!r}, "
        f"margin={loss.margin!r}), not on logits: called directly (`model.compile("
        f"loss=kml.{type(loss).__name__}(...))`, `loss(y_true, logits)`) it cannot know "
        "whether, or which, margin the logits carry. Give it to the layer, which computes it "
        "from the labels it is called with and adds it to the model, and compile without a loss",
        f"num_classes, loss=kml.{type(loss).__name__}(...)",
        "labels",
        "    model.fit([x, y], epochs=...)\n",
    )


def _computed_by_the_layer(loss, y_pred, reason, layer, inputs, usage=""):
    """The error of a loss class that only its `ClassProxies` layer computes, called on
    `(y_true, y_pred)`: `reason`, then how the layer (`ClassProxies(layer)`) takes it, on
    `[embeddings, inputs]`."""
    name = type(loss).__name__
    shape = getattr(y_pred, "shape", None)
    return (
        f"`{name}` {reason}:\n\n"
        f"    proxies = kml.layers.ClassProxies({layer})\n"
        f"    model = keras.Model([features, {inputs}], proxies([embeddings, {inputs}]))\n"
        '    model.compile(optimizer="adam")\n'
        f"{usage}\n"
        f"Received: {name} called on y_pred of shape {None if shape is None else tuple(shape)}"
    )


class TakesProxies(ClassLogitsLoss):
    """Mixin of a loss class on the embeddings and the proxies themselves, not on their logits
    (the manifold loss): `ClassProxies(num_classes, loss=...)` owns the proxies and calls
    `loss.call(meta_classes, (embeddings, proxies), seed=...)`, with the meta classes it is
    called with, or `None` (the loss draws them from `seed`, the layer's `SeedGenerator`).
    Its logits are the layer's defaults; called on `(y_true, y_pred)` directly it raises.
    """

    TAKES = "proxies"

    def __call__(self, y_true, y_pred, sample_weight=None):
        raise ValueError(
            _computed_by_the_layer(
                self,
                y_pred,
                "takes the embeddings and the proxies themselves, not `(y_true, y_pred)`: it is "
                "computed by the layer that owns the proxies, which adds it to the model "
                "(compile without a loss; or call the layer on the embeddings alone: it draws "
                "the meta classes in training)",
                f"K, loss=kml.{type(self).__name__}()",
                "meta_classes",
            )
        )

    def call(self, y_true, y_pred, seed=None):
        """`[B]` values of `y_true` (`[B]` meta classes or `None`) and `y_pred`, the pair
        `(embeddings [B, D], proxies [K, D])`; `seed` draws the meta classes of `None`."""
        embeddings, proxies = y_pred
        return self.fn(y_true, embeddings, proxies, seed=seed, **self.hyperparameters)


def takes_logits(margin_type=None, fixed=None, **from_hyperparameters):
    """The mixin of a loss class that declares the logits of its layer: `margin_type` (a
    margin-softmax loss, whose `margin` hyperparameter is the margin), the layer arguments it
    `fixed` (`{"normalize_embeddings": False}`) and those its hyperparameters set
    (`sub_centers="centers_per_class"`)."""
    if margin_type is not None:
        from_hyperparameters = {"margin": "margin", **from_hyperparameters}
    parent = ClassLogitsLoss if margin_type is None else MarginSoftmaxLoss
    attributes = {
        "margin_type": margin_type,
        "LOGITS": dict(fixed or {}),
        "LOGITS_FROM": from_hyperparameters,
        "__module__": __name__,
    }
    return type(f"Declared{parent.__name__}", (parent,), attributes)


def declare(function_elements, class_elements, *, function, cls, hyperparameters, positional,
            class_positional, original, summary, class_doc, logits,
            class_hyperparameters=None):  # fmt: skip
    """`(function, class)` of a proxy loss: the function of `(labels, embeddings, proxies)`
    (its `positional` hyperparameters positional, as 0.1.0's) and the class on the layer's
    logits (`class_positional` positional), over one dict of hyperparameters (the class may
    take a subset, `class_hyperparameters`); `logits` is the class's `takes_logits` mixin."""
    loss_function = base.declare(
        function_elements,
        function=function,
        cls=None,
        inputs=FUNCTION_INPUTS,
        function_positional=True,
        positional=positional,
        original=original,
        summary=summary,
        hyperparameters=hyperparameters,
        class_doc=None,
    )
    loss_class = base.declare(
        class_elements,
        function=None,
        cls=cls,
        related=function,
        name=function,
        inputs=CLASS_INPUTS,
        positional=class_positional,
        bases=(logits,),
        original=original,
        summary=summary,
        hyperparameters=hyperparameters if class_hyperparameters is None else class_hyperparameters,
        class_doc=class_doc,
    )
    for obj in (loss_function, loss_class):
        obj.__module__ = function_elements.__module__
    return loss_function, loss_class
