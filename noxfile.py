"""Test matrix: one virtualenv and one process per Keras backend (a backend is fixed at import)."""

import nox

nox.options.sessions = ["lint", "tests", "docs"]
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
    session.install(*CONSTRAINTS, ".[test,demo]")
    # Not editable, and rebuilt on every run: the tests import the package as users get it.
    session.install("--no-deps", "--force-reinstall", ".")
    session.env["KERAS_BACKEND"] = backend
    session.env["KERAS_HOME"] = session.create_tmp()
    session.run("pytest", *session.posargs, env={"CUDA_VISIBLE_DEVICES": ""})


@nox.session
def docs(session):
    """Builds the documentation site; warnings are errors."""
    session.install(*CONSTRAINTS, ".[docs]")
    site = session.create_tmp() + "/site"
    session.run("mkdocs", "build", "--strict", "--site-dir", site, env={"NO_MKDOCS_2_WARNING": "1"})


@nox.session
def demo(session):
    """Runs the demo on the JAX backend (`nox -s demo -- --epochs 5` passes arguments)."""
    session.install(*CONSTRAINTS, ".[jax,demo]")
    session.run(
        "python", "-m", "keras_metric_losses.demo", *session.posargs, env={"KERAS_BACKEND": "jax"}
    )
