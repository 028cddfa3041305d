import os

import keras
import pytest

import keras_metric_losses


def pytest_configure(config):
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
