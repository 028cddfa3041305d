"""The losses inside `model.compile` / `model.fit` on the current backend."""

import functools

import keras
import numpy as np
import pytest
from specs import SPECS
from support import LOSS_FUNCTIONS, first_of_each, numpy

import keras_metric_losses as kml

PAIRED = [spec for spec in SPECS if spec.function in LOSS_FUNCTIONS]


@pytest.mark.parametrize(
    "spec",
    # Every loss on torch (4 s there on an empty cache, against 18 s on JAX and 39 s on
    # TensorFlow, which compile or trace each model's evaluation), the first of each family and
    # kind on the others: Keras weights the values of the same `keras.ops` code on each.
    first_of_each(
        (((s.family, s.kind.name), pytest.param(s, id=s.function.__name__)) for s in PAIRED),
        every_one_on="torch",
    ),
)
def test_function_and_class_give_the_same_weighted_loss(spec):
    """`compile(loss=fn)` and `compile(loss=Class())` evaluate to the same weighted mean: the
    function returns per-example values that Keras weights like the class's."""
    keras.utils.set_random_seed(0)
    model = spec.kind.model()
    x, y = spec.kind.data(batch=8)
    weights = np.array([1, 0, 2, 0, 1, 1, 0, 3], "float32")
    results = []
    function = functools.partial(spec.function, **spec.kwargs) if spec.kwargs else spec.function
    for loss in (function, spec.loss()):
        model.compile(loss=loss)
        results.append(model.evaluate(x, y, sample_weight=weights, batch_size=8, verbose=0))
    np.testing.assert_allclose(results[0], results[1], rtol=1e-6)
    per_example = numpy(spec.loss(reduction=None)(y, model.predict(x, verbose=0)))
    np.testing.assert_allclose(results[1], (weights * per_example).mean(), rtol=1e-5, atol=1e-6)


# The training data: noise of this standard deviation in the last features of every input.
NUISANCE = 3.0


@pytest.mark.slow
@pytest.mark.parametrize(
    "spec",
    # Every loss on JAX (0.4 s a loss there on an empty cache, against 0.7 s eager on torch and
    # 1.5 s on TensorFlow, which traces a `tf.function` per loss), one per family and kind on
    # the others: `fit` runs the same `keras.ops` code on each, checked value by value by the
    # golden tests.
    first_of_each(
        (((s.family, s.kind.name), pytest.param(s, id=s.name)) for s in SPECS),
        every_one_on="jax",
    ),
)
def test_fit_lowers_the_loss_and_improves_retrieval(spec):
    """Each loss's model recipe learns on its toy data: the loss goes down and held-out points
    of the training classes retrieve their own class better than at initialisation (a loss
    that returns 0, or trains nothing, fails)."""
    keras.utils.set_random_seed(0)
    model = spec.kind.model()
    x, y = spec.kind.data(batch=64, nuisance=NUISANCE)
    before = spec.kind.retrieval(model, nuisance=NUISANCE)
    model.compile(optimizer=keras.optimizers.Adam(0.02), loss=spec.compile_loss())
    history = model.fit(x, y, epochs=20, verbose=0, **spec.kind.fit_options).history["loss"]
    after = spec.kind.retrieval(model, nuisance=NUISANCE)
    assert np.isfinite(history).all() and history[-1] < history[0], history
    assert after > before, (before, after)


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


@pytest.mark.slow
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
    distinct = numpy(kml.npairs_loss(np.arange(4), similarity)).mean()
    merged = numpy(kml.npairs_loss(np.array([0, 0, 2, 4]), similarity)).mean()  # float32's ids
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


# --- NCE: a word2vec-style model trained with sampled logits, scored with full logits ------

VOCAB = 100


def word2vec_data(pairs=3000, seed=0):
    """Center words and their context word: word `w`'s context is `(7 * w + 3) % VOCAB`."""
    rng = np.random.default_rng(seed)
    words = rng.integers(0, VOCAB, size=pairs).astype("int32")
    return words, ((7 * words + 3) % VOCAB).astype("int32")[:, None]


def word2vec_model(loss_cls=kml.NCELoss, remove_accidental_hits=False):
    words, context = keras.Input((), dtype="int32"), keras.Input((1,), dtype="int32")
    embedded = keras.layers.Embedding(VOCAB, 16, name="embedding")(words)
    nce = kml.layers.NCE(
        VOCAB, num_sampled=10, remove_accidental_hits=remove_accidental_hits, seed=0, name="nce"
    )
    model = keras.Model([words, context], nce([embedded, context]))
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss_cls())
    return model


def full_logit_accuracy(model, words, context):
    scores = model.get_layer("nce")(model.get_layer("embedding")(words))
    assert tuple(scores.shape) == (len(words), VOCAB)
    return float(np.mean(np.argmax(numpy(scores), axis=-1) == context[:, 0]))


LOAD_AND_SCORE = """
import sys
import keras
import numpy as np
import keras_metric_losses  # the only import needed
for path in sys.argv[1:]:
    model = keras.saving.load_model(path)
    words = np.arange(100, dtype="int32")
    scores = model.get_layer("nce")(model.get_layer("embedding")(words))
    predicted = np.argmax(keras.ops.convert_to_numpy(scores), -1)
    print(float(np.mean(predicted == (7 * words + 3) % 100)), type(model.loss).__name__)
"""


@pytest.mark.slow
def test_word2vec_fit_save_and_reload(tmp_path):
    import subprocess
    import sys

    keras.utils.set_random_seed(0)
    words, context = word2vec_data()
    all_words = np.arange(VOCAB, dtype="int32")
    all_context = ((7 * all_words + 3) % VOCAB)[:, None]
    expected = {}
    # NCE needs more steps than sampled softmax to calibrate the full (uncorrected) logits.
    for loss_cls, rah, epochs in ((kml.NCELoss, False, 10), (kml.SampledSoftmaxLoss, True, 4)):
        model = word2vec_model(loss_cls, rah)
        before = full_logit_accuracy(model, all_words, all_context)
        history = model.fit([words, context], context, batch_size=100, epochs=epochs, verbose=0)
        losses = history.history["loss"]
        assert np.isfinite(losses).all() and losses[-1] < 0.5 * losses[0], losses
        accuracy = full_logit_accuracy(model, all_words, all_context)
        assert accuracy > 0.5 > 10 * before + 0.1, (accuracy, before)  # chance is 0.01
        path = str(tmp_path / f"word2vec_{loss_cls.__name__}.keras")
        model.save(path)
        expected[path] = (accuracy, loss_cls.__name__)
    result = subprocess.run(
        [sys.executable, "-c", LOAD_AND_SCORE, *expected],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.strip().splitlines()[-len(expected) :]
    for line, (accuracy, loss_name) in zip(lines, expected.values(), strict=True):
        loaded_accuracy, loaded_loss = line.split()
        assert float(loaded_accuracy) == pytest.approx(accuracy)
        assert loaded_loss == loss_name
