"""Every case of every reference file in `tests/data/`, read by file name, on this backend.

The files are copies of `shared/golden/` (TF Addons 0.23.0, TF Similarity 0.17.1, TensorFlow
2.15.1, pytorch-metric-learning 2.9.0). Each `(file name, case["call"])` has one check in
`specs.GOLDEN`, which takes a case and `run(fn, *arrays)`: the eager call here, the backend's
compiler in the slow tier (see `compiled_cases`). On JAX every case runs under `jax.jit`
instead: it is what `model.fit` runs there, and it costs less than running a case op by op (each
op compiles for the case's shapes). On every backend the fast tier runs the first case of each
code path (`tiers`) and the slow tier the others.
No code depends on how many cases a file holds.
"""

import json

import keras
import pytest
from specs import GOLDEN
from support import DATA, compiled, first_of_each

FILES = sorted(path.name for path in DATA.glob("*.json"))
# `(file name, call)` of reference cases without a check yet, one per line (none now).
PENDING = set()
EVERY_CASE = [
    pytest.param(name, case, id=f"{name[:-5]}:{index}:{case.get('id', '')}")
    for name in FILES
    for index, case in enumerate(json.loads((DATA / name).read_text())["cases"])
]
CASES = [p for p in EVERY_CASE if (p.values[0], p.values[1].get("call")) not in PENDING]


def check_of(name, case):
    return GOLDEN.get((name, case.get("call")))


def test_every_reference_case_has_a_check():
    assert FILES and {param.values[0] for param in EVERY_CASE} == set(FILES)
    missing = {(p.values[0], p.values[1].get("call")) for p in EVERY_CASE} - set(GOLDEN)
    assert missing == PENDING, sorted(missing ^ PENDING, key=str)


def eager(fn, *arrays):
    return fn(*arrays)


def compiled_run(fn, *arrays):
    return compiled(fn)(*arrays)


def graph_run(fn, *arrays):
    return compiled(fn, generate_code=False)(*arrays)


# `run.compiled`: `run` compiles the functions it is given (checks skip their eager-only parts).
# `run.jit_compile`: what checks that build a model pass to `model.compile`; not `graph_run`'s,
# as Keras compiles a model's step on torch through Inductor only (see `compiled_cases`).
eager.compiled = eager.jit_compile = False
compiled_run.compiled = compiled_run.jit_compile = True
graph_run.compiled, graph_run.jit_compile = True, False


JAX, TORCH = (keras.backend.backend() == name for name in ("jax", "torch"))


def code_path(name, case):
    """What selects the traced program of a case: its file and call, the values of its
    non-numeric arguments (strings, booleans, None), the names of its numeric ones, its
    overrides and dtype. Numeric values and array sizes do not change the program."""
    kwargs = {
        key: value if value is None or isinstance(value, str | bool) else type(value).__name__
        for key, value in (case.get("kwargs") or {}).items()
    }
    fields = (case.get("call"), kwargs, case.get("overrides"), case.get("dtype"))
    return name, json.dumps(fields, sort_keys=True)


def compiled_cases(params):
    """The compiled tier of TensorFlow and torch: the first case of each `(file, call)` (the
    eager tier runs them all). Compiling takes seconds a case there (XLA through `tf2xla`,
    Dynamo and Inductor), and every case of every code path runs under XLA on JAX.

    On torch the first of these cases of each file goes through Inductor, and the others through
    Dynamo and AOTAutograd without Inductor's code generation (`graph_run`): the same
    whole-graph capture of forward and backward, run eagerly, and models that a check builds
    run eagerly (`run.jit_compile`). On an empty Inductor cache, as CI's is, the tier took 787 s
    of test time with Inductor for every case, and 455 s with it for the first of each file
    (models still compiled); a warm cache hides most of the difference (369 s). Each case
    compiles the first function its check runs (`first_call_of`): 366 -> 216 s on torch."""
    seen, files = set(), set()
    for param in params:
        name, case = param.values
        path = (name, case.get("call"))
        if path not in seen and not getattr(check_of(name, case), "eager_only", False):
            seen.add(path)
            run = graph_run if name in files and TORCH else compiled_run
            files.add(name)
            yield pytest.param(name, case, run, id=param.id)


def tiers(params):
    """The cases after the first of their code path go to the slow tier (the fast tier runs
    every loss's code paths once: 324 of the 706 cases)."""
    return first_of_each((code_path(*p.values), p) for p in params)


@pytest.mark.parametrize("name, case", tiers(CASES))
def test_reference_case(name, case):
    check = check_of(name, case)
    check(case, compiled_run if JAX and not getattr(check, "eager_only", False) else eager)


def first_call_of(run):
    """`run` for the first function a check runs (the loss itself, mostly its function), `eager`
    for the others (its class, per-example or element forms: the same computation behind other
    wrappers, each checked in the eager tier). Tracing takes most of a compiled case (Dynamo:
    about 1 s a function for the losses of pml_pair), and the checks run up to 4 functions."""
    calls = []

    def first(fn, *arrays):
        calls.append(fn)
        return (run if len(calls) == 1 else eager)(fn, *arrays)

    first.compiled, first.jit_compile = run.compiled, run.jit_compile
    return first


@pytest.mark.slow
@pytest.mark.skipif(JAX, reason="test_reference_case runs every case under jax.jit")
@pytest.mark.parametrize("name, case, run", list(compiled_cases(CASES)))
def test_reference_case_compiled(name, case, run):
    check_of(name, case)(case, first_call_of(run))
