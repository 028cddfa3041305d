"""A plain NumPy loop implementing PN loss per anchor (REFERENCE_MATH 4.2), for the tests.

Anchors without a positive or a negative get loss 0 (this package's choice; TensorFlow
Similarity gives them an arbitrary value, REFERENCE_MATH 4.3). Everything else follows
TensorFlow Similarity 0.17.1: ties go to the first index, semi-hard uses the farthest positive
as threshold and falls back to the farthest negative, and the PN step takes
`min(D[i, n], D[p, n])`.
"""

import numpy as np


def distance_matrix(name, embeddings):
    e = np.asarray(embeddings, np.float64)
    products = e @ e.T
    norms = (e**2).sum(axis=1)
    squared = np.maximum(norms[:, None] + norms[None, :] - 2 * products, 0.0)
    return {
        "cosine": lambda: np.maximum(1.0 - products, 0.0),
        "euclidean": lambda: np.sqrt(squared),
        "squared_euclidean": lambda: squared,
        "manhattan": lambda: np.abs(e[:, None, :] - e[None, :, :]).sum(axis=-1),
        "inner_product": lambda: products,
    }[name]()


def closest(candidates, row):
    """The first candidate with the smallest `row` value (`min` keeps the first on ties)."""
    return min(candidates, key=lambda j: row[j])


def farthest(candidates, row):
    """The first candidate with the largest `row` value."""
    return min(candidates, key=lambda j: -row[j])


def pn_reference(
    labels,
    embeddings,
    distance="cosine",
    positive_mining_strategy="hard",
    negative_mining_strategy="semi-hard",
    soft_margin=False,
    margin=1.0,
):
    """Returns `(losses, positive_distances, negative_distances)`, each `[B]` float64."""
    labels = np.asarray(labels).reshape(-1)
    d = distance_matrix(distance, embeddings)
    batch = len(labels)
    losses, pos_dist, neg_dist = np.zeros(batch), np.zeros(batch), np.zeros(batch)
    for i in range(batch):
        positives = [j for j in range(batch) if labels[j] == labels[i] and j != i]
        negatives = [j for j in range(batch) if labels[j] != labels[i]]
        if not positives or not negatives:
            continue
        farthest_positive = farthest(positives, d[i])
        easy = positive_mining_strategy == "easy"
        p = closest(positives, d[i]) if easy else farthest_positive
        farthest_negative = farthest(negatives, d[i])
        if negative_mining_strategy == "hard":
            n = closest(negatives, d[i])
        elif negative_mining_strategy == "easy":
            n = farthest_negative
        else:
            beyond = [j for j in negatives if d[i, j] > d[i, farthest_positive]]
            n = closest(beyond, d[i]) if beyond else farthest_negative
        pos_dist[i] = d[i, p]
        neg_dist[i] = min(d[i, n], d[p, n])
        x = pos_dist[i] - neg_dist[i]
        losses[i] = np.logaddexp(0.0, x) if soft_margin else max(x + margin, 0.0)
    return losses, pos_dist, neg_dist
