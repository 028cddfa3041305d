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
from support import compile_frozen

import keras_metric_losses as kml
from keras_metric_losses import pairs as pairs_lib
from keras_metric_losses.losses.softmax import core as softmax_core
from specs.pair import TFSIM_CLASSES, pml_settings

SPECS = []
RTOL, ATOL = 1e-5, 1e-6


def _replay(memory, steps, dim, run, masked):
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
    compile_frozen(model, run)
    for step in steps:
        x = step.get("embeddings", step.get("y_pred"))
        y = step.get("labels", step.get("y_true"))
        arrays = [np.asarray(x, "float32"), np.asarray(y, "int32")]
        if masked:
            arrays.append(np.asarray(step["enqueue_mask"], bool))
        value = model.train_on_batch(arrays)
        yield step, float(value), memory


def _is_compiled(run):
    """Whether the step of the model that replays the memory is compiled."""
    return getattr(run, "jit_compile", False)


def _element_recorder(loss, inner, record):
    """Makes the layer's loss also append, per call, PML's unreduced elements `{name: (values
    [b, K], mask [b, K])}` of the pairs the layer gives it: the same front end with the keys
    the memory passes (`pairs.Keys.memory`: slots masked until filled, each query's own slot
    removed, masked rows not queries). The layer adds one scalar, so the elements are read
    from inside the loss's `per_example`, in the eager tier (`run_eagerly`)."""
    per_example = loss.per_example

    def recording(y_true, y_pred, keys):
        if inner["call"] == "NTXentLoss":
            pairs = pairs_lib.build(y_true, y_pred, keys)
            temperature = inner["kwargs"]["temperature"]
            elements = {"loss": softmax_core.ntxent_pair_terms(pairs, temperature=temperature)}
        else:
            _, settings, elements_fn, element_kwargs = pml_settings(inner)
            pairs = pairs_lib.build(y_true, y_pred, keys, normalize=settings["normalize"])
            elements = elements_fn(pairs, **element_kwargs)
        _to_host(elements, record)
        return per_example(y_true, y_pred, keys)

    loss.per_example = recording


def _to_host(elements, record):
    """Appends `{name: (values, mask)}` as NumPy to `record`. JAX traces even an eager train
    step (for the gradient), so there the arrays come out through `jax.debug.callback`."""
    names = sorted(elements)
    flat = [t for name in names for t in elements[name]]

    def store(*arrays):
        arrays = [np.asarray(a) for a in arrays]
        record.append({n: (arrays[2 * i], arrays[2 * i + 1]) for i, n in enumerate(names)})

    if keras.backend.backend() == "jax":
        import jax

        jax.debug.callback(store, *flat)
    else:
        store(*(keras.ops.convert_to_numpy(t) for t in flat))


def _check_elements(elements, step, where):
    """Our dense elements against PML's list: counts, `[query, memory slot]` indices (queries
    numbered among the rows that are queries, as PML does with an `enqueue_mask`) in
    `torch.where`'s row-major order, and values."""
    expected_elements = step["expected_elements"]
    assert sorted(elements) == sorted(expected_elements), where
    mask_rows = step.get("enqueue_mask")
    queries = np.ones(len(step["labels"]), bool) if mask_rows is None else ~np.asarray(mask_rows)
    query_number = np.cumsum(queries) - 1
    for name, (values, mask) in elements.items():
        expected = expected_elements[name]
        mask = mask.astype(bool)
        what = f"{where}: {name}"
        if expected["indexed_by"] == "zero_loss":
            assert not mask.any(), what
            continue
        assert mask.sum() == expected["count"], (what, mask.sum(), expected["count"])
        if expected.get("omitted"):
            continue
        rows, columns = np.nonzero(mask)
        assert queries[rows].all(), what
        np.testing.assert_array_equal([query_number[rows], columns], expected["indices"], what)
        np.testing.assert_allclose(
            values[rows, columns], expected["losses"], rtol=RTOL, atol=ATOL, err_msg=what
        )


def check_pml(case, run):
    """Per step: PML's scalar, the write position, whether the buffer was filled, the labels,
    and (eager tier) every unreduced element with its `[query, memory slot]` index."""
    kwargs = case["kwargs"]
    loss = kml.compat.pml.loss(kwargs["loss"]["call"], **kwargs["loss"]["kwargs"])
    record = []
    if not _is_compiled(run):  # a compiled step has no concrete elements to read
        _element_recorder(loss, kwargs["loss"], record)
    memory = kml.layers.CrossBatchMemory(loss, kwargs["memory_size"], mode="pml")
    masked = any(step.get("enqueue_mask") is not None for step in case["steps"])
    steps = _replay(memory, case["steps"], kwargs["embedding_size"], run, masked)
    for index, (step, value, layer) in enumerate(steps):
        where = f"{case['id']} step {index}"
        np.testing.assert_allclose(value, step["expected"], rtol=RTOL, atol=ATOL, err_msg=where)
        if not _is_compiled(run):
            assert len(record) == index + 1, where  # one loss call per step
            _check_elements(record[index], step, where)
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
        _replay(memory, case["steps"], dim, run, masked=False)
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
