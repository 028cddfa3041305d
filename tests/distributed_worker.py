"""Multi-device training steps for `test_distributed.py`, run in fresh processes.

Multi-device set-ups must exist before the backend initialises (`XLA_FLAGS`, TensorFlow logical
devices) or need one process per replica (`torch.distributed`), so `test_distributed.py` runs
this file with `sys.executable`:

    python distributed_worker.py jax|tensorflow OUT.json
    python distributed_worker.py torch OUT.json RANK STORE_FILE
    python distributed_worker.py BACKEND OUT.json [RANK STORE_FILE] --memory
    python distributed_worker.py tensorflow OUT.json --threads

Each run trains one step (SGD, learning rate 1, so the gradient is `w_before - w_after`) of the
model of every spec with a `cross_replica` option (on its kind's data) and of an `NCE` model (on
`problem()`), on a global batch split over `REPLICAS` replicas, with and without
`cross_replica=True`, and writes the loss, the gradient (of every weight, flattened) and the
initial weights. For the `NCE` layer it also writes the candidates
`(sampled, true_expected_count, sampled_expected_count)` that each replica draws for the global
labels at the first step. The module is also imported by the test for `problem()`,
`nce_weights()` and the arguments.

With `--memory` it trains instead a `CrossBatchMemory` model (`memory_model()`) for the
`MEMORY_STEPS` global batches of `memory_batches()` (SGD, `MEMORY_LEARNING_RATE`), with and
without `cross_replica=True`, and writes per step the loss, the weights before the step and, on
every replica, the memory state after it (or the error a backend raises).
"""

import json
import os
import sys

import numpy as np

REPLICAS = 2
GLOBAL_BATCH = 16


def problem():
    """A global batch whose loss differs from the mean of its halves' losses."""
    rng = np.random.default_rng(7)
    labels = np.array([0, 1, 2, 3, 0, 1, 2, 3, 4, 0, 1, 4, 2, 3, 4, 1], dtype="int32")
    centers = rng.normal(size=(5, 6))
    anchors = (centers[labels] + 0.7 * rng.normal(size=(GLOBAL_BATCH, 6))).astype("float32")
    positives = (centers[labels] + 0.7 * rng.normal(size=(GLOBAL_BATCH, 6))).astype("float32")
    weights = (0.5 * rng.normal(size=(6, 4))).astype("float32")
    return anchors, positives, labels, weights


NCE_ARGUMENTS = {"num_classes": 12, "num_sampled": 4, "remove_accidental_hits": True}
NCE_SEED = 11


def nce_weights():
    """Class embeddings `[C, 4]` and biases `[C]` of the `NCE` layer."""
    rng = np.random.default_rng(3)
    classes = NCE_ARGUMENTS["num_classes"]
    return (
        rng.normal(size=(classes, 4)).astype("float32"),
        (0.1 * rng.normal(size=classes)).astype("float32"),
    )


MEMORY_SIZE = 24  # the second global batch wraps around
MEMORY_STEPS = 2
MEMORY_LEARNING_RATE = 0.5
MEMORY_STATE = ("embedding_memory", "label_memory", "position", "filled")


def memory_batches():
    """`MEMORY_STEPS` global batches `(x [16, 6], labels [16])`."""
    anchors, positives, labels, _ = problem()
    return [(anchors, labels), (positives, labels[::-1].copy())]


def memory_model(cross_replica=False):
    """`Dense(4)` (weights `problem()[3]`, no bias) into a `CrossBatchMemory` of a `PNLoss`."""
    import keras

    import keras_metric_losses as kml

    x, y = keras.Input((6,)), keras.Input((), dtype="int32")
    dense = keras.layers.Dense(4, use_bias=False, name="dense")
    memory = kml.layers.CrossBatchMemory(
        kml.PNLoss(), MEMORY_SIZE, cross_replica=cross_replica, name="memory"
    )
    model = keras.Model([x, y], memory([dense(x), y]))
    dense.set_weights([problem()[3]])
    return model


def _flat(arrays):
    return np.concatenate([np.ravel(a) for a in arrays]).tolist()


def _draw_candidates(cross_replica, generator):
    """What this replica's sampler draws at the first step of an `NCE` layer whose generator
    starts as `generator` (a fresh `keras.random.SeedGenerator` with the layer's seed)."""
    import keras_metric_losses as kml

    labels = problem()[2][:, None]
    seed = kml.distributed.replica_seed(generator, cross_replica)
    return kml.log_uniform_candidate_sampler(
        labels, 1, NCE_ARGUMENTS["num_sampled"], True, NCE_ARGUMENTS["num_classes"], seed=seed
    )


def distributed_specs(cross_replica=True):
    """The specs of the losses with a `cross_replica` option whose models `model.fit` trains
    with the option set to `cross_replica`. On TensorFlow, whose `MirroredStrategy` traces a
    model per replica (seconds a loss), and on JAX, which compiles a two-device program per
    model and option (43 s for all of them on an empty cache):
    - with the option, the losses on the shared embeddings front end (which gathers for them
      all) are represented by the first of each family;
    - without it, by the first loss: each replica then computes its loss alone and Keras
      averages the replicas, whatever the loss (JAX: one program over the global batch).
    torch's custom loop, which takes seconds in all, runs every loss both ways."""
    import keras
    from specs import SPECS

    specs = [spec for spec in SPECS if spec.cross_replica]
    if keras.backend.backend() == "torch":
        return specs
    if not cross_replica:
        return specs[:1]
    chosen, families = [], set()
    for spec in specs:
        if spec.kind.name == "embeddings":
            if spec.family in families:
                continue
            families.add(spec.family)
        chosen.append(spec)
    return chosen


def spec_problem(spec):
    """The global batch of a spec's test: its kind's model inputs and labels."""
    return spec.kind.data(batch=GLOBAL_BATCH, seed=7)


def _nce_model(cross_replica, nce_seed):
    import keras

    import keras_metric_losses as kml

    inputs, classes = keras.Input((6,)), keras.Input((1,), dtype="int32")
    nce = kml.layers.NCE(**NCE_ARGUMENTS, seed=nce_seed, cross_replica=cross_replica)
    model = keras.Model(
        [inputs, classes], nce([keras.layers.Dense(4, use_bias=False)(inputs), classes])
    )
    model.set_weights([problem()[3], *nce_weights()])
    return model, kml.SampledSoftmaxLoss()


def _models(cross_replica, nce_seed=NCE_SEED):
    """`{name: (model, loss, x, y)}`: every spec with `cross_replica`, and the `NCE` layer."""
    import keras

    models = {}
    for spec in distributed_specs(cross_replica):
        keras.utils.set_random_seed(3)
        model = spec.kind.model(cross_replica=cross_replica)
        models[spec.name] = (model, spec.loss(cross_replica=cross_replica), *spec_problem(spec))
    anchors, _, labels, _ = problem()
    models["nce"] = (*_nce_model(cross_replica, nce_seed), [anchors, labels[:, None]], labels)
    return models


def _fit_one_step(strategy=None):
    """`model.fit` for one global batch (JAX DataParallel, TF MirroredStrategy)."""
    import contextlib

    import keras

    results = {}
    for cross_replica in (True, False):
        with strategy.scope() if strategy else contextlib.nullcontext():
            models = _models(cross_replica)
            for model, loss, _, _ in models.values():
                model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
        for name, (model, _, x, y) in models.items():
            before = model.get_weights()
            history = model.fit(x, y, batch_size=GLOBAL_BATCH, shuffle=False, verbose=0)
            results[f"{name}/cross_replica={cross_replica}"] = {
                "loss": float(history.history["loss"][0]),
                "grad": _flat(b - a for b, a in zip(before, model.get_weights(), strict=True)),
                "weights": [w.tolist() for w in before],
            }
    return results


def _memory_fits(strategy=None, replicas=None):
    """`model.fit` on each global batch in turn (JAX DataParallel, TF MirroredStrategy);
    `replicas(variable)` gives the variable's value on every replica."""
    import contextlib

    import keras

    results = {}
    for cross_replica in (True, False):
        with strategy.scope() if strategy else contextlib.nullcontext():
            model = memory_model(cross_replica)
            model.compile(optimizer=keras.optimizers.SGD(MEMORY_LEARNING_RATE))
        memory, steps = model.get_layer("memory"), []
        try:
            for x, y in memory_batches():
                before = model.get_layer("dense").get_weights()[0].tolist()
                history = model.fit([x, y], batch_size=GLOBAL_BATCH, shuffle=False, verbose=0)
                state = {name: replicas(getattr(memory, name)) for name in MEMORY_STATE}
                steps.append({"loss": history.history["loss"][0], "kernel": before, **state})
            result = {"steps": steps}
        except Exception as error:  # the test checks which error
            result = {"error": f"{type(error).__name__}: {error}"}
        results[f"memory/cross_replica={cross_replica}"] = result
    return results


def run_jax_memory():
    import jax
    import keras

    assert len(jax.devices()) == REPLICAS, jax.devices()
    keras.distribution.set_distribution(keras.distribution.DataParallel(devices=jax.devices()))

    def replicas(variable):
        shards = sorted(variable.value.addressable_shards, key=lambda s: s.device.id)
        return [np.asarray(s.data).tolist() for s in shards]

    return _memory_fits(replicas=replicas)


def run_tensorflow_memory():
    strategy = _mirrored_strategy()

    def replicas(variable):
        return [np.asarray(v).tolist() for v in strategy.experimental_local_results(variable.value)]

    return _memory_fits(strategy, replicas)


def run_jax():
    import jax
    import keras

    assert len(jax.devices()) == REPLICAS, jax.devices()
    distribution = keras.distribution.DataParallel(devices=jax.devices())
    keras.distribution.set_distribution(distribution)
    results = _fit_one_step()
    # How `fit` places a batch, and how XLA lays out `anchors @ positives.T` for it.
    anchors, positives, _, _ = problem()
    layout = distribution.get_data_layout(anchors.shape)
    a, p = (keras.distribution.distribute_tensor(x, layout) for x in (anchors, positives))
    similarity = jax.jit(lambda a, p: a @ p.T)(a, p)
    results["layout"] = {
        "batch_shards": sorted({str(s.data.shape) for s in a.addressable_shards}),
        "similarity_shards": sorted({str(s.data.shape) for s in similarity.addressable_shards}),
        "devices": len(a.sharding.device_set),
    }
    return results


def _mirrored_strategy():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)]
    )
    devices = [f"/cpu:{i}" for i in range(REPLICAS)]
    strategy = tf.distribute.MirroredStrategy(devices)
    assert strategy.num_replicas_in_sync == REPLICAS
    return strategy


def run_tensorflow():
    import keras
    import tensorflow as tf

    strategy = _mirrored_strategy()
    results = _fit_one_step(strategy)
    for cross_replica in (True, False):
        with strategy.scope():  # a mirrored seed generator, as in the layer
            generator = keras.random.SeedGenerator(NCE_SEED)
        draw = tf.function(lambda c=cross_replica, g=generator: _draw_candidates(c, g))
        drawn = strategy.run(draw)
        per_replica = zip(*(strategy.experimental_local_results(d) for d in drawn), strict=True)
        results[f"candidates/cross_replica={cross_replica}"] = [
            [np.asarray(t).tolist() for t in replica] for replica in per_replica
        ]
    return results


# Losses called in replica threads with each replica's own memory keys (`--threads`).
THREADED_LOSSES = ("MultiSimilarityLoss", "CircleLoss", "SoftNearestNeighborLoss")


def threaded_keys(replica):
    """Replica `replica`'s batch and memory: `(labels [6], embeddings [6, 4], memory [10, 4],
    memory labels [10], valid slots [10], self columns [6])`, different on each replica."""
    rng = np.random.default_rng(100 + replica)
    labels = rng.integers(0, 3, 6).astype("int32")
    embeddings = rng.normal(size=(6, 4)).astype("float32")
    memory = rng.normal(size=(10, 4)).astype("float32")
    memory_labels = rng.integers(0, 3, 10).astype("int32")
    memory[:6], memory_labels[:6] = embeddings, labels  # the batch sits in slots 0..5
    valid = np.arange(10) < (7 if replica == 0 else 10)
    return labels, embeddings, memory, memory_labels, valid, np.arange(6, dtype="int32")


def run_tensorflow_threads():
    """Each replica thread calls the losses against its own `Keys.memory`, with a collective
    (a point where the other replica's thread runs) between building its keys and the loss:
    eagerly and in a `tf.function`. Writes each replica's per-anchor values."""
    import tensorflow as tf

    import keras_metric_losses as kml

    strategy = _mirrored_strategy()
    parts = strategy.experimental_distribute_values_from_function(
        lambda context: tuple(
            tf.constant(a) for a in threaded_keys(context.replica_id_in_sync_group)
        )
    )

    def step(parts):
        labels, embeddings, memory, memory_labels, valid, self_columns = parts
        keys = kml.pairs.Keys.memory(memory, memory_labels, valid, self_columns)
        context = tf.distribute.get_replica_context()
        embeddings = embeddings + 0.0 * context.all_reduce("sum", tf.reduce_sum(embeddings))
        return [getattr(kml, n)().per_example(labels, embeddings, keys) for n in THREADED_LOSSES]

    results = {}
    for mode, fn in (("eager", step), ("function", tf.function(step))):
        per_loss = strategy.run(fn, args=(parts,))
        results[mode] = {
            name: [np.asarray(v).tolist() for v in strategy.experimental_local_results(values)]
            for name, values in zip(THREADED_LOSSES, per_loss, strict=True)
        }
    return results


def run_torch(rank, store):
    """A custom training loop: local forward, backward, gradients averaged over processes."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=REPLICAS)
    import keras

    import keras_metric_losses as kml

    assert kml.distributed.replica_context() == (rank, REPLICAS)
    anchors, _, labels, _ = problem()
    rows = slice(rank * GLOBAL_BATCH // REPLICAS, (rank + 1) * GLOBAL_BATCH // REPLICAS)
    results = {}
    for cross_replica in (True, False):
        # Shared candidates are rank 0's even when the processes' generators are seeded apart.
        nce_seed = NCE_SEED + rank if cross_replica else NCE_SEED
        for name, (model, loss_fn, x, y) in _models(cross_replica, nce_seed).items():
            before = model.get_weights()
            x = [a[rows] for a in x] if isinstance(x, list) else x[rows]
            loss = loss_fn(y[rows], model(x))
            variables = [v.value for v in model.trainable_weights]
            grads = torch.autograd.grad(loss, variables)
            # What DistributedDataParallel does: average the gradients (and report the mean loss).
            loss = loss.detach().clone()
            for value in (loss, *grads):
                dist.all_reduce(value, op=dist.ReduceOp.SUM)
                value /= REPLICAS
            results[f"{name}/cross_replica={cross_replica}"] = {
                "loss": float(loss),
                "grad": _flat(g.numpy() for g in grads),
                "weights": [w.tolist() for w in before],
            }
        drawn = _draw_candidates(cross_replica, keras.random.SeedGenerator(nce_seed))
        results[f"candidates/cross_replica={cross_replica}"] = [t.numpy().tolist() for t in drawn]
    gathered = kml.distributed.gather_keys(torch.tensor(anchors[rows]), torch.tensor(labels[rows]))
    results["gather_keys"] = [t.numpy().tolist() for t in gathered]
    dist.barrier()  # neither rank tears the group down while its peer still uses it
    dist.destroy_process_group()
    return results


def run_torch_memory(rank, store):
    """A custom loop: each process trains on its slice, gradients and losses averaged."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=REPLICAS)
    from keras import ops

    rows = slice(rank * GLOBAL_BATCH // REPLICAS, (rank + 1) * GLOBAL_BATCH // REPLICAS)
    results = {}
    for cross_replica in (True, False):
        model = memory_model(cross_replica)
        memory, kernel = model.get_layer("memory"), model.get_layer("dense").kernel
        steps = []
        for x, y in memory_batches():
            before = ops.convert_to_numpy(kernel).tolist()
            model([x[rows], y[rows]], training=True)
            loss = sum(model.losses)
            (grad,) = torch.autograd.grad(loss, [kernel.value])
            loss = loss.detach().clone()
            for value in (loss, grad):
                dist.all_reduce(value, op=dist.ReduceOp.SUM)
                value /= REPLICAS
            kernel.assign(kernel.value.detach() - MEMORY_LEARNING_RATE * grad)
            state = {
                name: [ops.convert_to_numpy(getattr(memory, name)).tolist()]
                for name in MEMORY_STATE
            }
            steps.append({"loss": float(loss), "kernel": before, **state})
        results[f"memory/cross_replica={cross_replica}"] = {"steps": steps}
    dist.barrier()
    dist.destroy_process_group()
    return results


def main(argv):
    memory, threads = "--memory" in argv, "--threads" in argv
    argv = [a for a in argv if a not in ("--memory", "--threads")]
    backend, out = argv[1], argv[2]
    if backend == "jax":
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={REPLICAS}"
        )
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        results = run_jax_memory() if memory else run_jax()
    elif backend == "tensorflow" and threads:
        results = run_tensorflow_threads()
    elif backend == "tensorflow":
        results = run_tensorflow_memory() if memory else run_tensorflow()
    else:
        run = run_torch_memory if memory else run_torch
        results = run(int(argv[3]), argv[4])
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv)
