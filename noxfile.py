"""Test matrix: one virtualenv and one process per Keras backend (a backend is fixed at import).

`nox -s bench [-- --quick]` runs the benchmark suite (not part of the default sessions).
"""

import hashlib
import os
import shutil
from pathlib import Path

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
    # setuptools' build/ keeps the files of modules removed since: start from an empty one.
    shutil.rmtree("build", ignore_errors=True)
    session.install("--no-deps", "--force-reinstall", ".")
    session.env["KERAS_BACKEND"] = backend
    session.env["KERAS_HOME"] = session.create_tmp()
    # One worker per core, at most 4 (each holds a backend); `-n 0` in posargs runs in-process.
    workers = ("-n", "auto", "--maxprocesses", "4")
    session.run("pytest", *workers, *session.posargs, env={"CUDA_VISIBLE_DEVICES": ""})


@nox.session
def docs(session):
    """Builds the documentation site (warnings are errors), then checks it in a browser.

    The API page imports the package (its docstrings are partly assembled at import), hence
    JAX. tests/test_docs.py then checks the built site: formulas converted to MathML, nothing
    loaded from another host, the API and benchmarks pages, and a headless-Chromium
    screenshot of a loss page served on 127.0.0.1 (skipped, with a message, where Chromium is
    not installed; Debian: `apt-get install chromium`). The screenshot is kept at
    `.nox/docs/tmp/npairs.png`.
    """
    session.install(*CONSTRAINTS, ".[jax,docs,test]")
    tmp = session.create_tmp()
    site = tmp + "/site"
    env = {"NO_MKDOCS_2_WARNING": "1", "KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    session.run("mkdocs", "build", "--strict", "--site-dir", site, env=env)
    session.run(
        "pytest",
        "tests/test_docs.py",
        "-k",
        "site or chromium",
        "-rs",
        env={**env, "KML_DOCS_SITE": site, "KML_DOCS_SCREENSHOT": tmp + "/npairs.png"},
    )


@nox.session
def demo(session):
    """Runs the demo on the JAX backend (`nox -s demo -- --epochs 5` passes arguments)."""
    session.install(*CONSTRAINTS, ".[jax,demo]")
    session.run(
        "python", "-m", "keras_metric_losses.demo", *session.posargs, env={"KERAS_BACKEND": "jax"}
    )


# Extra packages of each backend's benchmark environment (the references that run on it).
BENCH_EXTRAS = {"tensorflow": [], "jax": [], "torch": ["pytorch-metric-learning"]}


def _bench_venv(session, backend):
    """Creates (once per requirement set) `.nox/bench-<backend>` and returns its python."""
    venv = Path(".nox") / f"bench-{backend}"
    python = venv / "bin" / "python"
    requirements = ["keras", *BACKEND_PACKAGES[backend], *BENCH_EXTRAS[backend]]
    stamp = venv / "bench-requirements.txt"
    wanted = "\n".join(
        [*requirements, hashlib.sha256(Path("constraints.txt").read_bytes()).hexdigest()]
    )
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        session.log(f"Creating {venv} ({', '.join(requirements)})")
        session.run("python", "-m", "venv", "--clear", str(venv))
        session.run(
            str(python), "-m", "pip", "install", "-q", *CONSTRAINTS, *requirements, external=True
        )
        stamp.write_text(wanted)
    # The package as users get it, rebuilt every run so it benchmarks the working tree.
    session.run(
        str(python),
        "-m",
        "pip",
        "install",
        "-q",
        "--no-deps",
        "--force-reinstall",
        ".",
        external=True,
    )
    return str(python.absolute())


def _oracle_python(session):
    """Builds the reference environment (TF 2.15 + TF Addons + TF Similarity) with shared/oracle."""
    candidates = [
        os.environ.get("ORACLE_SETUP", ""),
        "shared/oracle/setup.sh",
        "../shared/oracle/setup.sh",
    ]
    setup = next((c for c in candidates if c and Path(c).is_file()), None)
    if setup is None:
        session.warn(
            "shared/oracle/setup.sh not found: the TF Addons / TF Similarity references are skipped"
        )
        return None
    out = session.run("bash", setup, external=True, silent=True)
    return out.strip().splitlines()[-1]


@nox.session(venv_backend="venv")
def bench(session):
    """Benchmarks every loss on every backend against its floor and references.

    Writes benchmarks/results.json, docs/benchmarks.md and docs/benchmarks.png. Arguments after
    `--` go to benchmarks/run.py (e.g. `--quick`).
    """
    session.install(*CONSTRAINTS, "numpy", "matplotlib")
    args = [f"--python={backend}={_bench_venv(session, backend)}" for backend in BACKEND_PACKAGES]
    oracle = _oracle_python(session)
    if oracle:
        args.append(f"--oracle-python={oracle}")
    session.run(
        "python", "benchmarks/run.py", *args, *session.posargs, env={"CUDA_VISIBLE_DEVICES": ""}
    )
