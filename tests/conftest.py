import os

# The tests' programs are tiny, so XLA on JAX (where every golden case is compiled) spends its
# time compiling them, not running them: compile without LLVM's optimisation passes (about 40%
# less time), with XLA's CPU emitters that write LLVM IR directly instead of its MLIR fusion
# emitters, in one codegen module (38% and 10% less again: 70 ms a program before, on an empty
# cache). The HLO passes (fusion, simplification) still run, and codegen stays IEEE (no fast
# math). TensorFlow's compiled tier keeps XLA's default flags, the ones users run (20% more time
# there). Set before Keras loads a backend; flags a user already gave are kept.
_FAST_COMPILE = (
    "--xla_backend_optimization_level=0",
    "--xla_llvm_disable_expensive_passes=true",
    "--xla_cpu_use_fusion_emitters=false",
    "--xla_cpu_parallel_codegen_split_count=1",
)
if os.environ.get("KERAS_BACKEND") == "jax":
    _USER_FLAGS = os.environ.get("XLA_FLAGS", "")
    os.environ["XLA_FLAGS"] = " ".join(
        [_USER_FLAGS, *(f for f in _FAST_COMPILE if f.split("=")[0] not in _USER_FLAGS)]
    ).strip()

# JAX (eager tests compile every op for each new shape) keeps its compilations on disk, shared by
# the test workers and kept for the next run: a second run of the fast tier takes about a third
# of the first. Unbounded (a size bound makes JAX scan the whole cache on every write): delete
# the folder to reclaim it, or set `JAX_COMPILATION_CACHE_DIR` to put it elsewhere.
_JAX_CACHE = {
    "JAX_COMPILATION_CACHE_DIR": os.path.join(
        os.path.expanduser("~"), ".cache", "keras-metric-losses-tests", "jax"
    ),
    "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
}
for _name, _value in _JAX_CACHE.items():
    os.environ.setdefault(_name, _value)

import keras  # noqa: E402
import pytest  # noqa: E402
import support  # noqa: E402

import keras_metric_losses  # noqa: E402


def pytest_configure(config):
    support.FAST_TIER = "not slow" in (config.getoption("markexpr") or "")
    expected = os.environ.get("KERAS_BACKEND")
    if expected and keras.backend.backend() != expected:
        raise pytest.UsageError(
            f"KERAS_BACKEND={expected} but Keras loaded the {keras.backend.backend()!r} backend"
        )


def pytest_report_header(config):
    return (
        f"keras {keras.__version__}, backend {keras.backend.backend()}, "
        f"keras_metric_losses from {os.path.dirname(keras_metric_losses.__file__)}"
    )


@pytest.fixture(autouse=True)
def _reset_keras_state():
    yield
    keras.config.set_dtype_policy("float32")
    # Without the garbage collection (0.3 s a test on PyTorch): the global state is what leaks.
    keras.utils.clear_session(free_memory=False)
    keras_metric_losses.config.disable_value_checks()
