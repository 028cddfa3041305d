"""`kml.layers.DynamicSoftMargin`: PML's running histogram as a weight, updated inside the
compiled train step on every backend (the loss itself: `specs/triplet.py`)."""

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml
from keras_metric_losses.losses.triplet.dynamic_soft_margin import running_histogram


def _model(layer):
    inputs, labels = keras.Input((4,)), keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(3, kernel_initializer="orthogonal", name="embedding")(inputs)
    return keras.Model([inputs, labels], layer([embeddings, labels]))


def test_fit_carries_the_histogram_from_step_to_step_as_pml_does():
    keras.utils.set_random_seed(0)  # the embedding layer's weights: the same in any test order
    loss = kml.DynamicSoftMarginLoss(momentum=0.5, reducer="pml")
    layer = kml.layers.DynamicSoftMargin(loss)
    model = _model(layer)
    model.compile(optimizer=keras.optimizers.SGD(0.0))  # the embeddings stay as they are
    rng = np.random.default_rng(0)
    x = rng.normal(size=(18, 4)).astype("float32")
    y = np.tile(np.array([0, 0, 1, 1, 2, 2], "int32"), 3)
    history = model.fit([x, y], batch_size=6, epochs=1, shuffle=False, verbose=0)
    embeddings = numpy(model.get_layer("embedding")(x))
    histogram, values = np.zeros(loss.num_bins, "float32"), []
    for rows in (slice(0, 6), slice(6, 12), slice(12, 18)):
        e = embeddings[rows]
        step = kml.dynamic_soft_margin_loss(y[rows], e, histogram=histogram, **loss.hyperparameters)
        values.append(numpy(step).mean())
        histogram = numpy(running_histogram(y[rows], e, histogram, **loss.hyperparameters))
    np.testing.assert_allclose(numpy(layer.hist_), histogram, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(history.history["loss"][0], np.mean(values), rtol=1e-5)
    model.predict([x, y], verbose=0)  # inference: no update
    np.testing.assert_allclose(numpy(layer.hist_), histogram, rtol=1e-5, atol=1e-7)


def test_the_layer_takes_only_its_loss():
    with pytest.raises(TypeError, match=r"`loss` must be a `kml.DynamicSoftMarginLoss`"):
        kml.layers.DynamicSoftMargin(kml.TripletMarginLoss())
