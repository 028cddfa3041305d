"""One function per metric of pytorch-metric-learning's `AccuracyCalculator`: `get_accuracy`
with that metric alone, each with its definition and the `k` its definition needs by default
(`"max_bin_count"` for the R-metrics, every reference for MAP and MRR)."""

from keras_metric_losses import docstrings
from keras_metric_losses.api import export
from keras_metric_losses.retrieval.pml import get_accuracy

_SHARED = """
    Args:
        query: `[Nq, D]` query embeddings.
        query_labels: `[Nq]` (or `[Nq, 1]`) class ids, or `[Nq, C]` multi-hot rows.
        reference: `[Nr, D]` reference embeddings. Defaults to `None`: the queries are their
            own reference, each query's own row left out of its neighbours.
        reference_labels: The references' labels, of the same kind as `query_labels`;
            required with `reference`.{k}
        distance: How neighbours are ranked (see `distances.get`). Defaults to
            `"squared_euclidean"`, PML's default `FaissKNN`.
        avg_of_avgs: Average per class, then over classes. Defaults to `False`.
        return_per_class: Return the list of per-class means (sorted labels of the scored
            queries). Defaults to `False`.
        ref_includes_query: Whether the first `Nq` rows of `reference` are the queries.
            Defaults to `True` without `reference`, else `False`.
        chunk_size: Queries and references per block of the search: the largest matrix is
            `[chunk_size, chunk_size]`, or `[chunk_size, N_ref]` for a `k` above `chunk_size / 4`.
            Defaults to 4096 (in the second case as many queries as fit `2**24` distances).
        jit_compile: How each block runs: `"auto"` (default) as `model.fit` runs by default
            on a CPU (`jax.jit`, `tf.function`, eager torch), `True` with the backend's compiler
            (`jax.jit`, XLA, `torch.compile`), `False` eagerly.

    Returns:
        A Python float (a list of floats with `return_per_class`); NaN when no query has a
        relevant reference, or for non-finite embeddings.

    Raises:
        ValueError: as `get_accuracy`: mismatched shapes, empty sets, a bad `k`, `avg_of_avgs`
            with `return_per_class`.

    Example (see `get_accuracy`: class 1 is left out):

    >>> import numpy as np
    >>> from keras_metric_losses import retrieval
    >>> x = np.array([[0.0], [0.1], [1.0], [1.2]])
    >>> labels = np.array([0, 0, 1, 0])
    >>> round(retrieval.{name}(x, labels), 4)
    {shows}
"""
_K = """
        k: Neighbours per query: `None` (every reference), `"max_bin_count"` (the largest `R`)
            or a positive int, cut to the number of references. Defaults to `{default!r}`."""


def _metric(name, shows, k=None):
    """Declares `get_accuracy` for one metric: the shared `Args` (with `k` if it has one) and
    example, and the export."""
    k_text = "" if k is None else _K.format(default=k)

    def declare(fn):
        return export(docstrings.append(_SHARED, k=k_text, name=name, shows=shows)(fn))

    return declare


def _one(name, query, query_labels, reference, reference_labels, **options):
    """`get_accuracy` of one metric: its value."""
    scores = get_accuracy(
        query, query_labels, reference, reference_labels, metrics=[name], **options
    )
    return scores[name]


@_metric("precision_at_1", shows="0.6667")
def precision_at_1(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    distance="squared_euclidean",
    avg_of_avgs=False,
    return_per_class=False,
    ref_includes_query=None,
    chunk_size=None,
    jit_compile="auto",
):
    """Precision@1: the fraction of queries whose nearest reference is relevant.

    ```
    P@1 = mean over the queries with R > 0 of rel_1
    ```

    `rel_1` is 1 when the nearest reference (ties: the lower index) is relevant to the query.

    Reference: pytorch-metric-learning 2.9's `AccuracyCalculator` (`"precision_at_1"`).
    """
    return _one("precision_at_1", k=1, **locals())


@_metric("r_precision", shows="0.5", k="max_bin_count")
def r_precision(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    k="max_bin_count",
    distance="squared_euclidean",
    avg_of_avgs=False,
    return_per_class=False,
    ref_includes_query=None,
    chunk_size=None,
    jit_compile="auto",
):
    """R-precision: the fraction of relevant references among each query's `R` nearest.

    ```
    RP = mean over the queries with R > 0 of  sum_{j <= min(R, k)} rel_j / min(R, k)
    ```

    `R` is the query's number of relevant references. With `k` below `R` this is precision@k
    (as PML computes it, with a warning).

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020;
    pytorch-metric-learning 2.9's `AccuracyCalculator` (`"r_precision"`).
    """
    return _one("r_precision", **locals())


@_metric("mean_average_precision_at_r", shows="0.4167", k="max_bin_count")
def mean_average_precision_at_r(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    k="max_bin_count",
    distance="squared_euclidean",
    avg_of_avgs=False,
    return_per_class=False,
    ref_includes_query=None,
    chunk_size=None,
    jit_compile="auto",
):
    """MAP@R: average precision over each query's `R` nearest references, divided by `R`.

    ```
    MAP@R = mean over the queries with R > 0 of  sum_{j <= min(R, k)} rel_j P@j / R
    P@j   = sum_{i <= j} rel_i / j
    ```

    A relevant reference found at rank `j` counts its precision `P@j`; one beyond rank `R`
    counts nothing, so 1 only for a perfect ranking. With `k` below `R` the sum stops at `k`
    and still divides by `R` (as PML, with a warning).

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020;
    pytorch-metric-learning 2.9's `AccuracyCalculator` (`"mean_average_precision_at_r"`).
    """
    return _one("mean_average_precision_at_r", **locals())


@_metric("mean_average_precision", shows="0.75", k=None)
def mean_average_precision(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    k=None,
    distance="squared_euclidean",
    avg_of_avgs=False,
    return_per_class=False,
    ref_includes_query=None,
    chunk_size=None,
    jit_compile="auto",
):
    """Mean average precision over each query's `k` nearest references (every reference by
    default), divided by `R`.

    ```
    MAP = mean over the queries with R > 0 of  sum_{j <= k} rel_j P@j / R
    P@j = sum_{i <= j} rel_i / j
    ```

    As PML it divides by `R`, not by `min(k, R)` nor by the number of relevant references
    found: with `k` below `R` it is at most `k / R`. With `k=None` it is the usual MAP.

    Reference: pytorch-metric-learning 2.9's `AccuracyCalculator` (`"mean_average_precision"`).
    """
    return _one("mean_average_precision", **locals())


@_metric("mean_reciprocal_rank", shows="0.8333", k=None)
def mean_reciprocal_rank(
    query,
    query_labels,
    reference=None,
    reference_labels=None,
    *,
    k=None,
    distance="squared_euclidean",
    avg_of_avgs=False,
    return_per_class=False,
    ref_includes_query=None,
    chunk_size=None,
    jit_compile="auto",
):
    """Mean reciprocal rank of each query's first relevant reference among its `k` nearest.

    ```
    MRR = mean over the queries with R > 0 of  1 / min{j <= k : rel_j = 1}  (0 if none)
    ```

    Float64 (PML computes it in float32) and it works alone (PML's `AccuracyCalculator` raises
    `TypeError` when it is the only metric requested).

    Reference: Voorhees, "The TREC-8 Question Answering Track Report", TREC 1999;
    pytorch-metric-learning 2.9's `AccuracyCalculator` (`"mean_reciprocal_rank"`).
    """
    return _one("mean_reciprocal_rank", **locals())
