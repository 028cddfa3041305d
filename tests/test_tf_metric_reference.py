"""The NumPy oracle `tf_metric_reference` against the stored TF Addons / TF Similarity values.

Every case of tfa_metric.json, tfsim_metric.json and the `"call": "XBM"` cases of
tfsim_ssl.json is checked (rtol 1e-5, atol 1e-6); the files are read by name, so more cases of
the same kinds need no change here.
"""

import json
import os
import pathlib

import numpy as np
import pytest
import tf_metric_reference as ref

# tests/data first (copies of the shared reference values), then the shared folder itself.
GOLDEN_DIRS = [
    pathlib.Path(__file__).parent / "data",
    pathlib.Path(os.environ.get("KML_GOLDEN", "/work/shared/golden")),
]
TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def load_cases(name, call=None):
    path = next((d / name for d in GOLDEN_DIRS if (d / name).exists()), GOLDEN_DIRS[-1] / name)
    cases = json.loads(path.read_text())["cases"]
    return [case for case in cases if call is None or case["call"] == call]


def params(cases):
    """One pytest parameter per case; ids are prefixed with the index (ids may repeat)."""
    return [pytest.param(case, id=f"{i}-{case['id']}") for i, case in enumerate(cases)]


def inputs(case_or_step, dtype):
    """Labels, and the predictions as the `dtype` values the original saw, in float64."""
    y_pred = np.asarray(case_or_step["y_pred"], dtype=dtype).astype(np.float64)
    return np.asarray(case_or_step["y_true"]), y_pred


def assert_close(actual, expected):
    np.testing.assert_allclose(actual, np.asarray(expected, np.float64), **TOLERANCE)


TFA_SCALARS = {
    "triplet_semihard_loss": (ref.triplet_semihard_loss, ref.triplet_semihard_per_anchor),
    "triplet_hard_loss": (ref.triplet_hard_loss, ref.triplet_hard_per_anchor),
    "lifted_struct_loss": (ref.lifted_struct_loss, ref.lifted_struct_per_anchor),
}


@pytest.mark.parametrize("case", params(load_cases("tfa_metric.json")))
def test_tf_addons(case):
    y_true, y_pred = inputs(case, case["dtype"])
    if case["call"] == "contrastive_loss":  # per pair; the class's mean if stored
        values = ref.contrastive_loss(y_true, y_pred, **case["kwargs"])
        assert_close(values, case["expected_per_example"])
        if "expected" in case:
            assert_close(values.mean(), case["expected"])
        return
    loss, per_anchor = TFA_SCALARS[case["call"]]
    assert_close(loss(y_true, y_pred, **case["kwargs"]), case["expected"])
    values = per_anchor(y_true, y_pred, **case["kwargs"])
    assert values.shape == (len(y_true),)
    assert_close(values.mean(), case["expected"])


@pytest.mark.parametrize("case", params(load_cases("tfsim_metric.json")))
def test_tf_similarity(case):
    y_true, y_pred = inputs(case, case["dtype"])
    values = ref.tfsim_loss(case["call"], y_true, y_pred, **case["kwargs"])
    assert values.shape == (len(y_true),)
    assert_close(values.mean(), case["expected"])
    if "expected_per_example" in case:
        assert_close(values, case["expected_per_example"])


@pytest.mark.parametrize("case", params(load_cases("tfsim_ssl.json", call="XBM")))
def test_tf_similarity_xbm(case):
    kwargs = case["kwargs"]
    batches = [inputs(step, case["dtype"]) for step in case["steps"]]
    results = ref.xbm_replay(batches, kwargs["loss"], kwargs["memory_size"], kwargs["warmup_steps"])
    for step, (values, memory_labels) in zip(case["steps"], results, strict=True):
        assert_close(values.mean(), step["expected"])
        assert_close(values, step["expected_per_example"])
        np.testing.assert_array_equal(memory_labels, step["label_memory_after"])
