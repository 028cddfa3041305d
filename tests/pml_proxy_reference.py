"""NumPy (float64) references for pytorch-metric-learning 2.9.0's proxy and margin-softmax losses.

Every function takes `embeddings` `[B, D]`, integer `labels` `[B]` in `[0, num_classes)`, the
trainable weight under PML's own name and layout (`proxies` `[C, D]`, `W` `[D, C]`, `fc`
`[D, C*K]` with column `c*K + k` = centre `k` of class `c`) and PML's constructor arguments with
PML's defaults. It returns a `ProxyLossResult`:

- `loss`: the scalar of PML's default reducer (MeanReducer over the rows, except ProxyAnchor:
  DivisorReducer per sub-loss, then the sum of the sub-losses);
- `elements`: PML's unreduced sub-losses (`reducer=DoNothingReducer()`), `{name: {"losses",
  "indices"[, "divisor"]}}`;
- `per_anchor`: `[B]` values whose mean is `loss` (identical to the elements except for
  ProxyAnchor, whose elements are per proxy; see `proxy_anchor_loss`);
- `similarities`: the distance matrix PML computes, `[B, C]` (`[B, C*K]` for SoftTriple);
- `logits`: the `[B, C]` matrix that goes into the cross-entropy (margin and scale applied),
  `None` for ProxyAnchor (it has no softmax).

PML normalises with `torch.nn.functional.normalize`: `x / max(||x||_p, 1e-12)` (the epsilon is
on the norm, not on the squared norm as in `tf.math.l2_normalize`).
"""

import math
from dataclasses import dataclass, field

import numpy as np

NORMALIZE_EPS = 1e-12  # torch.nn.functional.normalize: x / max(||x||_p, eps)

DEFAULT_DISTANCES = {
    "cosine": {"class": "CosineSimilarity", "p": 2, "power": 1},
    "dot": {"class": "DotProductSimilarity", "normalize_embeddings": True, "p": 2, "power": 1},
    "squared_lp": {"class": "LpDistance", "normalize_embeddings": True, "p": 2, "power": 2},
}


@dataclass
class ProxyLossResult:
    loss: float
    elements: dict
    per_anchor: np.ndarray
    similarities: np.ndarray
    logits: np.ndarray | None = None
    extras: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Distances, normalisation, softmax helpers
# --------------------------------------------------------------------------------------------


def normalize(x, axis=1, p=2):
    """`torch.nn.functional.normalize`: divide by `max(||x||_p, 1e-12)` along `axis`."""
    x = np.asarray(x, np.float64)
    norm = np.sum(np.abs(x) ** p, axis=axis, keepdims=True) ** (1.0 / p)
    return x / np.maximum(norm, NORMALIZE_EPS)


def distance_matrix(distance, query, ref):
    """PML's `distance(query, ref)`: `([Q, R] matrix, is_inverted)`.

    `distance` is the JSON form `{"class", "normalize_embeddings", "p", "power"}`.
    CosineSimilarity always normalises; LpDistance and DotProductSimilarity normalise when
    `normalize_embeddings` (default True). `power` is applied to the finished matrix.
    """
    cls = distance["class"]
    p = distance.get("p", 2)
    power = distance.get("power", 1)
    norm = cls == "CosineSimilarity" or distance.get("normalize_embeddings", True)
    q = normalize(query, p=p) if norm else np.asarray(query, np.float64)
    r = normalize(ref, p=p) if norm else np.asarray(ref, np.float64)
    if cls in ("CosineSimilarity", "DotProductSimilarity"):
        mat, inverted = q @ r.T, True
    elif cls == "LpDistance":
        diff = np.abs(q[:, None, :] - r[None, :, :])
        mat, inverted = np.sum(diff**p, axis=-1) ** (1.0 / p), False
    else:
        raise ValueError(f"unsupported distance {cls}")
    if power != 1:
        mat = mat**power
    return mat, inverted


def logsumexp(x, axis=-1, keepdims=False):
    x = np.asarray(x, np.float64)
    top = np.max(x, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    out = np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True)) + top
    return out if keepdims else np.squeeze(out, axis=axis)


def cross_entropy(logits, labels):
    """Per-row `logsumexp(logits_i) - logits_i[y_i]` (torch CrossEntropyLoss, reduction none)."""
    rows = np.arange(len(labels))
    return logsumexp(logits, axis=1) - logits[rows, labels]


def _rows_result(losses, sims, logits, **extras):
    """MeanReducer result for the losses that have one element per row."""
    losses = np.asarray(losses, np.float64)
    elements = {"loss": {"losses": losses, "indices": np.arange(len(losses))}}
    return ProxyLossResult(float(np.mean(losses)), elements, losses, sims, logits, extras)


def _labels(labels):
    return np.asarray(labels, np.int64).reshape(-1)


# --------------------------------------------------------------------------------------------
# ProxyAnchorLoss
# --------------------------------------------------------------------------------------------


def proxy_anchor_loss(
    embeddings,
    labels,
    proxies,
    num_classes,
    embedding_size=None,
    margin=0.1,
    alpha=32,
    distance=None,
):
    """ProxyAnchorLoss. `s = cos(x_i, p_c)` `[B, C]` (CosineSimilarity of the raw `proxies`).

        pos[c] = log(1 + sum_{i: y_i = c} exp(-alpha (s_ic - margin)))   (0 if no such i)
        neg[c] = log(1 + sum_{i: y_i != c} exp(alpha (s_ic + margin)))   (0 if no such i)
        loss = sum_c pos[c] / P + sum_c neg[c] / C

    with `P` the number of classes present in the batch (DivisorReducer; a zero divisor gives
    0). Elements are per proxy (indices `0..C-1`, every proxy listed, absent ones with 0).

    Per-anchor decomposition (uses the whole batch): every proxy term is shared equally among
    the anchors that enter it,

        a_i = B/P * pos[y_i] / n_{y_i} + B/C * sum_{c != y_i} neg[c] / (B - n_c)

    with `n_c` the count of class `c` in the batch; `mean_i a_i = loss` exactly.

    PML writes the exponents as `alpha * distance.margin(s, m)` and
    `alpha * distance.margin(-m, s)` with `margin(x, y) = y - x` for similarities; a
    non-inverted distance (`LpDistance`, `margin(x, y) = x - y`) gets `alpha (d - m)` and
    `alpha (-m - d)`, reproduced here for completeness.
    """
    labels = _labels(labels)
    distance = distance or DEFAULT_DISTANCES["cosine"]
    sims, inverted = distance_matrix(distance, embeddings, proxies)
    batch = len(labels)
    pos_mask = np.zeros((batch, num_classes), bool)
    pos_mask[np.arange(batch), labels] = True

    def pml_margin(x, y):  # BaseDistance.margin
        return y - x if inverted else x - y

    pos_exp = alpha * pml_margin(sims, margin)  # inverted: alpha * (m - s)
    neg_exp = alpha * pml_margin(-margin, sims)  # inverted: alpha * (s + m)

    def masked_log1p_sum_exp(x, mask):  # lmu.logsumexp(add_one=True, dim=0), masked
        x = np.where(mask, x, -np.inf)
        with_zero = np.concatenate([x, np.zeros((1, x.shape[1]))], axis=0)
        return np.where(mask.any(axis=0), logsumexp(with_zero, axis=0), 0.0)

    pos = masked_log1p_sum_exp(pos_exp, pos_mask)
    neg = masked_log1p_sum_exp(neg_exp, ~pos_mask)
    counts = pos_mask.sum(axis=0)
    with_pos = int(np.count_nonzero(counts))
    pos_total = pos.sum() / with_pos if with_pos else 0.0
    neg_total = neg.sum() / num_classes if num_classes else 0.0

    per_anchor = np.zeros(batch)
    if with_pos:
        per_anchor += batch / with_pos * pos[labels] / counts[labels]
    others = batch - counts
    neg_share = np.where(others > 0, neg / np.maximum(others, 1), 0.0)
    per_anchor += batch / num_classes * ((~pos_mask) @ neg_share)

    indices = np.arange(num_classes)
    elements = {
        "pos_loss": {"losses": pos, "indices": indices, "divisor": with_pos},
        "neg_loss": {"losses": neg, "indices": indices, "divisor": num_classes},
    }
    return ProxyLossResult(float(pos_total + neg_total), elements, per_anchor, sims)


# --------------------------------------------------------------------------------------------
# ProxyNCALoss
# --------------------------------------------------------------------------------------------


def proxy_nca_loss(
    embeddings, labels, proxies, num_classes, embedding_size=None, softmax_scale=1, distance=None
):
    """ProxyNCALoss (NCALoss against one proxy per class).

        z_ic = -softmax_scale * d(x_i, p_c)        (d: LpDistance(power=2) on normalised x and p,
                                                    i.e. squared Euclidean; +s for similarities)
        loss_i = -log softmax(z_i)[y_i] = logsumexp_c z_ic - z_iy_i
        loss = mean_i loss_i

    PML computes `p = softmax(z)[y]` and drops rows with `p == 0` (underflow: in float32 when
    the true class trails the best one by more than ~103) from the elements and the mean; this
    oracle applies that rule in float64 to the elements and keeps `-log_softmax` for every row
    in `per_anchor`. NCALoss's batch-of-one shortcut is overridden: a single row works.
    """
    labels = _labels(labels)
    distance = distance or DEFAULT_DISTANCES["squared_lp"]
    sims, inverted = distance_matrix(distance, embeddings, proxies)
    logits = softmax_scale * (sims if inverted else -sims)
    rows = np.arange(len(labels))
    log_prob = logits[rows, labels] - logsumexp(logits, axis=1)
    per_anchor = -log_prob
    kept = np.exp(log_prob) != 0
    losses = per_anchor[kept]
    elements = {"loss": {"losses": losses, "indices": rows[kept]}}
    loss = float(np.mean(losses)) if losses.size else math.nan  # torch.mean of nothing
    return ProxyLossResult(loss, elements, per_anchor, sims, logits)


# --------------------------------------------------------------------------------------------
# NormalizedSoftmaxLoss
# --------------------------------------------------------------------------------------------


def normalized_softmax_loss(
    embeddings, labels, W, num_classes, embedding_size=None, temperature=0.05, distance=None
):
    """NormalizedSoftmaxLoss: `loss_i = CE(x_i . w_c / temperature)`, mean over rows.

    `w_c` = column `c` of `W` `[D, C]`, always L2-normalised (`distance.normalize` is called
    whatever `normalize_embeddings` says); `x_i` is normalised only when the distance's
    `normalize_embeddings` is True (default DotProductSimilarity(normalize_embeddings=True), so
    by default the logits are cosines / temperature). A non-inverted distance negates them.
    """
    labels = _labels(labels)
    distance = distance or DEFAULT_DISTANCES["dot"]
    w = normalize(np.asarray(W, np.float64), axis=0, p=distance.get("p", 2))
    sims, inverted = distance_matrix(distance, embeddings, w.T)
    logits = sims / temperature
    if not inverted:
        logits = -logits
    return _rows_result(cross_entropy(logits, labels), sims, logits)


# --------------------------------------------------------------------------------------------
# The LargeMarginSoftmax family: ArcFace, CosFace, SphereFace, LargeMarginSoftmax
# --------------------------------------------------------------------------------------------


def _check_cosine(distance):
    if distance is not None and distance["class"] != "CosineSimilarity":
        raise ValueError("PML asserts CosineSimilarity for this loss")


def _margin_logits(embeddings, labels, W, modify, scale_fn):
    """cos `[B, C]` -> true-class entry replaced by `modify(cos_true)` -> `scale_fn(logits)`.

    PML writes `cos + onehot * (modified - cos)`; in float64 that is the replacement.
    """
    labels = _labels(labels)
    cos, _ = distance_matrix(DEFAULT_DISTANCES["cosine"], embeddings, np.asarray(W).T)
    rows = np.arange(len(labels))
    logits = cos.copy()
    logits[rows, labels] = modify(cos[rows, labels])
    logits = scale_fn(logits)
    return _rows_result(cross_entropy(logits, labels), cos, logits)


def arcface_target(cos, margin_degrees):
    """ArcFace true-class cosine. `m = radians(margin)`, `theta = acos(clip(cos, -1, 1))`:

    cos(theta + m)               if theta <= pi - m
    cos(theta) - m * sin(m)      otherwise (keeps the logit decreasing in theta)
    """
    m = np.radians(margin_degrees)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    return np.where(theta <= np.pi - m, np.cos(theta + m), np.cos(theta) - m * np.sin(m))


def multiple_angle_cosine(cos, margin):
    """`cos(m theta)` as the polynomial in `c = cos(theta)` (Chebyshev `T_m(c)`):

        sum_{n=0}^{m // 2} (-1)^n binom(m, 2n) c^(m - 2n) (1 - c^2)^n

    evaluated on the unclamped cosine, as PML does.
    """
    m = int(margin)
    c = np.asarray(cos, np.float64)
    return sum(
        (-1) ** n * math.comb(m, 2 * n) * c ** (m - 2 * n) * (1 - c**2) ** n
        for n in range(m // 2 + 1)
    )


def large_margin_target(cos, margin):
    """L-Softmax's `psi(theta) = (-1)^k cos(m theta) - 2k`, `k = floor(theta / (pi / m))`,
    `theta = acos(clip(cos, -1, 1))`; `k` takes no gradient in PML."""
    m = int(margin)
    theta = np.arccos(np.clip(cos, -1.0, 1.0))
    k = np.floor(theta / (math.pi / m))
    sign = 1.0 - 2.0 * np.mod(k, 2.0)
    return sign * multiple_angle_cosine(cos, m) - 2.0 * k


def arcface_loss(
    embeddings, labels, W, num_classes, embedding_size=None, margin=28.6, scale=64, distance=None
):
    """ArcFaceLoss: `loss_i = CE(scale * [cos_ic, true class -> arcface_target(cos_iy)])`.

    cos = cosine of `x_i` and column `c` of `W` `[D, C]`; `margin` in degrees.
    """
    _check_cosine(distance)
    return _margin_logits(
        embeddings,
        labels,
        W,
        lambda c: arcface_target(c, margin),
        lambda logits: logits * scale,
    )


def cosface_loss(
    embeddings, labels, W, num_classes, embedding_size=None, margin=0.35, scale=64, distance=None
):
    """CosFaceLoss: `loss_i = CE(scale * [cos_ic, true class -> cos_iy - margin])`."""
    _check_cosine(distance)
    return _margin_logits(embeddings, labels, W, lambda c: c - margin, lambda z: z * scale)


def sphereface_loss(
    embeddings, labels, W, num_classes, embedding_size=None, margin=4, scale=1, distance=None
):
    """SphereFaceLoss: `loss_i = CE(scale * |x_i| * [cos_ic, true class -> psi(theta_iy)])`.

    `psi` = `large_margin_target` with the integer `margin`; `|x_i|` is the raw (unnormalised)
    embedding norm; `W`'s norms do not enter.
    """
    _check_cosine(distance)
    norms = np.linalg.norm(np.asarray(embeddings, np.float64), axis=1)
    return _margin_logits(
        embeddings,
        labels,
        W,
        lambda c: large_margin_target(c, margin),
        lambda z: z * norms[:, None] * scale,
    )


def large_margin_softmax_loss(
    embeddings, labels, W, num_classes, embedding_size=None, margin=4, scale=1, distance=None
):
    """LargeMarginSoftmaxLoss: `CE(scale * |x_i| |w_c| * [cos_ic, true class -> psi])`.

    Off the true class the logit is the plain product `x_i . w_c` (times `scale`); `psi` as in
    `large_margin_target`, `margin` an int.
    """
    _check_cosine(distance)
    x_norms = np.linalg.norm(np.asarray(embeddings, np.float64), axis=1)
    w_norms = np.linalg.norm(np.asarray(W, np.float64), axis=0)
    return _margin_logits(
        embeddings,
        labels,
        W,
        lambda c: large_margin_target(c, margin),
        lambda z: z * x_norms[:, None] * w_norms[None, :] * scale,
    )


# --------------------------------------------------------------------------------------------
# SoftTripleLoss
# --------------------------------------------------------------------------------------------


def soft_triple_loss(
    embeddings,
    labels,
    fc,
    num_classes,
    embedding_size=None,
    centers_per_class=10,
    la=20,
    gamma=0.1,
    margin=0.01,
    distance=None,
):
    """SoftTripleLoss (no centre regulariser).

    s_ick = cos(x_i, fc[:, c*K + k])                    [B, C*K]
    S_ic  = sum_k softmax_k(s_ick / gamma) * s_ick      (PML stores 1/gamma and multiplies)
    loss_i = CE(la * (S_i - margin * onehot(y_i)))
    """
    labels = _labels(labels)
    distance = distance or DEFAULT_DISTANCES["cosine"]
    sims, inverted = distance_matrix(distance, embeddings, np.asarray(fc, np.float64).T)
    if not inverted:
        raise ValueError("PML asserts an inverted distance (a similarity) for SoftTripleLoss")
    centres = sims.reshape(len(labels), num_classes, centers_per_class)
    z = centres / gamma
    weights = np.exp(z - logsumexp(z, axis=2, keepdims=True))
    class_sims = np.sum(weights * centres, axis=2)
    shifted = class_sims.copy()
    shifted[np.arange(len(labels)), labels] -= margin
    logits = la * shifted
    return _rows_result(cross_entropy(logits, labels), sims, logits, class_sims=class_sims)


LOSSES = {
    "ProxyAnchorLoss": (proxy_anchor_loss, "proxies"),
    "ProxyNCALoss": (proxy_nca_loss, "proxies"),
    "NormalizedSoftmaxLoss": (normalized_softmax_loss, "W"),
    "ArcFaceLoss": (arcface_loss, "W"),
    "CosFaceLoss": (cosface_loss, "W"),
    "SphereFaceLoss": (sphereface_loss, "W"),
    "LargeMarginSoftmaxLoss": (large_margin_softmax_loss, "W"),
    "SoftTripleLoss": (soft_triple_loss, "fc"),
}


def pml_proxy_reference(case):
    """Runs the oracle named by `case["call"]` on a pml_proxy.json case."""
    fn, weight_name = LOSSES[case["call"]]
    return fn(case["embeddings"], case["labels"], case[weight_name], **case["kwargs"])
