"""pytorch-metric-learning's retrieval metrics (`AccuracyCalculator`, PML 2.9), on an exact
k-NN search that runs on the backend one block of queries and references at a time
(`knn.search`).

For a query with `R` relevant references (same label; its own row not counted when the query
set is in the reference), `rel_j = 1` when its `j`-th nearest reference is relevant and
`P@j = sum_{i <= j} rel_i / j`:

| metric | per query |
| --- | --- |
| `precision_at_1` | `rel_1` |
| `r_precision` | `sum_{j <= min(R, k)} rel_j / min(R, k)` |
| `mean_average_precision_at_r` | `sum_{j <= min(R, k)} rel_j P@j / R` |
| `mean_average_precision` | `sum_{j <= k} rel_j P@j / R` |
| `mean_reciprocal_rank` | `1 / min{j <= k : rel_j = 1}`, 0 if none |

Queries with `R = 0` (a class absent from the reference, or alone in a query set that is its
own reference) are left out, as PML does; the metric is the mean over the other queries, or
with `avg_of_avgs` the mean over classes of the per-class means. The ranking is done on the
backend; the scores are computed in NumPy float64 from the neighbours' indices, block by block.
"""

import numbers
import warnings

import numpy as np

from keras_metric_losses import distances, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.retrieval import blocks, clustering, knn
from keras_metric_losses.retrieval import labels as labels_lib

KNN_METRICS = (
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
    "mean_average_precision",
    "mean_reciprocal_rank",
)
CLUSTERING_METRICS = ("NMI", "AMI")
# The ones whose definition needs the first R neighbours: PML warns when k cuts them short.
_AT_R = ("r_precision", "mean_average_precision_at_r")


def _scores(relevant, counts):
    """Each k-NN metric of each query, `{name: [c] float64}`, from `relevant` `[c, k]` and the
    queries' `R` (`counts`, all > 0)."""
    k = relevant.shape[1]
    precision = np.cumsum(relevant, axis=1) / np.arange(1, k + 1)
    terms = np.where(relevant, precision, 0.0)
    within_r = np.arange(k) < np.minimum(counts, k)[:, None]
    found = relevant.any(axis=1)
    return {
        "precision_at_1": relevant[:, 0].astype(np.float64),
        "r_precision": np.sum(relevant & within_r, axis=1) / np.minimum(counts, k),
        "mean_average_precision_at_r": np.sum(terms * within_r, axis=1) / counts,
        "mean_average_precision": np.sum(terms, axis=1) / counts,
        "mean_reciprocal_rank": np.where(found, 1.0 / (np.argmax(relevant, axis=1) + 1), 0.0),
    }


def _average(values, classes, avg_of_avgs, return_per_class):
    """The mean of per-query `values`, or per class of `classes` (sorted ids)."""
    if not (avg_of_avgs or return_per_class):
        return float(np.mean(values))
    _, inverse = np.unique(classes, return_inverse=True)
    per_class = np.bincount(inverse, weights=values) / np.bincount(inverse)
    return per_class.tolist() if return_per_class else float(np.mean(per_class))


def _metric_names(metrics, cluster_labels):
    if metrics is None:
        return KNN_METRICS + (CLUSTERING_METRICS if cluster_labels is not None else ())
    allowed = KNN_METRICS + CLUSTERING_METRICS
    if isinstance(metrics, str) or not all(name in allowed for name in metrics) or not metrics:
        raise ValueError(
            f"`metrics` must be a non-empty list of names from {list(allowed)}. "
            f"Received: metrics={metrics!r}"
        )
    if cluster_labels is None and set(metrics) & set(CLUSTERING_METRICS):
        raise ValueError(
            "NMI and AMI score a clustering of the queries: pass its cluster ids as "
            "`cluster_labels` (PML runs a seed-dependent faiss k-means, not reproduced here). "
            f"Received: metrics={metrics!r} and cluster_labels=None"
        )
    return tuple(metrics)


def _num_neighbours(k, counts, available):
    """The `k` searched: all references (`None`), the largest `R` (`"max_bin_count"`) or an
    int, never more than the `available` references."""
    k = check_k(k)
    if k is None:
        return available
    if k == "max_bin_count":
        return int(counts.max())
    return min(k, available)


def check_k(k):
    """`k` of `get_accuracy` checked: `None`, `"max_bin_count"` or a positive int (as `int`).

    Raises:
        ValueError: for anything else.
    """
    if k is None or (isinstance(k, str) and k == "max_bin_count"):
        return k
    if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
        raise ValueError(f'`k` must be None, "max_bin_count" or a positive int. Received: k={k!r}')
    return int(k)


def _check_query_rows(query, reference):
    """With the query set given as the first rows of `reference`: checks they are the same."""
    rows = reference[: query.shape[0]]
    if not bool(ops.all(ops.isclose(rows, ops.cast(query, rows.dtype), equal_nan=True))):
        raise ValueError(
            "With `ref_includes_query=True` the first rows of `reference` must be the queries "
            f"(as in PML, checked with `allclose`). Received: query.shape={tuple(query.shape)} "
            f"and reference.shape={tuple(reference.shape)} whose first rows differ"
        )


def _knn_scores(query, reference, query_labels, reference_labels, counts, k, names, options):
    """`{name: [Nq] float64}` of every k-NN metric: NaN for queries with `R = 0`, for queries
    whose distances are not all finite, and for every query when an embedding is not finite.

    Warns (RuntimeWarning) when no query has `R > 0`, and when `k` cuts R-precision short."""
    nan = {name: np.full(len(counts), np.nan) for name in KNN_METRICS}
    if not np.any(counts > 0):
        warnings.warn(
            "No query has a relevant reference (every query label is absent from the "
            "reference set or has no other member): the k-NN metrics are NaN.",
            RuntimeWarning,
            stacklevel=3,
        )
        return nan
    if set(names) & set(_AT_R) and k < counts.max():
        warnings.warn(
            f"k={k} is below the largest R ({counts.max()}): r_precision is precision@k and "
            "mean_average_precision_at_r sums over fewer than R neighbours for some queries. "
            'Use k="max_bin_count" (or None) for the exact values.',
            stacklevel=3,
        )
    if not (knn.all_finite(query) and knn.all_finite(reference)):
        return nan
    scores = nan
    for start, nearest, indices in knn.search(query, reference, k, **options):
        indices = np.asarray(ops.convert_to_numpy(indices))
        rows = np.arange(start, start + len(indices))
        finite = np.isfinite(ops.convert_to_numpy(nearest)).all(axis=1)
        scored = counts[rows] > 0
        relevant = labels_lib.relevant(query_labels[rows], reference_labels, indices)
        values = _scores(relevant[scored], counts[rows][scored])
        for name, value in values.items():
            scores[name][rows[scored]] = np.where(finite[scored], value, np.nan)
    return scores


@export
def get_accuracy(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    metrics=None,
    k=None,
    distance="squared_euclidean",
    avg_of_avgs=False,
    return_per_class=False,
    ref_includes_query=None,
    cluster_labels=None,
    chunk_size=None,
    jit_compile="auto",
):
    """Retrieval metrics of embeddings, as pytorch-metric-learning's `AccuracyCalculator`.

    `AccuracyCalculator(include=metrics, k=k, avg_of_avgs=..., return_per_class=...)
    .get_accuracy(query, query_labels, reference, reference_labels, ref_includes_query)` in one
    call, with PML's metric names, settings and values, on an exact k-NN search done one block
    of queries and references at a time (memory of one block, not `O(N_query * N_ref)`).

    For each query with `R > 0` relevant references (see `keras_metric_losses.retrieval.pml`
    for the definitions): `precision_at_1`, `r_precision`, `mean_average_precision_at_r`,
    `mean_average_precision` and `mean_reciprocal_rank` over its `k` nearest references;
    `NMI` / `AMI` of `cluster_labels` against `query_labels` over all queries.

    Differences from PML 2.9, where PML is wrong or fails (the values are otherwise the same):

    - `k` larger than the references: faiss pads the neighbour lists with index `-1` and PML
      reads the *last* reference's label there, so that class gains matches (MAP above 1);
      here `k` is cut to the available references and nothing is padded.
    - Equal distances rank by lower reference index on every backend, exactly; PML's
      `CustomKNN` (`torch.topk`) orders ties arbitrarily.
    - `mean_reciprocal_rank` alone works (PML raises `TypeError`: it skips the k-NN search);
      it is float64 here (float32 in PML, about 1e-7 apart).
    - Labels keep their dtype (PML casts to float32: ids from `2**24` on can merge); multi-hot
      labels are accepted (relevant = sharing a class).
    - NMI/AMI score given cluster ids (`cluster_labels`): PML's faiss k-means of the queries is
      seed-dependent and not reproduced.
    - Non-finite embeddings give NaN for every k-NN metric (PML ranks NaN distances as faiss
      happens to); a query whose distances overflow gives NaN for itself.

    As PML: queries with `R = 0` are left out of every k-NN metric; when none is left each
    k-NN metric is NaN (a NaN list over the unique query labels with `return_per_class`) with
    a `RuntimeWarning`. A `k` below the largest `R` makes `r_precision` precision@k and
    `mean_average_precision_at_r` a truncated sum over `R` (a `UserWarning` says so).

    Args:
        query: `[Nq, D]` query embeddings.
        query_labels: `[Nq]` (or `[Nq, 1]`) class ids, or `[Nq, C]` multi-hot rows.
        reference: `[Nr, D]` reference embeddings. Defaults to `None`: the queries are their
            own reference, each query's own row left out of its neighbours.
        reference_labels: The references' labels, of the same kind as `query_labels`;
            required with `reference`.
        metrics: Names from `KNN_METRICS` and `CLUSTERING_METRICS` (PML's `include`).
            Defaults to the k-NN metrics, and NMI and AMI when `cluster_labels` is given.
        k: Neighbours per query: `None` (default, PML's default) searches every reference,
            `"max_bin_count"` the largest `R` among the queries (the smallest `k` for exact
            R-precision and MAP@R), or a positive int, cut to the number of references.
        distance: How neighbours are ranked: a name of `distances.names()` or a callable (see
            `distances.get`). Defaults to `"squared_euclidean"`, PML's default `FaissKNN`;
            `"cosine_similarity"` is `CustomKNN(CosineSimilarity())`.
        avg_of_avgs: Average per class, then over classes (sorted labels of the scored
            queries). Defaults to `False`. Class ids only.
        return_per_class: Return each k-NN metric as the list of per-class means, in sorted
            label order of the scored queries. Defaults to `False`. Class ids only.
        ref_includes_query: Whether the first `Nq` rows of `reference` are the queries (each
            query's own row is then left out, and does not count in `R`). Defaults to `True`
            without `reference`, else `False`.
        cluster_labels: `[Nq]` cluster ids of the queries, for NMI and AMI. Defaults to `None`.
        chunk_size: Queries and references per block of the search: the largest matrix is
            `[chunk_size, chunk_size]`, or `[chunk_size, N_ref]` for a `k` above `chunk_size / 4`.
            Defaults to 4096 (in the second case as many queries as fit `2**24` distances).
        jit_compile: How each block runs: `"auto"` (default) as `model.fit` runs by default
            on a CPU (`jax.jit`, `tf.function`, eager torch), `True` with the backend's compiler
            (`jax.jit`, XLA, `torch.compile`), `False` eagerly.

    Returns:
        A dict `{metric: float}` in the order of `metrics` (`{metric: list of floats}` for the
        k-NN metrics with `return_per_class`).

    Raises:
        ValueError: for embeddings that are not non-empty matrices or whose dimensions differ,
            labels whose shape does not match their embeddings or each other, `reference`
            without `reference_labels`, unknown metrics, NMI/AMI without `cluster_labels`, a
            `k` that is not `None`, `"max_bin_count"` or an int >= 1, `avg_of_avgs` together
            with `return_per_class`, per-class averages of multi-hot labels, and
            `ref_includes_query=True` when `reference` does not start with the queries.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses import retrieval
    >>> x = np.array([[0.0], [0.1], [1.0], [1.2]])
    >>> labels = np.array([0, 0, 1, 0])  # class 1 has no other member: left out
    >>> scores = retrieval.get_accuracy(x, labels, metrics=["precision_at_1", "r_precision"])
    >>> {name: round(value, 4) for name, value in scores.items()}
    {'precision_at_1': 0.6667, 'r_precision': 0.5}

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020
    (MAP@R); pytorch-metric-learning 2.9's `AccuracyCalculator`.
    """
    return accuracy(**locals())


def accuracy(
    query,
    query_labels,
    reference,
    reference_labels,
    *,
    metrics,
    k,
    distance,
    avg_of_avgs,
    return_per_class,
    ref_includes_query,
    cluster_labels,
    chunk_size,
    jit_compile,
    progress=None,
):
    """`get_accuracy`, with `progress(done, total)` called after each step of the search."""
    names = _metric_names(metrics, cluster_labels)
    avg_of_avgs = validation.boolean(avg_of_avgs, "avg_of_avgs")
    return_per_class = validation.boolean(return_per_class, "return_per_class")
    if avg_of_avgs and return_per_class:
        raise ValueError(
            "`avg_of_avgs` and `return_per_class` cannot both be True (one average over "
            "classes, or the per-class list). Received: avg_of_avgs=True and "
            "return_per_class=True"
        )
    distance = distances.check(distance)
    query, query_labels, reference, reference_labels, includes = _inputs(
        query, query_labels, reference, reference_labels, ref_includes_query
    )
    if labels_lib.is_multi_hot(query_labels) and (
        avg_of_avgs or return_per_class or set(names) & set(CLUSTERING_METRICS)
    ):
        raise ValueError(
            "Per-class averages, NMI and AMI need one class id per query; multi-hot labels "
            f"support the plain averages. Received: query_labels.shape={query_labels.shape}, "
            f"avg_of_avgs={avg_of_avgs}, return_per_class={return_per_class}, metrics={names}"
        )
    chunk_size = knn.check_chunk_size(chunk_size)
    rows = chunk_size or blocks.MIN_ROWS
    counts = labels_lib.relevant_counts(query_labels, reference_labels, includes, rows)
    num_k = _num_neighbours(k, counts, reference.shape[0] - includes)
    results = {}
    knn_names = [name for name in names if name in KNN_METRICS]
    if knn_names:
        options = {
            "distance": distance,
            "exclude_self": includes,
            "chunk_size": chunk_size,
            "jit_compile": knn.check_jit_compile(jit_compile),
            "progress": progress,
        }
        labels = (query_labels, reference_labels)
        scores = _knn_scores(query, reference, *labels, counts, num_k, knn_names, options)
        # With no query scored, PML's NaN per class of every query (all values are NaN).
        scored = counts > 0 if np.any(counts > 0) else np.ones(len(counts), bool)
        for name in knn_names:
            values, classes = scores[name][scored], query_labels[scored]
            results[name] = _average(values, classes, avg_of_avgs, return_per_class)
    if set(names) & set(CLUSTERING_METRICS):
        cluster_labels = np.asarray(ops.convert_to_numpy(cluster_labels)).reshape(-1)
        results["NMI"] = clustering.normalized_mutual_info(query_labels, cluster_labels)
        results["AMI"] = clustering.adjusted_mutual_info(query_labels, cluster_labels)
    return {name: results[name] for name in names}


def _inputs(query, query_labels, reference, reference_labels, ref_includes_query):
    """Checked `(query, query_labels, reference, reference_labels, ref_includes_query)`:
    float tensors, NumPy labels, the queries as reference when none is given."""
    query = knn.embeddings(query, "query")
    query_labels = labels_lib.host_labels(query_labels, query.shape[0], "query_labels", "query")
    if (reference is None) != (reference_labels is None):
        raise ValueError(
            "`reference` and `reference_labels` go together: pass both or neither. Received: "
            f"reference is None: {reference is None}, reference_labels is None: "
            f"{reference_labels is None}"
        )
    own = reference is None
    if own:
        reference, reference_labels = query, query_labels
    else:
        reference = knn.embeddings(reference, "reference")
        knn.check_dims(query, reference)
        reference_labels = labels_lib.host_labels(
            reference_labels, reference.shape[0], "reference_labels", "reference"
        )
        labels_lib.check_same_kind(query_labels, reference_labels)
    includes = knn.self_excluded(ref_includes_query, own, query, reference, "ref_includes_query")
    if includes and not own:
        _check_query_rows(query, reference)
    return query, query_labels, reference, reference_labels, includes
