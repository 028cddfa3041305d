"""Every case of every reference file in `tests/data/`, read by file name, on this backend.

The files are copies of `shared/golden/` (TF Addons 0.23.0, TF Similarity 0.17.1, TensorFlow
2.15.1, pytorch-metric-learning 2.9.0). Each file name has one check in `specs.GOLDEN`, which
takes a case and `run(fn, *arrays)`: the eager call here, the backend's compiler in the slow
tier. No code depends on how many cases a file holds.
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


def test_every_reference_file_has_a_check_and_cases():
    assert FILES and set(FILES) <= set(GOLDEN), sorted(set(FILES) - set(GOLDEN))
    assert {param.values[0] for param in CASES} == set(FILES)


def eager(fn, *arrays):
    return fn(*arrays)


@pytest.mark.parametrize("name, case", CASES)
def test_reference_case(name, case):
    GOLDEN[name](case, eager)


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, case", [c for c in CASES if not getattr(GOLDEN[c.values[0]], "eager_only", False)]
)
def test_reference_case_compiled(name, case):
    GOLDEN[name](case, lambda fn, *arrays: compiled(fn)(*arrays))
