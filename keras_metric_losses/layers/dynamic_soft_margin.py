"""The running histogram of pytorch-metric-learning's `DynamicSoftMarginLoss`, kept across steps."""

import keras

from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.layers.adds_loss import AddsLoss, deserialized, serialized
from keras_metric_losses.losses.triplet.dynamic_soft_margin import (
    DynamicSoftMarginLoss,
    running_histogram,
)


@export
class DynamicSoftMargin(AddsLoss, StrictConfig, keras.layers.Layer):
    """A `DynamicSoftMarginLoss` with its running histogram, as PML's object keeps it.

    PML's `DynamicSoftMarginLoss` blends each batch's histogram of `d_ap - d_an` into a running
    one (`hist_`) with `momentum`. Here the histogram is a non-trainable weight of the layer,
    `hist_` `[num_bins]` (zeros at first: the first batch replaces it), saved with the model. In
    training the layer

    1. computes `loss` on the batch with the running histogram (`histogram=hist_`);
    2. writes the updated histogram into `hist_` (inside the compiled train step, on every
       backend; without gradient, so a later step never differentiates through an earlier
       one: PML fails there, "Trying to backward through the graph a second time");
    3. adds the loss to the model's losses (`add_loss`) and returns the embeddings unchanged.

    Outside training (`predict`, `evaluate`) it only returns the embeddings.

    Args:
        loss: A `kml.DynamicSoftMarginLoss` (its hyperparameters, its reduction). Defaults to
            `None`: `kml.DynamicSoftMarginLoss()`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Call arguments:
        inputs: `[embeddings, labels]`: `[B, D]` floats and `[B]` integer labels.

    Returns:
        The embeddings, unchanged.

    Raises:
        TypeError: if `loss` is not a `kml.DynamicSoftMarginLoss`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> layer = kml.layers.DynamicSoftMargin(kml.DynamicSoftMarginLoss(num_bins=4))
    >>> x, y = keras.Input((4,)), keras.Input((), dtype="int32")
    >>> embeddings = keras.layers.UnitNormalization()(keras.layers.Dense(3)(x))
    >>> model = keras.Model([x, y], layer([embeddings, y]))
    >>> model.compile(optimizer="adam")
    >>> data = np.random.default_rng(0).normal(size=(8, 4)).astype("float32")
    >>> labels = np.array([0, 1, 0, 1, 2, 3, 2, 3], "int32")
    >>> history = model.fit([data, labels], batch_size=4, epochs=1, verbose=0, shuffle=False)
    >>> round(float(keras.ops.sum(layer.hist_)), 4)  # a normalised histogram after two steps
    1.0

    Reference: Zhang and Rusinkiewicz, "Learning Local Descriptors with a CDF-Based Dynamic
    Soft Margin", ICCV 2019; pytorch-metric-learning's `DynamicSoftMarginLoss`.
    """

    def __init__(self, loss=None, **kwargs):
        super().__init__(**kwargs)
        loss = DynamicSoftMarginLoss() if loss is None else deserialized(loss)
        if not isinstance(loss, DynamicSoftMarginLoss):
            raise TypeError(
                f"`loss` must be a `kml.DynamicSoftMarginLoss`. Received: loss={loss!r}"
            )
        self.loss = loss

    def build(self, input_shape):
        self.hist_ = self.add_weight(
            name="hist_", shape=(self.loss.num_bins,), initializer="zeros",
            trainable=False, aggregation="only_first_replica",
        )  # fmt: skip

    def call(self, inputs, training=None):
        embeddings, labels = inputs[0], inputs[1]
        if training:
            histogram, settings = self.hist_.value, self.loss.hyperparameters
            values = self.loss.fn(labels, embeddings, histogram=histogram, **settings)
            updated = running_histogram(labels, embeddings, histogram, **settings)
            self.hist_.assign(ops.cast(updated, self.hist_.dtype))
            self.add_reduced_loss(self.loss, values)
        return embeddings

    def compute_output_shape(self, input_shape):
        return input_shape[0]

    def get_config(self):
        return {**super().get_config(), "loss": serialized(self.loss)}
