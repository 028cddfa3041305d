"""PML's regularizers (`kml.regularizers`): the golden checks of pml_regularizers.json (the
regularizers alone, added to a loss through a layer's `activity_regularizer`, and on the class
weights of a proxy loss through `ClassProxies(proxies_regularizer=...)`)."""

import keras
import numpy as np
from support import compile_frozen, value_and_grad

import keras_metric_losses as kml
from specs import proxy
from specs.pair import _close, _values

SPECS = []


def check_regularizer(case, run):
    """PML's value and gradient of the regularizer on `x`."""
    regularizer = kml.compat.pml.regularizer(case["call"], **case["kwargs"])
    x = np.asarray(case["x"], case["dtype"])
    _close(_values(run(regularizer, x)), case["expected"], case["id"])
    if not getattr(run, "compiled", False):
        _close(value_and_grad(regularizer, x)[1], case["expected_grad"], f"{case['id']}: grad")


def check_embedding_regularizer(case, run):
    """A loss plus PML's `embedding_regularizer` is the loss of a model whose embedding layer
    has the regularizer as `activity_regularizer`: the model's total loss is PML's value."""
    kwargs = dict(case["kwargs"])
    spec, weight = kwargs.pop("embedding_regularizer"), kwargs.pop("embedding_reg_weight")
    settings = {k: v for k, v in spec.items() if k not in ("class", "default_reducer")}
    regularizer = kml.compat.pml.regularizer(spec["class"], weight=weight, activity=True,
                                             **settings)  # fmt: skip
    loss = kml.compat.pml.loss(case["call"], **kwargs)
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    inputs = keras.Input(embeddings.shape[1:])
    outputs = keras.layers.Identity(activity_regularizer=regularizer)(inputs)
    model = keras.Model(inputs, outputs)
    model.compile(loss=loss)
    _close(model.evaluate(embeddings, labels, batch_size=len(labels), verbose=0),
           case["expected"], case["id"])  # fmt: skip


check_embedding_regularizer.eager_only = True  # `fit`'s own compiled step either way


def check_weight_regularizer(case, run):
    """A proxy loss plus PML's `weight_regularizer` (on `W.t()`, `fc.t()` or `proxies`): the
    loss a training step of `ClassProxies(C, loss=..., proxies_regularizer=...)` reports (the
    layer's loss plus the regularizer's term, compiled where `run` compiles) is PML's value; the
    gradients of the loss function plus the regularizer of the proxies
    are PML's for the embeddings and the weights."""
    kwargs = dict(case["kwargs"])
    spec, weight = kwargs.pop("weight_regularizer"), kwargs.pop("weight_reg_weight", 1)
    settings = {k: v for k, v in spec.items() if k not in ("class", "default_reducer")}
    regularizer = kml.compat.pml.regularizer(spec["class"], weight=weight, **settings)
    function_kwargs, layer_kwargs, class_kwargs = proxy.translated({**case, "kwargs": kwargs})
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    proxies = proxy.case_proxies(case)
    layer = kml.layers.ClassProxies(
        layer_kwargs["num_classes"],
        loss=proxy.FUNCTIONS[case["call"]].cls(**class_kwargs),
        proxies_regularizer=regularizer,
    )
    inputs = [keras.Input(embeddings.shape[1:]), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, layer(inputs))
    layer.set_proxies(proxies)
    compile_frozen(model, run)
    trained = model.train_on_batch([embeddings, labels.astype("int32")])
    _close(trained, case["expected"], case["id"])
    function, batch = proxy.FUNCTIONS[case["call"]].function, len(embeddings)

    def total(both):  # embeddings and proxies stacked: one array to differentiate
        values = function(labels, both[:batch], both[batch:], **function_kwargs)
        return keras.ops.mean(values) + regularizer(both[batch:])

    value, grad = value_and_grad(total, np.concatenate([embeddings, proxies]))
    _close(value, case["expected"], f"{case['id']}: value")
    _close(grad[:batch], case["expected_grad"], f"{case['id']}: grad")
    ((_, weight_grad),) = case["expected_grad_weights"].items()
    expected = np.asarray(weight_grad, np.float64)
    _close(grad[batch:], expected if "proxies" in case else expected.T, f"{case['id']}: weights")


GOLDEN = {
    **{("pml_regularizers.json", name): check_regularizer for name in kml.regularizers.__all__},
    ("pml_regularizers.json", "ContrastiveLoss"): check_embedding_regularizer,
    ("pml_regularizers.json", "TripletMarginLoss"): check_embedding_regularizer,
    ("pml_regularizers.json", "ArcFaceLoss"): check_weight_regularizer,
    ("pml_regularizers.json", "SoftTripleLoss"): check_weight_regularizer,
    ("pml_regularizers.json", "ProxyAnchorLoss"): check_weight_regularizer,
}
