"""Runs before `keras` is imported: makes sure Keras will find its backend.

Keras picks its backend once, at import: `KERAS_BACKEND`, else the `"backend"` of
`$KERAS_HOME/keras.json` (`~/.keras/keras.json`), else TensorFlow. Keras writes that file with
`"tensorflow"` on its first import, so on a machine with only JAX or PyTorch installed
`import keras` fails with `ModuleNotFoundError: No module named 'tensorflow'`.

When `KERAS_BACKEND` is unset and the configured backend is not installed, this module sets
`KERAS_BACKEND` to the first installed backend of `PREFERENCE` and records it in `CHOSEN`
(the demo says which). A `KERAS_BACKEND` that names a backend that is not installed raises one
readable error instead of Keras' traceback from deep inside its import: a `SystemExit` (one
line, no traceback) when the package is being imported to run one of its commands
(`python -m keras_metric_losses...`, `kml-demo`), else a `ModuleNotFoundError`. Nothing
happens once `keras` is imported (its backend is fixed then).
"""

import importlib.util
import json
import os
import sys

# Backend name -> the module it needs. Keras' own backends that can train a model.
MODULES = {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}
# Tried in this order when the configured backend is missing (the faster first on a CPU).
PREFERENCE = ("jax", "torch", "tensorflow")
COMMANDS = ("kml-demo",)

CHOSEN = {"backend": None, "configured": None}


def installed(backend):
    """Whether the module that Keras' `backend` needs can be imported (it is not imported)."""
    module = MODULES.get(backend, backend)
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def installed_backends():
    return [name for name in PREFERENCE if installed(name)]


def configured_backend():
    """The backend Keras would load without `KERAS_BACKEND`: keras.json's, else TensorFlow."""
    home = os.environ.get("KERAS_HOME") or os.path.join(os.path.expanduser("~"), ".keras")
    try:
        with open(os.path.join(home, "keras.json")) as f:
            return json.load(f).get("backend") or "tensorflow"
    except (OSError, ValueError, AttributeError):
        return "tensorflow"


def _running_a_command():
    """Whether the package is being imported to run one of its own command lines."""
    argv0 = sys.argv[0] if sys.argv else ""
    # `python -m pkg.module` sets argv[0] to "-m" while it imports the module's packages.
    return argv0 == "-m" or os.path.basename(argv0) in COMMANDS


def unavailable_message(backend, available):
    # The backend's own package: the package is not on PyPI before a release, so its extras
    # (`keras-metric-losses[jax]`) cannot be installed by name.
    package = MODULES.get(backend)
    install = f"install it (`pip install {package}`)" if package else "install it"
    others = (
        f"or set KERAS_BACKEND to an installed one: {', '.join(available)}"
        if available
        else "no Keras backend is installed: `pip install jax` (or tensorflow, torch)"
    )
    return f"KERAS_BACKEND={backend}, but {backend} is not installed: {install}, {others}."


def ensure():
    """Chooses an installed backend if needed (see the module docstring); idempotent."""
    if "keras" in sys.modules:
        return
    requested = os.environ.get("KERAS_BACKEND", "").strip()
    if requested:
        if requested in MODULES and not installed(requested):
            message = unavailable_message(requested, installed_backends())
            if _running_a_command():
                raise SystemExit(message)
            raise ModuleNotFoundError(message, name=MODULES[requested])
        return
    configured = configured_backend()
    if configured not in MODULES or installed(configured):
        return
    available = installed_backends()
    if not available:
        return  # Keras' own error names the missing module.
    os.environ["KERAS_BACKEND"] = available[0]
    CHOSEN.update(backend=available[0], configured=configured)


ensure()
