"""The public API: exports, registration, config round trips and saved models."""

import inspect
import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml

TOP_LEVEL = [getattr(kml, n) for n in kml.__all__ if not inspect.ismodule(getattr(kml, n))]
LAYERS = [getattr(kml.layers, name) for name in kml.layers.__all__]
PUBLIC = TOP_LEVEL + [layer for layer in LAYERS if layer not in TOP_LEVEL]
LOSS_CLASSES = [
    obj for obj in PUBLIC if inspect.isclass(obj) and issubclass(obj, keras.losses.Loss)
]
FUNCTIONS = [obj for obj in PUBLIC if inspect.isfunction(obj)]
# Functions with the `(y_true, y_pred)` signature of a Keras loss (the sampled losses take the
# class weights themselves; in a model they are `NCELoss` / `SampledSoftmaxLoss` + `layers.NCE`).
LOSS_FUNCTIONS = [
    fn for fn in FUNCTIONS if list(inspect.signature(fn).parameters)[:2] == ["y_true", "y_pred"]
]
# Layers only reachable as `kml.layers.<Name>`, by design.
LAYERS_NOT_AT_TOP_LEVEL = {"NCE"}


def test_all_names_resolve_and_submodules_are_re_exported():
    for name in kml.losses.__all__:
        assert getattr(kml, name) is getattr(kml.losses, name)
    for name in kml.layers.__all__:
        if name in LAYERS_NOT_AT_TOP_LEVEL:
            assert name not in kml.__all__ and not hasattr(kml, name)
        else:
            assert getattr(kml, name) is getattr(kml.layers, name)
    assert kml.log_uniform_candidate_sampler is kml.sampling.log_uniform_candidate_sampler
    for module in (kml, kml.losses, kml.layers):
        assert sorted(module.__all__) == module.__all__
    assert LOSS_CLASSES and LOSS_FUNCTIONS and kml.nce_loss in FUNCTIONS


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_public_objects_are_registered_and_documented(obj):
    assert keras.saving.get_registered_name(obj) == f"keras_metric_losses>{obj.__name__}"
    assert keras.saving.get_registered_object(f"keras_metric_losses>{obj.__name__}") is obj
    doc = inspect.getdoc(obj) or ""
    assert "Example" in doc
    if obj in LOSS_CLASSES or obj in FUNCTIONS:
        assert "Args:" in doc and "Reference" in doc


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES, ids=lambda c: c.__name__)
def test_loss_config_round_trip(loss_cls):
    loss = loss_cls(name="custom", reduction="sum", dtype="mixed_float16")
    config = loss.get_config()
    assert config["dtype"] == "mixed_float16" and config["reduction"] == "sum"
    restored = loss_cls.from_config(config)
    assert restored.get_config() == config
    assert restored.dtype == "float16"
    serialized = keras.saving.serialize_keras_object(loss)
    json.dumps(serialized)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is loss_cls and restored.get_config() == config
    with pytest.raises(TypeError, match="unexpected keyword argument 'not_an_argument'"):
        loss_cls.from_config({**config, "not_an_argument": 1})
    with pytest.raises(TypeError, match=r"`name` must be a string\. Received: name=3"):
        loss_cls.from_config({**config, "name": 3})
    with pytest.raises(ValueError, match="reduction"):
        loss_cls.from_config({**config, "reduction": "median"})
    with pytest.raises(ValueError, match="not_a_dtype"):
        loss_cls.from_config({**config, "dtype": "not_a_dtype"})


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_loss_function_serialization(fn):
    serialized = keras.saving.serialize_keras_object(fn)
    assert keras.saving.deserialize_keras_object(serialized) is fn


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


LAYER_ARGS = {"NCE": dict(num_classes=20, num_sampled=4), "PairwiseSimilarity": {}}


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.__name__)
def test_layer_config_round_trip(layer_cls):
    layer = layer_cls(name="custom", dtype="mixed_float16", **LAYER_ARGS[layer_cls.__name__])
    config = layer.get_config()
    json.dumps(config)
    restored = layer_cls.from_config(config)
    assert restored.get_config() == config
    restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(layer))
    assert type(restored) is layer_cls and restored.get_config() == config


def test_nce_layer_config_keeps_every_argument():
    layer = kml.layers.NCE(
        50, 5, num_true=2, remove_accidental_hits=True, seed=3,
        kernel_initializer="zeros", bias_initializer="ones",
    )  # fmt: skip
    restored = kml.layers.NCE.from_config(layer.get_config())
    for name in ("num_classes", "num_sampled", "num_true", "remove_accidental_hits", "seed"):
        assert getattr(restored, name) == getattr(layer, name)
    restored.build((None, 3))
    np.testing.assert_array_equal(numpy(restored.bias), np.ones(50))


def pair_model(dim=6):
    anchors, positives = keras.Input((dim,)), keras.Input((dim,))
    embed = keras.layers.Dense(4)
    similarity = kml.PairwiseSimilarity()([embed(anchors), embed(positives)])
    return keras.Model([anchors, positives], similarity)


def nce_model(num_true=2, remove_accidental_hits=False):
    """Sampled logits of `layers.NCE` over 6-d inputs, with `num_true` labels per example."""
    features, labels = keras.Input((6,)), keras.Input((num_true,), dtype="int32")
    embedded = keras.layers.Dense(4)(features)
    nce = kml.layers.NCE(12, 5, num_true, remove_accidental_hits, seed=1)
    return keras.Model([features, labels], nce([embedded, labels]))


def compile_targets():
    """`{loss name: (model, x, y)}` for every loss class and `(y_true, y_pred)` function."""
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(8, 6)).astype("float32") for _ in range(2)]
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    nce_labels = rng.integers(0, 12, size=(8, 2)).astype("float32")  # float: as json round trip
    nce_x = [x[0], nce_labels]
    return {
        "NpairsLoss": (pair_model, x, labels),
        "npairs_loss": (pair_model, x, labels),
        "NpairsMultilabelLoss": (pair_model, x, np.eye(4, dtype="float32")[labels]),
        "npairs_multilabel_loss": (pair_model, x, np.eye(4, dtype="float32")[labels]),
        # The [8, 8] similarity output doubles as 8-dimensional embeddings for the PN loss.
        "PNLoss": (pair_model, x, labels),
        "pn_loss": (pair_model, x, labels),
        "NCELoss": (nce_model, nce_x, nce_labels),
        "SampledSoftmaxLoss": (lambda: nce_model(remove_accidental_hits=True), nce_x, nce_labels),
    }


LOADER = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    import keras_metric_losses  # the only import needed to load the saved models
    out = {}
    for path in sys.argv[1:]:
        model = keras.saving.load_model(path)
        loss = model.loss
        out[path] = {
            "loss": keras.saving.serialize_keras_object(loss),
            "prediction": keras.ops.convert_to_numpy(
                model([np.array(a, "float32") for a in json.load(open(path + ".x.json"))])
            ).tolist(),
            "weights": [keras.ops.convert_to_numpy(w).tolist() for w in model.trainable_weights],
        }
    print(json.dumps(out))
    """
)


def test_saved_models_load_with_only_the_package_import(tmp_path):
    targets = compile_targets()
    assert set(targets) == {loss.__name__ for loss in LOSS_CLASSES + LOSS_FUNCTIONS}
    expected = {}
    for loss in LOSS_CLASSES + LOSS_FUNCTIONS:
        build, x, y = targets[loss.__name__]
        model = build()
        loss_arg = loss(reduction="sum") if inspect.isclass(loss) else loss
        model.compile(optimizer="adam", loss=loss_arg)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        path = str(tmp_path / f"{loss.__name__}.keras")
        model.save(path)
        with open(path + ".x.json", "w") as f:
            json.dump([a.tolist() for a in x], f)
        weights = [numpy(w) for w in model.trainable_weights]
        expected[path] = (loss, numpy(model(x)), weights)
    result = subprocess.run(
        [sys.executable, "-c", LOADER, *expected],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for path, (loss, prediction, weights) in expected.items():
        assert len(loaded[path]["weights"]) == len(weights)
        for restored_weight, weight in zip(loaded[path]["weights"], weights, strict=True):
            np.testing.assert_array_equal(restored_weight, weight)
        if loss.__name__ in ("NCELoss", "SampledSoftmaxLoss"):
            # Sampled logits: the fresh sample differs; the true columns' inputs (weights) agree.
            assert np.shape(loaded[path]["prediction"]) == prediction.shape
            continue
        np.testing.assert_allclose(loaded[path]["prediction"], prediction, rtol=1e-5, atol=1e-6)
        restored = keras.saving.deserialize_keras_object(loaded[path]["loss"])
        if inspect.isclass(loss):
            assert type(restored) is loss and restored.get_config()["reduction"] == "sum"
        else:
            assert restored is loss
