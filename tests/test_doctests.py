"""The examples in the package's docstrings run on this backend and show their output, and the
package imports without docstrings (`python -OO`)."""

import doctest
import importlib
import os
import pkgutil
import subprocess
import sys

import keras
import pytest
from support import PUBLIC

import keras_metric_losses

MODULES = sorted(
    name
    for _, name, _ in pkgutil.walk_packages(
        keras_metric_losses.__path__, keras_metric_losses.__name__ + "."
    )
    if not name.endswith("__main__")
)
FLAGS = doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE


@pytest.mark.parametrize("name", [keras_metric_losses.__name__, *MODULES])
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=FLAGS)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        runner.run(test)
    assert runner.failures == 0, f"{runner.failures} failing example(s) in {name}"


@pytest.mark.parametrize("obj", PUBLIC, ids=lambda o: o.__name__)
def test_every_public_example_shows_its_output(obj):
    examples = doctest.DocTestParser().get_examples(obj.__doc__ or "")
    assert any(example.want.strip() for example in examples), obj.__name__


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax",
    reason="docstrings are assembled at import the same way on every backend; `-OO` has no "
    "cached bytecode where PYTHONDONTWRITEBYTECODE is set, and compiling TensorFlow's or torch's "
    "modules took 20 s a run in the suite (JAX's 8 s)",
)
def test_the_package_imports_without_docstrings():
    # `python -OO` sets every __doc__ to None: docstrings assembled at import must cope.
    root = os.path.dirname(os.path.dirname(os.path.abspath(keras_metric_losses.__file__)))
    code = "import keras_metric_losses as k; assert k.nce_loss.__doc__ is None; print(k.__file__)"
    result = subprocess.run(
        [sys.executable, "-OO", "-c", code],
        capture_output=True,
        text=True,
        check=False,
        env=os.environ,
        cwd=root,  # `python -c` puts the working directory first on the path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().splitlines()[-1] == keras_metric_losses.__file__
