"""`kml.regularizers` (PML's values: specs/regularizers.py)."""

import json

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml

REGULARIZERS = [
    kml.regularizers.LpRegularizer(p=1, power=2, weight=0.5, activity=True),
    kml.regularizers.ZeroMeanRegularizer(weight=0.1),
    kml.regularizers.RegularFaceRegularizer(distance="inner_product"),
    kml.regularizers.CenterInvariantRegularizer(p=1),
    kml.regularizers.SparseCentersRegularizer(3, 2, weight=0.2),
]
X = np.random.default_rng(0).normal(size=(6, 4)).astype("float32")


@pytest.mark.parametrize("regularizer", REGULARIZERS, ids=lambda r: type(r).__name__)
def test_configs_round_trip_and_give_the_same_value(regularizer):
    serialized = json.loads(json.dumps(keras.saving.serialize_keras_object(regularizer)))
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is type(regularizer)
    assert restored.get_config() == regularizer.get_config()
    np.testing.assert_allclose(numpy(restored(X)), numpy(regularizer(X)), rtol=1e-6)
    with pytest.raises(TypeError, match=r"Unknown key\(s\) \['wieght'\]"):
        type(regularizer).from_config({**regularizer.get_config(), "wieght": 1.0})


def test_a_non_finite_input_gives_a_non_finite_value():
    x = X.copy()
    x[2, 1] = np.nan
    for regularizer in REGULARIZERS:
        assert not np.isfinite(numpy(regularizer(x))), type(regularizer).__name__


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="Received: p=0"):
        kml.regularizers.LpRegularizer(p=0)
    with pytest.raises(TypeError, match="Received: activity=1"):
        kml.regularizers.ZeroMeanRegularizer(activity=1)
    with pytest.raises(ValueError, match=r"must be a similarity.*Received: distance='euclidean'"):
        kml.regularizers.RegularFaceRegularizer(distance="euclidean")
    with pytest.raises(ValueError, match="Received: centers_per_class=1"):
        kml.regularizers.SparseCentersRegularizer(3, 1)
    with pytest.raises(ValueError, match=r"takes 6 rows of centres. Received: shape=\(4, 4\)"):
        kml.regularizers.SparseCentersRegularizer(3, 2)(X[:4])


def test_activity_regularizer_adds_the_mean_and_the_model_reloads(tmp_path):
    """On a layer's output with `activity=True` the term added is the mean over rows (Keras
    divides an activity term by the batch size), and it is saved with the model."""
    regularizer = kml.regularizers.LpRegularizer(weight=0.1, activity=True)
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(3, activity_regularizer=regularizer)(inputs))
    model.compile(loss=kml.MultiSimilarityLoss())
    labels = np.array([0, 0, 1, 1, 2, 2])
    embeddings = model.predict(X, verbose=0)
    expected = float(kml.MultiSimilarityLoss()(labels, embeddings))
    expected += 0.1 * np.linalg.norm(embeddings, axis=1).mean()
    np.testing.assert_allclose(model.evaluate(X, labels, verbose=0), expected, rtol=1e-5)
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(restored.evaluate(X, labels, verbose=0), expected, rtol=1e-5)


def test_proxies_regularizer_adds_its_term_of_the_proxies_and_the_model_reloads(tmp_path):
    """`ClassProxies(proxies_regularizer=...)` (PML's `weight_regularizer`) adds the term of
    the proxies themselves, also with a `learning_rate_multiplier` (the kernel holds
    `proxies / r`), and is saved with the model."""
    regularizer = kml.regularizers.RegularFaceRegularizer(weight=0.5)
    layer = kml.layers.ClassProxies(
        6, loss=kml.ArcFaceLoss(scale=8.0), learning_rate_multiplier=4.0,
        proxies_regularizer=regularizer,
    )  # fmt: skip
    inputs = [keras.Input((4,)), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, layer(inputs))
    layer.set_proxies(np.random.default_rng(1).normal(size=(6, 4)).astype("float32"))
    model.compile(optimizer=keras.optimizers.SGD(0.0))
    labels = np.array([0, 1, 2, 3, 4, 5])
    expected = float(numpy(keras.ops.mean(layer.loss_values(X, labels))))
    expected += float(numpy(regularizer(numpy(layer.proxies))))
    np.testing.assert_allclose(model.train_on_batch([X, labels]), expected, rtol=1e-5)
    evaluated = model.evaluate([X, labels], verbose=0)  # no margin, the same term
    model.save(tmp_path / "model.keras")
    restored = keras.saving.load_model(tmp_path / "model.keras")
    np.testing.assert_allclose(restored.evaluate([X, labels], verbose=0), evaluated, rtol=1e-5)
    with pytest.raises(ValueError, match="Received: proxies_regularizer='lp'"):
        kml.layers.ClassProxies(3, proxies_regularizer="lp")
