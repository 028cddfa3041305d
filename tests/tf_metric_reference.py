"""Plain NumPy (float64) oracle of the TF Addons 0.23 and TF Similarity 0.17.1 metric losses.

Written from the formulas (REFERENCE_MATH sections 1, 4, 5 and the public sources), not from
their code. Notation: `D` distance matrix (rows = anchors / queries, columns = keys),
`P[a, j] = [y_a == y_j and j != a]` (positives), `N[a, j] = [y_a != y_j]` (negatives).

TF Addons functions return what TF Addons returns (a batch scalar, or per pair for
`contrastive_loss`, NaN included where TF Addons gives NaN); each batch-scalar loss also has a
`*_per_anchor` decomposition `[B]` whose mean is that scalar (0 for every anchor where TF Addons
gives NaN). TF Similarity functions take a query/key split, like the originals, and return the
per-query loss `[B]` (the class's default reduction is its mean).
"""

import numpy as np

# ---------------------------------------------------------------------------------------------
# Shared helpers


def _labels(labels):
    return np.asarray(labels).reshape(-1)


def _float(x):
    return np.asarray(x, np.float64)


def _squared_l2(queries, keys):
    """`|q_i - k_j|^2`, from the differences (exact, unlike the `|q|^2 + |k|^2 - 2 q.k` form)."""
    return ((queries[:, None, :] - keys[None, :, :]) ** 2).sum(axis=-1)


def _masks(query_labels, key_labels, remove_diagonal=True):
    """`(P, N)`: same label (minus the main diagonal if `remove_diagonal`), different label."""
    same = _labels(query_labels)[:, None] == _labels(key_labels)[None, :]
    positive = same.copy()
    if remove_diagonal:
        n = min(positive.shape)
        positive[np.arange(n), np.arange(n)] = False
    return positive, ~same


def _one_plus_logsumexp(x, mask):
    """`log(1 + sum_j mask_ij exp(x_ij))` per row, computed stably (`0` for an empty row)."""
    masked = np.where(mask, x, -np.inf)
    shift = np.maximum(masked.max(axis=1, initial=-np.inf), 0.0)
    total = np.exp(-shift) + np.where(mask, np.exp(masked - shift[:, None]), 0.0).sum(axis=1)
    return np.log(total) + shift


# ---------------------------------------------------------------------------------------------
# TF Addons 0.23


def tfa_distances(embeddings, distance_metric="L2"):
    """TF Addons' pairwise distance matrix `[B, B]`.

    - "L2": `sqrt(max(|e_i|^2 + |e_j|^2 - 2 e_i.e_j, 0))`, diagonal forced to 0;
    - "squared-L2": the same without the square root;
    - "angular": `max(1 - u_i.u_j, 0)` with `u = e / max(|e|, 1e-6)` (normalised inside; the
      diagonal is not forced to 0, it is `max(1 - |u|^2, 0)`, 0 up to rounding).
    """
    e = _float(embeddings)
    if distance_metric == "angular":
        u = e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-6)
        return np.maximum(1.0 - u @ u.T, 0.0)
    squared = _squared_l2(e, e)
    np.fill_diagonal(squared, 0.0)
    if distance_metric == "squared-L2":
        return squared
    if distance_metric == "L2":
        return np.sqrt(squared)
    return _float(distance_metric(e))  # a callable embeddings -> [B, B], as in TF Addons


def _tfa_masked_max(d, mask):
    """Row max of `d` over `mask`; an empty row gives the row minimum over all columns."""
    return np.where(mask.any(axis=1), np.where(mask, d, -np.inf).max(axis=1), d.min(axis=1))


def _tfa_masked_min(d, mask):
    """Row min of `d` over `mask`; an empty row gives the row maximum over all columns."""
    return np.where(mask.any(axis=1), np.where(mask, d, np.inf).min(axis=1), d.max(axis=1))


def triplet_semihard_pair_losses(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """`l[a, p] = max(margin + D_ap - n_ap, 0)` for every positive pair (0 elsewhere), `[B, B]`.

    `n_ap = min {D_an : y_n != y_a, D_an > D_ap}` (the closest negative strictly farther than
    this positive; the threshold is per pair), or, when there is none, the anchor's farthest
    negative `max_{n in N_a} D_an` (no negative at all: the row minimum, i.e. 0).
    """
    y = _labels(y_true)
    d = tfa_distances(y_pred, distance_metric)
    positive, negative = _masks(y, y)
    beyond = negative[:, None, :] & (d[:, None, :] > d[:, :, None])  # [a, p, n]
    closest_beyond = np.where(beyond, d[:, None, :], np.inf).min(axis=-1)
    fallback = _tfa_masked_max(d, negative)[:, None]
    semihard = np.where(beyond.any(axis=-1), closest_beyond, fallback)
    return np.where(positive, np.maximum(margin + d - semihard, 0.0), 0.0)


def triplet_semihard_loss(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """`sum_{a, p} l[a, p] / #P` over ordered positive pairs; NaN (0/0) without any, as TFA."""
    losses = triplet_semihard_pair_losses(y_true, y_pred, margin, distance_metric)
    count = _masks(y_true, y_true)[0].sum()
    return losses.sum() / count if count else np.nan


def triplet_semihard_per_anchor(y_true, y_pred, margin=1.0, distance_metric="L2"):
    """`v_a = B * sum_p l[a, p] / #P`: anchor a's share, so that `mean_a v_a` is the TFA loss.

    Every triplet keeps TF Addons' weight `1 / #P`; an anchor without positives gets 0. Without
    any positive pair every anchor gets 0 (TF Addons returns NaN).
    """
    losses = triplet_semihard_pair_losses(y_true, y_pred, margin, distance_metric)
    count = _masks(y_true, y_true)[0].sum()
    return len(losses) * losses.sum(axis=1) / max(count, 1)


def triplet_hard_per_anchor(y_true, y_pred, margin=1.0, soft=False, distance_metric="L2"):
    """`x_a = max_{p in P_a} D_ap - min_{n in N_a} D_an`; `softplus(x_a)` if `soft` (the margin
    is then ignored) else `max(x_a + margin, 0)`.

    Empty sets follow TF Addons' masked reductions: no positive -> the row minimum (the self
    distance, 0), no negative -> the row maximum. No anchor is dropped.
    """
    y = _labels(y_true)
    d = tfa_distances(y_pred, distance_metric)
    positive, negative = _masks(y, y)
    x = _tfa_masked_max(d, positive) - _tfa_masked_min(d, negative)
    return np.logaddexp(0.0, x) if soft else np.maximum(x + margin, 0.0)


def triplet_hard_loss(y_true, y_pred, margin=1.0, soft=False, distance_metric="L2"):
    """The mean over all anchors of `triplet_hard_per_anchor`."""
    return triplet_hard_per_anchor(y_true, y_pred, margin, soft, distance_metric).mean()


def lifted_struct_pair_terms(labels, embeddings, margin=1.0):
    """`t[i, j] = max(J_ij, 0)^2 / 2` for every ordered positive pair (0 elsewhere), with

    `J_ij = log(sum_{l in N_i} exp(margin - D_il) + sum_{l in N_j} exp(margin - D_jl)) + D_ij`,
    D the (non-squared) "L2" distance. `J` is symmetric.
    """
    y = _labels(labels)
    d = tfa_distances(embeddings, "L2")
    positive, negative = _masks(y, y)
    with np.errstate(divide="ignore"):
        lse = np.log(np.where(negative, np.exp(margin - d), 0.0).sum(axis=1))
    j = np.logaddexp(lse[:, None], lse[None, :]) + d
    return np.where(positive, 0.5 * np.maximum(j, 0.0) ** 2, 0.0)


def lifted_struct_loss(labels, embeddings, margin=1.0):
    """`sum_{(i, j) ordered positive} max(J_ij, 0)^2 / (2 #P)` = the mean over unordered pairs
    of `max(J, 0)^2 / 2`. NaN without a positive pair (0/0) or a negative pair (`-inf * 0` on
    the diagonal), as TF Addons.
    """
    terms = lifted_struct_pair_terms(labels, embeddings, margin)
    positive, negative = _masks(labels, labels)
    if not positive.any() or not negative.any():
        return np.nan
    return terms.sum() / positive.sum()


def lifted_struct_per_anchor(labels, embeddings, margin=1.0):
    """`v_a = B * sum_j t[a, j] / #P`: each unordered pair's term is split evenly between its two
    ends, so `mean_a v_a` is the TFA loss. All zeros where TF Addons gives NaN.
    """
    terms = lifted_struct_pair_terms(labels, embeddings, margin)
    return len(terms) * terms.sum(axis=1) / max(_masks(labels, labels)[0].sum(), 1)


def contrastive_loss(y_true, y_pred, margin=1.0):
    """Per pair: `y d^2 + (1 - y) max(margin - d, 0)^2`, `d = y_pred` (pair distances)."""
    y, d = _float(y_true), _float(y_pred)
    return y * d**2 + (1.0 - y) * np.maximum(margin - d, 0.0) ** 2


# ---------------------------------------------------------------------------------------------
# TF Similarity 0.17.1


def _cosine(q, k):
    return np.maximum(1.0 - q @ k.T, 0.0)  # no normalisation


def _euclidean(q, k):
    squared = _squared_l2(q, k)
    return np.where(squared >= 1e-18, np.sqrt(np.maximum(squared, 1e-18)), 0.0)


def _snr(q, k):
    return (q[:, None, :] - k[None, :, :]).var(axis=-1) / q.var(axis=-1)[:, None]


_TFSIM_DISTANCES = {
    "cosine": _cosine,
    "euclidean": _euclidean,
    "l2": _euclidean,
    "pythagorean": _euclidean,
    "squared_euclidean": _squared_l2,
    "sql2": _squared_l2,
    "sqeuclidean": _squared_l2,
    "manhattan": lambda q, k: np.abs(q[:, None, :] - k[None, :, :]).sum(axis=-1),
    "l1": lambda q, k: np.abs(q[:, None, :] - k[None, :, :]).sum(axis=-1),
    "taxicab": lambda q, k: np.abs(q[:, None, :] - k[None, :, :]).sum(axis=-1),
    "inner_product": lambda q, k: q @ k.T,
    "ip": lambda q, k: q @ k.T,
    "snr": _snr,
    "signal-to-noise-ratio": _snr,
}


def tfsim_distances(name, queries, keys):
    """TF Similarity's distance `[B, M]` by (case-insensitive) name; see REFERENCE_MATH 1.5."""
    return _TFSIM_DISTANCES[name.lower()](_float(queries), _float(keys))


def _tfsim_masked_max(d, mask):
    """`(value, index)`: `max_j (D_ij - r_i) M_ij + r_i`, `r_i = min_j D_ij - 1e-6`.

    The true masked max and its first index; an empty row gives `min_j D_ij - 1e-6`, index 0.
    """
    shift = d.min(axis=1, keepdims=True) - 1e-6
    lifted = (d - shift) * mask
    return lifted.max(axis=1) + shift[:, 0], lifted.argmax(axis=1)


def _tfsim_masked_min(d, mask):
    """`(value, index)`; an empty row gives `max_j D_ij + 1e-6`, index 0."""
    shift = d.max(axis=1, keepdims=True) + 1e-6
    lowered = (d - shift) * mask
    return lowered.min(axis=1) + shift[:, 0], lowered.argmin(axis=1)


def tfsim_triplet_loss(
    query_labels,
    query_embeddings,
    key_labels,
    key_embeddings,
    remove_diagonal=True,
    distance="cosine",
    positive_mining_strategy="hard",
    negative_mining_strategy="semi-hard",
    margin=None,
):
    """`TripletLoss`: `x_i = d_pos_i - d_neg_i`; `softplus(x_i)` if `margin is None` else
    `max(x_i + margin, 0)`.

    `d_pos`: hard = farthest positive, easy = closest positive. `d_neg`: hard = closest
    negative, easy = farthest negative, semi-hard = the closest negative with `D > t_i` where
    `t_i` is the farthest positive (whatever the positive strategy), else the farthest negative.
    Empty sets use TF Similarity's masked reductions (`_tfsim_masked_max/min`).
    """
    d = tfsim_distances(distance, query_embeddings, key_embeddings)
    positive, negative = _masks(query_labels, key_labels, remove_diagonal)
    farthest_positive, _ = _tfsim_masked_max(d, positive)
    if positive_mining_strategy == "hard":
        d_pos = farthest_positive
    else:
        d_pos, _ = _tfsim_masked_min(d, positive)
    if negative_mining_strategy == "hard":
        d_neg, _ = _tfsim_masked_min(d, negative)
    elif negative_mining_strategy == "easy":
        d_neg, _ = _tfsim_masked_max(d, negative)
    else:
        _, farthest = _tfsim_masked_max(d, negative)
        fallback = np.arange(d.shape[1])[None, :] == farthest[:, None]
        candidates = np.where(d > farthest_positive[:, None], negative, fallback)
        d_neg, _ = _tfsim_masked_min(d, candidates)
    x = d_pos - d_neg
    return np.logaddexp(0.0, x) if margin is None else np.maximum(x + margin, 0.0)


def tfsim_multisimilarity_loss(
    query_labels,
    query_embeddings,
    key_labels,
    key_embeddings,
    remove_diagonal=True,
    distance="cosine",
    alpha=2.0,
    beta=40.0,
    epsilon=0.1,
    lmda=0.5,
    center=1.0,
):
    """`MultiSimilarityLoss` with its own pair mining, per query `i`:

    `P'_i = {j in P_i : D_ij > min_{N_i} D - epsilon}`,
    `N'_i = {j in N_i : D_ij < max_{P_i} D + epsilon}`; with `s = D + lmda - center`:
    `l_i = log(1 + sum_{P'_i} exp(alpha s_ij)) / alpha
         + log(1 + sum_{N'_i} exp(-beta s_ij)) / beta`,
    and `l_i = 0` if `P'_i` or `N'_i` is empty (masked min/max as `_tfsim_masked_min/max`).
    """
    d = tfsim_distances(distance, query_embeddings, key_embeddings)
    positive, negative = _masks(query_labels, key_labels, remove_diagonal)
    closest_negative, _ = _tfsim_masked_min(d, negative)
    farthest_positive, _ = _tfsim_masked_max(d, positive)
    hard_positive = positive & (d > closest_negative[:, None] - epsilon)
    hard_negative = negative & (d < farthest_positive[:, None] + epsilon)
    valid = hard_positive.any(axis=1) & hard_negative.any(axis=1)
    s = d + lmda - center
    loss = (
        _one_plus_logsumexp(alpha * s, hard_positive) / alpha
        + _one_plus_logsumexp(-beta * s, hard_negative) / beta
    )
    return np.where(valid, loss, 0.0)


def tfsim_circle_loss(
    query_labels,
    query_embeddings,
    key_labels,
    key_embeddings,
    remove_diagonal=True,
    distance="cosine",
    gamma=80.0,
    margin=0.4,
):
    """`CircleLoss` on distances, per query `i` (`m` = margin):

    `l_i = log(1 + sum_{P_i} exp(gamma [m + D]_+ (D - m)))
         + log(1 + sum_{N_i} exp(gamma [1 + m - D]_+ (1 - m - D)))`,
    and `l_i = 0` if `P_i` or `N_i` is empty.
    """
    d = tfsim_distances(distance, query_embeddings, key_embeddings)
    positive, negative = _masks(query_labels, key_labels, remove_diagonal)
    valid = positive.any(axis=1) & negative.any(axis=1)
    pos_logits = gamma * np.maximum(margin + d, 0.0) * (d - margin)
    neg_logits = gamma * np.maximum(1.0 + margin - d, 0.0) * (1.0 - margin - d)
    loss = _one_plus_logsumexp(pos_logits, positive) + _one_plus_logsumexp(neg_logits, negative)
    return np.where(valid, loss, 0.0)


def tfsim_soft_nn_loss(
    query_labels,
    query_embeddings,
    key_labels,
    key_embeddings,
    remove_diagonal=True,
    distance="sql2",
    temperature=1.0,
):
    """`SoftNearestNeighborLoss`: with `w_ij = exp(-D_ij / temperature)`, the diagonal excluded,

    `l_i = -log(1e-9 + sum_{P_i} w_ij / sum_{j != i} w_ij)`, and `l_i = 0` if `P_i` is empty.
    """
    d = tfsim_distances(distance, query_embeddings, key_embeddings) / temperature
    positive, _ = _masks(query_labels, key_labels, remove_diagonal)
    off_diagonal = ~np.eye(*d.shape, dtype=bool)
    weights = np.where(off_diagonal, np.exp(-d), 0.0)
    ratio = (weights * positive).sum(axis=1) / weights.sum(axis=1)
    return np.where(positive.any(axis=1), -np.log(1e-9 + ratio), 0.0)


TFSIM_LOSSES = {
    "TripletLoss": tfsim_triplet_loss,
    "MultiSimilarityLoss": tfsim_multisimilarity_loss,
    "CircleLoss": tfsim_circle_loss,
    "SoftNearestNeighborLoss": tfsim_soft_nn_loss,
}


def tfsim_loss(call, labels, embeddings, **kwargs):
    """`Class(**kwargs)` applied to one batch (queries = keys), per anchor `[B]`."""
    return TFSIM_LOSSES[call](labels, embeddings, labels, embeddings, **kwargs)


def xbm_replay(batches, loss, memory_size, warmup_steps=0):
    """Replays `XBM(Inner(**kwargs), memory_size, warmup_steps)` over `(labels, embeddings)`.

    Step t (from 1): `keys = concat(batch, memory)[:memory_size]` (newest first); if
    `t > warmup_steps` the memory becomes `keys`, else it stays as it was (empty during the
    warm-up, so the keys are the batch alone). The loss compares the batch (queries) with the
    keys, removing only the main diagonal (each query's own key) from the positives. Returns,
    per step, `(per-query losses [B], labels in memory after the step)`.
    `loss` is `{"call": class name, "kwargs": {...}}`.
    """
    memory_labels, memory_embeddings = None, None
    results = []
    for step, (labels, embeddings) in enumerate(batches, start=1):
        labels, embeddings = _labels(labels), _float(embeddings)
        if memory_labels is None:
            memory_labels = labels[:0]
            memory_embeddings = embeddings[:0]
        key_labels = np.concatenate([labels, memory_labels])[:memory_size]
        key_embeddings = np.concatenate([embeddings, memory_embeddings])[:memory_size]
        if step > warmup_steps:
            memory_labels, memory_embeddings = key_labels, key_embeddings
        fn = TFSIM_LOSSES[loss["call"]]
        kwargs = {**loss["kwargs"], "remove_diagonal": True}
        values = fn(labels, embeddings, key_labels, key_embeddings, **kwargs)
        results.append((values, memory_labels.copy()))
    return results
