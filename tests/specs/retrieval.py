"""Retrieval metrics (`kml.retrieval`): pytorch-metric-learning 2.9's `AccuracyCalculator`.

No loss spec; `GOLDEN` runs every case of `pml_accuracy.json` through `retrieval.get_accuracy`,
whose search steps run as `model.fit` runs by default (`jit_compile="auto"`), or with the
backend's compiler (`jit_compile=True`: XLA, `torch.compile`) where `run.compiled`. Where PML
is wrong the case stores the sane value and that is what ours must give:
`expected_if_padding_never_matches` (k larger than the reference: faiss pads with index -1 and
PML reads the last label there) and `expected_ties_by_index` (`CustomKNN`'s `torch.topk` orders
ties arbitrarily). PML fails on `mean_reciprocal_rank` alone (`mrr-alone-error`); ours gives the
value it has next to another metric. NMI and AMI are scored on the stored cluster ids of PML's
faiss k-means.
"""

import warnings

import keras
import numpy as np

from keras_metric_losses import retrieval

SPECS = []
RTOL = 1e-6  # PML's metrics are float64 ratios of small integers (MRR float32: ~1e-7)

# PML's k-NN search -> our ranking (CustomKNN's LpDistance ranks as its square).
_DISTANCES = {
    None: "squared_euclidean",
    "CosineSimilarity": "cosine_similarity",
    "LpDistance": "euclidean",
}


def _distance(knn_func):
    if knn_func is None:
        return _DISTANCES[None]
    distance = knn_func["distance"]
    if distance["class"] == "LpDistance":
        unnormalised_l2 = {"class": "LpDistance", "normalize_embeddings": False, "p": 2}
        assert distance == {**unnormalised_l2, "power": 1}
    return _DISTANCES[distance["class"]]


def _expected(case):
    for sane in ("expected_if_padding_never_matches", "expected_ties_by_index"):
        if sane in case:
            return case[sane]
    return case["expected"]


def _arrays(case):
    query = np.asarray(case["query"], case["dtype"])
    reference = case["reference"]
    if reference is not None:
        reference = np.asarray(reference, case["dtype"])
    return query, np.asarray(case["query_labels"]), reference, case["reference_labels"]


def _accuracy(case, metrics, jit_compile):
    query, query_labels, reference, reference_labels = _arrays(case)
    kwargs = case["kwargs"]
    clustering = case.get("clustering")
    return retrieval.get_accuracy(
        query,
        query_labels,
        reference,
        None if reference_labels is None else np.asarray(reference_labels),
        metrics=metrics,
        k=kwargs["k"],
        distance=_distance(kwargs["knn_func"]),
        avg_of_avgs=kwargs["avg_of_avgs"],
        return_per_class=kwargs["return_per_class"],
        ref_includes_query=case["ref_includes_query"],
        cluster_labels=None if clustering is None else clustering["cluster_labels"],
        jit_compile=jit_compile,
    )


def _as_float(value):
    return np.asarray(value, np.float64) if value is not None else np.nan


def check_case(case, run):
    jit_compile = True if run.compiled else "auto"
    kwargs = case["kwargs"]
    assert not kwargs["exclude"] and kwargs["label_comparison_fn"] is None
    assert kwargs["kmeans_func"] is None
    metrics = kwargs["include"]
    if case["expected"] is None:  # mrr-alone-error: PML skips the search and raises TypeError
        assert "TypeError" in case["expected_error"]
        alone = _accuracy(case, metrics, jit_compile)
        together = _accuracy(case, [*metrics, "precision_at_1"], jit_compile)
        assert np.isfinite(alone["mean_reciprocal_rank"])
        assert alone["mean_reciprocal_rank"] == together["mean_reciprocal_rank"]
        return
    expected = _expected(case)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _accuracy(case, metrics, jit_compile)
    assert list(result) == metrics
    none_scored = case.get("num_queries_scored") == 0
    assert none_scored == any(w.category is RuntimeWarning for w in caught)
    for name in metrics:
        want = [_as_float(v) for v in expected[name]] if isinstance(expected[name], list) else None
        if want is None:
            np.testing.assert_allclose(result[name], _as_float(expected[name]), rtol=RTOL)
        else:
            assert isinstance(result[name], list) and len(result[name]) == len(want), name
            np.testing.assert_allclose(result[name], want, rtol=RTOL, err_msg=name)
    if "knn_indices" in case and "ties" in case and kwargs["knn_func"] is None:
        _check_neighbours(case, jit_compile)


def _check_neighbours(case, jit_compile):
    """Ties by lower index, as faiss's `IndexFlatL2` returned them in every tie case."""
    query, _, reference, _ = _arrays(case)
    expected = np.asarray(case["knn_indices"])
    _, indices = retrieval.nearest_neighbors(
        query,
        reference,
        k=case["num_k"],
        exclude_self=case["ref_includes_query"],
        jit_compile=jit_compile,
    )
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(indices), expected)


GOLDEN = {("pml_accuracy.json", "AccuracyCalculator.get_accuracy"): check_case}
