"""The public API: exports, registration and documentation (saving: test_serialization.py)."""

import inspect

import keras
import numpy as np
import pytest
from support import FUNCTIONS, LOSS_CLASSES, LOSS_FUNCTIONS, PUBLIC, numpy

import keras_metric_losses as kml

# Layers only reachable as `kml.layers.<Name>`, by design.
LAYERS_NOT_AT_TOP_LEVEL = {"NCE", "CrossBatchMemory", "DynamicSoftMargin", "LogitScale"}


def _isort_key(name):
    """CONSTANTS first, then CamelCase, then the rest, each alphabetically (ruff's RUF022)."""
    return (0 if name.isupper() else 1 if name[:1].isupper() else 2, name)


def test_all_names_resolve_and_submodules_are_re_exported():
    for name in kml.losses.__all__:
        assert getattr(kml, name) is getattr(kml.losses, name)
    for name in kml.layers.__all__:
        if name in LAYERS_NOT_AT_TOP_LEVEL:
            assert name not in kml.__all__ and not hasattr(kml, name)
        else:
            assert getattr(kml, name) is getattr(kml.layers, name)
    assert kml.log_uniform_candidate_sampler is kml.sampling.log_uniform_candidate_sampler
    for module in (kml, kml.losses, kml.layers):  # ruff's isort-style order (RUF022)
        assert sorted(module.__all__, key=_isort_key) == module.__all__
    assert LOSS_CLASSES and LOSS_FUNCTIONS and kml.nce_loss in FUNCTIONS


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_public_objects_are_registered_and_documented(obj):
    assert keras.saving.get_registered_name(obj) == f"keras_metric_losses>{obj.__name__}"
    assert keras.saving.get_registered_object(f"keras_metric_losses>{obj.__name__}") is obj
    doc = inspect.getdoc(obj) or ""
    assert "Example" in doc
    if obj in LOSS_CLASSES or obj in FUNCTIONS:
        assert "Args:" in doc and "Reference" in doc


def test_pairwise_similarity_layer():
    a = np.array([[1.0, 0.0], [3.0, 4.0]], "float32")
    b = np.array([[0.0, 2.0], [1.0, 1.0], [2.0, 0.0]], "float32")
    np.testing.assert_allclose(numpy(kml.PairwiseSimilarity()([a, b])), a @ b.T)
    np.testing.assert_allclose(numpy(kml.PairwiseSimilarity()(a)), a @ a.T)
    unit = a / np.linalg.norm(a, axis=1, keepdims=True)
    np.testing.assert_allclose(
        numpy(kml.PairwiseSimilarity(normalize=True)(a)), unit @ unit.T, rtol=1e-6
    )
    layer = kml.PairwiseSimilarity(normalize=True, name="sim")
    assert kml.PairwiseSimilarity.from_config(layer.get_config()).get_config() == layer.get_config()
    assert layer.compute_output_shape([(None, 2), (7, 2)]) == (None, 7)
    with pytest.raises(TypeError, match="normalize"):
        kml.PairwiseSimilarity(normalize="yes")
