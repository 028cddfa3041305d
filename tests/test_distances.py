"""keras_metric_losses.distances: values, names and aliases, serialization, finite gradients."""

import keras
import numpy as np
import pytest
from pn_reference import distance_matrix
from support import numpy, value_and_grad

from keras_metric_losses import distances

RNG = np.random.default_rng(1)
X = RNG.normal(size=(5, 3)).astype("float32")
Y = RNG.normal(size=(4, 3)).astype("float32")


def numpy_distance(name, x, y):
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    squared = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)
    return {
        "cosine": np.maximum(1 - x @ y.T, 0),
        "euclidean": np.sqrt(squared),
        "squared_euclidean": squared,
        "manhattan": np.abs(x[:, None, :] - y[None, :, :]).sum(-1),
        "inner_product": x @ y.T,
    }[name]


NAMES = ["cosine", "euclidean", "squared_euclidean", "manhattan", "inner_product"]


@pytest.mark.parametrize("name", NAMES)
def test_values_match_numpy(name):
    fn = distances.get(name)
    assert fn is getattr(distances, name)
    got = numpy(fn(X, Y))
    assert got.shape == (5, 4)
    np.testing.assert_allclose(got, numpy_distance(name, X, Y), rtol=1e-5, atol=1e-5)
    # The test-suite reference uses the same definitions.
    np.testing.assert_allclose(
        numpy(fn(X, X)), distance_matrix(name, X), rtol=1e-5, atol=2e-3 if "euc" in name else 1e-5
    )


@pytest.mark.parametrize(
    "alias, name",
    [
        ("L2", "euclidean"),
        ("pythagorean", "euclidean"),
        ("SQL2", "squared_euclidean"),
        ("sqeuclidean", "squared_euclidean"),
        ("l1", "manhattan"),
        ("Taxicab", "manhattan"),
        ("IP", "inner_product"),
        ("CosineDistance", "cosine"),
        ("COSINE", "cosine"),
    ],
)
def test_aliases_are_case_insensitive(alias, name):
    assert distances.get(alias) is getattr(distances, name)
    assert distances.serialize(alias) == name


def test_unknown_names_list_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown distance.*'euclidean'.*'l2'.*distance='l3'"):
        distances.get("l3")
    with pytest.raises(ValueError, match="distance=None"):
        distances.get(None)
    assert "sql2" in distances.names() and sorted(distances.names()) == distances.names()


def test_builtins_are_registered_and_serialize_to_names():
    for name in NAMES:
        fn = getattr(distances, name)
        assert keras.saving.get_registered_name(fn) == f"keras_metric_losses>{name}"
        assert distances.get(f"keras_metric_losses>{name}") is fn
        assert distances.serialize(fn) == name


@keras.saving.register_keras_serializable(package="distance_tests")
def scaled_l1(query, key):
    return 2.0 * distances.manhattan(query, key)


def test_callables_and_registered_names():
    assert distances.get(scaled_l1) is scaled_l1
    assert distances.serialize(scaled_l1) == "distance_tests>scaled_l1"
    assert distances.get("distance_tests>scaled_l1") is scaled_l1
    with pytest.raises(ValueError, match="register_keras_serializable"):
        distances.serialize(lambda q, k: q @ k.T)


@pytest.mark.parametrize("name", NAMES)
def test_gradients_are_finite_at_zero_distance(name):
    duplicated = np.array([[1.0, 2.0], [1.0, 2.0], [0.0, 0.0], [0.0, 0.0]], "float32")
    fn = distances.get(name)
    value, grad = value_and_grad(lambda x: keras.ops.sum(fn(x, x)), duplicated)
    assert np.isfinite(value) and np.isfinite(grad).all()


def test_euclidean_is_exactly_zero_with_zero_gradient_on_duplicates():
    x = np.array([[0.0, 0.0], [0.0, 0.0], [3.0, 4.0]], "float32")
    d = numpy(distances.euclidean(x, x))
    np.testing.assert_array_equal(d, [[0, 0, 5], [0, 0, 5], [5, 5, 0]])

    def pair_01(e):  # the distance between the two duplicated rows only
        return keras.ops.sum(distances.euclidean(e[:2], e[:2]))

    _, grad = value_and_grad(pair_01, x)
    np.testing.assert_array_equal(grad, np.zeros_like(x))


def test_safe_sqrt_has_zero_gradient_at_zero():
    from keras_metric_losses.ops import safe_sqrt

    x = np.array([0.0, 4.0, 0.25], "float32")
    value, grad = value_and_grad(lambda v: keras.ops.sum(safe_sqrt(v)), x)
    np.testing.assert_allclose(value, 2.5)
    np.testing.assert_allclose(grad, [0.0, 0.25, 1.0])


def test_safe_sqrt_carries_nan():
    from keras_metric_losses.ops import safe_sqrt

    x = np.array([np.nan, -1.0, np.inf, 9.0], "float32")
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(safe_sqrt(x)), [np.nan, 0, np.inf, 3])
