"""Backend-native forward+backward steps, alternating timing and per-step peak memory.

Shared by `runner.py` (Keras backends) and `oracle_runner.py` (the TF 2.15 reference venv), so it
imports no Keras and no backend at module level. A *variant* is `fn(inputs) -> scalar loss`, where
`inputs` maps names to native tensors; a *step* runs the loss and its gradient with respect to the
named inputs and returns only when the results are computed.
"""

import gc
import resource
import statistics
import sys
import time
from pathlib import Path

# The report's order: the path `model.fit` runs by default first, then compiled, then eager.
MODES = ("default", "compiled", "eager")

# What each mode runs on each backend. *default* is what `model.fit` compiles its train step
# with on a machine without an accelerator: `jax.jit`; `tf.function` without XLA (Keras turns
# `jit_compile="auto"` off on CPU-only machines); eager torch (Keras compiles torch only when
# asked). *compiled* is each backend's compiler. The reference venv (TF 2.15) runs TF's paths.
PATHS = {
    "tensorflow": {"default": "tf.function", "compiled": "xla", "eager": "eager"},
    "jax": {"default": "jax.jit", "compiled": "jax.jit", "eager": "eager"},
    "torch": {"default": "eager", "compiled": "torch.compile", "eager": "eager"},
}


def to_native(backend, arrays, wrt):
    """Converts numpy `arrays` to `backend` tensors; those named in `wrt` are differentiable."""
    if backend == "tensorflow":
        import tensorflow as tf

        return {k: tf.constant(v) for k, v in arrays.items()}
    if backend == "jax":
        import jax.numpy as jnp

        return {k: jnp.asarray(v) for k, v in arrays.items()}
    import torch

    return {k: torch.tensor(v, requires_grad=k in wrt) for k, v in arrays.items()}


def make_step(backend, fn, inputs, wrt, mode):
    """Returns `step()`: forward+backward of `fn(inputs)` w.r.t. `inputs[wrt]`, synchronised.

    `mode` is one of `MODES`; `PATHS[backend][mode]` says what it runs: compiled means
    `jax.jit`, `tf.function(jit_compile=True)` or `torch.compile` (its default mode); default
    means `jax.jit`, `tf.function` without XLA, or eager torch.
    """
    diff = {k: inputs[k] for k in wrt}
    rest = {k: v for k, v in inputs.items() if k not in wrt}
    path = PATHS[backend][mode]
    return {"tensorflow": _tf_step, "jax": _jax_step, "torch": _torch_step}[backend](
        fn, diff, rest, path
    )


def _tf_step(fn, diff, rest, path):
    import tensorflow as tf

    def grad(diff, rest):
        with tf.GradientTape() as tape:
            tape.watch(list(diff.values()))
            loss = fn({**rest, **diff})
        return loss, tape.gradient(loss, diff)

    note = None
    if path == "tf.function":  # the graph `model.fit` runs on a CPU-only machine
        grad = tf.function(grad, jit_compile=False)
    elif path == "xla":  # XLA, or a plain graph where XLA cannot compile the function (noted).
        xla = tf.function(grad, jit_compile=True)
        try:
            xla(diff, rest)
            grad = xla
        except Exception as e:
            grad = tf.function(grad)
            note = f"tf.function without XLA ({type(e).__name__} under jit_compile=True)"

    def step():
        loss, grads = grad(diff, rest)
        for g in [loss, *grads.values()]:  # IndexedSlices (gathers) have `.values`.
            getattr(g, "values", g).numpy()

    step.note = note
    return step


def _jax_step(fn, diff, rest, path):
    import jax

    grad = jax.value_and_grad(lambda diff, rest: fn({**rest, **diff}))
    if path == "jax.jit":
        grad = jax.jit(grad)
    return lambda: jax.block_until_ready(grad(diff, rest))


def _torch_step(fn, diff, rest, path):
    import torch

    forward = torch.compile(fn) if path == "torch.compile" else fn
    tensors = list(diff.values())

    def step():
        loss = forward({**rest, **diff})
        torch.autograd.grad(loss, tensors)

    return step


def time_alternating(steps_by_variant, steps, warmup, progress=None):
    """Times the variants' steps interleaved (v1, v2, ..., v1, v2, ...) after `warmup` calls each.

    Returns `{variant: {"median_ms", "min_ms", "max_ms", "steps"}}`; a variant whose step raises
    is reported as `{"error": message}` and dropped from the rotation.
    """
    results, live = {}, dict(steps_by_variant)
    for name, step in list(live.items()):
        try:
            for _ in range(warmup):
                step()
        except Exception as e:
            results[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            del live[name]
        if progress:
            progress(f"warmed up {name}")
    times = {name: [] for name in live}
    for _ in range(steps):
        for name, step in live.items():
            start = time.perf_counter()
            step()
            times[name].append((time.perf_counter() - start) * 1e3)
    for name, ts in times.items():
        note = getattr(live[name], "note", None)
        results[name] = {
            **({"note": note} if note else {}),
            "median_ms": statistics.median(ts),
            "min_ms": min(ts),
            "max_ms": max(ts),
            "steps": len(ts),
        }
    return results


def _proc_status_kb(field):
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def peak_growth_mb(work):
    """Peak RSS growth (MiB) while `work()` runs, over the resident set just before it.

    Linux: resets the high-water mark (`/proc/self/clear_refs` <- 5) and reads `VmHWM`. Run with
    `MALLOC_MMAP_THRESHOLD_` set so that large buffers freed earlier have left the resident set.
    Falls back to the growth of `ru_maxrss` elsewhere (a lower bound).
    """
    gc.collect()
    try:
        before = _proc_status_kb("VmRSS")
        Path("/proc/self/clear_refs").write_text("5")
        work()
        return (_proc_status_kb("VmHWM") - before) / 1024
    except OSError:
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        work()
        return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024


def max_rss_mb():
    """The process's RSS high-water mark since it started (MiB), `ru_maxrss`."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def log(message):
    """Progress on stderr (the driver passes it through); stdout is kept for results."""
    print(message, file=sys.stderr, flush=True)
