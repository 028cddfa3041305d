"""Cross-batch memory (`layers.CrossBatchMemory`): the XBM reference cases.

No loss spec (the memory wraps the losses of the other families); `GOLDEN` replays, step by
step, PML 2.9's `CrossBatchMemory` (`pml_xbm.json`) and TF Similarity 0.17.1's `XBM` (the XBM
cases of `tfsim_ssl.json`) through a Keras model whose only trainable layer is an identity
`Dense` in front of the memory, trained with learning rate 0: `train_on_batch` returns the
memory's added loss, eagerly or compiled (`jit_compile`), and the memory state is read after
each step.
"""

import keras
import numpy as np

import keras_metric_losses as kml
from keras_metric_losses.losses.base import LossFunctionWrapper
from specs.pair import TFSIM_CLASSES, pml_settings

SPECS = []
RTOL, ATOL = 1e-5, 1e-6


def _replay(memory, steps, dim, compiled, masked):
    """Yields `(step, loss value, memory layer)` after each step of `steps`."""
    embeddings = keras.Input((dim,))
    labels = keras.Input((), dtype="int32")
    inputs = [embeddings, labels]
    identity = keras.layers.Dense(dim, kernel_initializer="identity", bias_initializer="zeros")
    outputs = [identity(embeddings), labels]
    if masked:
        mask = keras.Input((), dtype="bool")
        inputs.append(mask)
        outputs.append(mask)
    model = keras.Model(inputs, memory(outputs))
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), jit_compile=compiled, run_eagerly=not compiled
    )
    for step in steps:
        x = step.get("embeddings", step.get("y_pred"))
        y = step.get("labels", step.get("y_true"))
        arrays = [np.asarray(x, "float32"), np.asarray(y, "int32")]
        if masked:
            arrays.append(np.asarray(step["enqueue_mask"], bool))
        value = model.train_on_batch(arrays)
        yield step, float(value), memory


def _is_compiled(run):
    return getattr(run, "compiled", False)


def _pml_loss(inner):
    """Our loss with PML's settings for `{"call", "kwargs"}` (PML's default reducer)."""
    if inner["call"] == "NTXentLoss":
        kwargs = inner["kwargs"]
        assert kwargs["distance"]["class"] == "CosineSimilarity", kwargs["distance"]
        return kml.NTXentLoss(
            temperature=kwargs["temperature"], distance="cosine_similarity", reducer="pml"
        )
    fn, settings, _, _ = pml_settings(inner)
    return LossFunctionWrapper(fn, name=inner["call"], **settings)


def check_pml(case, run):
    """Per step: PML's scalar, the write position, whether the buffer was filled, the labels."""
    kwargs = case["kwargs"]
    loss = _pml_loss(kwargs["loss"])
    memory = kml.layers.CrossBatchMemory(loss, kwargs["memory_size"], mode="pml")
    masked = any(step.get("enqueue_mask") is not None for step in case["steps"])
    steps = _replay(memory, case["steps"], kwargs["embedding_size"], _is_compiled(run), masked)
    for index, (step, value, layer) in enumerate(steps):
        where = f"{case['id']} step {index}"
        np.testing.assert_allclose(value, step["expected"], rtol=RTOL, atol=ATOL, err_msg=where)
        assert int(keras.ops.convert_to_numpy(layer.position)) == step["queue_idx_after"], where
        filled = int(keras.ops.convert_to_numpy(layer.filled)) == kwargs["memory_size"]
        assert filled == step["has_been_filled_after"], where
        labels = keras.ops.convert_to_numpy(layer.label_memory).tolist()
        assert labels == step["label_memory_after"], where


def check_tfsim(case, run):
    """Per step: TF Similarity's scalar (its default reduction) and the label memory."""
    kwargs = case["kwargs"]
    inner = kwargs["loss"]
    cls = {**TFSIM_CLASSES, "TripletLoss": kml.TripletLoss}[inner["call"]]
    memory = kml.layers.CrossBatchMemory(
        cls(**inner["kwargs"]),
        kwargs["memory_size"],
        mode="tf_similarity",
        warmup_steps=kwargs["warmup_steps"],
    )
    dim = np.shape(case["steps"][0]["y_pred"])[1]
    for index, (step, value, layer) in enumerate(
        _replay(memory, case["steps"], dim, _is_compiled(run), masked=False)
    ):
        where = f"{case['id']} step {index}"
        np.testing.assert_allclose(value, step["expected"], rtol=RTOL, atol=ATOL, err_msg=where)
        expected = step["label_memory_after"]
        assert int(keras.ops.convert_to_numpy(layer.filled)) == len(expected), where
        stored = keras.ops.convert_to_numpy(layer.label_memory)[: len(expected)]
        assert stored.tolist() == expected, where


GOLDEN = {
    ("pml_xbm.json", "CrossBatchMemory"): check_pml,
    ("tfsim_ssl.json", "XBM"): check_tfsim,
}
