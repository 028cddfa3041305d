"""`kml.retrieval`: the chunked exact k-NN search and PML's `AccuracyCalculator` metrics on it
(the reference values are in test_golden.py, `pml_accuracy.json`): bad inputs, chunking, the
tie rule, self exclusion, `k` beyond the references, multi-hot labels, NMI/AMI."""

import inspect
import pathlib
import re
import warnings

import keras
import numpy as np
import pytest
from support import numpy, python_block

from keras_metric_losses import backend, retrieval
from keras_metric_losses.api import REGISTRY

PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "retrieval.md"

KNN_METRICS = list(retrieval.pml.KNN_METRICS)


def grid(n=40, seed=0):
    """Points of the integer grid {0, 1, 2}^2 (exact distances, many ties) and 4 classes."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, (n, 2)).astype("float32"), rng.integers(0, 4, n)


def oracle_neighbours(query, reference, exclude_self, larger_is_closer=False, distance=None):
    """Float64 ranking: ascending distance (descending similarity), ties by lower index, the
    query's own row (same index) removed first."""
    query, reference = np.float64(query), np.float64(reference)
    if distance == "manhattan":
        keys = np.abs(query[:, None, :] - reference[None, :, :]).sum(-1)
    elif larger_is_closer:
        keys = -(query @ reference.T)
    else:
        keys = ((query[:, None, :] - reference[None, :, :]) ** 2).sum(-1)
    rows = []
    for i, row in enumerate(keys):
        order = np.lexsort((np.arange(len(row)), row))
        rows.append([j for j in order if not (exclude_self and j == i)])
    return np.array(rows)


def accuracy(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # k below the largest R
        return retrieval.get_accuracy(*args, **kwargs)


# --- bad inputs ------------------------------------------------------------------------------

X, Y = grid()


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"reference": np.zeros((5, 3)), "reference_labels": np.zeros(5)}, ValueError,
         r"same embedding dimension.*query.shape=\(40, 2\).*reference.shape=\(5, 3\)"),
        ({"query_labels": np.zeros((40, 2, 2))}, ValueError, r"query_labels.shape=\(40, 2, 2\)"),
        ({"query_labels": np.zeros(39)}, ValueError, r"`query_labels`.*N=40.*\(39,\)"),
        ({"reference": X[:5], "reference_labels": np.zeros((5, 3))}, ValueError,
         r"query_labels.shape=\(40,\) and reference_labels.shape=\(5, 3\)"),
        ({"reference": X[:5]}, ValueError, "`reference` and `reference_labels` go together"),
        ({"query": np.zeros((0, 2)), "query_labels": np.zeros(0)}, ValueError,
         r"`query` must hold at least one embedding.*\(0, 2\)"),
        ({"query": np.zeros(4), "query_labels": np.zeros(4)}, ValueError, r"query.shape=\(4,\)"),
        ({"query": np.array([["a", "b"]]), "query_labels": [0]}, TypeError, "query.dtype"),
        ({"k": 0}, ValueError, "`k` must be.*k=0"),
        ({"k": -3}, ValueError, "k=-3"),
        ({"k": 2.0}, ValueError, "k=2.0"),
        ({"k": True}, ValueError, "k=True"),
        ({"k": "max"}, ValueError, "k='max'"),
        ({"avg_of_avgs": True, "return_per_class": True}, ValueError,
         "`avg_of_avgs` and `return_per_class`"),
        ({"avg_of_avgs": 1}, TypeError, "avg_of_avgs"),
        ({"metrics": ["precision_at_5"]}, ValueError, "`metrics`.*precision_at_5"),
        ({"metrics": "r_precision"}, ValueError, "`metrics`"),
        ({"metrics": []}, ValueError, "`metrics`"),
        ({"metrics": ["NMI"]}, ValueError, "cluster_labels"),
        ({"ref_includes_query": False}, ValueError, "ref_includes_query=False"),
        ({"reference": X[:20], "reference_labels": Y[:20], "ref_includes_query": True},
         ValueError, "at least as many rows"),
        ({"reference": X[::-1].copy(), "reference_labels": Y[::-1].copy(),
          "ref_includes_query": True}, ValueError, "first rows of `reference` must be the queries"),
        ({"distance": "hamming"}, ValueError, "distance='hamming'"),
        ({"chunk_size": 0}, ValueError, "chunk_size=0"),
        ({"query_labels": np.eye(4)[Y] > 0, "avg_of_avgs": True}, ValueError, "multi-hot"),
    ],
)  # fmt: skip
def test_bad_inputs_raise_errors_that_name_the_argument(kwargs, error, match):
    arguments = {"query": X, "query_labels": Y, **kwargs}
    with pytest.raises(error, match=match):
        retrieval.get_accuracy(**arguments)


def test_every_query_lone_gives_nan_with_a_warning():
    x, labels = np.arange(12.0).reshape(6, 2), np.arange(6)  # every class has one member
    with pytest.warns(RuntimeWarning, match="No query has a relevant reference"):
        result = retrieval.get_accuracy(x, labels)
    assert list(result) == KNN_METRICS and all(np.isnan(v) for v in result.values())
    with pytest.warns(RuntimeWarning):
        per_class = retrieval.get_accuracy(x, labels, return_per_class=True)
    assert all(len(v) == 6 and np.isnan(v).all() for v in per_class.values())  # as PML
    absent = retrieval.get_accuracy  # separate sets: no query class in the reference
    with pytest.warns(RuntimeWarning):
        assert np.isnan(absent(x, labels, x, labels + 10)["mean_average_precision"])


@pytest.mark.parametrize("where", ["query", "reference", "lone query"])
def test_non_finite_embeddings_give_nan_never_a_finite_number(where):
    query, labels = X.copy(), Y.copy()
    reference, reference_labels = X.copy(), Y.copy()
    if where == "query":
        query[3, 1] = np.nan
    elif where == "reference":
        reference[5, 0] = np.inf
    else:  # a query whose class is absent from the reference: left out, yet the result is NaN
        labels[7] = 99
        query[7, 0] = np.nan
    result = retrieval.get_accuracy(query, labels, reference, reference_labels)
    assert all(np.isnan(v) for v in result.values()), result
    per_class = retrieval.get_accuracy(
        query, labels, reference, reference_labels, return_per_class=True
    )
    assert all(np.isnan(v).all() for v in per_class.values())
    distances, _ = retrieval.nearest_neighbors(query, reference, k=3)
    assert np.isnan(numpy(distances)).any()


def test_k_below_r_warns_that_r_precision_is_cut_short():
    with pytest.warns(UserWarning, match=r"k=2 is below the largest R \(\d+\)"):
        retrieval.get_accuracy(X, Y, metrics=["r_precision"], k=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.simplefilter("error", RuntimeWarning)
        retrieval.get_accuracy(X, Y, k="max_bin_count")
        retrieval.get_accuracy(X, Y, metrics=["mean_average_precision"], k=2)


def test_cosine_of_embeddings_that_are_not_unit_warns():
    x = np.array([[3.0, 0.0], [0.0, 0.1], [1.0, 1.0], [2.0, 0.1]], "float32")
    with pytest.warns(UserWarning, match=r'4 rows of `query` are not unit.*"cosine_similarity"'):
        retrieval.nearest_neighbors(x, distance="cosine")
    unit = x / np.linalg.norm(x, axis=1, keepdims=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        retrieval.nearest_neighbors(unit, distance="cosine")
        retrieval.nearest_neighbors(x, distance="cosine_similarity")


# --- chunking ---------------------------------------------------------------------------------


def test_chunk_sizes_give_the_same_results():
    rng = np.random.default_rng(1)
    query, labels = rng.normal(size=(30, 4)).astype("float32"), rng.integers(0, 5, 30)
    reference, reference_labels = rng.normal(size=(45, 4)).astype("float32"), rng.integers(0, 5, 45)
    for args in ((X, Y), (query, labels, reference, reference_labels)):
        sizes = (1, 7, len(args[0]))
        for k in (None, "max_bin_count", 3):
            per_class = [accuracy(*args, k=k, chunk_size=c, return_per_class=True) for c in sizes]
            assert per_class[0] == per_class[1] == per_class[2], k
        found = [retrieval.nearest_neighbors(args[0], *args[2:3], k=5, chunk_size=c) for c in sizes]
        for distances, indices in found[1:]:
            np.testing.assert_array_equal(numpy(indices), numpy(found[0][1]))
            # A [1, D] x [D, N] product may round differently from a [7, D] x [D, N] one: a few
            # float32 ulps of |q|^2 + |r|^2 (about 8 here) in the squared distances.
            np.testing.assert_allclose(numpy(distances), numpy(found[0][0]), atol=1e-5)


def test_each_block_compares_rows_queries_with_width_references(monkeypatch):
    shapes = []

    def recording(query, key):  # a user's distance: the matrix itself is ranked
        shapes.append((tuple(query.shape), tuple(key.shape)))
        return retrieval.knn.distances.squared_euclidean(query, key)

    query, reference = np.zeros((23, 3), "float32"), np.ones((11, 3), "float32")
    eager = {"distance": recording, "jit_compile": False}
    retrieval.nearest_neighbors(query, reference, k=2, chunk_size=7, **eager)
    assert shapes == [((7, 3), (11, 3))] * 3 + [((2, 3), (11, 3))]
    shapes.clear()
    retrieval.get_accuracy(X, Y, chunk_size=16, **eager)
    assert shapes == [((16, 2), (40, 2))] * 2 + [((8, 2), (40, 2))]
    # Blocks of 8 x 8: each of the 5 blocks of references meets the 3 blocks of queries.
    monkeypatch.setattr(retrieval.blocks, "BLOCK_ENTRIES", 64)
    monkeypatch.setattr(retrieval.blocks, "MIN_ROWS", 8)
    shapes.clear()
    retrieval.nearest_neighbors(X[:23], X, k=2, **eager)
    assert shapes == [((8, 2), (8, 2)), ((8, 2), (8, 2)), ((7, 2), (8, 2))] * 5
    # Queries kept at once: 2 blocks of 8 with their 2 best, then the last block.
    monkeypatch.setattr(retrieval.blocks, "STATE_ENTRIES", 32)
    shapes.clear()
    retrieval.nearest_neighbors(X[:23], X, k=2, **eager)
    assert shapes == [((8, 2), (8, 2))] * 10 + [((7, 2), (8, 2))] * 5


def test_the_default_layout_bounds_the_matrix():
    layout, entries = retrieval.blocks.layout, retrieval.blocks.BLOCK_ENTRIES
    assert layout(50_000, 50_000, 51, None) == (entries // 50_000, 50_000)  # one block wide
    assert layout(10**6, 10**6, 11, None) == (128, entries // 128)  # blocks of references
    assert layout(10**6, 10**6, 10**6, None) == (entries // 10**6, 10**6)  # k too large
    assert layout(30, 2**30, 1, None) == (30, entries // 128)
    assert layout(10**6, 2**30, 10**6, None) == (1, 2**30)  # one query at a time
    assert layout(100, 1000, 3, 7) == (7, 1000)


def oracle_top_k(keys, k):
    """Float64 top-k of each row: larger first, equal keys by lower column."""
    order = [np.lexsort((np.arange(len(row)), -row))[:k] for row in np.float64(keys)]
    return np.take_along_axis(np.float64(keys), np.array(order), 1), np.array(order)


def top_k_of(k):
    return lambda *args: retrieval.blocks.top_k(args[0], k, *args[1:])


@pytest.mark.parametrize("width", [64, 100, 1000])
@pytest.mark.parametrize("k", [1, 3, 10])
def test_two_stage_top_k_is_exact_on_ties(width, k):
    rng = np.random.default_rng(width + k)
    keys = rng.integers(0, 6, (9, width)).astype("float32")  # every key tied with many
    ceiling = rng.integers(2, 6, 9).astype("float32")
    for limit in (None, ceiling):
        clipped = keys if limit is None else np.minimum(keys, limit[:, None])
        expected = oracle_top_k(clipped, k)
        # The keys in the order `top_k` reads them: column `j` holds reference `layout[j]`.
        layout = numpy(retrieval.blocks.grouped(np.arange(width), k))
        np.testing.assert_array_equal(np.sort(layout), np.arange(width))
        args = [keras.ops.convert_to_tensor(keys[:, layout])]
        if limit is not None:
            args.append(keras.ops.convert_to_tensor(limit))
        values, columns = backend.compile_function(top_k_of(k), "auto")(*args)
        np.testing.assert_array_equal(numpy(columns), expected[1])
        np.testing.assert_array_equal(numpy(values), expected[0])
    assert retrieval.blocks.group_size(1000, 10) > 1  # the two stages ran


@pytest.mark.parametrize("state_entries", [2**22, 24])
@pytest.mark.parametrize("distance", ["squared_euclidean", "inner_product", "manhattan"])
def test_blocks_of_references_merge_exactly(monkeypatch, distance, state_entries):
    """Blocks of 8 x 8 over integer grid points (exact distances, many ties, duplicates): the
    merged best equal one ranking of the whole reference set, with and without self, whether
    every query's best is kept at once or one block of queries at a time."""
    monkeypatch.setattr(retrieval.blocks, "BLOCK_ENTRIES", 64)
    monkeypatch.setattr(retrieval.blocks, "MIN_ROWS", 8)
    monkeypatch.setattr(retrieval.blocks, "STATE_ENTRIES", state_entries)
    x, _ = grid(60, seed=3)
    similar = distance == "inner_product"
    for k in (1, 2):
        _, indices = retrieval.nearest_neighbors(x, k=k, distance=distance)
        expected = oracle_neighbours(x, x, True, similar, distance)[:, :k]
        np.testing.assert_array_equal(numpy(indices), expected)
        distances, indices = retrieval.nearest_neighbors(x[:13], x, k=k, distance=distance)
        expected = oracle_neighbours(x[:13], x, False, similar, distance)[:, :k]
        np.testing.assert_array_equal(numpy(indices), expected)
        matrix = numpy(retrieval.knn.distances.get(distance)(x[:13], x))
        np.testing.assert_array_equal(numpy(distances), np.take_along_axis(matrix, expected, 1))


@pytest.mark.parametrize("jit_compile", [False, True])
def test_every_way_of_running_the_steps_gives_the_same_neighbours(jit_compile):
    x = np.random.default_rng(4).normal(size=(50, 5)).astype("float32")
    for distance in ("euclidean", "cosine_similarity", "angular", "snr"):
        auto = retrieval.nearest_neighbors(x, k=4, distance=distance)
        other = retrieval.nearest_neighbors(x, k=4, distance=distance, jit_compile=jit_compile)
        np.testing.assert_array_equal(numpy(other[1]), numpy(auto[1]))
        np.testing.assert_allclose(numpy(other[0]), numpy(auto[0]), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match=r"`jit_compile` must be.*jit_compile='yes'"):
        retrieval.nearest_neighbors(x, jit_compile="yes")


def test_distances_that_overflow_give_nan_for_their_queries():
    x = np.array([[0.0], [1.0], [3e19], [2.0]], "float32")  # (3e19)^2 overflows float32
    distances, _ = retrieval.nearest_neighbors(x, k=2)
    assert np.isnan(numpy(distances)).all(axis=1).tolist() == [True] * 4
    distances, _ = retrieval.nearest_neighbors(x[[0, 1, 3]], k=1)
    assert numpy(distances).ravel().tolist() == [1.0, 1.0, 1.0]


# --- ties and self exclusion ------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 7, None])
def test_ties_go_to_the_lower_reference_index(chunk_size):
    for seed in range(3):
        x, _ = grid(seed=seed)
        expected = oracle_neighbours(x, x, exclude_self=True)
        _, indices = retrieval.nearest_neighbors(x, k=39, chunk_size=chunk_size)
        np.testing.assert_array_equal(numpy(indices), expected)
        query = x[:9]
        separate = oracle_neighbours(query, x, exclude_self=False)
        _, indices = retrieval.nearest_neighbors(query, x, k=40, chunk_size=chunk_size)
        np.testing.assert_array_equal(numpy(indices), separate)
        similar = oracle_neighbours(query, x, exclude_self=False, larger_is_closer=True)
        _, indices = retrieval.nearest_neighbors(
            query, x, k=40, distance="inner_product", chunk_size=chunk_size
        )
        np.testing.assert_array_equal(numpy(indices), similar)


def test_the_backends_top_k_puts_equal_values_in_index_order():
    x = np.array([[1.0, 3.0, 3.0, 1.0, 3.0, 2.0]], "float32")
    values, indices = backend.top_k_first_index(keras.ops.convert_to_tensor(x), 5)
    assert numpy(indices).tolist() == [[1, 2, 4, 5, 0]]
    assert numpy(values).tolist() == [[3.0, 3.0, 3.0, 2.0, 1.0]]


def test_ties_decide_the_metrics_by_index():
    # Query 0 has two equidistant references: the relevant one at index 2, the other at 1.
    query = np.array([[0.0, 0.0]], "float32")
    reference = np.array([[5.0, 5.0], [1.0, 0.0], [0.0, 1.0]], "float32")
    result = retrieval.get_accuracy(query, [7], reference, [7, 3, 7], k=None)
    assert result["precision_at_1"] == 0.0 and result["mean_reciprocal_rank"] == 0.5
    flipped = retrieval.get_accuracy(query, [7], reference, [7, 7, 3], k=None)
    assert flipped["precision_at_1"] == 1.0


def test_own_row_is_excluded_by_index_and_a_duplicate_is_kept():
    x = np.array([[0.0], [0.0], [5.0], [0.0]], "float32")  # rows 0, 1, 3 coincide
    _, indices = retrieval.nearest_neighbors(x, k=3)
    assert numpy(indices).tolist() == [[1, 3, 2], [0, 3, 2], [0, 1, 3], [0, 1, 2]]
    extra = np.array([[0.0], [9.0]], "float32")
    reference = np.concatenate([x, extra])
    _, indices = retrieval.nearest_neighbors(x, reference, k=5, exclude_self=True)
    assert numpy(indices).tolist()[3] == [0, 1, 4, 2, 5]
    # The query set as the first rows of the reference: the own row neither ranks nor counts
    # in R. Query 0 (class 1): neighbours 1, 3, 4, 2, 5 of classes 1, 1, 2, 2, 1, so R = 3.
    labels = np.array([1, 1, 2, 1, 2, 1])
    joint = retrieval.get_accuracy(x[:1], labels[:1], reference, labels, ref_includes_query=True)
    assert joint["r_precision"] == pytest.approx(2 / 3)
    assert joint["mean_average_precision"] == pytest.approx((1 + 1 + 3 / 5) / 3)
    # Not declared: row 0 is a reference like any other (first, at distance 0), R = 4.
    separate = retrieval.get_accuracy(x[:1], labels[:1], reference, labels)
    assert separate["r_precision"] == pytest.approx(3 / 4)


def test_a_query_set_that_is_its_own_reference_equals_the_explicit_form():
    explicit = retrieval.get_accuracy(X, Y, X, Y, ref_includes_query=True)
    assert retrieval.get_accuracy(X, Y) == explicit
    assert retrieval.get_accuracy(X, Y, ref_includes_query=True) == explicit
    x = np.random.default_rng(2).normal(size=(40, 3)).astype("float32")
    assert retrieval.get_accuracy(x, Y, x, Y)["precision_at_1"] == 1.0  # itself, first


# --- k, metrics, labels -----------------------------------------------------------------------


def test_k_beyond_the_references_is_cut_never_padded():
    reference, reference_labels = X[:5], Y[:5]
    beyond = accuracy(X, Y, reference, reference_labels, k=8)
    assert beyond == accuracy(X, Y, reference, reference_labels, k=None)
    assert beyond == accuracy(X, Y, reference, reference_labels, k=5)
    assert all(0 <= v <= 1 for v in beyond.values())
    distances, indices = retrieval.nearest_neighbors(X, reference, k=8)
    assert tuple(indices.shape) == tuple(distances.shape) == (40, 5)
    assert numpy(indices).min() >= 0
    _, own = retrieval.nearest_neighbors(X[:3], k=8)
    assert tuple(own.shape) == (3, 2)


def test_one_metric_functions_equal_get_accuracy():
    every = accuracy(X, Y, k="max_bin_count")
    assert retrieval.precision_at_1(X, Y) == every["precision_at_1"]
    assert retrieval.r_precision(X, Y) == every["r_precision"]
    assert retrieval.mean_average_precision_at_r(X, Y) == every["mean_average_precision_at_r"]
    everything = accuracy(X, Y, k=None)
    assert retrieval.mean_average_precision(X, Y) == everything["mean_average_precision"]
    # Alone, where PML raises TypeError (it skips the search for MRR).
    assert retrieval.mean_reciprocal_rank(X, Y) == everything["mean_reciprocal_rank"]
    per_class = retrieval.r_precision(X, Y, return_per_class=True)
    assert len(per_class) == len(np.unique(Y)) and np.mean(per_class) == pytest.approx(
        retrieval.r_precision(X, Y, avg_of_avgs=True)
    )


def test_hand_computed_values_and_exact_scores():
    x = np.array([[0.0], [0.1], [1.0], [1.2]], "float32")
    labels = np.array([0, 0, 1, 0])  # query 2 is alone in its class: left out
    result = retrieval.get_accuracy(x, labels)
    expected = {
        "precision_at_1": 2 / 3,
        "r_precision": 0.5,  # k=None: every query's R = 2 first neighbours
        "mean_average_precision_at_r": (0.5 + 0.5 + 0.25) / 3,
        "mean_average_precision": ((1 + 2 / 3) / 2 * 2 + (1 / 2 + 2 / 3) / 2) / 3,
        "mean_reciprocal_rank": (1 + 1 + 1 / 2) / 3,
    }
    assert result == pytest.approx(expected, rel=1e-12)


def test_multi_hot_labels_are_relevant_when_they_share_a_class():
    one_hot = np.eye(4, dtype="int32")[Y]
    assert accuracy(X, one_hot, k="max_bin_count") == accuracy(X, Y, k="max_bin_count")
    assert accuracy(X, Y[:, None]) == accuracy(X, Y)  # [N, 1] is class ids
    # Reference 1 shares class 2 with the query, reference 0 shares nothing.
    query = np.array([[0.0]], "float32")
    reference = np.array([[1.0], [2.0], [3.0]], "float32")
    query_labels = np.array([[1, 0, 1]], bool)
    reference_labels = np.array([[0, 1, 0], [1, 1, 0], [0, 0, 1]], bool)
    result = retrieval.get_accuracy(query, query_labels, reference, reference_labels)
    assert result["precision_at_1"] == 0.0
    assert result["mean_reciprocal_rank"] == 0.5
    assert result["r_precision"] == 0.5  # R = 2 (references 1 and 2)
    assert result["mean_average_precision"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_labels_keep_their_dtype():
    # PML casts labels to float32, where 2**40 and 2**40 + 1 are one class (and JAX without
    # x64 would make them int32): they stay int64 NumPy labels.
    labels = np.array([2**40, 2**40 + 1, 2**40, 2**40 + 1], "int64")
    x = np.array([[0.0], [0.1], [0.3], [0.4]], "float32")
    assert retrieval.precision_at_1(x, labels) == 0.0  # each nearest is of the other class


def test_half_precision_and_integer_embeddings_rank_in_float32():
    result = accuracy(X.astype("float16"), Y)
    assert result == accuracy(X, Y) == accuracy(X.astype("int32"), Y)


# --- NMI / AMI ----------------------------------------------------------------------------------


def test_mutual_information_special_cases():
    labels = [0, 0, 1, 1, 2, 2]
    assert retrieval.normalized_mutual_info(labels, [5, 5, 3, 3, 9, 9]) == pytest.approx(1.0)
    assert retrieval.adjusted_mutual_info(labels, [5, 5, 3, 3, 9, 9]) == pytest.approx(1.0)
    assert retrieval.normalized_mutual_info([1, 1, 1], [0, 0, 0]) == 1.0
    assert retrieval.adjusted_mutual_info([1, 1, 1], [0, 0, 0]) == 1.0
    assert retrieval.normalized_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) == 0.0
    assert retrieval.adjusted_mutual_info([0, 0, 1, 1], [0, 1, 0, 1]) < 0
    with pytest.raises(ValueError, match=r"cluster_labels\.shape"):
        retrieval.normalized_mutual_info([0, 1], [0, 1, 2])
    scores = retrieval.get_accuracy(X, Y, metrics=["NMI", "AMI"], cluster_labels=Y % 2)
    assert scores == {
        "NMI": retrieval.normalized_mutual_info(Y, Y % 2),
        "AMI": retrieval.adjusted_mutual_info(Y, Y % 2),
    }


# --- exports and docs ---------------------------------------------------------------------------


def test_every_retrieval_function_is_registered_documented_and_on_the_docs_page():
    targets = re.findall(r"^::: keras_metric_losses\.retrieval\.(\w+)$", PAGE.read_text(), re.M)
    assert sorted(targets) == sorted(retrieval.__all__) and len(targets) == 20
    for name in retrieval.__all__:
        obj = getattr(retrieval, name)
        assert REGISTRY[name] is obj
        assert keras.saving.get_registered_object(f"keras_metric_losses>{name}") is obj
        doc = inspect.getdoc(obj)
        for part in ("Args:", "Returns:", "Raises:", "Example", "Reference"):
            assert part in doc, (name, part)


@pytest.mark.slow
def test_the_docs_example_runs(capsys):
    exec(compile(python_block(PAGE, "# Retrieval evaluation"), str(PAGE), "exec"), {})
    assert len(capsys.readouterr().out.splitlines()) == 2
