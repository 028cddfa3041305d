"""`layers.CrossBatchMemory`: the ring buffer, both semantics, saving, training and errors.

The reference cases of pml_xbm.json and the XBM cases of tfsim_ssl.json (values per step and
the queue state) are checked by `specs/memory.py` through test_golden.py.
"""

import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from support import compiled, numpy, python_block
from xbm_reference import CrossBatchMemory as ReferenceMemory

import keras_metric_losses as kml
from keras_metric_losses.losses.base import DECLARED

DIM = 3
RECIPE = python_block(pathlib.Path(__file__).parent.parent / "docs" / "memory.md", "## Recipe")
RECIPE_LOSS = "kml.MultiSimilarityLoss()"


def memory_model(memory):
    x, y = keras.Input((4,)), keras.Input((), dtype="int32")
    embeddings = keras.layers.UnitNormalization()(keras.layers.Dense(DIM)(x))
    return keras.Model([x, y], memory([embeddings, y]))


def batches(sizes, seed=0):
    rng = np.random.default_rng(seed)
    for size in sizes:
        yield (
            rng.normal(size=(size, DIM)).astype("float32"),
            rng.integers(0, 3, size).astype("int32"),
        )


def step(memory, embeddings, labels, enqueue_mask=None):
    inputs = [embeddings, labels] + ([] if enqueue_mask is None else [enqueue_mask])
    if not memory.built:
        memory.build([tuple(embeddings.shape), tuple(labels.shape)])
    out = memory(inputs, training=True)
    np.testing.assert_array_equal(numpy(out), embeddings)
    return float(numpy(memory.losses[-1]))


def state(memory):
    return {
        "position": int(numpy(memory.position)),
        "labels": numpy(memory.label_memory).tolist(),
        "memory": numpy(memory.embedding_memory),
    }


@pytest.mark.parametrize(
    "sizes",
    [
        [6, 6, 6, 6],
        pytest.param([5, 7, 3, 6], marks=pytest.mark.slow),
        pytest.param([1, 4, 9, 2], marks=pytest.mark.slow),
    ],
)
def test_pml_ring_buffer_follows_the_reference(sizes):
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), memory_size=10)
    reference = ReferenceMemory(lambda *args: None, DIM, 10)
    for embeddings, labels in batches(sizes):
        step(memory, embeddings, labels)
        expected = reference(embeddings, labels)
        got = state(memory)
        assert got["position"] == expected.queue_idx
        assert got["labels"] == expected.label_memory.tolist()
        np.testing.assert_allclose(got["memory"], reference.embedding_memory, rtol=1e-6)
        assert int(numpy(memory.filled)) == (10 if expected.has_been_filled else expected.queue_idx)


def test_pml_enqueue_mask_writes_only_the_masked_rows():
    """The last batch writes 7 rows into 6 slots: the ring keeps the latest 6 (its first row is
    overwritten by its seventh), as the sequential write of the reference does."""
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), memory_size=6)
    reference = ReferenceMemory(lambda *args: None, DIM, 6)
    masks = ([1, 0, 1, 0], [1, 1, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1, 0, 1, 1, 1])
    for (embeddings, labels), mask in zip(batches([4, 4, 4, 8]), masks, strict=True):
        mask = np.array(mask, bool)
        step(memory, embeddings, labels, mask)
        expected = reference(embeddings, labels, mask)
        assert state(memory)["position"] == expected.queue_idx
        assert state(memory)["labels"] == expected.label_memory.tolist()
        np.testing.assert_allclose(state(memory)["memory"], reference.embedding_memory, rtol=1e-6)


def test_tf_similarity_memory_is_newest_first_after_warm_up():
    memory = kml.layers.CrossBatchMemory(
        kml.PNLoss(), memory_size=5, mode="tf_similarity", warmup_steps=1
    )
    seen = []
    for embeddings, labels in batches([2, 2, 2, 2]):
        step(memory, embeddings, labels)
        seen.append(labels)
    # Step 1 is warm-up (no update); then the newest batch first, the oldest dropped.
    expected = np.concatenate([seen[3], seen[2], seen[1]])[:5]
    assert state(memory)["labels"] == expected.tolist()


def test_loss_uses_only_the_filled_slots_and_its_own_slot_is_not_a_positive():
    """A first batch of two rows of one class and one of another: the keys are the three filled
    slots (not the zero-initialised rest, whose label 0 would be positives of class 0)."""
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(soft_margin=True, reduction="sum"), 8)
    embeddings = np.array([[1, 0, 0], [0.6, 0.8, 0], [0, 0, 1]], "float32")
    labels = np.array([0, 0, 1], "int32")
    step(memory, embeddings, labels)
    expected = numpy(kml.pn_loss(labels, embeddings, soft_margin=True)).sum()
    np.testing.assert_allclose(numpy(memory.losses[-1]), expected, rtol=1e-6)


def test_gradients_flow_through_the_batch_only():
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(negative_mining_strategy="hard"), 8)
    first, labels = next(batches([4], seed=3))
    step(memory, first, labels)
    second, labels = next(batches([4], seed=4))

    def loss(e):
        memory([e, labels], training=True)
        return memory.losses[-1]

    from support import value_and_grad

    before = numpy(memory.embedding_memory).copy()
    _, grad = value_and_grad(loss, second, traced=False)  # the step writes the memory
    assert np.isfinite(grad).all() and np.abs(grad).max() > 0
    assert not np.array_equal(numpy(memory.embedding_memory), before)  # written, no gradient


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["pml", "tf_similarity"])
def test_compiled_fit_updates_the_memory_and_saves_it(mode, tmp_path):
    keras.utils.set_random_seed(0)
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), memory_size=12, mode=mode, name="xbm")
    model = memory_model(memory)
    model.compile(optimizer="adam", jit_compile=keras.backend.backend() != "torch")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(24, 4)).astype("float32")
    y = np.repeat(np.arange(6), 4).astype("int32")
    history = model.fit([x, y], batch_size=4, epochs=2, shuffle=False, verbose=0)
    assert np.isfinite(history.history["loss"]).all() and history.history["loss"][-1] > 0
    saved = {w.name: numpy(w).tolist() for w in memory.weights}
    assert sorted(saved["label_memory"]) != [0] * 12
    path = str(tmp_path / "xbm.keras")
    model.save(path)
    loader = (
        "import json, sys, keras, keras_metric_losses\n"
        "model = keras.saving.load_model(sys.argv[1], safe_mode=True)\n"
        "memory = model.get_layer('xbm')\n"
        "print(json.dumps({w.name: keras.ops.convert_to_numpy(w).tolist()"
        " for w in memory.weights}))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", loader, path], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads(result.stdout.strip().splitlines()[-1]) == saved
    # Training resumes from the saved memory.
    loaded = keras.saving.load_model(path)
    loaded.fit([x[:4], y[:4]], batch_size=4, epochs=1, verbose=0)
    position = int(numpy(loaded.get_layer("xbm").position))
    if mode == "pml":
        assert position == (saved["position"] + 4) % 12


def test_predict_does_not_touch_the_memory():
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), memory_size=8)
    model = memory_model(memory)
    x = np.ones((4, 4), "float32")
    model.predict([x, np.zeros(4, "int32")], verbose=0)
    assert int(numpy(memory.position)) == 0 and not numpy(memory.label_memory).any()


def test_memory_follows_the_variable_dtype_under_mixed_precision():
    keras.config.set_dtype_policy("mixed_float16")
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), memory_size=8)
    embeddings = keras.ops.cast(np.eye(4, 3, dtype="float32"), "float16")
    step(memory, embeddings, np.array([0, 0, 1, 1], "int32"))
    assert keras.backend.standardize_dtype(memory.embedding_memory.dtype) == "float32"


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"memory_size": 0}, ValueError, r"memory_size.*positive int.*memory_size=0"),
        ({"memory_size": 2.5}, ValueError, r"memory_size=2.5"),
        ({"mode": "moco"}, ValueError, r"mode.*\['pml', 'tf_similarity'\].*mode='moco'"),
        ({"warmup_steps": -1}, ValueError, r"warmup_steps.*>= 0.*warmup_steps=-1"),
        ({"cross_replica": 1}, TypeError, r"cross_replica.*bool"),
        ({"loss": "PNLoss"}, TypeError, r"`loss` must be a loss of keras_metric_losses"),
        (
            {"loss": kml.TripletSemiHardLoss()},
            ValueError,
            r"`TripletSemiHardLoss` takes no keys other than its batch.*CircleLoss.*"
            r"Received: loss=TripletSemiHardLoss\(\)",
        ),
        (
            {"loss": kml.SupConMultilabelLoss()},
            ValueError,
            r"multi-hot labels; the memory holds one class id per slot",
        ),
    ],
)
def test_bad_arguments_name_the_argument(kwargs, error, message):
    arguments = {"loss": kml.PNLoss(), "memory_size": 8, **kwargs}
    with pytest.raises(error, match=message):
        kml.layers.CrossBatchMemory(**arguments)


def test_a_batch_larger_than_the_memory_needs_an_enqueue_mask():
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), memory_size=4)
    embeddings, labels = next(batches([6]))
    with pytest.raises(ValueError, match=r"batch larger than the memory.*6.*memory_size=4"):
        step(memory, embeddings, labels)


def test_config_round_trip_keeps_the_loss():
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(margin=0.5), 16, mode="tf_similarity")
    restored = kml.layers.CrossBatchMemory.from_config(memory.get_config())
    assert restored.get_config() == memory.get_config()
    assert isinstance(restored.loss, kml.PNLoss) and restored.loss.margin == 0.5


@pytest.mark.slow
def test_compiled_step_matches_eager():
    memory = kml.layers.CrossBatchMemory(kml.PNLoss(), 8)
    eager = kml.layers.CrossBatchMemory(kml.PNLoss(), 8)
    embeddings, labels = next(batches([4]))
    memory.build([embeddings.shape, labels.shape])
    eager.build([embeddings.shape, labels.shape])
    eager([embeddings, labels], training=True)

    def run(e, y):
        memory([e, y], training=True)
        return memory.losses[-1]

    if keras.backend.backend() == "jax":
        pytest.skip("a stateful layer call is compiled by Keras' own jitted train step on JAX")
    np.testing.assert_allclose(
        numpy(compiled(run)(embeddings, labels)), numpy(eager.losses[-1]), rtol=1e-5
    )


MEMORY_LOSSES = [
    d.cls
    for d in DECLARED
    if d.cls is not None and d.supports_keys and not d.inputs.front_end.get("multi_hot")
]


@pytest.mark.parametrize("loss_cls", MEMORY_LOSSES, ids=lambda c: c.__name__)
@pytest.mark.parametrize("mode", ["pml", "tf_similarity"])
def test_a_large_empty_memory_is_no_memory_at_the_first_step(loss_cls, mode):
    """Empty slots take no part (PML: `LiftedStructureLoss` in a memory of 100 slots gave
    13.547 at the first step, counting empty slots as negatives, where PML gives 5.050): at
    the first step a memory of 100 slots gives what a memory of the batch's size gives."""
    rng = np.random.default_rng(4)
    embeddings = rng.normal(size=(8, DIM)).astype("float32")
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3], "int32")
    values = [
        step(kml.layers.CrossBatchMemory(loss_cls(), size, mode=mode), embeddings, labels)
        for size in (8, 100)
    ]
    np.testing.assert_allclose(values[1], values[0], rtol=1e-5, atol=1e-6)


def held_out_cosine(recipe):
    """Runs a version of docs/memory.md's recipe on the digits' training classes (even digits)
    and returns the mean cosine between the embeddings of the held-out (odd) digits (the plain
    digits the docs measured on, not the demo's relit ones)."""
    from sklearn.datasets import load_digits

    from keras_metric_losses.demo.experiment import split_classes

    digits = load_digits()
    x = (digits.data / 16.0).astype("float32")
    split = split_classes(x, digits.target, [str(d) for d in range(10)], (0, 2, 4, 6, 8))
    keras.utils.set_random_seed(0)
    namespace = {"x_train": split.x_train, "y_train": split.y_train}
    exec(compile(recipe, "docs/memory.md", "exec"), namespace)
    unit = numpy(namespace["encoder"](split.x_unseen))
    count = len(unit)
    return (np.sum(unit @ unit.T) - count) / (count * (count - 1))


@pytest.mark.slow
def test_the_docs_recipe_trains_where_pn_loss_collapses():
    """The recipe as written spreads the held-out digits (untrained: mean cosine 0.58, trained
    0.40 on JAX); `PNLoss` in the same memory pulls them together (0.86), as the docs say: its
    PN step's distance between two stored keys has no gradient."""
    assert RECIPE_LOSS in RECIPE
    assert held_out_cosine(RECIPE) < 0.5
    collapsing = RECIPE.replace(RECIPE_LOSS, "kml.PNLoss(soft_margin=True)")
    assert held_out_cosine(collapsing) > 0.75
