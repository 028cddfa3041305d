"""Distributed training: the loss and gradients of the global batch on every backend.

The multi-device runs happen in fresh processes (`distributed_worker.py`): two JAX CPU devices
under `keras.distribution.DataParallel`, two logical CPUs under `tf.distribute.MirroredStrategy`,
two `torch.distributed` (gloo) processes. Each run's loss and gradient are compared with those
of one device on the full batch, computed here. Only the current backend's run is executed.

For the `NCE` layer (sampled softmax) the reference is one device with the same candidates:
with `cross_replica=True` the single-device draw on the global batch, without it each
replica's own draw on its slice.

For `layers.CrossBatchMemory` (a second worker run, `--memory`) the reference is one device fed
the global batches (`cross_replica=True`, and JAX either way: every replica holds that memory)
or each replica's slices (`cross_replica=False` under `torch.distributed`: each process holds
its own); under `tf.distribute` `cross_replica=False` raises.
"""

import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from distributed_worker import (
    GLOBAL_BATCH,
    MEMORY_LEARNING_RATE,
    MEMORY_STATE,
    NCE_ARGUMENTS,
    NCE_SEED,
    REPLICAS,
    THREADED_LOSSES,
    distributed_specs,
    memory_batches,
    memory_model,
    nce_weights,
    problem,
    spec_problem,
    threaded_keys,
)
from keras import ops
from support import compiled, numpy, value_and_grad

import keras_metric_losses as kml

WORKER = pathlib.Path(__file__).parent / "distributed_worker.py"
BACKEND = keras.backend.backend()
TIMEOUT = 180


SPECS = distributed_specs()
LOCAL_SPECS = distributed_specs(cross_replica=False)  # a subset of SPECS


def run_worker(tmp_path, *args, memory=False, threads=False):
    out = tmp_path / f"out{args[0] if args else ''}.json"
    command = [sys.executable, str(WORKER), BACKEND, str(out), *map(str, args)]
    command += ["--memory"] if memory else []
    command += ["--threads"] if threads else []
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True), out


def results_of(process, out):
    try:
        _, stderr = process.communicate(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        _, stderr = process.communicate()
    assert process.returncode == 0, stderr[-4000:]
    return json.loads(out.read_text())


def single_device(name, weights, rows=slice(None)):
    """Loss and gradient (of every weight, flattened) of one SGD step of a spec's model on
    `rows` of its global batch, on one device."""
    spec = next(s for s in SPECS if s.name == name)
    model = spec.kind.model()
    model.set_weights([np.asarray(w, "float32") for w in weights])
    model.compile(optimizer=keras.optimizers.SGD(1.0), loss=spec.loss())
    x, y = spec_problem(spec)
    x = [a[rows] for a in x] if isinstance(x, list) else x[rows]
    loss = float(model.train_on_batch(x, y[rows]))
    grad = np.concatenate(
        [np.ravel(np.asarray(w) - numpy(v)) for w, v in zip(weights, model.weights, strict=True)]
    )
    return loss, grad


def assert_global(result, name):
    value, grad = single_device(name, result["weights"])
    np.testing.assert_allclose(result["loss"], value, rtol=1e-5)
    np.testing.assert_allclose(np.array(result["grad"]), grad, rtol=1e-5, atol=1e-5)


def assert_local(result, name):
    """Without `cross_replica`, each replica sees its slice: not the global loss."""
    value, grad = single_device(name, result["weights"])
    halves = [single_device(name, result["weights"], rows) for rows in REPLICA_ROWS]
    np.testing.assert_allclose(result["loss"], np.mean([h[0] for h in halves]), rtol=1e-5)
    np.testing.assert_allclose(
        np.array(result["grad"]), np.mean([h[1] for h in halves], axis=0), rtol=1e-5, atol=1e-5
    )
    assert abs(result["loss"] - value) > 1e-3
    assert np.abs(np.array(result["grad"]) - grad).max() > 1e-3


LOCAL = GLOBAL_BATCH // REPLICAS
REPLICA_ROWS = [slice(r * LOCAL, (r + 1) * LOCAL) for r in range(REPLICAS)]


def nce_parameters():
    """The `NCE` model's weights, flattened in `model.get_weights()` order."""
    return np.concatenate([np.ravel(w) for w in (problem()[3], *nce_weights())])


def _sampled_softmax(params, candidates, rows):
    """Mean sampled softmax loss of `rows` with the given `(sampled, true_ec, sampled_ec)`."""
    anchors, _, labels, weights = problem()
    classes, dim = nce_weights()[0].shape
    sizes = np.cumsum([weights.size, classes * dim])
    embed = ops.reshape(params[: sizes[0]], weights.shape)
    kernel = ops.reshape(params[sizes[0] : sizes[1]], (classes, dim))
    sampled, true_ec, sampled_ec = (np.asarray(c) for c in candidates)
    per_example = kml.sampled_softmax_loss(
        kernel,
        params[sizes[1] :],
        labels[rows],
        ops.matmul(anchors[rows], embed),
        sampled_values=(sampled, true_ec[rows], sampled_ec),
        **NCE_ARGUMENTS,
    )
    return ops.mean(per_example)


def single_device_candidates():
    """The draw of one device at the first step of an `NCE` layer seeded `NCE_SEED`."""
    return [
        numpy(c)
        for c in kml.log_uniform_candidate_sampler(
            problem()[2][:, None],
            1,
            NCE_ARGUMENTS["num_sampled"],
            True,
            NCE_ARGUMENTS["num_classes"],
            seed=keras.random.SeedGenerator(NCE_SEED),
        )
    ]


def nce_reference(per_replica_candidates=None):
    """Loss and gradient of one device: on the global batch with the single-device draw, or
    (given each replica's draw) the mean of the replicas' losses on their slices."""
    if per_replica_candidates is None:
        return value_and_grad(
            lambda p: _sampled_softmax(p, single_device_candidates(), slice(None)),
            nce_parameters(),
            traced=False,  # the draw is read on the host
        )
    return value_and_grad(
        lambda p: ops.mean(
            ops.stack(
                [
                    _sampled_softmax(p, candidates, rows)
                    for candidates, rows in zip(per_replica_candidates, REPLICA_ROWS, strict=True)
                ]
            )
        ),
        nce_parameters(),
    )


def assert_nce(result, per_replica_candidates=None):
    value, grad = nce_reference(per_replica_candidates)
    np.testing.assert_allclose(result["loss"], value, rtol=1e-5)
    np.testing.assert_allclose(np.array(result["grad"]), grad, rtol=1e-5, atol=1e-5)


def assert_nce_candidates(shared, own):
    """`shared`: every replica holds the single-device draw; `own`: replicas' draws differ."""
    for candidates in shared:
        for drawn, expected in zip(candidates, single_device_candidates(), strict=True):
            np.testing.assert_allclose(np.asarray(drawn), expected, rtol=1e-6)
    assert own[0][0] != own[1][0]
    # The two rules give different losses on this problem, so the loss checks tell them apart.
    assert abs(nce_reference(own)[0] - nce_reference()[0]) > 1e-2


def only(backend):
    return pytest.mark.skipif(backend != BACKEND, reason=f"runs in the {backend} session")


@pytest.mark.slow
@only("jax")
def test_jax_data_parallel_fit_sees_the_global_batch(tmp_path):
    result = results_of(*run_worker(tmp_path))
    layout = result["layout"]
    assert layout["devices"] == REPLICAS
    assert layout["batch_shards"] == [f"({GLOBAL_BATCH // REPLICAS}, 6)"]  # data are split ...
    # ... and XLA keeps each device's rows of the similarity matrix: [local_B, global_B].
    assert layout["similarity_shards"] == [f"({GLOBAL_BATCH // REPLICAS}, {GLOBAL_BATCH})"]
    for cross_replica, specs in ((True, SPECS), (False, LOCAL_SPECS)):
        for spec in specs:  # the option changes nothing under JAX
            assert_global(result[f"{spec.name}/cross_replica={cross_replica}"], spec.name)
    # One program over the global batch: one candidate set per step, whatever the option says.
    for cross_replica in (False, True):
        assert_nce(result[f"nce/cross_replica={cross_replica}"])


@pytest.mark.slow
@only("tensorflow")
def test_tensorflow_mirrored_strategy_fit_gathers_across_replicas(tmp_path):
    result = results_of(*run_worker(tmp_path))
    for spec in SPECS:
        assert_global(result[f"{spec.name}/cross_replica=True"], spec.name)
    for spec in LOCAL_SPECS:
        assert_local(result[f"{spec.name}/cross_replica=False"], spec.name)
    shared, own = result["candidates/cross_replica=True"], result["candidates/cross_replica=False"]
    assert_nce_candidates(shared, own)
    assert_nce(result["nce/cross_replica=True"])
    assert_nce(result["nce/cross_replica=False"], own)


@pytest.mark.slow
@only("torch")
def test_torch_distributed_custom_loop_gathers_across_processes(tmp_path):
    store = tmp_path / "store"
    workers = [run_worker(tmp_path, rank, store) for rank in range(REPLICAS)]
    results = [results_of(*worker) for worker in workers]
    anchors, _, labels, _ = problem()
    local = GLOBAL_BATCH // REPLICAS
    for rank, result in enumerate(results):
        for spec in SPECS:
            assert_global(result[f"{spec.name}/cross_replica=True"], spec.name)
            assert_local(result[f"{spec.name}/cross_replica=False"], spec.name)
        keys, key_labels, self_columns = result["gather_keys"]
        np.testing.assert_array_equal(keys, anchors)
        np.testing.assert_array_equal(key_labels, labels)
        np.testing.assert_array_equal(self_columns, rank * local + np.arange(local))
    # The processes' generators are seeded apart for `cross_replica=True`: rank 0's draw is shared.
    shared, own = ([r[f"candidates/cross_replica={c}"] for r in results] for c in (True, False))
    assert_nce_candidates(shared, own)
    for result in results:
        assert_nce(result["nce/cross_replica=True"])
        assert_nce(result["nce/cross_replica=False"], own)


def memory_reference(kernels, streams):
    """One device, one memory model per stream of batches: before step `t` its kernel is set to
    `kernels[t]` (the distributed run's), then one SGD step. Per step: the mean loss and mean
    kernel after the step over the streams, and each stream's memory state."""
    models = [memory_model() for _ in streams]
    for model in models:
        model.compile(optimizer=keras.optimizers.SGD(MEMORY_LEARNING_RATE))
    steps = []
    for t, kernel in enumerate(kernels):
        losses, after, states = [], [], []
        for model, stream in zip(models, streams, strict=True):
            dense, memory = model.get_layer("dense"), model.get_layer("memory")
            dense.set_weights([np.asarray(kernel, "float32")])
            losses.append(float(model.train_on_batch(list(stream[t]))))
            after.append(dense.get_weights()[0])
            states.append({name: numpy(getattr(memory, name)) for name in MEMORY_STATE})
        steps.append({"loss": np.mean(losses), "kernel": np.mean(after, axis=0), "states": states})
    return steps


def assert_memory(result, holds):
    """`holds[r]`: the stream whose single-device memory replica `r` holds ("global" or
    "local": replica r's slices)."""
    assert "error" not in result, result.get("error")
    batches = memory_batches()
    global_stream = [(x, y) for x, y in batches]
    local_streams = [[(x[rows], y[rows]) for x, y in batches] for rows in REPLICA_ROWS]
    streams = [global_stream] if set(holds) == {"global"} else local_streams
    steps = result["steps"]
    expected = memory_reference([step["kernel"] for step in steps], streams)
    for t, (step, reference) in enumerate(zip(steps, expected, strict=True)):
        np.testing.assert_allclose(step["loss"], reference["loss"], rtol=1e-5, err_msg=f"step {t}")
        if t + 1 < len(steps):  # the averaged gradient of the step
            np.testing.assert_allclose(
                steps[t + 1]["kernel"], reference["kernel"], rtol=1e-5, atol=1e-6
            )
        assert len(step["position"]) == len(holds)
        for replica, hold in enumerate(holds):
            state = reference["states"][0 if hold == "global" else replica]
            where = f"step {t}, replica {replica}"
            for name in ("label_memory", "position", "filled"):
                assert step[name][replica] == state[name].tolist(), (where, name)
            np.testing.assert_allclose(
                step["embedding_memory"][replica], state["embedding_memory"], rtol=1e-5,
                atol=1e-6, err_msg=where,
            )  # fmt: skip
    # The two rules differ on this problem: replica 0's memory is not what the other rule gives.
    other = local_streams[:1] if streams is not local_streams else [global_stream]
    other = memory_reference([step["kernel"] for step in steps], other)
    assert steps[-1]["label_memory"][0] != other[-1]["states"][0]["label_memory"].tolist()


@pytest.mark.slow
@only("jax")
def test_jax_data_parallel_cross_batch_memory_holds_the_global_batches(tmp_path):
    result = results_of(*run_worker(tmp_path, memory=True))
    for cross_replica in (True, False):  # one program over the global batch either way
        assert_memory(result[f"memory/cross_replica={cross_replica}"], ["global"] * REPLICAS)


@pytest.mark.slow
@only("tensorflow")
def test_tensorflow_mirrored_cross_batch_memory_is_global_or_refused(tmp_path):
    result = results_of(*run_worker(tmp_path, memory=True))
    assert_memory(result["memory/cross_replica=True"], ["global"] * REPLICAS)
    error = result["memory/cross_replica=False"]["error"]
    assert error.startswith("ValueError") and "Received: cross_replica=False" in error, error


@pytest.mark.slow
@only("tensorflow")
def test_tensorflow_replica_threads_each_use_their_own_keys(tmp_path):
    """`tf.distribute.MirroredStrategy` runs its replicas in threads: two replicas with
    different memory keys (a collective between building them and the loss lets the other
    thread run) each get the values of their own keys, eagerly and in a `tf.function`."""
    result = results_of(*run_worker(tmp_path, threads=True))
    for replica in range(REPLICAS):
        labels, embeddings, memory, memory_labels, valid, self_columns = threaded_keys(replica)
        keys = kml.pairs.Keys.memory(memory, memory_labels, valid, self_columns)
        for name in THREADED_LOSSES:
            expected = numpy(getattr(kml, name)().per_example(labels, embeddings, keys))
            for mode in ("eager", "function"):
                np.testing.assert_allclose(
                    result[mode][name][replica], expected, rtol=1e-5, atol=1e-6,
                    err_msg=f"{name}, replica {replica}, {mode}",
                )  # fmt: skip


@pytest.mark.slow
@only("torch")
def test_torch_distributed_cross_batch_memory_is_global_or_per_process(tmp_path):
    store = tmp_path / "store"
    workers = [run_worker(tmp_path, rank, store, memory=True) for rank in range(REPLICAS)]
    results = [results_of(*worker) for worker in workers]

    def merged(cross_replica):
        """Rank 0's losses and kernels (every rank reports the averaged ones), every rank's
        memory state."""
        key = f"memory/cross_replica={cross_replica}"
        steps = [dict(step) for step in results[0][key]["steps"]]
        for t, step in enumerate(steps):
            for other in results[1:]:
                theirs = other[key]["steps"][t]
                np.testing.assert_allclose(theirs["loss"], step["loss"], rtol=1e-6)
                np.testing.assert_allclose(theirs["kernel"], step["kernel"], rtol=1e-6)
            for name in MEMORY_STATE:
                step[name] = [r[key]["steps"][t][name][0] for r in results]
        return {"steps": steps}

    assert_memory(merged(True), ["global"] * REPLICAS)
    assert_memory(merged(False), ["local"] * REPLICAS)


# One device: the option is the identity, and the rectangular path matches NumPy.


@pytest.mark.parametrize("name", kml.distributed.__all__)
def test_distributed_helpers_are_exported_and_documented(name):
    obj = getattr(kml.distributed, name)
    assert keras.saving.get_registered_object(f"keras_metric_losses>{name}") is obj
    doc = obj.__doc__ or ""
    for section in ("Returns:", "Example", "Reference"):
        assert section in doc


def test_outside_a_replica_context_everything_is_local():
    x, labels = np.arange(6, dtype="float32").reshape(3, 2), np.array([0, 1, 0])
    assert kml.distributed.replica_context() == (0, 1)
    np.testing.assert_array_equal(numpy(kml.distributed.all_gather(x)), x)
    keys, key_labels, self_columns = kml.distributed.gather_keys(x, labels)
    np.testing.assert_array_equal(numpy(keys), x)
    np.testing.assert_array_equal(numpy(key_labels), labels)
    np.testing.assert_array_equal(numpy(self_columns), [0, 1, 2])
    assert keras.backend.standardize_dtype(self_columns.dtype) == "int32"


def test_replica_seed_outside_a_replica_context_is_the_generator():
    generator = keras.random.SeedGenerator(5)
    for cross_replica in (False, True):
        assert kml.distributed.replica_seed(generator, cross_replica) is generator
    with pytest.raises(TypeError, match=r"seed_generator.*Received: seed_generator=5"):
        kml.distributed.replica_seed(5)
    with pytest.raises(TypeError, match=r"cross_replica.*Received: cross_replica=1"):
        kml.distributed.replica_seed(generator, 1)


def test_replica_seed_folds_the_replica_id_into_the_stream(monkeypatch):
    """Replica 1 of 2 (simulated on one device): its own stream is the generator's moved by the
    stride; the shared stream is replica 0's (`all_gather` is the identity here)."""
    monkeypatch.setattr(kml.distributed, "replica_context", lambda: (1, 2))
    stride = 0x61C88647

    def draws(seed, count=2):
        return [numpy(keras.random.uniform((3,), seed=seed)) for _ in range(count)]

    generator = keras.random.SeedGenerator(5)
    own = draws(kml.distributed.replica_seed(generator))
    np.testing.assert_array_equal(own, draws(keras.random.SeedGenerator(5 + stride)))
    np.testing.assert_array_equal(numpy(generator.state), [5, 2])  # advanced once per draw
    shared = draws(kml.distributed.replica_seed(keras.random.SeedGenerator(5), True))
    np.testing.assert_array_equal(shared, draws(keras.random.SeedGenerator(5)))
    assert np.abs(np.array(own) - np.array(shared)).max() > 0.01


def test_nce_cross_replica_on_one_device_changes_nothing():
    anchors, _, labels, weights = problem()
    inputs = [anchors @ weights, labels[:, None]]
    logits = {}
    for cross_replica in (False, True):
        layer = kml.layers.NCE(**NCE_ARGUMENTS, seed=NCE_SEED, cross_replica=cross_replica)
        layer.build([(None, 4), (None, 1)])
        layer.set_weights(list(nce_weights()))
        logits[cross_replica] = [numpy(layer(inputs)) for _ in range(2)]  # two steps, two draws
    np.testing.assert_array_equal(logits[True], logits[False])
    # The first draw is the single-device one of the distributed tests.
    loss = kml.SampledSoftmaxLoss()(labels, logits[True][0])
    np.testing.assert_allclose(numpy(loss), nce_reference()[0], rtol=1e-5)


def test_nce_cross_replica_is_configured_and_validated():
    layer = kml.layers.NCE(**NCE_ARGUMENTS, cross_replica=True)
    assert layer.get_config()["cross_replica"] is True
    assert kml.layers.NCE.from_config(layer.get_config()).cross_replica is True
    assert kml.layers.NCE(**NCE_ARGUMENTS).get_config()["cross_replica"] is False
    with pytest.raises(TypeError, match=r"cross_replica.*Received: cross_replica=1"):
        kml.layers.NCE(**NCE_ARGUMENTS, cross_replica=1)


def test_all_gather_is_differentiable_on_one_device():
    x = np.array([[1.0, 2.0], [3.0, 4.0]], "float32")
    value, grad = value_and_grad(lambda t: ops.sum(ops.square(kml.distributed.all_gather(t))), x)
    np.testing.assert_allclose(value, 30.0)
    np.testing.assert_allclose(grad, 2 * x)


def reference_rectangular(labels, key_labels, logits):
    targets = (labels[:, None] == key_labels[None, :]).astype(np.float64)
    targets /= np.maximum(targets.sum(axis=1, keepdims=True), 1)
    logits = np.asarray(logits, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(targets * log_softmax).sum(axis=1)


@pytest.mark.slow
def test_npairs_with_key_labels_matches_numpy_and_the_square_path():
    rng = np.random.default_rng(0)
    labels, key_labels = np.array([0, 1, 2]), np.array([2, 0, 1, 0, 3, 1, 1])
    logits = rng.normal(size=(3, 7)).astype("float32")
    expected = reference_rectangular(labels, key_labels, logits)
    value = kml.npairs_loss(labels, logits, key_labels=key_labels)
    np.testing.assert_allclose(numpy(value), expected, rtol=1e-5)
    np.testing.assert_allclose(
        numpy(
            compiled(lambda y, s, k: kml.npairs_loss(y, s, key_labels=k))(
                labels, logits, key_labels
            )
        ),
        expected,
        rtol=1e-5,
    )
    square = rng.normal(size=(4, 4)).astype("float32")
    y = np.array([[3], [1], [3], [0]])
    np.testing.assert_allclose(
        numpy(kml.npairs_loss(y, square, key_labels=y)), numpy(kml.npairs_loss(y, square))
    )
    multi_hot = np.eye(4, dtype="float32")
    np.testing.assert_allclose(
        numpy(
            kml.npairs_multilabel_loss(multi_hot[labels], logits, key_labels=multi_hot[key_labels])
        ),
        expected,
        rtol=1e-5,
    )


@pytest.mark.slow
@pytest.mark.parametrize("loss_cls", [kml.NpairsLoss, kml.NpairsMultilabelLoss])
def test_cross_replica_on_one_device_changes_nothing(loss_cls):
    anchors, positives, labels, weights = problem()
    y = labels if loss_cls is kml.NpairsLoss else np.eye(5, dtype="float32")[labels]
    local = kml.PairwiseSimilarity()([anchors @ weights, positives @ weights])
    gathered = kml.PairwiseSimilarity(cross_replica=True)([anchors @ weights, positives @ weights])
    np.testing.assert_allclose(numpy(gathered), numpy(local))
    expected = numpy(loss_cls(reduction=None)(y, local))
    np.testing.assert_allclose(
        numpy(loss_cls(reduction=None, cross_replica=True)(y, local)), expected
    )
    loss = loss_cls(cross_replica=True)
    np.testing.assert_allclose(numpy(compiled(loss)(y, local)), expected.mean(), rtol=1e-5)


def test_cross_replica_is_configured_and_validated():
    for obj in (kml.NpairsLoss(cross_replica=True), kml.NpairsMultilabelLoss(cross_replica=True)):
        config = obj.get_config()
        assert config["cross_replica"] is True
        restored = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(obj))
        assert restored.cross_replica is True and restored.get_config() == config
    layer = kml.PairwiseSimilarity(cross_replica=True)
    assert layer.get_config()["cross_replica"] is True
    assert kml.PairwiseSimilarity.from_config(layer.get_config()).cross_replica is True
    assert layer.compute_output_shape([(None, 2), (7, 2)]) == (None, None)
    assert kml.NpairsLoss().get_config()["cross_replica"] is False
    for factory in (kml.NpairsLoss, kml.NpairsMultilabelLoss, kml.PairwiseSimilarity):
        with pytest.raises(TypeError, match=r"cross_replica.*Received: cross_replica=1"):
            factory(cross_replica=1)


def test_mismatched_key_labels_raise_clear_errors():
    logits = np.zeros((3, 5), "float32")
    with pytest.raises(ValueError, match=r"one column per key.*\(3, 5\).*\(4,\)"):
        kml.npairs_loss(np.zeros(3, "int32"), logits, key_labels=np.zeros(4, "int32"))
    with pytest.raises(ValueError, match=r"same batch size"):
        kml.npairs_loss(np.zeros(2, "int32"), logits, key_labels=np.zeros(5, "int32"))
    with pytest.raises(ValueError, match=r"key_labels.*multi-hot"):
        kml.npairs_multilabel_loss(np.ones((3, 2)), logits, key_labels=np.ones(5))
