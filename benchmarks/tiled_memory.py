"""Peak memory and speed of a tiled loss's forward+backward, dense against tiled (`block_size`):
`SupConLoss` (default), `ClipLoss` or `SigLipLoss` (`--loss clip|siglip`, on `[B, 2, D]` unit
image and text features), or open_clip's dense losses for comparison (`--loss
open_clip.ClipLoss`, in a torch environment with open-clip-torch; its `loss.py` loaded by path).

Each measurement runs in its own process (the backend is fixed at import, and the peak RSS of
a process only grows), so the peak is that of one step:

    KERAS_BACKEND=jax python benchmarks/tiled_memory.py --batch 32768 --block-size 1024

prints one JSON line: the backend, the batch, the block size (`null`: dense), the growth of the
peak resident set size over the step (`ru_maxrss` after the step minus the RSS before it, MiB),
and the median time of `--steps` steps after a first (compiling) one. The step is compiled as
`model.fit` runs it by default: `jax.jit` on JAX, `tf.function` (no XLA) on TensorFlow, eager
on PyTorch. `--sweep` runs the table of docs/tiling.md, one subprocess per cell; `--plot PNG`
draws the measured peaks kept in `tiled_memory.json` against the batch size.
"""

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def rss_mib():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _inputs(loss_name, batch, dim):
    """`[B, D]` embeddings and `[B]` labels (SupCon), or `[B, 2, D]` unit features."""
    import numpy as np

    rng = np.random.default_rng(0)
    if loss_name == "supcon":
        return (rng.normal(size=(batch, dim)).astype("float32"),
                rng.integers(0, batch // 4, batch).astype("int32"))  # fmt: skip
    x = rng.normal(size=(batch, 2, dim)).astype("float32")
    return x / np.linalg.norm(x, axis=-1, keepdims=True), None


def _open_clip_step(name, x):
    """One forward+backward of open_clip's dense loss at its initial scale (and bias)."""
    import torch
    from cases import open_clip_loss

    loss = open_clip_loss(name)
    x = torch.from_numpy(x)

    def step():
        e = x.detach().requires_grad_(True)
        value = loss(e[:, 0], e[:, 1])
        value.backward()
        return value, e.grad

    return "torch", step


def _step(loss_name, batch, dim, block_size):
    """`(backend, step)`: one compiled forward+backward, as `model.fit` runs it by default."""
    x, y = _inputs(loss_name, batch, dim)
    if loss_name.startswith("open_clip."):
        return _open_clip_step(loss_name.split(".")[1], x)
    import keras

    import keras_metric_losses as kml

    backend = keras.backend.backend()
    x = keras.ops.convert_to_tensor(x)
    y = None if y is None else keras.ops.convert_to_tensor(y)
    loss = {"supcon": kml.SupConLoss, "clip": kml.ClipLoss, "siglip": kml.SigLipLoss}[loss_name](
        block_size=block_size
    )
    if backend == "jax":
        import jax

        grad = jax.jit(jax.value_and_grad(lambda e: loss(y, e)))

        def step():
            return jax.block_until_ready(grad(x))

    elif backend == "tensorflow":
        import tensorflow as tf

        @tf.function
        def step():
            with tf.GradientTape() as tape:
                tape.watch(x)
                value = loss(y, x)
            return value, tape.gradient(value, x)

    else:

        def step():
            e = x.detach().requires_grad_(True)
            value = loss(y, e)
            value.backward()
            return value, e.grad

    return backend, step


def measure(batch, dim, block_size, steps, loss_name="supcon"):
    backend, step = _step(loss_name, batch, dim, block_size)
    before = rss_mib()
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        value = float(step()[0])
        times.append(time.perf_counter() - start)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "backend": backend,
        "loss": loss_name,
        "batch": batch,
        "dim": dim,
        "block_size": block_size,
        "peak_growth_mib": round(peak - before, 1),
        "first_step_s": round(times[0], 3),
        "median_step_s": round(statistics.median(times[1:]), 4) if steps else None,
        "value": value,
    }


def plot(path):
    """Peak memory growth against the batch size, dense and tiled, per backend (log-log)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    data = json.loads((Path(__file__).parent / "tiled_memory.json").read_text())
    figure, axis = plt.subplots(figsize=(6, 4))
    for backend, colour in (("jax", "C0"), ("tensorflow", "C1"), ("torch", "C2")):
        rows = [row for row in data["rows"] if row["backend"] == backend]
        for key, style, label in (
            ("dense_peak_mib", "--o", "dense"),
            ("tiled_peak_mib", "-s", "tiled"),
        ):
            batches = [row["batch"] for row in rows if row[key] is not None]
            peaks = [row[key] for row in rows if row[key] is not None]
            axis.plot(batches, peaks, style, color=colour, label=f"{backend} {label}")
    axis.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="peak memory growth (MiB)",
             title="SupConLoss forward + backward, D = 128, block_size = 1024")  # fmt: skip
    axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", default="supcon", help="supcon, clip, siglip, open_clip.NAME")
    parser.add_argument("--batch", type=int, default=4096)
    parser.add_argument("--dim", type=int, default=128)
    parser.add_argument("--block-size", type=int, default=None)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--sweep", nargs="*", metavar="BATCH", type=int)
    parser.add_argument("--sweep-block-size", type=int, default=1024)
    parser.add_argument("--dense-max", type=int, default=8192, help="largest dense batch")
    parser.add_argument("--plot", metavar="PNG", help="plot tiled_memory.json to this file")
    args = parser.parse_args()
    if args.plot:
        plot(args.plot)
        return
    if args.sweep is None:
        result = measure(args.batch, args.dim, args.block_size, args.steps, args.loss)
        print(json.dumps(result), flush=True)
        return
    for batch in args.sweep:
        blocks = [args.sweep_block_size] + ([None] if batch <= args.dense_max else [])
        for block in blocks:
            command = [sys.executable, __file__, "--batch", str(batch), "--dim", str(args.dim),
                       "--steps", str(args.steps if batch <= 4096 else 0)]  # fmt: skip
            if block is not None:
                command += ["--block-size", str(block)]
            result = subprocess.run(command, capture_output=True, text=True, check=False)
            lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
            print(lines[-1] if lines else json.dumps({"batch": batch, "block_size": block,
                  "error": result.stderr[-500:]}), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
