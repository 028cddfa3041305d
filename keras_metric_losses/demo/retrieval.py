"""Retrieval metrics for embeddings: Recall@1 and MAP@R (Musgrave et al., 2020)."""

import numpy as np


def _ranked_matches(embeddings, labels):
    """`[N, N-1]` booleans: for each query, whether each neighbour (by cosine, self excluded,
    nearest first) shares its label."""
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1, kind="stable")[:, :-1]
    return labels[order] == labels[:, None]


def recall_at_1(embeddings, labels):
    """Share of queries whose nearest other sample has the same label."""
    return float(_ranked_matches(embeddings, labels)[:, 0].mean())


def map_at_r(embeddings, labels):
    """Mean average precision at R, R = number of other samples of the query's class.

    `MAP@R = mean_q (1/R) sum_{i<=R} P(i) [neighbour i is relevant]`, from "A Metric Learning
    Reality Check" (Musgrave, Belongie and Lim, ECCV 2020). Queries alone in their class are
    skipped.
    """
    matches = _ranked_matches(embeddings, labels)
    r = matches.sum(axis=1)
    scores = []
    for row, count in zip(matches, r, strict=True):
        if count:
            hits = row[:count]
            precision = np.cumsum(hits) / np.arange(1, count + 1)
            scores.append((precision * hits).sum() / count)
    return float(np.mean(scores))
