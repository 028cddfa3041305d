"""Serialization safety: strict configs, and `.keras` files that load with `safe_mode=True`."""

import inspect
import json
import re
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
from specs import SPECS
from support import FUNCTIONS, LAYERS, LOSS_CLASSES, LOSS_FUNCTIONS, PUBLIC, firsts, numpy

import keras_metric_losses as kml

CONSTRUCTOR_ARGS = {
    "NCE": dict(num_classes=20, num_sampled=4),
    "PairwiseSimilarity": {},
    "CrossBatchMemory": dict(loss=kml.PNLoss(), memory_size=16),
    "ClassProxies": dict(num_classes=20),
    "LogitScale": dict(loss=kml.ClipLoss()),
    "MultipleLosses": dict(losses={"pn": kml.PNLoss(), "ms": kml.MultiSimilarityLoss()}),
    "SelfSupervisedLoss": dict(loss=kml.NTXentLoss(temperature=0.2), symmetric=False),
    "MatryoshkaLoss": dict(
        loss=kml.CoSENTLoss(), matryoshka_dims=[3, 2], n_dims_per_step=1, seed=3
    ),
}
CLASSES = [obj for obj in PUBLIC if inspect.isclass(obj)]


def instance(cls, **kwargs):
    return cls(**CONSTRUCTOR_ARGS.get(cls.__name__, {}), **kwargs)


@pytest.mark.parametrize("loss_cls", LOSS_CLASSES, ids=lambda c: c.__name__)
def test_loss_config_round_trip(loss_cls):
    loss = instance(loss_cls, name="custom", reduction="sum", dtype="mixed_float16")
    config = loss.get_config()
    assert config["dtype"] == "mixed_float16" and config["reduction"] == "sum"
    restored = loss_cls.from_config(config)
    assert restored.get_config() == config
    assert restored.dtype == "float16"
    serialized = keras.saving.serialize_keras_object(loss)
    json.dumps(serialized)
    restored = keras.saving.deserialize_keras_object(serialized)
    assert type(restored) is loss_cls and restored.get_config() == config


@pytest.mark.parametrize("layer_cls", LAYERS, ids=lambda c: c.__name__)
def test_layer_config_round_trip(layer_cls):
    layer = instance(layer_cls, name="custom", dtype="mixed_float16")
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


@pytest.mark.parametrize("fn", FUNCTIONS, ids=lambda f: f.__name__)
def test_loss_function_serialization(fn):
    serialized = keras.saving.serialize_keras_object(fn)
    assert keras.saving.deserialize_keras_object(serialized) is fn


# --- Configs that must be rejected, with an error naming the key and the value ---------------


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_config_names_an_unknown_key(cls):
    config = instance(cls).get_config()
    with pytest.raises(TypeError) as error:
        cls.from_config({**config, "not_an_argument": 1, "margn": 2.0})
    message = str(error.value)
    assert f"Unknown key(s) ['margn', 'not_an_argument'] in the config of `{cls.__name__}`" in (
        message
    )
    assert "Received: margn=2.0, not_an_argument=1" in message
    # Every key that get_config writes is listed as accepted.
    assert all(repr(key) in message for key in config)


class _Wrong:
    """A value no config key accepts, with a recognisable repr."""

    def __repr__(self):
        return "<wrong value>"


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: c.__name__)
def test_from_config_rejects_a_wrong_value_for_every_key(cls):
    config = instance(cls).get_config()
    for key in config:
        with pytest.raises((TypeError, ValueError)) as error:
            cls.from_config({**config, key: _Wrong()})
        assert f"{key}=<wrong value>" in str(error.value), (key, str(error.value))


@pytest.mark.parametrize(
    "cls, key, value, error",
    [
        (kml.PNLoss, "margin", "1", ValueError),
        (kml.PNLoss, "soft_margin", "yes", TypeError),
        (kml.PNLoss, "distance", 3, ValueError),
        (kml.PNLoss, "negative_mining_strategy", "hardest", ValueError),
        (kml.NpairsLoss, "reduction", 5, ValueError),
        (kml.NpairsLoss, "cross_replica", 1, TypeError),
        (kml.NCELoss, "name", 3, TypeError),
        (kml.SampledSoftmaxLoss, "dtype", "float17", ValueError),
        (kml.layers.NCE, "num_sampled", 2.5, ValueError),
        (kml.layers.NCE, "num_classes", "20", ValueError),
        (kml.layers.NCE, "seed", 1.5, TypeError),
        (kml.layers.NCE, "remove_accidental_hits", "yes", TypeError),
        (kml.layers.NCE, "kernel_initializer", 3, ValueError),
        (kml.PairwiseSimilarity, "normalize", "yes", TypeError),
    ],
)
def test_from_config_rejects_wrong_types(cls, key, value, error):
    config = instance(cls).get_config()
    # Keras' `Layer.from_config` re-raises constructor errors as `TypeError`, message included.
    expected = (error, TypeError) if issubclass(cls, keras.layers.Layer) else error
    named = "Received: .*" + re.escape(f"{key}={value!r}")
    with pytest.raises(expected, match=named):
        cls.from_config({**config, key: value})
    with pytest.raises(error, match=named):
        cls(**{**config, key: value})


# --- Saved models: `.keras` files load in safe mode, in a fresh process ----------------------


# Loss classes that a layer of their model computes (`compiled=False`, `ManifoldLoss`): the
# model is compiled without a loss, so `summary` has no `model.loss` to compare; their layer is
# saved and reloaded with its loss and seed state by tests/test_manifold.py.
NOT_COMPILED = {spec.cls.__name__ for spec in SPECS if not spec.compiled}


COMPOSITE = ("MultipleLosses", "SelfSupervisedLoss", "MatryoshkaLoss")


def compile_targets():
    """`{loss name: (spec, loss argument of compile)}` for every loss class and function
    compiled on its model (all but `NOT_COMPILED`)."""
    targets = {}
    for spec in (spec for spec in SPECS if spec.compiled):
        targets[spec.cls.__name__] = (spec, spec.loss(reduction="sum"))
        if spec.function in LOSS_FUNCTIONS:
            targets[spec.function.__name__] = (spec, spec.function)
    # The losses made of other losses (`COMPOSITE`), on the models of the losses they hold.
    pair, views = targets["MultiSimilarityLoss"][0], targets["SimCLRLoss"][0]
    losses = [pair.loss(), kml.PNLoss()]
    targets["MultipleLosses"] = (pair, kml.MultipleLosses(losses, [1.0, 0.5], reduction="sum"))
    ntxent = kml.NTXentLoss(temperature=0.2)
    targets["SelfSupervisedLoss"] = (views, kml.SelfSupervisedLoss(ntxent, reduction="sum"))
    targets["MatryoshkaLoss"] = (
        targets["CoSENTLoss"][0],
        kml.MatryoshkaLoss(kml.CoSENTLoss(), [4, 2], reduction="sum"),
    )
    return targets


def summary(model, x, y, prediction):
    """What must survive saving: configs of the loss and the package's layers, the weights, the
    model's output on `x` and the loss of `prediction`.

    Keras does not save `SeedGenerator` states (as for `Dropout`): a loaded `NCE` layer draws
    its candidates from its seed again, so the output is taken after rewinding the sampler.
    """
    for layer in model.layers:
        if isinstance(layer, kml.layers.NCE):
            layer.seed_generator.state.assign(keras.random.SeedGenerator(layer.seed).state.value)
    return {
        "loss": keras.saving.serialize_keras_object(model.loss),
        "layers": [
            layer.get_config()
            for layer in model.layers
            if type(layer).__module__.startswith("keras_metric_losses")
        ],
        "weights": [numpy(w).tolist() for w in model.weights],
        "prediction": numpy(model(x)).tolist(),
        "loss_value": numpy(model.loss(y, prediction)).tolist(),
    }


LOADER = textwrap.dedent(
    """
    import json, sys
    import keras
    import numpy as np
    import keras_metric_losses  # the only import needed: no custom_objects
    sys.path.insert(0, sys.argv[1])
    from test_serialization import summary
    out = {}
    for path in sys.argv[2:]:
        model = keras.saving.load_model(path, safe_mode=True)
        x, y, prediction = (json.load(open(path + f".{part}.json")) for part in "xyp")
        x = [np.array(a, "float32") for a in x]
        out[path] = summary(model, x, np.array(y), np.array(prediction, "float32"))
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_saved_models_load_in_safe_mode_with_only_the_package_import(tmp_path):
    targets = compile_targets()
    assert set(targets) == {loss.__name__ for loss in LOSS_CLASSES + LOSS_FUNCTIONS} - NOT_COMPILED
    # Every loss on torch (11 s there on an empty cache, against 49 s on JAX, whose eager steps
    # compile op by op, and 42 s on TensorFlow); elsewhere the first loss of each family and
    # kind (its class: a layer of each kind's model) and each loss made of other losses. Configs
    # are Python, the same on every backend; weights and layer states are saved by Keras.
    keyed = (
        ((name,) if name in COMPOSITE else (spec.family, spec.kind.name), (name, (spec, loss)))
        for name, (spec, loss) in targets.items()
    )
    expected = {}
    for name, (spec, loss) in (item for _, item in firsts(keyed, every_one_on="torch")):
        keras.utils.set_random_seed(0)
        model = spec.kind.model()
        x, y = spec.kind.data(batch=8)
        x = x if isinstance(x, list) else [x]
        # One eager step: what is saved does not depend on how the step ran, and tracing a
        # train function per loss costs seconds.
        model.compile(optimizer="adam", loss=loss, run_eagerly=True)
        model.fit(x, y, batch_size=8, epochs=1, verbose=0)
        prediction = numpy(model(x))
        path = str(tmp_path / f"{name}.keras")
        model.save(path)
        for part, value in {"x": [a.tolist() for a in x], "y": y.tolist()}.items():
            (tmp_path / f"{name}.keras.{part}.json").write_text(json.dumps(value))
        (tmp_path / f"{name}.keras.p.json").write_text(json.dumps(prediction.tolist()))
        expected[path] = json.loads(json.dumps(summary(model, x, y, prediction)))
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    result = subprocess.run(
        [sys.executable, "-c", LOADER, tests_dir, *expected],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    for path, original in expected.items():
        assert loaded[path] == original, path
