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

PUBLIC = [getattr(kml, name) for name in kml.__all__ if not inspect.ismodule(getattr(kml, name))]
LOSS_CLASSES = [
    obj for obj in PUBLIC if inspect.isclass(obj) and issubclass(obj, keras.losses.Loss)
]
LOSS_FUNCTIONS = [obj for obj in PUBLIC if inspect.isfunction(obj)]


def test_all_names_resolve_and_submodules_are_re_exported():
    for module in (kml.losses, kml.layers):
        for name in module.__all__:
            assert getattr(kml, name) is getattr(module, name)
    assert sorted(kml.__all__) == kml.__all__
    assert LOSS_CLASSES and LOSS_FUNCTIONS


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_public_objects_are_registered_and_documented(obj):
    assert keras.saving.get_registered_name(obj) == f"keras_metric_losses>{obj.__name__}"
    assert keras.saving.get_registered_object(f"keras_metric_losses>{obj.__name__}") is obj
    doc = inspect.getdoc(obj) or ""
    assert "Example" in doc
    if obj in LOSS_CLASSES or obj in LOSS_FUNCTIONS:
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


@pytest.mark.parametrize("fn", LOSS_FUNCTIONS, ids=lambda f: f.__name__)
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


def pair_model(dim=6):
    anchors, positives = keras.Input((dim,)), keras.Input((dim,))
    embed = keras.layers.Dense(4)
    similarity = kml.PairwiseSimilarity()([embed(anchors), embed(positives)])
    return keras.Model([anchors, positives], similarity)


def compile_targets():
    rng = np.random.default_rng(0)
    x = [rng.normal(size=(8, 6)).astype("float32") for _ in range(2)]
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3])
    return x, {
        "NpairsLoss": labels,
        "npairs_loss": labels,
        "NpairsMultilabelLoss": np.eye(4, dtype="float32")[labels],
        "npairs_multilabel_loss": np.eye(4, dtype="float32")[labels],
        # The [8, 8] similarity output doubles as 8-dimensional embeddings for the PN loss.
        "PNLoss": labels,
        "pn_loss": labels,
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
        }
    print(json.dumps(out))
    """
)


def test_saved_models_load_with_only_the_package_import(tmp_path):
    x, targets = compile_targets()
    expected = {}
    for loss in LOSS_CLASSES + LOSS_FUNCTIONS:
        model = pair_model()
        loss_arg = loss(reduction="sum") if inspect.isclass(loss) else loss
        model.compile(optimizer="adam", loss=loss_arg)
        y = targets[loss.__name__]
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        path = str(tmp_path / f"{loss.__name__}.keras")
        model.save(path)
        with open(path + ".x.json", "w") as f:
            json.dump([a.tolist() for a in x], f)
        expected[path] = (loss, numpy(model(x)))
    result = subprocess.run(
        [sys.executable, "-c", LOADER, *expected],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for path, (loss, prediction) in expected.items():
        np.testing.assert_allclose(loaded[path]["prediction"], prediction, rtol=1e-5, atol=1e-6)
        restored = keras.saving.deserialize_keras_object(loaded[path]["loss"])
        if inspect.isclass(loss):
            assert type(restored) is loss and restored.get_config()["reduction"] == "sum"
        else:
            assert restored is loss
