"""Writes `tests/data/saved_0.1.0/`: `.keras` files saved by release 0.1.0, which
`tests/test_legacy.py` loads with every later version.

Run once, on the 0.1.0 code (commit da9ae94), from the `tests/` directory:
`KERAS_BACKEND=jax python legacy/make_saved_models.py`. For every loss class and loss function
of 0.1.0 (the test specs' model recipes, as `test_serialization` builds them), plus two
cross-batch memory models, it trains one epoch on 8 rows, saves the model, and records the
inputs, the model's prediction, the loss of that prediction and the public API's signatures
(`api.json`).
"""

import inspect
import json
import pathlib

import keras
import numpy as np
from specs import SPECS
from support import FUNCTIONS, LOSS_CLASSES, LOSS_FUNCTIONS, PUBLIC, numpy

import keras_metric_losses as kml

OUT = pathlib.Path(__file__).parent.parent / "data" / "saved_0.1.0"


def _targets():
    targets = {}
    for spec in SPECS:
        targets[spec.cls.__name__] = (spec.kind, spec.loss(reduction="sum"))
        if spec.function in LOSS_FUNCTIONS:
            targets[spec.function.__name__] = (spec.kind, spec.function)
    return targets


def _memory_model(loss):
    x, y = keras.Input((6,)), keras.Input((), dtype="int32")
    embeddings = keras.layers.UnitNormalization()(keras.layers.Dense(4)(x))
    memory = kml.layers.CrossBatchMemory(loss, memory_size=16)
    return keras.Model([x, y], memory([embeddings, y]))


def rewind_samplers(model):
    """Keras does not save `SeedGenerator` states: an `NCE` layer's draws restart from its seed."""
    for layer in model.layers:
        if isinstance(layer, kml.layers.NCE):
            layer.seed_generator.state.assign(keras.random.SeedGenerator(layer.seed).state.value)


def _save(name, model, x, y, loss_of_prediction):
    model.fit(x, y, batch_size=8, epochs=1, verbose=0)
    rewind_samplers(model)
    prediction = numpy(model.predict(x, batch_size=8, verbose=0))
    model.save(OUT / f"{name}.keras")
    record = {
        "x": [a.tolist() for a in x],
        "y": None if y is None else np.asarray(y).tolist(),
        "prediction": prediction.tolist(),
        "loss": None if loss_of_prediction is None else loss_of_prediction(prediction),
    }
    (OUT / f"{name}.json").write_text(json.dumps(record))


def _signature(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    parameters = list(inspect.signature(target).parameters.values())
    if inspect.isclass(obj):
        parameters = parameters[1:]
    return [
        [p.name, p.kind.name, None if p.default is p.empty else repr(p.default)] for p in parameters
    ]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for name, (kind, loss) in _targets().items():
        keras.utils.set_random_seed(0)
        model = kind.model()
        x, y = kind.data(batch=8)
        x = x if isinstance(x, list) else [x]
        model.compile(optimizer="adam", loss=loss)
        _save(name, model, x, y, lambda p, y=y, model=model: numpy(model.loss(y, p)).tolist())
    for name, loss in (("memory_PNLoss", kml.PNLoss()), ("memory_MS", kml.MultiSimilarityLoss())):
        keras.utils.set_random_seed(0)
        model = _memory_model(loss)
        (x, _), y = __import__("specs.kinds", fromlist=["x"]).clustered_inputs(8)
        model.compile(optimizer="adam")
        _save(name, model, [x, y.astype("int32")], None, None)
    api = {obj.__name__: _signature(obj) for obj in PUBLIC}
    configs = {cls.__name__: cls().get_config() for cls in LOSS_CLASSES}
    registered = sorted(keras.saving.get_registered_name(obj) for obj in PUBLIC + FUNCTIONS)
    (OUT / "api.json").write_text(
        json.dumps({"signatures": api, "configs": configs, "registered": registered}, indent=1)
    )


if __name__ == "__main__":
    main()
