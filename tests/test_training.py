"""The losses inside `model.compile` / `model.fit` on the current backend."""

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml


def pair_data(num_classes=8, per_class=32, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim)) * 2.0
    labels = np.repeat(np.arange(num_classes), per_class)
    rng.shuffle(labels)

    def sample():
        return (centers[labels] + rng.normal(size=(len(labels), dim))).astype("float32")

    return [sample(), sample()], labels


def pair_model(dim=8, dtype=None):
    anchors, positives = keras.Input((dim,)), keras.Input((dim,))
    embed = keras.layers.Dense(16, dtype=dtype)
    similarity = kml.PairwiseSimilarity(dtype=dtype)([embed(anchors), embed(positives)])
    return keras.Model([anchors, positives], similarity)


@pytest.mark.parametrize("multilabel", [False, True], ids=["npairs", "multilabel"])
def test_fit_reduces_the_loss(multilabel):
    keras.utils.set_random_seed(0)
    x, labels = pair_data()
    y = np.eye(8, dtype="float32")[labels] if multilabel else labels
    model = pair_model()
    loss = kml.NpairsMultilabelLoss() if multilabel else kml.NpairsLoss()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=loss)
    history = model.fit(x, y, batch_size=32, epochs=5, verbose=0).history["loss"]
    assert np.isfinite(history).all()
    assert history[-1] < 0.7 * history[0]


def test_fit_keeps_large_integer_labels_distinct():
    x, _ = pair_data(per_class=1)
    x = [a[:4] for a in x]
    model = pair_model()
    model.compile(loss=kml.NpairsLoss())
    big = np.array([16777216, 16777217, 16777218, 16777219], dtype="int64")
    evaluated = model.evaluate(x, big, batch_size=4, verbose=0)
    similarity = model.predict(x, batch_size=4, verbose=0)
    distinct = numpy(kml.npairs_loss(np.arange(4), similarity))
    merged = numpy(kml.npairs_loss(np.array([0, 0, 2, 4]), similarity))  # what float32 would give
    np.testing.assert_allclose(evaluated, distinct, rtol=1e-5)
    assert abs(distinct - merged) > 1e-3


def test_fit_sample_weight_weights_anchors():
    x, labels = pair_data(per_class=1)
    model = pair_model()
    model.compile(loss=kml.NpairsLoss())
    weights = np.linspace(0.0, 1.0, len(labels)).astype("float32")
    evaluated = model.evaluate(x, labels, sample_weight=weights, batch_size=len(labels), verbose=0)
    similarity = model.predict(x, batch_size=len(labels), verbose=0)
    per_anchor = numpy(kml.NpairsLoss(reduction=None)(labels, similarity))
    np.testing.assert_allclose(evaluated, (weights * per_anchor).mean(), rtol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
def test_fit_under_mixed_precision_stays_finite(policy):
    keras.config.set_dtype_policy(policy)
    x, labels = pair_data()
    x = [a * 4 for a in x]
    model = pair_model()
    similarity = model.predict(x, verbose=0)
    assert keras.backend.standardize_dtype(similarity.dtype) == policy.split("_")[1]
    # exp() of these float16 logits overflows unless the loss computes in float32:
    assert np.abs(similarity).max() > 20
    model.compile(optimizer="adam", loss=kml.NpairsLoss())
    history = model.fit(x, labels, batch_size=32, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
