"""The benchmark registry (`benchmarks/cases.py`): every case's steps build and run on this
backend at a small batch (the timings themselves are not tests; that every loss has a case is
`test_registry.py`'s)."""

import pathlib
import sys

import keras
import numpy as np
import pytest
from support import first_of_each

BENCHMARKS = pathlib.Path(__file__).parent.parent / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))
import cases  # noqa: E402


# The fast tier builds the first case of each kind of inputs; the slow tier every case on torch
# (1 s there, 27 s on JAX's empty cache, where each case compiles), the first of each kind of
# inputs elsewhere (each loss's values are the golden tests').
@pytest.mark.parametrize(
    "name",
    first_of_each(
        ((cases.CASES[n].inputs, pytest.param(n, id=n)) for n in sorted(cases.CASES)),
        every_one_on="torch",
    ),
)
def test_case_runs_at_a_small_batch(name):
    case = cases.CASES[name]
    arrays = cases.INPUTS[case.inputs](16, np.random.default_rng(0))
    x = {k: keras.ops.convert_to_tensor(v) for k, v in arrays.items()}
    for builder in (case.ours, case.floor):
        value = keras.ops.convert_to_numpy(builder()(x))
        assert np.isfinite(value).all() and np.ndim(value) == 0, (name, value)


def test_the_retrieval_section_of_the_benchmarks_page_is_the_recorded_run():
    """`benchmarks/retrieval.py`'s record renders the page's section: a row per backend and
    PML's, the ratios to PML's time."""
    import json

    import retrieval

    results = json.loads((BENCHMARKS / "retrieval.json").read_text())
    section = "\n".join(retrieval.section(results))
    page = (BENCHMARKS.parent / "docs" / "benchmarks.md").read_text()
    assert section in page
    pml = retrieval.summary(results["speed"]["runs"]["pml"])["warm"]
    for backend in ("jax", "tensorflow", "torch"):
        ours = retrieval.summary(results["speed"]["runs"][backend])["warm"]
        assert f"| ours, {backend} | {ours:.2f} |" in section
        assert f"| {ours / pml:.2f} |" in section
