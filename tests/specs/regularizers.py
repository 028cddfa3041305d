"""PML's regularizers (`kml.regularizers`): the golden checks of pml_regularizers.json (the
regularizers alone, and added to a loss through a layer's `activity_regularizer`; the cases of
a class-weight regularizer inside a proxy loss are pending)."""

import keras
import numpy as np
from support import value_and_grad

import keras_metric_losses as kml
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

GOLDEN = {
    **{("pml_regularizers.json", name): check_regularizer for name in kml.regularizers.__all__},
    ("pml_regularizers.json", "ContrastiveLoss"): check_embedding_regularizer,
    ("pml_regularizers.json", "TripletMarginLoss"): check_embedding_regularizer,
}
