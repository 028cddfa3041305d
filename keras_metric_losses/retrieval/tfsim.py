"""TensorFlow Similarity 0.17.1's retrieval metrics, on every backend: `RecallAtK`,
`PrecisionAtK`, `MapAtK` and `BNDCG` as `recall_at_k`, `precision_at_k`, `map_at_k` and
`binary_ndcg`.

They work at the level of TF Similarity's `compute()`: each query's neighbours are already
found, nearest first, as `lookup_labels` `[num_queries, num_lookups]` (and, for `binary_ndcg`,
`lookup_distances` of the same shape). The match mask is `m[i, j] = lookup_labels[i, j] ==
query_labels[i]` for class ids `query_labels` `[num_queries]`; for multi-hot labels
(`query_labels` `[num_queries, num_classes]`, `lookup_labels` `[num_queries, num_lookups,
num_classes]`) a neighbour matches when it shares a class with the query. Each metric is a value
per query, then averaged:

- `average="micro"`: the mean over the queries of their values (not a pooled TP / (TP + FP));
- `average="macro"`: the mean over the distinct query labels of the mean over that label's
  queries (class ids only).

Everything is computed and returned in float32, as TF Similarity does (its `floatx`). Settings
(`k`, `average`, `drop_closest_lookup`, `r`, `clip_at_r`, `distance_threshold`) are Python values;
no value of a tensor is read, so the metrics run under `jax.jit`, `tf.function(jit_compile=True)`
and `torch.compile`. An empty query set gives NaN, the mean of no values (TF Similarity's
`reduce_mean` of nothing).

TF Similarity's settings do not mean the same thing in every metric, and this module reproduces
them as they are:

- `drop_closest_lookup=True` (the query set is the index, so column 0 is the query itself):
  `recall_at_k` and `binary_ndcg` read columns `1..k` (k neighbours: `k + 1` columns are needed);
  `precision_at_k` and `map_at_k` read columns `1..k-1` (k counts the dropped column) and divide
  by `k - 1` or `r[label] - 1`.
- `distance_threshold` is read by `binary_ndcg` only; TF Similarity's other three metrics accept
  it and ignore it, so here they do not take it.
- `r` (a mapping class id -> its number of examples in the index) divides precision and MAP by
  `R` with or without `clip_at_r`; a query whose label is not in `r` scores 0 and stays in the
  mean.
"""

import math

from keras_metric_losses import validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import compute_dtype, scalar_like
from keras_metric_losses.retrieval import lookup


@export
def recall_at_k(query_labels, lookup_labels, *, k=5, average="micro", drop_closest_lookup=False):
    """Recall@k as TensorFlow Similarity's `RecallAtK`: whether any of the k nearest neighbours
    matches the query.

    ```
    recall_i = 1 if any(m[i, s : s + k]) else 0,    s = 1 if drop_closest_lookup else 0
    ```

    averaged over the queries (`"micro"`) or over the query labels (`"macro"`).

    Args:
        query_labels: `[num_queries]` class ids, or `[num_queries, num_classes]` multi-hot.
        lookup_labels: `[num_queries, num_lookups]` labels of each query's neighbours, nearest
            first (`[num_queries, num_lookups, num_classes]` for multi-hot labels).
        k: Number of neighbours read. Defaults to 5.
        average: `"micro"` (mean over queries) or `"macro"` (mean over query labels of the
            per-label means). Defaults to `"micro"`.
        drop_closest_lookup: Skip column 0 (the query itself when the query set is the index)
            and read columns `1..k`. Defaults to `False`.

    Returns:
        A float32 scalar in `[0, 1]`; NaN for an empty query set.

    Raises:
        ValueError: for `k`, `average` or shapes that do not fit: `lookup_labels` needs `k`
            columns, `k + 1` with `drop_closest_lookup`; `average="macro"` needs class ids.
        TypeError: for non-bool `drop_closest_lookup` or non-numeric labels.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses.retrieval import tfsim
    >>> query_labels = np.array([1, 2, 2])
    >>> lookup_labels = np.array([[3, 1, 1], [2, 3, 3], [3, 3, 2]])
    >>> print(f"{float(tfsim.recall_at_k(query_labels, lookup_labels, k=2)):.4f}")
    0.6667
    >>> print(f"{float(tfsim.recall_at_k(query_labels, lookup_labels, k=2, average='macro')):.4f}")
    0.7500

    Differences from TF Similarity: with `drop_closest_lookup=True` and only `k` columns,
    `RecallAtK` silently reads `k - 1` neighbours (its shape check asks for `k` columns); here
    that is a `ValueError` asking for `k + 1`. `RecallAtK` accepts a `distance_threshold` that
    `compute()` ignores; this function does not take one.

    Reference: TensorFlow Similarity 0.17.1, `tensorflow_similarity.retrieval_metrics.RecallAtK`.
    """
    k, average, drop_closest_lookup = lookup.settings(k, average, drop_closest_lookup)
    start = int(drop_closest_lookup)
    reason = "k neighbours after the dropped closest lookup" if start else "k neighbours"
    query_labels, mask = lookup.match_mask(query_labels, lookup_labels, k, start + k, reason)
    lookup.class_ids_for(query_labels, average=average)
    hits = ops.any(mask[:, start : start + k], axis=1)
    return lookup.average(ops.cast(hits, lookup.FLOAT), query_labels, average)


@export
def precision_at_k(
    query_labels,
    lookup_labels,
    *,
    k=5,
    r=None,
    clip_at_r=False,
    average="micro",
    drop_closest_lookup=False,
):
    """Precision@k as TensorFlow Similarity's `PrecisionAtK`; with `r` and `clip_at_r`,
    R-precision.

    With `s = 1` if `drop_closest_lookup` else 0, the columns read are `s..k-1` and

    ```
    c_i = r[label_i] if r else k        (0 when label_i is not in r)
    c_i = max(c_i - 1, 0)               with drop_closest_lookup
    precision_i = sum_{j = s}^{k-1} m[i, j] / c_i                  clip_at_r=False
    precision_i = sum_{j = s}^{min(k, s + c_i) - 1} m[i, j] / c_i  clip_at_r=True
    ```

    with `x / 0 = 0`, averaged over the queries (`"micro"`) or the query labels (`"macro"`).

    Args:
        query_labels: `[num_queries]` class ids, or `[num_queries, num_classes]` multi-hot
            (then `r` must be `None` and `average` `"micro"`).
        lookup_labels: `[num_queries, num_lookups]` labels of each query's neighbours, nearest
            first (`[num_queries, num_lookups, num_classes]` for multi-hot labels).
        k: Number of columns read, the dropped one included. Defaults to 5.
        r: Mapping class id -> number of examples of that class in the index, or `None` (then
            each query's divisor is `k`). Defaults to `None`.
        clip_at_r: Sum only the first `c_i` of the columns read (R-precision). Defaults to
            `False`.
        average: `"micro"` or `"macro"`. Defaults to `"micro"`.
        drop_closest_lookup: Skip column 0 (the query itself). Defaults to `False`.

    Returns:
        A float32 scalar; NaN for an empty query set.

    Raises:
        ValueError: for `k`, `r`, `average` or shapes that do not fit (`lookup_labels` needs
            `k` columns; `k >= 2` with `drop_closest_lookup`).
        TypeError: for non-bool flags or non-numeric labels.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses.retrieval import tfsim
    >>> query_labels = np.array([1, 2])
    >>> lookup_labels = np.array([[1, 3, 1, 1], [2, 3, 3, 2]])
    >>> print(f"{float(tfsim.precision_at_k(query_labels, lookup_labels, k=4)):.4f}")
    0.6250
    >>> r = {1: 5, 2: 2}
    >>> print(f"{float(tfsim.precision_at_k(query_labels, lookup_labels, k=4, r=r)):.4f}")
    0.8000
    >>> clipped = tfsim.precision_at_k(query_labels, lookup_labels, k=4, r=r, clip_at_r=True)
    >>> print(f"{float(clipped):.4f}")
    0.5500

    Differences from TF Similarity, and its traps kept: with `drop_closest_lookup=True` it
    reads `k - 1` neighbours and divides by `k - 1` (`r[label] - 1`), unlike `RecallAtK` and
    `BNDCG`, which read k; `k=1` then reads nothing and is refused here. Given `r` without
    `clip_at_r` it divides by `R`, not `k`; with `clip_at_r` and `R > k` it still divides by
    `R`. A query whose label is missing from `r` scores 0 and counts in the mean
    (pytorch-metric-learning drops such queries). `PrecisionAtK` accepts a `distance_threshold`
    that `compute()` ignores; this function does not take one.

    Reference: TensorFlow Similarity 0.17.1, `tensorflow_similarity.retrieval_metrics.PrecisionAtK`.
    """
    return _precision(
        query_labels, lookup_labels, k, r, clip_at_r, average, drop_closest_lookup, False
    )


@export
def map_at_k(
    query_labels,
    lookup_labels,
    *,
    k=5,
    r=None,
    clip_at_r=False,
    average="micro",
    drop_closest_lookup=False,
):
    """Mean average precision at k as TensorFlow Similarity's `MapAtK`; with `r` and
    `clip_at_r`, MAP@R.

    As `precision_at_k` (same columns `s..k-1`, same divisor `c_i`, same clipping), with each
    match weighted by the precision at its rank:

    ```
    P_i@j = sum_{l = s}^{j} m[i, l] / (j - s + 1)
    map_i = sum_{j = s}^{k-1} m[i, j] * P_i@j / c_i     (clip_at_r: only j < s + c_i)
    ```

    with `x / 0 = 0`, averaged over the queries.

    Args:
        query_labels: `[num_queries]` class ids, or `[num_queries, num_classes]` multi-hot
            (then `r` must be `None`).
        lookup_labels: `[num_queries, num_lookups]` labels of each query's neighbours, nearest
            first (`[num_queries, num_lookups, num_classes]` for multi-hot labels).
        k: Number of columns read, the dropped one included. Defaults to 5.
        r: Mapping class id -> number of examples of that class in the index, or `None` (then
            each query's divisor is `k`). Defaults to `None`.
        clip_at_r: Sum only the first `c_i` of the columns read (MAP@R). Defaults to `False`.
        average: `"micro"` only, as in TF Similarity. Defaults to `"micro"`.
        drop_closest_lookup: Skip column 0 (the query itself). Defaults to `False`.

    Returns:
        A float32 scalar; NaN for an empty query set.

    Raises:
        ValueError: for `average="macro"` (TF Similarity's `MapAtK` supports micro averaging
            only), and for `k`, `r` or shapes that do not fit (`lookup_labels` needs `k`
            columns; `k >= 2` with `drop_closest_lookup`).
        TypeError: for non-bool flags or non-numeric labels.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses.retrieval import tfsim
    >>> query_labels = np.array([1, 2])
    >>> lookup_labels = np.array([[1, 3, 1, 1], [2, 3, 3, 2]])
    >>> print(f"{float(tfsim.map_at_k(query_labels, lookup_labels, k=4)):.4f}")
    0.4896

    Differences from TF Similarity, and its traps kept: the divisor is `R` (or `k` without
    `r`), never the number of matches or `min(k, R)`, so a list of k matches out of `R > k`
    scores `k / R`. `drop_closest_lookup` reads `k - 1` neighbours as in `precision_at_k`;
    `k=1` with it is refused here. A query whose label is missing from `r` scores 0.

    Reference: TensorFlow Similarity 0.17.1, `tensorflow_similarity.retrieval_metrics.MapAtK`.
    """
    if average == "macro":
        raise ValueError(
            "`average` must be 'micro' for `map_at_k`: TF Similarity's MapAtK supports micro "
            f"averaging only. Received: average={average!r}"
        )
    return _precision(
        query_labels, lookup_labels, k, r, clip_at_r, average, drop_closest_lookup, True
    )


@export
def binary_ndcg(
    query_labels,
    lookup_labels,
    lookup_distances,
    *,
    k=5,
    distance_threshold=math.inf,
    average="micro",
    drop_closest_lookup=False,
):
    """Binary normalised discounted cumulative gain as TensorFlow Similarity's `BNDCG`.

    A neighbour counts when it matches and lies within `distance_threshold`. With `s = 1` if
    `drop_closest_lookup` else 0 and `g[i, j] = m[i, s + j] * (d[i, s + j] <= threshold)` for
    `j = 0..k-1`:

    ```
    DCG_i  = sum_{j < k} g[i, j] / log2(j + 2)
    IDCG_i = sum_{j < n_i} 1 / log2(j + 2),    n_i = sum_j g[i, j]
    ndcg_i = DCG_i / IDCG_i                    (0 when n_i = 0)
    ```

    averaged over the queries (`"micro"`) or over the query labels (`"macro"`). The ideal DCG
    is that of the retrieved list sorted, not of the index's relevant items.

    Args:
        query_labels: `[num_queries]` class ids, or `[num_queries, num_classes]` multi-hot.
        lookup_labels: `[num_queries, num_lookups]` labels of each query's neighbours, nearest
            first (`[num_queries, num_lookups, num_classes]` for multi-hot labels).
        lookup_distances: `[num_queries, num_lookups]` distances to those neighbours.
        k: Number of neighbours read. Defaults to 5.
        distance_threshold: Largest distance of a neighbour that counts; `math.inf` for any.
            Defaults to `math.inf`.
        average: `"micro"` or `"macro"` (class ids only). Defaults to `"micro"`.
        drop_closest_lookup: Skip column 0 (the query itself) and read columns `1..k`.
            Defaults to `False`.

    Returns:
        A float32 scalar in `[0, 1]`; NaN for an empty query set, and NaN when a distance read
        is NaN.

    Raises:
        ValueError: for `k`, `distance_threshold`, `average` or shapes that do not fit:
            `lookup_labels` needs `k` columns, `k + 1` with `drop_closest_lookup`, and
            `lookup_distances` its shape.
        TypeError: for non-bool `drop_closest_lookup` or non-numeric inputs.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses.retrieval import tfsim
    >>> query_labels = np.array([1, 2])
    >>> lookup_labels = np.array([[3, 1, 1], [2, 3, 2]])
    >>> lookup_distances = np.array([[0.1, 0.2, 0.3], [0.1, 0.2, 0.3]])
    >>> ndcg = tfsim.binary_ndcg(query_labels, lookup_labels, lookup_distances, k=3)
    >>> print(f"{float(ndcg):.4f}")
    0.8066
    >>> ndcg = tfsim.binary_ndcg(
    ...     query_labels, lookup_labels, lookup_distances, k=3, distance_threshold=0.25
    ... )
    >>> print(f"{float(ndcg):.4f}")
    0.8155

    Differences from TF Similarity: a NaN distance makes the query's value NaN, where `BNDCG`
    silently counts the neighbour as a miss (`NaN <= threshold` is false). With
    `drop_closest_lookup=True` and only `k` columns `BNDCG` fails inside TensorFlow on a shape
    mismatch; here that is a `ValueError` asking for `k + 1` columns. Kept as it is: a single
    match at rank 5 scores `1 / log2(6)` whatever the number of relevant items in the index,
    and k matches score 1.

    Reference: TensorFlow Similarity 0.17.1, `tensorflow_similarity.retrieval_metrics.BNDCG`.
    """
    k, average, drop_closest_lookup = lookup.settings(k, average, drop_closest_lookup)
    distance_threshold = lookup.threshold(distance_threshold)
    start = int(drop_closest_lookup)
    reason = "k neighbours after the dropped closest lookup" if start else "k neighbours"
    query_labels, mask = lookup.match_mask(query_labels, lookup_labels, k, start + k, reason)
    lookup.class_ids_for(query_labels, average=average)
    distances = validation.numeric_tensor(lookup_distances, "lookup_distances")
    if tuple(distances.shape) != tuple(mask.shape):
        raise ValueError(
            "`lookup_distances` must have the shape [num_queries, num_lookups] of "
            f"`lookup_labels`. Received: lookup_distances.shape={tuple(distances.shape)} and "
            f"lookup_labels.shape={tuple(ops.shape(lookup_labels))}"
        )
    distances = ops.cast(distances, compute_dtype(distances))[:, start : start + k]
    within = ops.less_equal(distances, scalar_like(distance_threshold, distances))
    gains = ops.cast(ops.logical_and(mask[:, start : start + k], within), lookup.FLOAT)
    discounts = ops.log1p(ops.arange(1, k + 1, dtype=lookup.FLOAT)) / math.log(2.0)
    dcg = ops.sum(gains / discounts, axis=1)
    found = ops.sum(gains, axis=1, keepdims=True)
    ideal = ops.where(ops.arange(k, dtype=lookup.FLOAT) < found, 1.0 / discounts, 0.0)
    ndcg = ops.divide_no_nan(dcg, ops.sum(ideal, axis=1))
    ndcg = ops.where(ops.any(ops.isnan(distances), axis=1), math.nan, ndcg)
    return lookup.average(ndcg, query_labels, average)


def _precision(query_labels, lookup_labels, k, r, clip_at_r, average, drop, ranked):
    """`precision_at_k` (`ranked=False`) and `map_at_k` (`ranked=True`)."""
    k, average, drop = lookup.settings(k, average, drop)
    clip_at_r = validation.boolean(clip_at_r, "clip_at_r")
    r = lookup.class_sizes(r)
    start = int(drop)
    if drop and k < 2:
        raise ValueError(
            "`k` must be >= 2 with `drop_closest_lookup=True`: as TF Similarity's PrecisionAtK "
            "and MapAtK, k counts the dropped column and columns 1..k-1 are read. "
            f"Received: k={k}"
        )
    reason = "columns 0..k-1, the dropped closest lookup included" if drop else "k neighbours"
    query_labels, mask = lookup.match_mask(query_labels, lookup_labels, k, k, reason)
    lookup.class_ids_for(query_labels, average=average, r=r)
    gains = ops.cast(mask[:, start:k], lookup.FLOAT)
    if ranked:
        ranks = ops.arange(1, k - start + 1, dtype=lookup.FLOAT)
        gains = gains * (ops.cumsum(gains, axis=1) / ranks)
    counts = lookup.class_counts(query_labels, mask, r, k, drop)
    if clip_at_r:
        within_r = ops.arange(k - start, dtype=lookup.FLOAT) < ops.expand_dims(counts, 1)
        gains = ops.where(within_r, gains, 0.0)
    return lookup.average(ops.divide_no_nan(ops.sum(gains, axis=1), counts), query_labels, average)
