"""Normalized and adjusted mutual information of a clustering against class labels, in NumPy.

pytorch-metric-learning's `AccuracyCalculator` reports `"NMI"` and `"AMI"`: scikit-learn's
`normalized_mutual_info_score` and `adjusted_mutual_info_score` (arithmetic mean of the
entropies) of the query labels and the cluster ids of a faiss k-means of the query embeddings.
The clustering is seed-dependent and not reproduced here: these functions score cluster ids
you computed, with scikit-learn's formulas (scikit-learn is not a dependency).
"""

import math

import numpy as np

from keras_metric_losses.api import export


def _contingency(labels, cluster_labels):
    """The `[classes, clusters]` table of counts, checked inputs."""
    labels, cluster_labels = np.asarray(labels), np.asarray(cluster_labels)
    for name, x in (("labels", labels), ("cluster_labels", cluster_labels)):
        if x.ndim != 1:
            raise ValueError(
                f"`{name}` must be one id per example, of shape [N]. "
                f"Received: {name}.shape={x.shape}"
            )
    if labels.shape != cluster_labels.shape:
        raise ValueError(
            "`labels` and `cluster_labels` must have one entry per example each. Received: "
            f"labels.shape={labels.shape} and cluster_labels.shape={cluster_labels.shape}"
        )
    _, classes = np.unique(labels, return_inverse=True)
    _, clusters = np.unique(cluster_labels, return_inverse=True)
    table = np.zeros((classes.max(initial=-1) + 1, clusters.max(initial=-1) + 1))
    np.add.at(table, (classes, clusters), 1.0)
    return table


def _entropy(counts):
    p = counts[counts > 0] / counts.sum()
    return float(-np.sum(p * np.log(p)))


def _mutual_information(table):
    n = table.sum()
    rows, columns = table.sum(axis=1), table.sum(axis=0)
    i, j = np.nonzero(table)
    nij = table[i, j]
    terms = nij / n * (np.log(nij * n) - np.log(rows[i] * columns[j]))
    return max(float(np.sum(terms)), 0.0)


def _expected_mutual_information(table):
    """The mutual information expected of two random labelings with the table's marginals
    (Vinh et al. 2010, eq. 24a; scikit-learn's `expected_mutual_information`)."""
    n = int(table.sum())
    a, b = table.sum(axis=1).astype(int), table.sum(axis=0).astype(int)
    log_factorial = np.array([math.lgamma(m + 1) for m in range(n + 1)])
    total = 0.0
    for ai in a:
        for bj in b:
            nij = np.arange(max(1, ai + bj - n), min(ai, bj) + 1)
            log_p = (
                log_factorial[ai] + log_factorial[bj] + log_factorial[n - ai]
                + log_factorial[n - bj] - log_factorial[n] - log_factorial[nij]
                - log_factorial[ai - nij] - log_factorial[bj - nij]
                - log_factorial[n - ai - bj + nij]
            )  # fmt: skip
            total += np.sum(nij / n * (np.log(n * nij) - math.log(ai * bj)) * np.exp(log_p))
    return float(total)


def _is_one_block(table):
    """Both labelings put every example in one group (or there are none): a perfect match."""
    return table.shape[0] == table.shape[1] <= 1


@export
def normalized_mutual_info(labels, cluster_labels):
    """Normalized mutual information of cluster ids against class labels.

    ```
    NMI = I(Y; C) / ((H(Y) + H(C)) / 2)
    ```

    with `I` the mutual information and `H` the entropies of the labels `Y` and the cluster ids
    `C` (the arithmetic mean, scikit-learn's default and PML's). 1 when both put every example
    in one group; 0 when the mutual information is 0.

    Args:
        labels: `[N]` class labels (any hashable NumPy values).
        cluster_labels: `[N]` cluster ids.

    Returns:
        A Python float in `[0, 1]`.

    Raises:
        ValueError: if the two are not 1-D arrays of the same length.

    Example:

    >>> from keras_metric_losses import retrieval
    >>> round(retrieval.normalized_mutual_info([0, 0, 1, 1], [5, 5, 5, 7]), 4)
    0.3437

    Reference: Strehl and Ghosh, "Cluster ensembles", JMLR 2002; scikit-learn's
    `normalized_mutual_info_score`, as pytorch-metric-learning's `AccuracyCalculator` uses it.
    """
    table = _contingency(labels, cluster_labels)
    if _is_one_block(table):
        return 1.0
    information = _mutual_information(table)
    if information == 0.0:
        return 0.0
    normalizer = (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2
    return information / normalizer


@export
def adjusted_mutual_info(labels, cluster_labels):
    """Adjusted mutual information of cluster ids against class labels: mutual information
    corrected for chance.

    ```
    AMI = (I(Y; C) - E[I]) / ((H(Y) + H(C)) / 2 - E[I])
    ```

    with `E[I]` the mutual information expected of random labelings with the same group sizes
    (hypergeometric model). 1 for identical groupings, about 0 for random ones, negative when
    worse than chance. As scikit-learn, 1 when both put every example in one group, and a
    denominator that rounding made 0 is kept at `+-eps` of its sign.

    Args:
        labels: `[N]` class labels (any hashable NumPy values).
        cluster_labels: `[N]` cluster ids.

    Returns:
        A Python float, at most 1.

    Raises:
        ValueError: if the two are not 1-D arrays of the same length.

    Example:

    >>> from keras_metric_losses import retrieval
    >>> round(retrieval.adjusted_mutual_info([0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 1, 2]), 4)
    0.5024

    Reference: Vinh, Epps and Bailey, "Information theoretic measures for clusterings
    comparison", JMLR 2010; scikit-learn's `adjusted_mutual_info_score`, as
    pytorch-metric-learning's `AccuracyCalculator` uses it.
    """
    table = _contingency(labels, cluster_labels)
    if _is_one_block(table):
        return 1.0
    information = _mutual_information(table)
    expected = _expected_mutual_information(table)
    normalizer = (_entropy(table.sum(axis=1)) + _entropy(table.sum(axis=0))) / 2
    eps = np.finfo("float64").eps
    denominator = normalizer - expected
    denominator = min(denominator, -eps) if denominator < 0 else max(denominator, eps)
    return (information - expected) / denominator
