"""NumPy (float64) oracles of pytorch-metric-learning 2.9.0's `NPairsLoss`, `VICRegLoss` and
`DynamicSoftMarginLoss`, written as PML computes them (index lists, loops), independently of
the `keras.ops` code."""

import numpy as np


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def npairs_loss(labels, embeddings):
    """`NPairsLoss()` (the inner product of unit embeddings): `[B]` values, `loss_a` on each
    label's first row (its anchor), 0 elsewhere; their mean over the anchors is PML's scalar."""
    labels, embeddings = np.asarray(labels), _unit(np.asarray(embeddings, np.float64))
    anchors, positives = [], []
    for label in dict.fromkeys(labels.tolist()):  # the labels in order of first appearance
        rows = np.flatnonzero(labels == label)
        if len(rows) > 1:
            anchors.append(rows[0])
            positives.append(rows[1])
    values = np.zeros(len(labels))
    if anchors:
        logits = embeddings[anchors] @ embeddings[positives].T
        top = logits.max(axis=1, keepdims=True)
        log_sum = np.log(np.exp(logits - top).sum(axis=1)) + top[:, 0]
        values[anchors] = log_sum - np.diag(logits)
    return values


def dynamic_soft_margin_loss(labels, embeddings, min_val=-2.0, num_bins=10):
    """A new `DynamicSoftMarginLoss(min_val, num_bins)` on one batch, with `x = d_ap - d_an` of
    its triplets (lexicographic `(a, p, n)`, Euclidean distances of unit embeddings) and `t`
    clipped to `[0, num_bins - 1]` (PML fails outside): `[B]` per-anchor means of `CDF(t) x`
    over each anchor's triplets (0 without one)."""
    labels, embeddings = np.asarray(labels), _unit(np.asarray(embeddings, np.float64))
    distances = np.linalg.norm(embeddings[:, None] - embeddings[None], axis=-1)
    triplets = [
        (a, p, n)
        for a in range(len(labels))
        for p in range(len(labels))
        for n in range(len(labels))
        if p != a and labels[p] == labels[a] and labels[n] != labels[a]
    ]
    values = np.zeros(len(labels))
    if not triplets:
        return values
    data = np.array([distances[a, p] - distances[a, n] for a, p, n in triplets])
    t = np.clip((data - min_val) / (2 * abs(min_val) / num_bins), 0, num_bins - 1)
    index = np.floor(t).astype(int)
    histogram = np.zeros(num_bins + 1)
    np.add.at(histogram, index, 1 - (t - index))
    np.add.at(histogram, index + 1, t - index)
    cdf = np.cumsum(histogram[:num_bins] / histogram.sum())
    terms = cdf[index] * data
    anchors = np.array([a for a, _, _ in triplets])
    for a in np.unique(anchors):
        values[a] = terms[anchors == a].mean()
    return values
