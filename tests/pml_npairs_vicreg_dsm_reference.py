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
