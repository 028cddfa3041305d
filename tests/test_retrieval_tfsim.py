"""`kml.retrieval.tfsim` beyond the reference values of `tfsim_retrieval.json`
(`specs/retrieval_tfsim.py`): bad inputs, empty query sets, NaN distances, multi-hot labels
and the compiled path of every option."""

import math

import numpy as np
import pytest
from support import compiled, numpy

from keras_metric_losses.retrieval import tfsim

QUERY = np.array([1, 2, 2, 3])
LOOKUP = np.array([[1, 3, 1, 2, 1], [3, 2, 2, 1, 3], [2, 1, 3, 3, 2], [1, 1, 2, 2, 1]])
DISTANCES = np.linspace(0.1, 2.0, 20, dtype="float32").reshape(4, 5)
FUNCTIONS = [tfsim.recall_at_k, tfsim.precision_at_k, tfsim.map_at_k, tfsim.binary_ndcg]
IDS = [fn.__name__ for fn in FUNCTIONS]


def call(fn, query=QUERY, lookup=LOOKUP, distances=DISTANCES, **settings):
    if fn is tfsim.binary_ndcg:
        return fn(query, lookup, distances, **settings)
    return fn(query, lookup, **settings)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
@pytest.mark.parametrize(
    "lookup, match",
    [
        (LOOKUP[0], r"`lookup_labels` must be \[num_queries, num_lookups\]"),
        (LOOKUP[:3], "one row of neighbours per query"),
        (LOOKUP[:, :, None], r"`lookup_labels` must be \[num_queries, num_lookups\]"),
    ],
    ids=["rank-1", "three-rows-for-four-queries", "rank-3-for-class-ids"],
)
def test_lookup_labels_must_fit_the_query_labels(fn, lookup, match):
    with pytest.raises(ValueError, match=match):
        call(fn, lookup=lookup, distances=DISTANCES[: len(lookup)])


@pytest.mark.parametrize(
    "fn, drop, needed",
    [
        (tfsim.recall_at_k, False, 6),
        (tfsim.recall_at_k, True, 7),
        (tfsim.binary_ndcg, False, 6),
        (tfsim.binary_ndcg, True, 7),
        (tfsim.precision_at_k, False, 6),
        (tfsim.precision_at_k, True, 6),
        (tfsim.map_at_k, True, 6),
    ],
)
def test_k_needs_enough_lookup_columns(fn, drop, needed):
    """Recall and BNDCG read k neighbours after the dropped column; precision and MAP count
    the dropped column in k (TF Similarity's settings)."""
    with pytest.raises(ValueError, match=f"at least {needed} columns for k=6"):
        call(fn, k=6, drop_closest_lookup=drop)


def test_precision_and_map_read_k_columns_with_drop_closest_lookup():
    for fn in (tfsim.precision_at_k, tfsim.map_at_k):
        assert np.isfinite(numpy(call(fn, k=5, drop_closest_lookup=True)))
        with pytest.raises(ValueError, match="`k` must be >= 2 with `drop_closest_lookup"):
            call(fn, k=1, drop_closest_lookup=True)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_settings_are_checked(fn):
    with pytest.raises(ValueError, match=r"`average` must be one of \['micro', 'macro'\]"):
        call(fn, average="weighted")
    for k in (0, 2.0, True):
        with pytest.raises(ValueError, match="`k` must be a positive int"):
            call(fn, k=k)
    with pytest.raises(TypeError, match="`drop_closest_lookup` must be a bool"):
        call(fn, drop_closest_lookup="yes")


def test_map_at_k_refuses_macro_averaging():
    with pytest.raises(ValueError, match=r"'micro' for `map_at_k`.*Received: average='macro'"):
        tfsim.map_at_k(QUERY, LOOKUP, average="macro")


@pytest.mark.parametrize("fn", [tfsim.precision_at_k, tfsim.map_at_k], ids=IDS[1:3])
def test_r_and_clip_at_r_are_checked(fn):
    for r, match in (
        ({}, "non-empty mapping"),
        ([[1, 3]], "non-empty mapping"),
        ({1: -1}, r"`r\[1\]` must be an int >= 0"),
        ({1: 2.5}, r"`r\[1\]` must be an int >= 0"),
        ({"a": 2}, "must map class ids"),
    ):
        with pytest.raises(ValueError, match=match):
            call(fn, r=r)
    with pytest.raises(TypeError, match="`clip_at_r` must be a bool"):
        call(fn, clip_at_r=1)


def test_binary_ndcg_checks_distances_and_threshold():
    with pytest.raises(ValueError, match="`lookup_distances` must have the shape"):
        tfsim.binary_ndcg(QUERY, LOOKUP, DISTANCES[:, :4])
    for threshold in (math.nan, "0.5", None):
        with pytest.raises(ValueError, match="`distance_threshold` must be a number"):
            tfsim.binary_ndcg(QUERY, LOOKUP, DISTANCES, distance_threshold=threshold)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
@pytest.mark.parametrize("average", ["micro", "macro"])
def test_an_empty_query_set_gives_nan(fn, average):
    if fn is tfsim.map_at_k and average == "macro":
        pytest.skip("map_at_k is micro only")
    empty = np.zeros((0, 5), "int64")
    value = call(fn, np.zeros((0,), "int64"), empty, np.zeros((0, 5), "float32"), average=average)
    assert np.isnan(numpy(value))


@pytest.mark.parametrize("column, nan", [(1, True), (4, True), (0, False)])
def test_binary_ndcg_nan_distances_give_nan(column, nan):
    """A NaN among the distances read is NaN out, never a finite value (TF Similarity counts
    the neighbour as a miss); column 0 is not read with `drop_closest_lookup`."""
    distances = DISTANCES.copy()
    distances[2, column] = np.nan
    value = numpy(tfsim.binary_ndcg(QUERY, LOOKUP, distances, k=4, drop_closest_lookup=True))
    assert np.isnan(value) == nan


def test_binary_ndcg_padding_at_infinite_distance_is_a_miss_only_under_a_threshold():
    """TF Similarity's evaluator pads short lookup sets with distance inf."""
    distances, unmatched = DISTANCES.copy(), LOOKUP.copy()
    distances[:, 3:], unmatched[:, 3:] = np.inf, -1
    np.testing.assert_array_equal(
        numpy(tfsim.binary_ndcg(QUERY, LOOKUP, distances)),
        numpy(tfsim.binary_ndcg(QUERY, LOOKUP, DISTANCES)),
    )
    np.testing.assert_array_equal(
        numpy(tfsim.binary_ndcg(QUERY, LOOKUP, distances, distance_threshold=1e9)),
        numpy(tfsim.binary_ndcg(QUERY, unmatched, DISTANCES)),
    )


def test_a_label_missing_from_r_scores_zero_and_stays_in_the_mean():
    r = {1: 4, 2: 3}  # label 3 of the last query is missing
    precision = numpy(tfsim.precision_at_k(QUERY, LOOKUP, k=5, r=r))
    # matches in the 5 columns: 3, 2, 2 and (label 3) 0; divisors 4, 3, 3 and 0 -> 0
    np.testing.assert_allclose(precision, (3 / 4 + 2 / 3 + 2 / 3 + 0) / 4, rtol=1e-6)


@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
@pytest.mark.parametrize("drop", [False, True])
def test_one_hot_labels_match_class_ids(fn, drop):
    """Multi-hot labels match where they share a class: one-hot rows are the class ids."""
    query, lookup = np.eye(4, dtype="int32")[QUERY], np.eye(4, dtype="float32")[LOOKUP]
    settings = {"k": 3, "drop_closest_lookup": drop}
    np.testing.assert_array_equal(
        numpy(call(fn, query, lookup, **settings)), numpy(call(fn, **settings))
    )


def test_multi_hot_labels_match_by_overlap():
    query = np.array([[1, 1, 0], [0, 0, 1]])
    lookup = np.array([[[0, 1, 0], [0, 0, 1], [1, 0, 1]], [[1, 1, 0], [0, 1, 1], [0, 0, 0]]])
    # matches: [1, 0, 1] and [0, 1, 0]
    assert numpy(tfsim.recall_at_k(query, lookup, k=1)) == 0.5
    np.testing.assert_allclose(numpy(tfsim.precision_at_k(query, lookup, k=3)), 0.5, rtol=1e-6)
    np.testing.assert_allclose(
        numpy(tfsim.map_at_k(query, lookup, k=3)), ((1 + 2 / 3) / 3 + 1 / 2 / 3) / 2, rtol=1e-6
    )
    refused = ((tfsim.recall_at_k, {"average": "macro"}), (tfsim.map_at_k, {"r": {1: 2}}))
    for fn, settings in refused:
        with pytest.raises(ValueError, match="for multi-hot `query_labels`"):
            fn(query, lookup, k=3, **settings)
    with pytest.raises(ValueError, match="one row of neighbours per query"):
        tfsim.recall_at_k(query, lookup[:, :, :2])


@pytest.mark.slow
@pytest.mark.parametrize("fn", FUNCTIONS, ids=IDS)
def test_every_option_compiles(fn):
    """Macro averaging, `r` with a missing label, `clip_at_r`, a threshold and
    `drop_closest_lookup` trace under the backend's compiler and give the eager value."""
    settings = {"k": 4, "drop_closest_lookup": True, "average": "macro"}
    if fn in (tfsim.precision_at_k, tfsim.map_at_k):
        settings.update(r={1: 4, 2: 3, 7: 1}, clip_at_r=True)
    if fn is tfsim.map_at_k:
        settings["average"] = "micro"
    if fn is tfsim.binary_ndcg:
        settings["distance_threshold"] = 1.0
    arrays = (QUERY, LOOKUP, DISTANCES)[: 3 if fn is tfsim.binary_ndcg else 2]
    value = compiled(lambda *a: fn(*a, **settings))(*arrays)
    np.testing.assert_allclose(numpy(value), numpy(fn(*arrays, **settings)), rtol=1e-6)
