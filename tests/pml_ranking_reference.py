"""NumPy (float64) oracles of pytorch-metric-learning 2.9.0's ranking losses, `PNPLoss` and
`SmoothAPLoss` (label-based), written directly over `[B, B, B]` tensors of rank gaps.

Each returns a `LossResult` (see `pml_pair_reference`): `loss` PML's scalar, `per_anchor` its
decomposition (`mean(per_anchor) == loss`), `natural` the anchor's own value.
"""

import numpy as np
from pml_pair_reference import COSINE, LossResult, pair_masks


def _gaps(similarity, temperature):
    """`[B, L, M]` gaps `(S[i, m] - S[i, l]) / temperature`."""
    return (similarity[:, None, :] - similarity[:, :, None]) / temperature


def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def pnp_loss(embeddings, labels, *, b=2.0, alpha=1.0, anneal=0.01, variant="O",
             anchor_as_positive=False):  # fmt: skip
    """PNPLoss: `rk[i, l] = sum_{n negative} sigmoid(clip((S_in - S_il) / anneal, -50, 50))`,
    the variant's `f(rk)` averaged over the anchor's positives (itself too with
    `anchor_as_positive`, as PML), `1 - mean` for "Dq"; PML's scalar is the mean over the
    anchors that have a positive (0 if none)."""
    pairs = pair_masks(embeddings, labels, None, None, None, COSINE)
    positive, has_positive = pairs.pos.copy(), pairs.pos.any(axis=1)
    if anchor_as_positive:
        positive[has_positive, np.nonzero(has_positive)[0]] = True
    sigmoid = _sigmoid(np.clip(_gaps(pairs.mat, anneal), -50.0, 50.0))
    ranks = np.sum(sigmoid * pairs.neg[:, None, :], axis=-1)
    penalty = {
        "O": ranks,
        "Ds": np.log1p(ranks),
        "Dq": (1.0 + ranks) ** -alpha,
        "Iu": (1.0 + ranks) * np.log1p(ranks),
        "Ib": (b * ranks - np.log1p(b * ranks)) / b**2,
    }[variant]
    means = np.sum(np.where(positive, penalty, 0.0), axis=1) / np.maximum(positive.sum(axis=1), 1)
    natural = np.where(has_positive, 1.0 - means if variant == "Dq" else means, 0.0)
    count = has_positive.sum()
    loss = natural.sum() / count if count else 0.0
    per_anchor = natural * len(labels) / count if count else np.zeros(len(labels))
    return LossResult(loss, {}, per_anchor, natural)


def smooth_ap_loss(embeddings, labels, *, temperature=0.01):
    """SmoothAPLoss, label-based: with `P_i` the rows of anchor `i`'s label (itself included),
    `R(l) = 1 + sum_{m != l} sigmoid((S_im - S_il) / T)` over the batch, `R_P(l)` the same over
    `P_i`, `loss_i = 1 - mean_{l in P_i} R_P(l) / R(l)`; PML's scalar is the mean over every
    anchor."""
    pairs = pair_masks(embeddings, labels, None, None, None, COSINE)
    batch = len(labels)
    same = pairs.pos | np.eye(batch, dtype=bool)
    others = ~np.eye(batch, dtype=bool)[None]  # m != l
    sigmoid = _sigmoid(_gaps(pairs.mat, temperature)) * others
    ranks = 1.0 + sigmoid.sum(axis=-1)
    positive_ranks = 1.0 + np.sum(sigmoid * same[:, None, :], axis=-1)
    precision = np.sum(np.where(same, positive_ranks / ranks, 0.0), axis=1) / same.sum(axis=1)
    natural = 1.0 - precision
    return LossResult(natural.mean(), {}, natural, natural)
