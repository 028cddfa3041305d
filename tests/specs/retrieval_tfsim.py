"""TensorFlow Similarity's retrieval metrics (`kml.retrieval.tfsim`), checked against
`tfsim_retrieval.json`: `Class(**kwargs).compute(...)` of TF Similarity 0.17.1."""

import math

import keras
import numpy as np
import pytest

from keras_metric_losses.retrieval import tfsim

SPECS = []

RTOL = 1e-6

FUNCTIONS = {
    "RecallAtK": tfsim.recall_at_k,
    "PrecisionAtK": tfsim.precision_at_k,
    "MapAtK": tfsim.map_at_k,
    "BNDCG": tfsim.binary_ndcg,
}


def arguments(case):
    """The case's arrays and our keyword arguments for its TF Similarity settings.

    `distance_threshold` goes to `binary_ndcg` only: the other three TF Similarity metrics
    ignore it in `compute()`, so their `*-threshold-ignored-*` cases expect the value without
    it. `r` is a list of `[label, count]` pairs.
    """
    settings = dict(case["kwargs"])
    threshold = settings.pop("distance_threshold")
    arrays = [np.asarray(case["query_labels"]), np.asarray(case["lookup_labels"])]
    if case["call"] == "BNDCG":
        arrays.append(np.asarray(case["lookup_distances"], dtype=case["dtype"]))
        settings["distance_threshold"] = math.inf if threshold is None else threshold
    if settings.get("r") is not None:
        settings["r"] = {label: count for label, count in settings["r"]}
    return arrays, settings


def check_case(case, run):
    """TF Similarity's value within 1e-6 relative, in float32; its errors as `ValueError`s.

    Where TF Similarity silently reads fewer columns than its settings say (`RecallAtK` with
    `drop_closest_lookup` and only `k` columns reads `k - 1` neighbours) or fails inside
    TensorFlow (`BNDCG` there), ours asks for the `k + 1` columns; the silent value is then
    ours with `k - 1`.
    """
    fn = FUNCTIONS[case["call"]]
    arrays, settings = arguments(case)
    short = (
        case["call"] in ("RecallAtK", "BNDCG")
        and settings["drop_closest_lookup"]
        and arrays[1].shape[1] < settings["k"] + 1
    )
    if case["expected"] is None or short:
        match = f"at least {settings['k'] + 1} columns" if short else "micro"
        with pytest.raises(ValueError, match=match):
            run(lambda *a: fn(*a, **settings), *arrays)
    if case["expected"] is None:
        assert case["expected_error"]
        return
    if short:
        settings["k"] -= 1
    value = run(lambda *a: fn(*a, **settings), *arrays)
    assert keras.backend.standardize_dtype(value.dtype) == "float32"
    assert tuple(value.shape) == ()
    np.testing.assert_allclose(keras.ops.convert_to_numpy(value), case["expected"], rtol=RTOL)


GOLDEN = {("tfsim_retrieval.json", call): check_case for call in FUNCTIONS}
