"""Test matrix: one virtualenv and one process per Keras backend (a backend is fixed at import)."""

import nox

nox.options.sessions = ["lint", "tests"]
nox.options.reuse_existing_virtualenvs = True

CONSTRAINTS = ("-c", "constraints.txt")
# The CPU builds used by the matrix; the package's extras name the generic distributions.
BACKEND_PACKAGES = {
    "tensorflow": ["tensorflow-cpu"],
    "jax": ["jax"],
    "torch": ["torch"],
}


@nox.session
def lint(session):
    session.install("ruff")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
@nox.parametrize("backend", list(BACKEND_PACKAGES))
def tests(session, backend):
    session.install(*CONSTRAINTS, *BACKEND_PACKAGES[backend])
    session.install(*CONSTRAINTS, ".[test]")
    # Not editable, and rebuilt on every run: the tests import the package as users get it.
    session.install("--no-deps", "--force-reinstall", ".")
    session.env["KERAS_BACKEND"] = backend
    session.env["KERAS_HOME"] = session.create_tmp()
    session.run("pytest", *session.posargs, env={"CUDA_VISIBLE_DEVICES": ""})
