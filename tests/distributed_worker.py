"""Multi-device training steps for `test_distributed.py`, run in fresh processes.

Multi-device set-ups must exist before the backend initialises (`XLA_FLAGS`, TensorFlow logical
devices) or need one process per replica (`torch.distributed`), so `test_distributed.py` runs
this file with `sys.executable`:

    python distributed_worker.py jax|tensorflow OUT.json
    python distributed_worker.py torch OUT.json RANK STORE_FILE

Each run trains one step (SGD, learning rate 1, so the gradient is `w_before - w_after`) of two
models on the global batch of `problem()` split over `REPLICAS` replicas, with and without
`cross_replica=True`, and writes the loss, the gradient and the shape of `y_pred` seen by the loss.
The module is also imported by the test for `problem()` and `PN_ARGUMENTS`.
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


PN_ARGUMENTS = {"distance": "squared_euclidean", "margin": 1.0}


def _models(cross_replica, seen):
    import keras

    import keras_metric_losses as kml

    _, _, _, weights = problem()

    class Recording(kml.NpairsLoss):
        def call(self, y_true, y_pred):
            seen["npairs"].append(tuple(y_pred.shape))
            return super().call(y_true, y_pred)

    class RecordingPN(kml.PNLoss):
        def call(self, y_true, y_pred):
            seen["pn"].append(tuple(y_pred.shape))
            return super().call(y_true, y_pred)

    anchors, positives = keras.Input((6,)), keras.Input((6,))
    embed = keras.layers.Dense(4, use_bias=False)
    similarity = kml.PairwiseSimilarity(cross_replica=cross_replica)
    pair_model = keras.Model([anchors, positives], similarity([embed(anchors), embed(positives)]))
    embed.set_weights([weights])
    inputs = keras.Input((6,))
    embedding_model = keras.Model(inputs, keras.layers.Dense(4, use_bias=False)(inputs))
    embedding_model.set_weights([weights])
    return {
        "npairs": (pair_model, Recording(cross_replica=cross_replica)),
        "pn": (embedding_model, RecordingPN(**PN_ARGUMENTS, cross_replica=cross_replica)),
    }


def _inputs(name, anchors, positives):
    return [anchors, positives] if name == "npairs" else anchors


def _fit_one_step(strategy=None):
    """`model.fit` for one global batch (JAX DataParallel, TF MirroredStrategy)."""
    import contextlib

    import keras

    anchors, positives, labels, _ = problem()
    results = {}
    for cross_replica in (True, False):
        seen = {"npairs": [], "pn": []}
        with strategy.scope() if strategy else contextlib.nullcontext():
            models = _models(cross_replica, seen)
            for model, loss in models.values():
                model.compile(optimizer=keras.optimizers.SGD(1.0), loss=loss)
        for name, (model, _) in models.items():
            before = model.get_weights()[0]
            history = model.fit(
                _inputs(name, anchors, positives),
                labels,
                batch_size=GLOBAL_BATCH,
                shuffle=False,
                verbose=0,
            )
            results[f"{name}/cross_replica={cross_replica}"] = {
                "loss": float(history.history["loss"][0]),
                "grad": (before - model.get_weights()[0]).tolist(),
                "shapes": sorted({str(s) for s in seen[name]}),
            }
    return results


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


def run_tensorflow():
    import tensorflow as tf

    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration() for _ in range(REPLICAS)]
    )
    devices = [f"/cpu:{i}" for i in range(REPLICAS)]
    strategy = tf.distribute.MirroredStrategy(devices)
    assert strategy.num_replicas_in_sync == REPLICAS
    return _fit_one_step(strategy)


def run_torch(rank, store):
    """A custom training loop: local forward, backward, gradients averaged over processes."""
    import torch
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=REPLICAS)
    import keras_metric_losses as kml

    assert kml.distributed.replica_context() == (rank, REPLICAS)
    anchors, positives, labels, _ = problem()
    rows = slice(rank * GLOBAL_BATCH // REPLICAS, (rank + 1) * GLOBAL_BATCH // REPLICAS)
    results = {}
    for cross_replica in (True, False):
        seen = {"npairs": [], "pn": []}
        for name, (model, loss_fn) in _models(cross_replica, seen).items():
            x = _inputs(name, anchors[rows], positives[rows])
            loss = loss_fn(labels[rows], model(x))
            variables = [v.value for v in model.trainable_weights]
            (grad,) = torch.autograd.grad(loss, variables)
            # What DistributedDataParallel does: average the gradients (and report the mean loss).
            loss = loss.detach().clone()
            for value in (loss, grad):
                dist.all_reduce(value, op=dist.ReduceOp.SUM)
                value /= REPLICAS
            results[f"{name}/cross_replica={cross_replica}"] = {
                "loss": float(loss),
                "grad": grad.numpy().tolist(),
                "shapes": sorted({str(s) for s in seen[name]}),
            }
    gathered = kml.distributed.gather_keys(torch.tensor(anchors[rows]), torch.tensor(labels[rows]))
    results["gather_keys"] = [t.numpy().tolist() for t in gathered]
    dist.barrier()  # neither rank tears the group down while its peer still uses it
    dist.destroy_process_group()
    return results


def main(argv):
    backend, out = argv[1], argv[2]
    if backend == "jax":
        os.environ["XLA_FLAGS"] = (
            os.environ.get("XLA_FLAGS", "") + f" --xla_force_host_platform_device_count={REPLICAS}"
        )
    os.environ["KERAS_BACKEND"] = backend
    if backend == "jax":
        results = run_jax()
    elif backend == "tensorflow":
        results = run_tensorflow()
    else:
        results = run_torch(int(argv[3]), argv[4])
    with open(out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv)
