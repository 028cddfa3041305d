"""The NumPy oracles of PML's pair/triplet losses and CrossBatchMemory against PML 2.9.0's values.

Every case of `pml_pair.json` and `pml_xbm.json` is checked: the default-reducer scalar, the mean
of the per-anchor decomposition, every unreduced sub-loss that is not `omitted` (losses, indices,
divisor; `zero_loss` sub-losses must be `None`), `expected_per_example` against the natural
per-anchor form, the TripletMarginMiner's tuple for mined cases, and for CrossBatchMemory the
queue after each step. This file needs only NumPy and pytest.
"""

import json
import os
import pathlib

import numpy as np
import pml_pair_reference as ref
import pytest
import xbm_reference as xbm

RTOL, ATOL = 1e-5, 1e-6
HERE = pathlib.Path(__file__).resolve().parent


def golden_path(name):
    """The first copy of `name` found: $KML_GOLDEN_DIR, tests/data, then shared/golden (in the
    checkout, beside it, or the workplace's)."""
    places = [
        os.environ.get("KML_GOLDEN_DIR"),
        HERE / "data",
        HERE.parent / "shared" / "golden",
        HERE.parent.parent / "shared" / "golden",
        "/work/shared/golden",
    ]
    for place in places:
        if place and (pathlib.Path(place) / name).is_file():
            return pathlib.Path(place) / name
    return None


def load_cases(name):
    path = golden_path(name)
    if path is None:
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{name} not found"))]
    cases = json.loads(path.read_text())["cases"]
    return [pytest.param(case, id=case["id"]) for case in cases]


def assert_close(actual, expected, what):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), np.asarray(expected, np.float64), RTOL, ATOL, err_msg=what
    )


def check_elements(result, expected_elements, context):
    """Every sub-loss of PML's unreduced dict, in PML's element order."""
    assert set(result.elements) == set(expected_elements), context
    for name, expected in expected_elements.items():
        got = result.elements[name]
        where = f"{context}: {name}"
        if expected["indexed_by"] == "zero_loss":
            assert got is None, f"{where}: PML returned zero_loss"
            continue
        assert got is not None, f"{where}: PML has {expected['count']} elements"
        assert got.count == expected["count"], where
        if "divisor" in expected:
            assert_close(got.divisor, expected["divisor"], f"{where} divisor")
        if expected.get("omitted"):
            continue
        assert_close(got.losses, expected["losses"], f"{where} losses")
        if expected["indices"] is None:
            continue
        indices = got.indices[0] if expected["indexed_by"] == "anchor" else np.stack(got.indices)
        np.testing.assert_array_equal(indices, np.asarray(expected["indices"]), err_msg=where)


def check_result(result, expected, expected_elements, context):
    assert_close(result.loss, expected, f"{context}: scalar")
    assert_close(np.mean(result.per_anchor), expected, f"{context}: mean of per_anchor")
    check_elements(result, expected_elements, context)


@pytest.mark.parametrize("case", load_cases("pml_pair.json"))
def test_pml_pair(case):
    result = ref.pml_call(
        case["call"], case["kwargs"], case["embeddings"], case["labels"], case.get("indices_tuple")
    )
    check_result(result, case["expected"], case["expected_elements"], case["id"])
    assert result.per_anchor.shape == (len(case["labels"]),)
    if "expected_per_example" in case:
        assert_close(result.natural, case["expected_per_example"], f"{case['id']}: per example")
    if "miner" in case:
        mask, mined = ref.pml_miner(case["miner"], case["embeddings"], case["labels"])
        np.testing.assert_array_equal(np.stack(mined), np.asarray(case["indices_tuple"]))
        assert mask.sum() == len(case["indices_tuple"][0])


@pytest.mark.parametrize("case", load_cases("pml_xbm.json"))
def test_pml_xbm(case):
    memory = xbm.from_golden(case)
    for number, step in enumerate(case["steps"]):
        context = f"{case['id']} step {number}"
        out = memory(step["embeddings"], step["labels"], step.get("enqueue_mask"))
        check_result(out.result, step["expected"], step["expected_elements"], context)
        assert out.queue_idx == step["queue_idx_after"], context
        assert out.has_been_filled == step["has_been_filled_after"], context
        np.testing.assert_array_equal(out.label_memory, step["label_memory_after"], context)
