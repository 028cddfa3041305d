"""NumPy (float64) oracle of pytorch-metric-learning 2.9.0's AngularLoss, HistogramLoss and
RankedListLoss (the pair losses of `pml_more.json`), written as PML computes them: index lists
of pairs, a histogram filled with `np.add.at`. Conventions (queries / keys, `LossResult`) are
those of `pml_pair_reference`; `natural` is what our function returns with its defaults.
"""

import numpy as np
from pml_pair_reference import (
    COSINE,
    LP,
    LossResult,
    _distance,
    _row_means,
    mean_reduce,
    normalize,
    pair_masks,
    pml_logsumexp,
)


def angular_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    alpha=40.0,
    normalize_negatives=True,
):
    """AngularLoss: for each positive pair (a, p), both L2-normalised,
    `log(1 + sum_{n in N_a} exp(4 t (a + p) . x_n - 2 (1 + t) a . p))`, `t = tan^2(alpha)`,
    `x_n` the key normalised (`normalize_negatives`) or raw (PML); 0 for a pair whose anchor
    has no negative. `per_anchor` = MeanReducer shares over the positive pairs, `natural` =
    each anchor's mean over its positive pairs.
    """
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, LP)
    queries = normalize(query_emb)
    raw_keys = pairs.key_emb
    keys = normalize(raw_keys)
    negatives = keys if normalize_negatives else raw_keys
    t = np.tan(np.radians(alpha)) ** 2
    rows, columns = np.nonzero(pairs.pos)
    a, p = queries[rows], keys[columns]
    logits = 4 * t * (a + p) @ negatives.T - 2 * (1 + t) * np.sum(a * p, axis=1, keepdims=True)
    dense = np.zeros(pairs.mat.shape)
    dense[rows, columns] = pml_logsumexp(logits, pairs.neg[rows], add_one=True)
    scalar, per_anchor = mean_reduce(dense, pairs.pos)
    return LossResult(scalar, {}, per_anchor, _row_means(dense, pairs.pos))


def histogram_loss(query_emb, query_labels, *, n_bins=None, delta=None, distance=None):
    """HistogramLoss over the batch: the unordered, de-duplicated positive and negative pairs of
    all triplets; each similarity `s` (a distance `D` as `1 - D`, clipped to `[-1, 1]`) adds
    `1 - f` to node `floor(t)` and `f` to the next (`t = (s + 1) / delta`, `f = t - floor(t)`);
    `loss = sum(p_neg * cumsum(p_pos))`, 0 without triplets. `per_anchor` = `natural`: each
    negative pair's `(1 - f) Phi[r] + f Phi[r + 1]` given half to each end, times `B / n_neg`.
    """
    pairs = pair_masks(query_emb, query_labels, None, None, None, _distance(distance, COSINE))
    batch = pairs.batch
    width = 2.0 / (n_bins or 100) if delta is None else delta
    similarity = pairs.mat if pairs.distance.inverted else 1.0 - pairs.mat
    similarity = np.clip(similarity, -1.0, 1.0)
    has_pos, has_neg = pairs.pos.any(axis=1), pairs.neg.any(axis=1)
    upper = np.triu(np.ones((batch, batch), bool), 1)
    positive = upper & pairs.pos & (has_neg[:, None] | has_neg[None, :])
    negative = upper & pairs.neg & (has_pos[:, None] | has_pos[None, :])
    if not (has_pos & has_neg).any():
        zeros = np.zeros(batch)
        return LossResult(0.0, {}, zeros, zeros)
    nodes = int(np.floor(2.0 / width)) + 3

    def density(mask):
        s = similarity[mask]
        t = (s + 1.0) / width
        r = np.floor(t).astype(int)
        hist = np.zeros(nodes)
        np.add.at(hist, r, 1.0 - (t - r))
        np.add.at(hist, r + 1, t - r)
        return hist / len(s)

    phi = np.cumsum(density(positive))
    loss = float(np.sum(density(negative) * phi))
    t = (similarity + 1.0) / width
    r = np.floor(t).astype(int)
    terms = (1.0 - (t - r)) * phi[r] + (t - r) * phi[np.minimum(r + 1, nodes - 1)]
    terms = np.where(negative, terms, 0.0)
    per_anchor = batch * (terms.sum(axis=1) + terms.sum(axis=0)) / (2 * negative.sum())
    return LossResult(loss, {}, per_anchor, per_anchor)


def ranked_list_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    margin=0.4,
    Tn=10.0,
    imbalance=0.5,
    alpha=None,
    Tp=0.0,
    epsilon=0.0,
    distance=None,
):
    """RankedListLoss (LpDistance): per anchor `(1 - imbalance) L+ + imbalance L-` with
    `L+ = sum w (D - alpha + margin) / (sum w + K epsilon)` over the positives with
    `D > alpha - margin`, `w = exp(Tp (D - alpha + margin))`, and `L-` likewise over the
    negatives with `D < alpha`, `w = exp(Tn (alpha - D))`; `alpha = 1 + margin / 2` if None.
    `epsilon=1e-5` is PML's (which also drops pairs at a distance of exactly 0).
    """
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index,
                       _distance(distance, LP))  # fmt: skip
    alpha = 1.0 + margin / 2.0 if alpha is None else alpha
    extra = epsilon * pairs.mat.shape[1]
    sides = []
    for mask, gap, temperature in ((pairs.pos, pairs.mat - (alpha - margin), Tp),
                                   (pairs.neg, alpha - pairs.mat, Tn)):  # fmt: skip
        selected = mask & (gap > 0)
        weights = np.where(selected, np.exp(temperature * np.where(selected, gap, 0.0)), 0.0)
        total = weights.sum(axis=1) + extra
        with np.errstate(invalid="ignore"):
            sides.append(np.where(total > 0, (weights * gap).sum(axis=1) / total, 0.0))
    losses = (1.0 - imbalance) * sides[0] + imbalance * sides[1]
    return LossResult(float(losses.mean()) if len(losses) else 0.0, {}, losses, losses)
