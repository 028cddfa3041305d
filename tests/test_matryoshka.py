"""`MatryoshkaLoss` (its sentence-transformers values: specs/text_pairs.py)."""

import itertools

import keras
import numpy as np
import pytest
from support import compiled, numpy

import keras_metric_losses as kml

RNG = np.random.default_rng(0)
SCORES = RNG.uniform(size=8).astype("float32")
PAIRS = RNG.normal(size=(8, 2, 6)).astype("float32")
LABELS = np.array([0, 0, 1, 1, 2, 2, 0, 1])
EMBEDDINGS = RNG.normal(size=(8, 6)).astype("float32")


def _unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_a_weighted_sum_over_the_renormalised_prefixes():
    """Dims in any order, each with its weight; every prefix is L2-normalised again, which a
    dot product sees."""
    inner = kml.CoSENTLoss(similarity_fct="pairwise_dot_score")
    loss = kml.MatryoshkaLoss(inner, [2, 6, 4], [0.5, 1.0, 0.25], reduction=None)
    expected = sum(
        weight * numpy(inner.call(SCORES, _unit(PAIRS[..., :dim])))
        for dim, weight in ((6, 1.0), (4, 0.25), (2, 0.5))
    )
    np.testing.assert_allclose(numpy(loss(SCORES, PAIRS)), expected, rtol=1e-5)
    raw = numpy(inner.call(SCORES, PAIRS[..., :2]))
    assert not np.allclose(numpy(inner.call(SCORES, _unit(PAIRS[..., :2]))), raw)


def test_embeddings_of_a_loss_on_class_labels():
    inner = kml.MultiSimilarityLoss()
    loss = kml.MatryoshkaLoss(inner, [6, 3], reduction=None)
    expected = sum(numpy(inner.call(LABELS, _unit(EMBEDDINGS[:, :d]))) for d in (6, 3))
    np.testing.assert_allclose(numpy(loss(LABELS, EMBEDDINGS)), expected, rtol=1e-5)


def test_n_dims_per_step_draws_that_many_dims_each_call():
    dims, weights = [6, 4, 2], [1.0, 2.0, 3.0]
    terms = {
        d: w * float(kml.CoSENTLoss()(SCORES, _unit(PAIRS[..., :d])))
        for d, w in zip(dims, weights, strict=True)
    }
    subsets = list(itertools.combinations(dims, 2))
    sums = np.array([sum(terms[d] for d in chosen) for chosen in subsets])

    def draws(loss):
        values = [float(loss(SCORES, PAIRS)) for _ in range(12)]
        for value in values:
            assert np.abs(sums - value).min() < 1e-4 * value, (value, sums)
        return [subsets[int(np.abs(sums - value).argmin())] for value in values]

    drawn = draws(kml.MatryoshkaLoss(kml.CoSENTLoss(), dims, weights, n_dims_per_step=2, seed=1))
    assert len(set(drawn)) > 1, drawn  # a new draw at each call
    again = kml.MatryoshkaLoss(kml.CoSENTLoss(), dims, weights, n_dims_per_step=2, seed=1)
    assert draws(again) == drawn
    every = kml.MatryoshkaLoss(kml.CoSENTLoss(), dims, weights, n_dims_per_step=3)
    np.testing.assert_allclose(float(every(SCORES, PAIRS)), sum(terms.values()), rtol=1e-5)


@pytest.mark.parametrize("n_dims_per_step", [-1, 1])
def test_compiled(n_dims_per_step):
    if n_dims_per_step > 0 and keras.backend.backend() == "torch":
        pytest.skip("Keras' torch seed generator is `torch.compiler.disable`d (documented)")
    loss = kml.MatryoshkaLoss(kml.CoSENTLoss(), [6, 3], n_dims_per_step=n_dims_per_step, seed=0)
    value = numpy(compiled(loss)(SCORES, PAIRS))
    assert np.isfinite(value) and value > 0


def test_a_non_finite_input_gives_a_non_finite_loss():
    pairs = PAIRS.copy()
    pairs[1, 0, 5] = np.nan  # outside the smaller prefix
    assert not np.isfinite(numpy(kml.MatryoshkaLoss(kml.CoSENTLoss(), [6, 3])(SCORES, pairs)))


def test_errors_name_the_argument():
    cosent = kml.CoSENTLoss()
    with pytest.raises(TypeError, match=r"`loss` must be a loss of keras_metric_losses"):
        kml.MatryoshkaLoss(keras.losses.MeanSquaredError(), [4])
    with pytest.raises(ValueError, match=r"non-empty list.*Received: matryoshka_dims=\[\]"):
        kml.MatryoshkaLoss(cosent, [])
    with pytest.raises(ValueError, match=r"`matryoshka_dims\[1\]` must be a positive int"):
        kml.MatryoshkaLoss(cosent, [4, 0])
    with pytest.raises(ValueError, match=r"one weight per dim \(2\).*=\[1.0\]"):
        kml.MatryoshkaLoss(cosent, [4, 2], [1.0])
    with pytest.raises(ValueError, match=r"finite. Received: matryoshka_weights=\[nan\]"):
        kml.MatryoshkaLoss(cosent, [4], [float("nan")])
    with pytest.raises(ValueError, match=r"Received: n_dims_per_step=0"):
        kml.MatryoshkaLoss(cosent, [4], n_dims_per_step=0)
    with pytest.raises(TypeError, match=r"Received: seed=1.5"):
        kml.MatryoshkaLoss(cosent, [4], n_dims_per_step=1, seed=1.5)
    with pytest.raises(ValueError, match=r"at most the last axis of `y_pred` \(6\).*\[8, 4\]"):
        kml.MatryoshkaLoss(cosent, [8, 4])(SCORES, PAIRS)


@pytest.mark.slow
def test_fit_learns_and_the_model_reloads(tmp_path):
    keras.utils.set_random_seed(0)
    inputs = keras.Input((2, 6))
    model = keras.Model(inputs, keras.layers.Dense(8)(inputs))
    loss = kml.MatryoshkaLoss(kml.AnglELoss(), [8, 4, 2], [1.0, 0.5, 0.5])
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    x = RNG.normal(size=(64, 2, 6)).astype("float32")
    y = RNG.uniform(size=64).astype("float32")
    history = model.fit(x, y, epochs=10, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0], history
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        restored.evaluate(x, y, verbose=0), model.evaluate(x, y, verbose=0), rtol=1e-5
    )
