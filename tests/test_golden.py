"""Every case of every reference file in `tests/data/`, read by file name, on this backend.

The files are copies of `shared/golden/` (TF Addons 0.23.0, TF Similarity 0.17.1, TensorFlow
2.15.1, pytorch-metric-learning 2.9.0). Each `(file name, case["call"])` has one check in
`specs.GOLDEN`, which takes a case and `run(fn, *arrays)`: the eager call here, the backend's
compiler in the slow tier. No code depends on how many cases a file holds.
"""

import json

import pytest
from specs import GOLDEN
from support import DATA, compiled

FILES = sorted(path.name for path in DATA.glob("*.json"))
CASES = [
    pytest.param(name, case, id=f"{name[:-5]}:{index}:{case.get('id', '')}")
    for name in FILES
    for index, case in enumerate(json.loads((DATA / name).read_text())["cases"])
]


def check_of(name, case):
    return GOLDEN.get((name, case.get("call")))


def test_every_reference_case_has_a_check():
    assert FILES and {param.values[0] for param in CASES} == set(FILES)
    missing = {(p.values[0], p.values[1].get("call")) for p in CASES} - set(GOLDEN)
    assert not missing, sorted(missing, key=str)


def eager(fn, *arrays):
    return fn(*arrays)


def compiled_run(fn, *arrays):
    return compiled(fn)(*arrays)


eager.compiled, compiled_run.compiled = False, True  # for checks that compile a whole model


@pytest.mark.parametrize("name, case", CASES)
def test_reference_case(name, case):
    check_of(name, case)(case, eager)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, case", [c for c in CASES if not getattr(check_of(*c.values), "eager_only", False)]
)
def test_reference_case_compiled(name, case):
    check_of(name, case)(case, compiled_run)
