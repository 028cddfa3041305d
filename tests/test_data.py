"""Class-balanced batches (`kml.data.ClassBalancedSampler`) and the no-positive warning."""

import importlib.util
import warnings

import keras
import numpy as np
import pytest

import keras_metric_losses as kml
from keras_metric_losses import pairs as pairs_module

HAS_TF = importlib.util.find_spec("tensorflow") is not None


def _data(counts):
    """Labels with `counts[c]` samples of class `c`, shuffled; x holds each row's index."""
    y = np.repeat(np.arange(len(counts)), counts)
    y = np.random.default_rng(0).permutation(y)
    x = np.arange(len(y), dtype="float32")[:, None]
    return x, y


def test_every_batch_has_the_asked_classes_and_samples():
    x, y = _data([7, 5, 9, 6, 8, 5])
    sampler = kml.data.ClassBalancedSampler(x, y, classes_per_batch=3, samples_per_class=4, seed=1)
    assert sampler.batch_size == 12 and len(sampler) == 4  # ceil(40 / 12)
    for _ in range(3):  # epochs
        for index in range(len(sampler)):
            xb, yb = sampler[index]
            assert xb.shape == (12, 1)
            np.testing.assert_array_equal(y[xb[:, 0].astype(int)], yb)  # rows stay paired
            classes, counts = np.unique(yb, return_counts=True)
            assert len(classes) == 3 and set(counts) == {4}
            assert len(np.unique(xb)) == 12  # distinct samples: every class has >= 4
        sampler.on_epoch_end()


def test_deterministic_under_a_seed_and_independent_of_order():
    x, y = _data([6, 6, 6, 6])
    a = kml.data.ClassBalancedSampler(x, y, 2, 3, seed=7, steps_per_epoch=5)
    b = kml.data.ClassBalancedSampler(x, y, 2, 3, seed=7, steps_per_epoch=5)
    first = [a[i][0] for i in range(5)]
    np.testing.assert_array_equal(first[3], b[3][0])  # any order, same batch
    np.testing.assert_array_equal(np.stack(first), np.stack([b[i][0] for i in range(5)]))
    a.on_epoch_end()
    assert not np.array_equal(np.stack(first), np.stack([a[i][0] for i in range(5)]))
    c = kml.data.ClassBalancedSampler(x, y, 2, 3, seed=8, steps_per_epoch=5)
    assert not np.array_equal(np.stack(first), np.stack([c[i][0] for i in range(5)]))
    assert isinstance(kml.data.ClassBalancedSampler(x, y, 2, 3).seed, int)


def test_small_classes_give_all_their_samples_then_copies():
    x, y = _data([1, 2, 10])
    sampler = kml.data.ClassBalancedSampler(x, y, classes_per_batch=3, samples_per_class=4, seed=0)
    for index in range(20):
        sampler.epoch = index
        xb, yb = sampler[0]
        assert np.bincount(yb, minlength=3).tolist() == [4, 4, 4]
        rows = xb[:, 0].astype(int)
        for label, size in ((0, 1), (1, 2)):
            members = set(np.flatnonzero(y == label))
            # all of its samples, then copies
            assert len(members) == size and set(rows[yb == label]) == members
        assert len(set(rows[yb == 2])) == 4


def test_multiple_inputs_and_column_labels():
    x, y = _data([4, 4, 4])
    images, extra = x, -x
    sampler = kml.data.ClassBalancedSampler(
        {"a": images, "b": extra}, y[:, None], classes_per_batch=2, samples_per_class=2, seed=0
    )
    xb, yb = sampler[0]
    np.testing.assert_array_equal(xb["a"], -xb["b"])
    assert yb.shape == (4,)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"classes_per_batch": 4}, "at most the number of classes in `y` \\(3\\)"),
        ({"classes_per_batch": 0}, "`classes_per_batch` must be a positive int"),
        ({"classes_per_batch": 2, "samples_per_class": 1.5}, "`samples_per_class` must be"),
        ({"classes_per_batch": 2, "seed": -1}, "`seed` must be a non-negative int"),
        ({"classes_per_batch": 2, "steps_per_epoch": 0}, "`steps_per_epoch` must be"),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, match):
    x, y = _data([3, 3, 3])
    with pytest.raises(ValueError, match=match):
        kml.data.ClassBalancedSampler(x, y, **kwargs)


def test_labels_must_match_the_rows():
    x, y = _data([3, 3])
    with pytest.raises(ValueError, match="one class label per row of `x`"):
        kml.data.ClassBalancedSampler(x, y[:-1], classes_per_batch=2)
    with pytest.raises(ValueError, match="same number of rows"):
        kml.data.ClassBalancedSampler((x, x[:-1]), y, classes_per_batch=2)


@pytest.mark.slow
def map_at_r(embeddings, labels):
    return kml.retrieval.mean_average_precision_at_r(
        embeddings, labels, distance="cosine_similarity"
    )


def test_fit_with_the_sampler_learns_with_a_pair_loss():
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(8, 4)).astype("float32")
    y = np.repeat(np.arange(8), 20)
    signal = centres[y] + 0.3 * rng.normal(size=(160, 4))
    x = np.concatenate([signal, rng.normal(size=(160, 12))], axis=1).astype("float32")
    sampler = kml.data.ClassBalancedSampler(x, y, classes_per_batch=4, samples_per_class=4, seed=0)
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((16,)), keras.layers.Dense(8)])
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=kml.PNLoss(margin=0.5))
    before = map_at_r(model(x), y)
    history = model.fit(sampler, epochs=8, verbose=0)
    assert len(history.history["loss"]) == 8
    assert map_at_r(model(x), y) > before + 0.1
    assert sampler.epoch >= 8  # `fit` calls on_epoch_end: new batches each epoch


@pytest.mark.skipif(not HAS_TF, reason="the tf.data variant needs TensorFlow")
def test_tf_dataset_yields_the_same_batches():
    x, y = _data([5, 6, 7, 8])
    sampler = kml.data.ClassBalancedSampler(x, y, 2, 3, seed=3, steps_per_epoch=4)
    dataset = sampler.as_tf_dataset()
    for epoch in range(2):
        batches = list(dataset.as_numpy_iterator())
        assert len(batches) == 4
        for index, (xb, yb) in enumerate(batches):
            rows = sampler.batch_indices(index, epoch)
            np.testing.assert_array_equal(xb, x[rows])
            np.testing.assert_array_equal(yb, y[rows])


@pytest.mark.skipif(HAS_TF, reason="checks the message where TensorFlow is missing")
def test_tf_dataset_without_tensorflow_says_so():
    x, y = _data([3, 3])
    with pytest.raises(ImportError, match="needs TensorFlow"):
        kml.data.ClassBalancedSampler(x, y, 2).as_tf_dataset()


@pytest.fixture
def fresh_warning():
    pairs_module._WARNED.update(no_positive=False, no_negative=False)
    yield
    pairs_module._WARNED.update(no_positive=False, no_negative=False)


def test_a_batch_without_positive_pair_warns_once_with_value_checks(fresh_warning):
    embeddings = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    distinct, shared = np.arange(4), np.array([0, 0, 1, 2])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kml.pn_loss(distinct, embeddings)  # value checks off: silent
        with kml.config.value_checks():
            kml.pn_loss(shared, embeddings)  # has a positive pair: silent
            kml.pn_loss(distinct, embeddings)
            kml.pn_loss(distinct, embeddings)  # only once
    messages = [str(w.message) for w in caught if "no positive pair" in str(w.message)]
    assert len(messages) == 1 and "ClassBalancedSampler" in messages[0]


def test_a_batch_of_one_class_warns_once_with_value_checks(fresh_warning):
    embeddings = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        kml.multi_similarity_loss(np.zeros(4, "int32"), embeddings)  # value checks off
        with kml.config.value_checks():
            kml.multi_similarity_loss(np.array([0, 0, 1, 1]), embeddings)  # both kinds: silent
            kml.multi_similarity_loss(np.zeros(4, "int32"), embeddings)
            kml.multi_similarity_loss(np.zeros(4, "int32"), embeddings)  # only once
    messages = [str(w.message) for w in caught if "no negative pair" in str(w.message)]
    assert len(messages) == 1 and "classes_per_batch=2 or more" in messages[0]


def test_instance_ids_do_not_warn(fresh_warning):
    embeddings = np.random.default_rng(0).normal(size=(4, 3)).astype("float32")
    with warnings.catch_warnings(record=True) as caught, kml.config.value_checks():
        warnings.simplefilter("always")
        kml.instance_loss(np.arange(4), embeddings)
    assert not [w for w in caught if "keras_metric_losses" in str(w.message)]
