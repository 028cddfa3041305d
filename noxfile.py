"""Test matrix: one virtualenv and one process per Keras backend (a backend is fixed at import).

`nox -s bench [-- --quick]` runs the benchmark suite (not part of the default sessions);
`nox -s package` builds and checks the release files (the sdist and the wheel).
"""

import hashlib
import os
import shutil
import zipfile
from pathlib import Path

import nox

nox.options.sessions = ["lint", "package", "tests", "docs"]
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


# Run by the installed wheel in a fresh virtualenv, in isolated mode (`python -I`: neither the
# working directory nor PYTHONPATH is on sys.path, so it cannot import the source tree).
WHEEL_CHECK = """
import importlib.metadata, math
import numpy as np
import keras
import keras_metric_losses as kml
assert keras.backend.backend() == "jax", keras.backend.backend()
assert "site-packages" in kml.__file__, kml.__file__
version = importlib.metadata.version("keras-metric-losses")
assert kml.__version__ == version, (kml.__version__, version)
loss = keras.ops.convert_to_numpy(kml.npairs_loss(np.array([0, 1]), np.eye(2, dtype="float32")))
np.testing.assert_allclose(loss, [math.log1p(math.exp(-1))] * 2, rtol=1e-6)  # log(1 + e^-1)
print(f"keras-metric-losses {version} ({kml.__file__}): npairs_loss {loss}")
"""


def _check_wheel_files(session, wheel):
    """The wheel holds the package's files, no other (a stale build/ once kept removed
    modules), and the licence text."""
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    modules = {name for name in names if not name.split("/")[0].endswith(".dist-info")}
    source = {
        path.as_posix()
        for path in Path("keras_metric_losses").rglob("*")
        if path.is_file() and "__pycache__" not in path.parts
    }
    if modules != source:
        session.error(
            f"{wheel.name} differs from the source tree: missing {sorted(source - modules)}, "
            f"extra {sorted(modules - source)}"
        )
    if not any(name.endswith(".dist-info/licenses/LICENSE") for name in names):
        session.error(f"{wheel.name} has no LICENSE")


@nox.session
def package(session):
    """Builds the release files as a release would and checks them.

    `python -m build` makes the sdist, then the wheel from the sdist, into a temporary
    directory; `twine check --strict` checks their metadata (the README as the long
    description); the wheel must hold exactly the package's modules and the LICENSE. Then the
    wheel is installed with its `jax` extra in a fresh virtualenv and imported there, outside
    the repository, and computes one loss value.
    """
    session.install("build", "twine")
    tmp = Path(session.create_tmp()).absolute()
    dist, venv = tmp / "dist", tmp / "fresh-venv"
    for path in (dist, venv, Path("build")):
        shutil.rmtree(path, ignore_errors=True)
    session.run("python", "-m", "build", "--outdir", str(dist), ".")
    sdists, wheels = sorted(dist.glob("*.tar.gz")), sorted(dist.glob("*.whl"))
    if len(sdists) != 1 or len(wheels) != 1:
        session.error(f"expected one sdist and one wheel in {dist}: {sorted(os.listdir(dist))}")
    session.run("twine", "check", "--strict", str(sdists[0]), str(wheels[0]))
    _check_wheel_files(session, wheels[0])
    session.run("python", "-m", "venv", str(venv))
    python = str(venv / "bin" / "python")
    wheel = f"keras-metric-losses[jax] @ {wheels[0].as_uri()}"
    session.run(python, "-m", "pip", "install", "-q", *CONSTRAINTS, wheel, external=True)
    env = {"KERAS_BACKEND": "jax", "CUDA_VISIBLE_DEVICES": ""}
    session.run(python, "-I", "-c", WHEEL_CHECK, env=env, external=True)


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
