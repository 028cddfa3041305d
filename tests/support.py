"""Backend-neutral helpers for the tests: reference data, gradients and compiled calls."""

import inspect
import json
import pathlib
import re

import keras
import numpy as np
import pytest

import keras_metric_losses as kml

DATA = pathlib.Path(__file__).parent / "data"

# The public objects, found by walking `__all__` so that new ones are covered.
TOP_LEVEL = [getattr(kml, n) for n in kml.__all__ if not inspect.ismodule(getattr(kml, n))]
LAYERS = [getattr(kml.layers, name) for name in kml.layers.__all__]
PUBLIC = TOP_LEVEL + [layer for layer in LAYERS if layer not in TOP_LEVEL]
LOSS_CLASSES = [
    obj for obj in PUBLIC if inspect.isclass(obj) and issubclass(obj, keras.losses.Loss)
]
FUNCTIONS = [obj for obj in PUBLIC if inspect.isfunction(obj)]
# Functions with the `(y_true, y_pred)` signature of a Keras loss (the sampled losses take the
# class weights themselves; in a model they are `NCELoss` / `SampledSoftmaxLoss` + `layers.NCE`).
LOSS_FUNCTIONS = [
    fn for fn in FUNCTIONS if list(inspect.signature(fn).parameters)[:2] == ["y_true", "y_pred"]
]


def python_block(path, heading):
    """The first ```python block after the Markdown heading `heading` in `path`."""
    text = path.read_text()
    start = text.index(heading)
    match = re.search(r"(`{3,})python\n(.*?)\1", text[start:], re.DOTALL)
    assert match, f"no python block after {heading!r} in {path}"
    return match.group(2)


# True when the run deselects the slow tier (`-m "not slow"`); set by `conftest.py` before the
# test modules are imported.
FAST_TIER = False


def examples(count):
    """`max_examples` of a property test: `count` in a full run, a fifth of it (at least 3)
    in the fast tier (each new shape compiles JAX's eager ops again)."""
    return max(3, count // 5) if FAST_TIER else count


def firsts(keyed_items, every_one_on=None):
    """`[(key, item)]` -> `[(first, item)]`, `first` telling whether the item is the first of
    its key. With `every_one_on` (a backend's name), the others are left out on the other
    backends: for sweeps of what the backends share (Keras' `fit`, saving, dtype policies around
    the same `keras.ops` code), every loss runs on the backend where the sweep costs least, and
    each key's first on every backend."""
    seen = set()
    elsewhere = every_one_on is not None and keras.backend.backend() != every_one_on
    for key, item in keyed_items:
        first = key not in seen
        seen.add(key)
        if first or not elsewhere:
            yield first, item


def first_of_each(keyed_params, every_one_on=None):
    """Splits a sweep between the tiers: `[(key, param)]` -> the params, the first of each key
    as it is (the fast tier then runs each code path once: one loss per family and kind, say)
    and the others marked `slow` (the full run still runs every one, or, with `every_one_on`,
    the run on that backend: see `firsts`)."""
    return [
        param
        if first
        else pytest.param(*param.values, id=param.id, marks=[*param.marks, pytest.mark.slow])
        for first, param in firsts(keyed_params, every_one_on)
    ]


def golden_cases(name):
    """The cases of `tests/data/<name>.json` (copied from the shared reference values)."""
    return json.loads((DATA / f"{name}.json").read_text())["cases"]


def numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def value_and_grad(fn, x, traced=True):
    """`(fn(x), d fn / d x)` as NumPy arrays, for a scalar-valued `fn` of one float array.

    On JAX under `jax.jit`, as `fit` runs it (op by op, every primitive of the forward and
    backward pass compiles on its own for each new shape: on an empty JAX cache, as CI's is,
    the golden suite took 402 s of test time that way and 303 s traced), unless `traced=False`:
    for an `fn` that reads values on the host or writes a layer's state, and for sweeps of many
    small variants, which share primitives compiled op by op where each traced variant compiles
    a program of its own (the degenerate-input sweep: 33 s wall warm op by op, 53 s traced)."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        grad_fn = jax.value_and_grad(fn)
        value, grad = (jax.jit(grad_fn) if traced else grad_fn)(jax.numpy.asarray(x))
    elif backend == "tensorflow":
        import tensorflow as tf

        x = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(x)
            value = fn(x)
        grad = tape.gradient(value, x)
    else:
        import torch

        x = torch.tensor(x, requires_grad=True)
        value = fn(x)
        (grad,) = torch.autograd.grad(value, x)
    return numpy(value), numpy(grad)


def traced(fn):
    """`fn` as `fit` runs a step by default: under `jax.jit` on JAX, a `tf.function` without
    XLA on TensorFlow, eagerly on torch."""
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        return jax.jit(fn)
    if backend == "tensorflow":
        import tensorflow as tf

        return tf.function(fn, jit_compile=False)
    return fn


def repeated_draws(fn, trials, seed=0):
    """`fn(seed_generator)` `trials` times with one generator, compiled where that is cheap."""
    generator = keras.random.SeedGenerator(seed)
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        @jax.jit
        def step(state):
            with keras.StatelessScope(state_mapping=[(generator.state, state)]) as scope:
                out = fn(generator)
            return out, scope.get_current_value(generator.state)

        state, draws = generator.state.value, []
        for _ in range(trials):
            out, state = step(state)
            draws.append(out)
        return np.stack([numpy(d) for d in draws])
    if backend == "tensorflow":
        import tensorflow as tf

        step = tf.function(lambda: fn(generator), jit_compile=True)
        return np.stack([numpy(step()) for _ in range(trials)])
    return np.stack([numpy(fn(generator)) for _ in range(trials)])


def compile_frozen(model, run):
    """Compiles `model` with a zero learning rate for a golden check's `run`: its step compiled
    where `run.jit_compile` is set (see tests/test_golden.py), eager otherwise."""
    jit_compile = getattr(run, "jit_compile", False)
    model.compile(
        optimizer=keras.optimizers.SGD(0.0), jit_compile=jit_compile, run_eagerly=not jit_compile
    )


def compiled(fn, trace_only=False, generate_code=True):
    """`fn` compiled by the backend's own compiler: `jax.jit`, XLA `tf.function`, `torch.compile`.

    The returned function takes arrays and passes them to the compiled `fn` as backend tensors.
    On torch, two cheaper forms (Inductor's C++ code generation takes most of a compilation on
    a machine whose Inductor cache is empty, as CI's is):
    - `trace_only=True` (for tests of what happens while tracing): Dynamo with static shapes,
      its graph run eagerly;
    - `generate_code=False`: Dynamo and AOTAutograd (`backend="aot_eager"`: the forward and
      backward graphs, functionalised and decomposed as Inductor receives them), run eagerly.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        import jax

        compiled_fn = jax.jit(fn)
    elif backend == "tensorflow":
        import tensorflow as tf

        compiled_fn = tf.function(fn, jit_compile=True)
    else:
        import torch

        if trace_only:
            options = {"backend": "eager", "dynamic": False}
        else:
            options = {} if generate_code else {"backend": "aot_eager"}
        compiled_fn = torch.compile(fn, fullgraph=True, **options)
    return lambda *args: compiled_fn(*(keras.ops.convert_to_tensor(a) for a in args))


def finite_difference_grad(fn, x, eps=1e-3):
    """Central finite differences of a scalar `fn` at `x` (float64 NumPy)."""
    x = np.asarray(x, dtype=np.float64)
    grad = np.zeros_like(x)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x)
        step[index] = eps
        grad[index] = (float(fn(x + step)) - float(fn(x - step))) / (2 * eps)
    return grad
