"""NumPy (float64) oracle of pytorch-metric-learning 2.9.0's pair and triplet losses.

It reproduces `losses.<Name>(**kwargs)(embeddings, labels[, indices_tuple])` for ContrastiveLoss,
TripletMarginLoss, MultiSimilarityLoss, CircleLoss, LiftedStructureLoss,
GeneralizedLiftedStructureLoss, MarginLoss, NTXentLoss, SupConLoss, FastAPLoss,
SignalToNoiseRatioContrastiveLoss, TupletMarginLoss and InstanceLoss, plus TripletMarginMiner.
It is the blueprint of the keras.ops port, so every loss is written over dense masked matrices
(no index lists) and over a query/key split:

* `query_emb [B, D]`, `query_labels [B]`: the rows that get a loss (the anchors);
* `key_emb [K, D]`, `key_labels [K]`: what they are compared with (the batch itself, or a
  cross-batch memory);
* `self_index [B]`: the key column that is query `i` itself (`-1`: none). Left out, the keys are
  the queries and `self_index = arange(B)`.

From them come `D = distance(query, key)` `[B, K]` and the masks

    pos[i, j] = (query_labels[i] == key_labels[j]) & (j != self_index[i])
    neg[i, j] =  query_labels[i] != key_labels[j]

Triplet losses use `valid[i, j, k] = pos[i, j] & neg[i, k]` `[B, K, K]`. PML's element lists are
read off these masks with `np.nonzero`, whose row-major order is the order of `torch.where` that
PML uses (pairs), and the lexicographic `(a, p, n)` order of its all-triplets list.

Conventions shared by all losses:

* Distances (`Distance`): L2-normalise first unless `normalize_embeddings=False` (CosineSimilarity
  always does), `x / max(|x|, 1e-12)`. `margin(x, y) = x - y` for a distance, `y - x` for a
  similarity ("inverted"), so a margin is always "how much x exceeds y the wrong way".
* Reducers: MeanReducer (mean over elements), AvgNonZeroReducer (mean over the elements `> 0`,
  0 if none), DivisorReducer (sum / divisor); several sub-losses are reduced apart and added.
  A sub-loss that PML returns as `zero_loss` (no valid pair/triplet) is `None` here and adds 0.
* GenericPairLoss (every loss here that works on pairs: Contrastive, SNR, MultiSimilarity,
  Circle, Lifted, GeneralizedLifted, NTXent, SupCon, Tuplet) returns `zero_loss` for every
  sub-loss when there is at most one positive pair AND at most one negative pair (PML's
  `all(len(x) <= 1)` test). In a batch pairs come in symmetric twos, so this only matters with a
  key set (cross-batch memory).

Every loss function returns a `LossResult`:

* `loss`: PML's default-reducer scalar;
* `elements`: `{sub_loss: SubLoss | None}`, PML's unreduced dict (`reducer=DoNothingReducer()`);
* `per_anchor` `[B]`: a decomposition of the scalar, `mean(per_anchor) == loss`: anchor `i`
  gets `B * (its share of the reducer's sum) / (the reducer's divisor)`;
* `natural` `[B]`: the loss's own per-anchor value. For losses whose PML element is one value
  per anchor (MultiSimilarity, Circle, GeneralizedLifted, SupCon, FastAP, Instance) it is that
  value (0 for rows PML leaves out). For pair and triplet losses PML has no per-anchor value;
  `natural` is then the mean of the anchor's own pair/triplet losses (0 if it has none), which
  is NOT what PML's reducer averages;
* `dense`: the dense matrices the loss is built from (named in each docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# PML's `c_f.small_val(float32)`: NTXent adds it inside its log, SupCon to its divisor.
F32_TINY = float(np.finfo(np.float32).tiny)


# ---------------------------------------------------------------------------------------------
# Distances
# ---------------------------------------------------------------------------------------------


def normalize(x, p=2):
    """`torch.nn.functional.normalize`: `x / max(|x|_p, 1e-12)` row by row."""
    x = np.asarray(x, np.float64)
    norms = np.sum(np.abs(x) ** p, axis=1, keepdims=True) ** (1.0 / p)
    return x / np.maximum(norms, 1e-12)


@dataclass(frozen=True)
class Distance:
    """A PML distance: `kind` is "lp" (LpDistance), "cosine" (CosineSimilarity), "dot"
    (DotProductSimilarity) or "snr" (SNRDistance); `power` raises the whole matrix.

    * lp: `|q_i - k_j|_p` (PML uses `torch.cdist`);
    * cosine / dot: `q_i . k_j` (cosine always normalises), a similarity ("inverted");
    * snr: `var(q_i - k_j) / var(q_i)` with the unbiased variance (ddof 1), on the normalised
      vectors by default. It is not symmetric.
    """

    kind: str = "lp"
    normalize_embeddings: bool = True
    p: float = 2
    power: float = 1

    @classmethod
    def from_spec(cls, spec):
        """From a golden-file dict `{"class", "normalize_embeddings", "p", "power"}`."""
        kind = {
            "LpDistance": "lp",
            "CosineSimilarity": "cosine",
            "DotProductSimilarity": "dot",
            "SNRDistance": "snr",
        }[spec["class"]]
        return cls(
            kind,
            True if kind == "cosine" else bool(spec.get("normalize_embeddings", True)),
            spec.get("p", 2),
            spec.get("power", 1),
        )

    @property
    def inverted(self):
        return self.kind in ("cosine", "dot")

    def prepare(self, x):
        x = np.asarray(x, np.float64)
        return normalize(x, self.p) if self.normalize_embeddings else x

    def matrix(self, query, key):
        q, k = self.prepare(query), self.prepare(key)
        if self.kind == "lp":
            diff = np.abs(q[:, None, :] - k[None, :, :])
            mat = np.sum(diff**self.p, axis=-1) ** (1.0 / self.p)
        elif self.kind in ("cosine", "dot"):
            mat = q @ k.T
        elif self.kind == "snr":
            mat = np.var(q[:, None, :] - k[None, :, :], axis=-1, ddof=1)
            mat = mat / np.var(q, axis=1, ddof=1)[:, None]
        else:
            raise ValueError(self.kind)
        return mat**self.power if self.power != 1 else mat

    def margin(self, x, y):
        """How far `x` is beyond `y` the wrong way: `x - y` (distance), `y - x` (similarity)."""
        return y - x if self.inverted else x - y

    def smallest(self, a, b):
        """The closer of two: `min` of distances, `max` of similarities."""
        return np.maximum(a, b) if self.inverted else np.minimum(a, b)


LP = Distance("lp")
COSINE = Distance("cosine")


def _distance(distance, default):
    if distance is None:
        return default
    if isinstance(distance, dict):
        return Distance.from_spec(distance)
    return distance


# ---------------------------------------------------------------------------------------------
# Results
# ---------------------------------------------------------------------------------------------


@dataclass
class SubLoss:
    """One entry of PML's unreduced loss dict.

    `kind`: "pos_pair" / "neg_pair" (`indices = (rows, key columns)`), "triplet"
    (`(a, p, n)`), "anchor" (`(rows,)`) or "already_reduced" (`losses` is a scalar).
    """

    losses: np.ndarray
    indices: tuple
    kind: str
    divisor: float | None = None

    @property
    def count(self):
        return 0 if self.kind == "already_reduced" else len(self.losses)


@dataclass
class LossResult:
    loss: float
    elements: dict
    per_anchor: np.ndarray
    natural: np.ndarray
    dense: dict = field(default_factory=dict)


@dataclass
class Pairs:
    """The dense geometry of a query/key comparison."""

    mat: np.ndarray  # [B, K] distance or similarity
    pos: np.ndarray  # [B, K] bool, same label, own column removed
    neg: np.ndarray  # [B, K] bool, different label
    distance: Distance
    key_emb: np.ndarray
    key_labels: np.ndarray

    @property
    def batch(self):
        return self.mat.shape[0]

    @property
    def pml_skips(self):
        """GenericPairLoss's `all(len(x) <= 1 for x in indices_tuple)`: zero for every sub-loss."""
        return self.pos.sum() <= 1 and self.neg.sum() <= 1

    def key_pairs(self):
        """The same geometry among the keys themselves (`[K, K]`, own column removed): the
        positive-negative distance of TripletMarginLoss(swap=True) and the second end of a
        LiftedStructureLoss pair. In a batch it is the batch's own geometry."""
        key_self = np.arange(len(self.key_labels))
        return pair_masks(self.key_emb, self.key_labels, None, None, key_self, self.distance)


def pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, distance):
    """`Pairs(D, pos, neg)` for queries against keys (keys = queries when `key_emb` is None)."""
    query_emb = np.asarray(query_emb, np.float64)
    query_labels = np.asarray(query_labels).reshape(-1)
    if key_emb is None:
        key_emb, key_labels = query_emb, query_labels
        if self_index is None:
            self_index = np.arange(len(query_labels))
    key_emb = np.asarray(key_emb, np.float64)
    key_labels = np.asarray(key_labels).reshape(-1)
    if self_index is None:
        self_index = np.full(len(query_labels), -1)
    self_index = np.asarray(self_index).reshape(-1)
    same = query_labels[:, None] == key_labels[None, :]
    own = np.arange(len(key_labels))[None, :] == self_index[:, None]
    return Pairs(
        mat=distance.matrix(query_emb, key_emb),
        pos=same & ~own,
        neg=~same,
        distance=distance,
        key_emb=key_emb,
        key_labels=key_labels,
    )


def _elements(values, mask, kind):
    """PML's element list of a dense `values` tensor: `np.nonzero(mask)` order (row-major)."""
    idx = np.nonzero(mask)
    return SubLoss(np.asarray(values)[idx], tuple(idx), kind)


def _anchor_elements(values, rows):
    rows = np.asarray(rows, dtype=bool)
    return SubLoss(np.asarray(values)[rows], (np.nonzero(rows)[0],), "anchor")


def _row_sums(values, mask):
    """Per-anchor sum of the masked elements (pairs `[B, K]` or triplets `[B, K, K]`)."""
    masked = np.where(mask, values, 0.0)
    return masked.reshape(masked.shape[0], -1).sum(axis=1)


def _row_means(values, mask):
    counts = np.asarray(mask).reshape(mask.shape[0], -1).sum(axis=1)
    return np.where(counts > 0, _row_sums(values, mask) / np.maximum(counts, 1), 0.0)


def mean_reduce(values, mask):
    """MeanReducer over the masked elements: `(scalar, per_anchor)`, `per_anchor` =
    `B * row_sum / count` so that its mean is the scalar. Empty: 0."""
    batch, count = mask.shape[0], int(np.sum(mask))
    if count == 0:
        return 0.0, np.zeros(batch)
    rows = _row_sums(values, mask)
    return float(rows.sum() / count), batch * rows / count


def avg_nonzero_reduce(values, mask):
    """AvgNonZeroReducer over the masked elements: mean over those `> 0` (0 if none);
    `per_anchor = B * row_sum / count_nonzero`."""
    batch = mask.shape[0]
    count = int(np.sum(mask & (values > 0)))
    if count == 0:
        return 0.0, np.zeros(batch)
    rows = _row_sums(values, mask)
    return float(rows.sum() / count), batch * rows / count


def divisor_reduce(values, mask, divisor):
    """DivisorReducer: `sum / divisor` (0 when the divisor is 0)."""
    batch = mask.shape[0]
    if divisor == 0:
        return 0.0, np.zeros(batch)
    rows = _row_sums(values, mask)
    return float(rows.sum() / divisor), batch * rows / divisor


def _zero(batch, names):
    """PML's `zero_losses()`: every sub-loss is the constant 0."""
    zeros = np.zeros(batch)
    return LossResult(0.0, dict.fromkeys(names), zeros, zeros.copy())


def _masked_lse(x, mask, axis=-1):
    """`log(sum(exp(x) over mask))`, `-inf` where the mask is empty."""
    shifted = np.where(mask, x, -np.inf)
    top = np.max(shifted, axis=axis, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        out = np.log(np.sum(np.where(mask, np.exp(x - top), 0.0), axis=axis, keepdims=True))
    return np.squeeze(out + top, axis=axis)


def pml_logsumexp(x, mask, add_one):
    """`lmu.logsumexp(x, keep_mask, add_one)` over rows: log-sum-exp of the kept entries (with
    an extra 0 logit when `add_one`: `log(1 + sum exp)`); rows with nothing kept give 0."""
    lse = _masked_lse(x, mask)
    if add_one:
        lse = np.logaddexp(lse, 0.0)
    return np.where(np.any(mask, axis=-1), lse, 0.0)


def relu(x):
    return np.maximum(x, 0.0)


def softplus(x):
    return np.logaddexp(0.0, x)


# ---------------------------------------------------------------------------------------------
# Pair losses
# ---------------------------------------------------------------------------------------------


def contrastive_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    pos_margin=0.0,
    neg_margin=1.0,
    distance=None,
):
    """ContrastiveLoss (default LpDistance, normalised).

        pos_loss[i, j] = relu(margin(D_ij, pos_margin))   over pos  (distance: D - m_pos)
        neg_loss[i, j] = relu(margin(neg_margin, D_ij))   over neg  (distance: m_neg - D)
        loss = AvgNonZero(pos_loss) + AvgNonZero(neg_loss)

    Each sub-loss is averaged over its own nonzero pairs and the two are added. Dense:
    `dense["pos_loss"]`, `dense["neg_loss"]` `[B, K]` (zero outside their mask). A kind of pair
    that does not occur is PML's `zero_loss` (`None`). `per_anchor[i] = B * sum_j pos_loss_ij /
    nnz_pos + B * sum_j neg_loss_ij / nnz_neg`; `natural` = mean over the anchor's pairs of both
    kinds.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, LP)
    )
    return _contrastive(pairs, pos_margin, neg_margin)


def _contrastive(pairs, pos_margin, neg_margin):
    names = ("pos_loss", "neg_loss")
    if pairs.pml_skips:
        return _zero(pairs.batch, names)
    dist = pairs.distance
    pos_l = np.where(pairs.pos, relu(dist.margin(pairs.mat, pos_margin)), 0.0)
    neg_l = np.where(pairs.neg, relu(dist.margin(neg_margin, pairs.mat)), 0.0)
    pos_scalar, pos_anchor = avg_nonzero_reduce(pos_l, pairs.pos)
    neg_scalar, neg_anchor = avg_nonzero_reduce(neg_l, pairs.neg)
    elements = {
        "pos_loss": _elements(pos_l, pairs.pos, "pos_pair") if pairs.pos.any() else None,
        "neg_loss": _elements(neg_l, pairs.neg, "neg_pair") if pairs.neg.any() else None,
    }
    both = pairs.pos | pairs.neg
    return LossResult(
        pos_scalar + neg_scalar,
        elements,
        pos_anchor + neg_anchor,
        _row_means(pos_l + neg_l, both),
        {"pos_loss": pos_l, "neg_loss": neg_l, "mat": pairs.mat},
    )


def signal_to_noise_ratio_contrastive_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    pos_margin=0.0,
    neg_margin=1.0,
    distance=None,
):
    """SignalToNoiseRatioContrastiveLoss: ContrastiveLoss on the SNR distance
    `D_ij = var(q_i - k_j) / var(q_i)` (unbiased variances, normalised vectors by default):

        loss = AvgNonZero(relu(D_ij - pos_margin) over pos) + AvgNonZero(relu(neg_margin - D_ij)
               over neg)

    Same elements, reducer and decompositions as `contrastive_loss`.
    """
    distance = _distance(distance, Distance("snr"))
    if distance.kind != "snr":
        raise ValueError("SignalToNoiseRatioContrastiveLoss needs SNRDistance")
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, distance)
    return _contrastive(pairs, pos_margin, neg_margin)


def multi_similarity_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    alpha=2.0,
    beta=50.0,
    base=0.5,
    distance=None,
):
    """MultiSimilarityLoss (default CosineSimilarity), no pair mining:

        l_i = 1/alpha log(1 + sum_{j in pos_i} exp(alpha margin(S_ij, base)))
            + 1/beta  log(1 + sum_{j in neg_i} exp(beta  margin(base, S_ij)))

    (cosine: `exp(-alpha (S - base))` and `exp(beta (S - base))`). A row without positives
    (negatives) gets 0 for that term. One element per anchor, MeanReducer, so `per_anchor ==
    natural == l`. Dense: `dense["pos_logits"]`, `dense["neg_logits"]` `[B, K]`.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, COSINE)
    )
    if pairs.pml_skips:
        return _zero(pairs.batch, ("loss",))
    dist = pairs.distance
    pos_logits = alpha * dist.margin(pairs.mat, base)
    neg_logits = beta * dist.margin(base, pairs.mat)
    losses = pml_logsumexp(pos_logits, pairs.pos, True) / alpha
    losses = losses + pml_logsumexp(neg_logits, pairs.neg, True) / beta
    every = np.ones(pairs.batch, bool)
    return LossResult(
        float(np.mean(losses)),
        {"loss": _anchor_elements(losses, every)},
        losses,
        losses.copy(),
        {"pos_logits": pos_logits, "neg_logits": neg_logits},
    )


def circle_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    m=0.4,
    gamma=80.0,
    distance=None,
):
    """CircleLoss (CosineSimilarity only), pair-wise labels:

        logit_p[i, j] = -gamma * relu(1 + m - S_ij) * (S_ij - (1 - m))   over pos
        logit_n[i, j] =  gamma * relu(S_ij + m)     * (S_ij - m)         over neg
        l_i = softplus(lse_pos(logit_p_i) + lse_neg(logit_n_i))  = log(1 + sum_p e^p sum_n e^n)

    and `l_i = 0` for an anchor without a positive or without a negative. One element per anchor,
    AvgNonZeroReducer: the mean over the anchors with `l_i > 0`. `natural = l`; `per_anchor =
    B * l / nnz`. (The relu weights are detached in PML: they only matter for gradients.)
    """
    distance = _distance(distance, COSINE)
    if distance.kind != "cosine":
        raise ValueError("CircleLoss needs CosineSimilarity")
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, distance)
    if pairs.pml_skips:
        return _zero(pairs.batch, ("loss",))
    s = pairs.mat
    logit_p = -gamma * relu(1.0 + m - s) * (s - (1.0 - m))
    logit_n = gamma * relu(s + m) * (s - m)
    lse_p = pml_logsumexp(logit_p, pairs.pos, False)
    lse_n = pml_logsumexp(logit_n, pairs.neg, False)
    valid = pairs.pos.any(axis=1) & pairs.neg.any(axis=1)
    losses = np.where(valid, softplus(lse_p + lse_n), 0.0)
    every = np.ones(pairs.batch, bool)
    scalar, per_anchor = avg_nonzero_reduce(losses[:, None], every[:, None])
    return LossResult(
        scalar,
        {"loss": _anchor_elements(losses, every)},
        per_anchor,
        losses,
        {"logit_p": logit_p, "logit_n": logit_n},
    )


def lifted_structure_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    neg_margin=1.0,
    pos_margin=0.0,
    distance=None,
):
    """LiftedStructureLoss (default LpDistance), one term per ordered positive pair (i, j):

        N_i     = log sum_{k in neg_i} exp(margin(neg_margin, D_ik))     (distance: m_neg - D)
        l_ij    = relu(logaddexp(N_i, N_j) + margin(D_ij, pos_margin))^2 / 2

    i.e. the negatives of both ends share one log-sum-exp (a term is 0 if neither end has a
    negative). MeanReducer over the positive pairs. Zero loss if there is no positive or no
    negative pair. `N_j` is the key's own negatives among the keys (in a batch: row j of the
    batch); with a reference set PML instead takes the negatives of *query row number j*.
    Dense: `dense["pair_loss"]` `[B, K]`. `per_anchor = B * sum_j l_ij / n_pos_pairs`.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, LP)
    )
    if pairs.pml_skips or not pairs.pos.any() or not pairs.neg.any():
        return _zero(pairs.batch, ("loss",))
    dist = pairs.distance
    keys = pairs.key_pairs()
    n_query = _masked_lse(dist.margin(neg_margin, pairs.mat), pairs.neg)  # [B]
    n_key = _masked_lse(dist.margin(neg_margin, keys.mat), keys.neg)  # [K]
    joint = np.logaddexp(n_query[:, None], n_key[None, :])
    joint = np.where(np.isfinite(joint), joint, 0.0)
    pair_loss = relu(joint + dist.margin(pairs.mat, pos_margin)) ** 2 / 2
    pair_loss = np.where(pairs.pos, pair_loss, 0.0)
    scalar, per_anchor = mean_reduce(pair_loss, pairs.pos)
    return LossResult(
        scalar,
        {"loss": _elements(pair_loss, pairs.pos, "pos_pair")},
        per_anchor,
        _row_means(pair_loss, pairs.pos),
        {"pair_loss": pair_loss},
    )


def generalized_lifted_structure_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    neg_margin=1.0,
    pos_margin=0.0,
    distance=None,
):
    """GeneralizedLiftedStructureLoss (default LpDistance), one term per anchor:

        l_i = relu(lse_{j in pos_i} margin(D_ij, pos_margin) + lse_{k in neg_i} margin(neg_margin,
              D_ik))

    with an empty log-sum-exp counted as 0 (so an anchor without positives still pays for its
    negatives). MeanReducer over all anchors: `per_anchor == natural == l`.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, LP)
    )
    if pairs.pml_skips:
        return _zero(pairs.batch, ("loss",))
    dist = pairs.distance
    pos_term = pml_logsumexp(dist.margin(pairs.mat, pos_margin), pairs.pos, False)
    neg_term = pml_logsumexp(dist.margin(neg_margin, pairs.mat), pairs.neg, False)
    losses = relu(pos_term + neg_term)
    every = np.ones(pairs.batch, bool)
    return LossResult(
        float(np.mean(losses)),
        {"loss": _anchor_elements(losses, every)},
        losses,
        losses.copy(),
        {"pos_term": pos_term, "neg_term": neg_term},
    )


def ntxent_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    temperature=0.07,
    distance=None,
):
    """NTXentLoss (default CosineSimilarity), one term per positive pair (i, j):

        x_ij = S_ij / T   (a distance is negated: -D_ij / T)
        l_ij = -log(exp(x_ij) / (exp(x_ij) + sum_{k in neg_i} exp(x_ik)) + tiny)

    The denominator holds that one positive and the anchor's negatives only (its other
    positives are left out). `tiny` = float32's smallest normal (1.2e-38), so PML caps a term at
    `-log(tiny)` = 87.3; a positive pair whose anchor has no negative gets 0 but still counts.
    MeanReducer over the positive pairs. Zero loss if there is no positive or no negative pair.
    SimCLR: `embeddings = concat(view1, view2)`, `labels = concat(arange(N), arange(N))`.
    Dense: `dense["pair_loss"]` `[B, K]`, `per_anchor = B * sum_j l_ij / n_pos_pairs`,
    `natural` = the anchor's mean over its positives (SimCLR: its one positive).
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, COSINE)
    )
    if pairs.pml_skips or not pairs.pos.any() or not pairs.neg.any():
        return _zero(pairs.batch, ("loss",))
    x = pairs.mat if pairs.distance.inverted else -pairs.mat
    x = x / temperature
    negatives = _masked_lse(x, pairs.neg)  # [B], -inf without negatives
    log_ratio = x - np.logaddexp(x, negatives[:, None])
    pair_loss = np.where(pairs.pos, -np.log(np.exp(log_ratio) + F32_TINY), 0.0)
    scalar, per_anchor = mean_reduce(pair_loss, pairs.pos)
    return LossResult(
        scalar,
        {"loss": _elements(pair_loss, pairs.pos, "pos_pair")},
        per_anchor,
        _row_means(pair_loss, pairs.pos),
        {"pair_loss": pair_loss, "logits": x},
    )


def supcon_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    temperature=0.1,
    distance=None,
):
    """SupConLoss (default CosineSimilarity), one term per anchor:

        x_ij = S_ij / T   (a distance is negated)
        l_i  = -1/|pos_i| sum_{j in pos_i} (x_ij - lse_{k in pos_i u neg_i} x_ik)

    The denominator holds every non-self key. An anchor without positives gets 0.
    AvgNonZeroReducer over the anchors (so those rows, and a row whose single positive is its
    only non-self key, are left out of the mean). Zero loss if the batch has no positive pair or
    no negative pair at all. `natural = l`, `per_anchor = B * l / nnz`.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, COSINE)
    )
    if pairs.pml_skips or not pairs.pos.any() or not pairs.neg.any():
        return _zero(pairs.batch, ("loss",))
    x = pairs.mat if pairs.distance.inverted else -pairs.mat
    x = x / temperature
    log_prob = x - pml_logsumexp(x, pairs.pos | pairs.neg, False)[:, None]
    n_pos = pairs.pos.sum(axis=1)
    losses = -_row_sums(log_prob, pairs.pos) / np.maximum(n_pos, F32_TINY)
    every = np.ones(pairs.batch, bool)
    scalar, per_anchor = avg_nonzero_reduce(losses[:, None], every[:, None])
    return LossResult(
        scalar,
        {"loss": _anchor_elements(losses, every)},
        per_anchor,
        losses,
        {"log_prob": log_prob},
    )


def intra_pair_variance_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    pos_eps=0.01,
    neg_eps=0.01,
    distance=None,
):
    """IntraPairVarianceLoss (default CosineSimilarity), with `mu_pos`, `mu_neg` the means of
    the positive and negative pairs' similarities:

        pos_loss[i, j] = relu((1 - pos_eps) mu_pos - S_ij)^2   (distance: D - (1 + eps) mu)
        neg_loss[i, j] = relu(S_ij - (1 + neg_eps) mu_neg)^2   (distance: (1 - eps) mu - D)
        loss = Mean(pos_loss) + Mean(neg_loss)

    `per_anchor` = the MeanReducer shares of each kind, added; `natural` = the anchor's mean of
    its positive terms plus its mean of its negative terms.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, COSINE)
    )
    names = ("pos_loss", "neg_loss")
    if pairs.pml_skips:
        return _zero(pairs.batch, names)
    similarity = pairs.distance.inverted
    results = []
    for mask, eps, pulled_up in ((pairs.pos, pos_eps, similarity),
                                 (pairs.neg, neg_eps, not similarity)):  # fmt: skip
        mean = pairs.mat[mask].mean() if mask.any() else 0.0
        gap = (1 - eps) * mean - pairs.mat if pulled_up else pairs.mat - (1 + eps) * mean
        terms = np.where(mask, relu(gap) ** 2, 0.0)
        results.append((terms, *mean_reduce(terms, mask), _row_means(terms, mask)))
    (pos_l, pos_scalar, pos_anchor, pos_mean), (neg_l, neg_scalar, neg_anchor, neg_mean) = results
    elements = {
        "pos_loss": _elements(pos_l, pairs.pos, "pos_pair") if pairs.pos.any() else None,
        "neg_loss": _elements(neg_l, pairs.neg, "neg_pair") if pairs.neg.any() else None,
    }
    return LossResult(
        pos_scalar + neg_scalar, elements, pos_anchor + neg_anchor, pos_mean + neg_mean
    )


def nca_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    softmax_scale=1.0,
    distance=None,
):
    """NCALoss (default LpDistance(power=2), normalised): with `x = s S` (a distance negated),
    `loss_i = -log(sum_{j in P_i} exp(x_ij) / sum_{k in P_i or N_i} exp(x_ik))` for the rows
    with a positive; `per_anchor` = their MeanReducer shares, `natural` = `loss_i` (0 without a
    positive). No row with a positive: 0 (PML: NaN).
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index,
        _distance(distance, Distance("lp", True, 2, 2)),
    )  # fmt: skip
    logits = softmax_scale * (pairs.mat if pairs.distance.inverted else -pairs.mat)
    has_positive = pairs.pos.any(axis=1)
    every = pairs.pos | pairs.neg
    with np.errstate(invalid="ignore"):  # -inf - -inf on the rows without a positive
        losses = _masked_lse(logits, every) - _masked_lse(logits, pairs.pos)
    losses = np.where(has_positive, losses, 0.0)
    scalar, per_anchor = mean_reduce(losses[:, None], has_positive[:, None])
    return LossResult(scalar, {}, per_anchor, losses)


def threshold_consistent_margin_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    lambda_plus=1.0,
    lambda_minus=1.0,
    margin_plus=0.9,
    margin_minus=0.5,
):
    """ThresholdConsistentMarginLoss (the cosine similarity of the embeddings), over the
    positive pairs with `S <= margin_plus` and the negative pairs with `S >= margin_minus`:

        loss = lambda_plus Mean(margin_plus - S) + lambda_minus Mean(S - margin_minus)

    each Mean over its paying pairs (0 if none). `per_anchor` = the MeanReducer shares of each
    kind, weighted and added; `natural` = the anchor's own two means, weighted and added.
    """
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, COSINE)
    loss, per_anchor, natural = 0.0, 0.0, 0.0
    for mask, weight, gap in ((pairs.pos, lambda_plus, margin_plus - pairs.mat),
                              (pairs.neg, lambda_minus, pairs.mat - margin_minus)):  # fmt: skip
        paying = mask & (gap >= 0)
        terms = np.where(paying, gap, 0.0)
        scalar, shares = mean_reduce(terms, paying)
        loss += weight * scalar
        per_anchor = per_anchor + weight * shares
        natural = natural + weight * _row_means(terms, paying)
    return LossResult(loss, {}, per_anchor, natural)


def tuplet_margin_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    margin=5.73,
    scale=64.0,
    distance=None,
):
    """TupletMarginLoss (CosineSimilarity only), `margin` in degrees, one term per positive pair:

        p_ij = cos(acos(S_ij) - radians(margin))
        l_ij = log(1 + sum_{k in neg_i} exp(scale (S_ik - p_ij)))

    MeanReducer over the positive pairs; zero loss without a positive or a negative pair.
    `acos` is taken of the similarity clipped to [-1, 1] (PML does not clip: two identical
    float32 vectors whose dot product rounds above 1 would give NaN). Dense: `pair_loss`.
    """
    distance = _distance(distance, COSINE)
    if distance.kind != "cosine":
        raise ValueError("TupletMarginLoss needs CosineSimilarity")
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, distance)
    if pairs.pml_skips or not pairs.pos.any() or not pairs.neg.any():
        return _zero(pairs.batch, ("loss",))
    s = pairs.mat
    shifted = np.cos(np.arccos(np.clip(s, -1.0, 1.0)) - np.radians(margin))  # [B, K]
    logits = scale * (s[:, None, :] - shifted[:, :, None])  # [B, K(pos), K(neg)]
    neg = np.broadcast_to(pairs.neg[:, None, :], logits.shape)
    pair_loss = np.where(pairs.pos, pml_logsumexp(logits, neg, True), 0.0)
    scalar, per_anchor = mean_reduce(pair_loss, pairs.pos)
    return LossResult(
        scalar,
        {"loss": _elements(pair_loss, pairs.pos, "pos_pair")},
        per_anchor,
        _row_means(pair_loss, pairs.pos),
        {"pair_loss": pair_loss},
    )


# ---------------------------------------------------------------------------------------------
# Triplet losses and the triplet miner
# ---------------------------------------------------------------------------------------------


def _triplet_weights(pairs, indices_tuple):
    """`[B, K, K]` multiplicity of each triplet: all valid ones, or those of `indices_tuple`."""
    if indices_tuple is None:
        return (pairs.pos[:, :, None] & pairs.neg[:, None, :]).astype(np.float64)
    a, p, n = (np.asarray(x, dtype=np.int64).reshape(-1) for x in indices_tuple)
    weights = np.zeros((pairs.batch, pairs.mat.shape[1], pairs.mat.shape[1]))
    np.add.at(weights, (a, p, n), 1.0)
    return weights


def _triplet_elements(values, weights, indices_tuple):
    if indices_tuple is None:
        return _elements(values, weights > 0, "triplet")
    idx = tuple(np.asarray(x, dtype=np.int64).reshape(-1) for x in indices_tuple)
    return SubLoss(values[idx], idx, "triplet")


def _weighted_reduce(values, weights, divisor):
    batch = weights.shape[0]
    if divisor == 0:
        return 0.0, np.zeros(batch)
    rows = (values * weights).reshape(batch, -1).sum(axis=1)
    return float(rows.sum() / divisor), batch * rows / divisor


def _weighted_row_means(values, weights):
    batch = weights.shape[0]
    counts = weights.reshape(batch, -1).sum(axis=1)
    rows = (values * weights).reshape(batch, -1).sum(axis=1)
    return np.where(counts > 0, rows / np.maximum(counts, 1), 0.0)


def triplet_margin_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    margin=0.05,
    swap=False,
    smooth_loss=False,
    triplets_per_anchor="all",
    distance=None,
    indices_tuple=None,
):
    """TripletMarginLoss (default LpDistance, margin 0.05), over all valid triplets
    `valid[i, j, k] = pos_ij & neg_ik` or over a given `indices_tuple = (a, p, n)`:

        an_ijk = D_ik, or with swap the closer of D_ik and D_jk (distance of positive to negative)
        v_ijk  = margin(D_ij, an_ijk) + margin          (distance: D_ap - D_an + margin)
        l_ijk  = relu(v_ijk), or softplus(v_ijk) with smooth_loss

    AvgNonZeroReducer over the triplets; zero loss when there is none. Elements are in
    lexicographic (a, p, n) order, or in the given tuple's order. Dense: `dense["triplet_loss"]`
    `[B, K, K]` and `dense["weights"]` (1 on the triplets used, a count for repeats).
    `per_anchor = B * sum_{j,k} l_ijk / nnz`; `natural` = the anchor's mean triplet loss.
    `D_jk` comes from the keys' own distances (PML indexes its query-by-key matrix with
    `[positive, negative]`, which is the same thing only when the keys are the batch).
    """
    if triplets_per_anchor != "all":
        raise NotImplementedError("only triplets_per_anchor='all' is deterministic")
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, LP)
    )
    weights = _triplet_weights(pairs, indices_tuple)
    if not weights.any():
        return _zero(pairs.batch, ("loss",))
    dist = pairs.distance
    ap = pairs.mat[:, :, None]
    an = np.broadcast_to(pairs.mat[:, None, :], weights.shape)
    if swap:
        an = dist.smallest(an, pairs.key_pairs().mat[None, :, :])
    violation = dist.margin(ap, an) + margin
    losses = softplus(violation) if smooth_loss else relu(violation)
    losses = np.where(weights > 0, losses, 0.0)
    nonzero = float(np.sum(weights * (losses > 0)))
    scalar, per_anchor = _weighted_reduce(losses, weights, nonzero)
    return LossResult(
        scalar,
        {"loss": _triplet_elements(losses, weights, indices_tuple)},
        per_anchor,
        _weighted_row_means(losses, weights),
        {"triplet_loss": losses, "weights": weights},
    )


def margin_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    margin=0.2,
    nu=0.0,
    beta=1.2,
    triplets_per_anchor="all",
    learn_beta=False,
    num_classes=None,
    distance=None,
    indices_tuple=None,
):
    """MarginLoss (default LpDistance), over all valid triplets (a, p, n):

        P_ij  = relu(margin(D_ij, beta) + margin)    (distance: D_ap - beta + margin)
        N_ik  = relu(margin(beta, D_ik) + margin)    (distance: beta - D_an + margin)
        l_ijk = P_ij + N_ik
        margin_loss = sum l_ijk / (#{triplets with P > 0} + #{triplets with N > 0})

    (DivisorReducer; 0 when the divisor is 0; each positive pair is counted once per negative
    and each negative once per positive). `beta` is one number, or one per class with
    `num_classes` (indexed by the anchor's label). `beta_reg_loss` is PML's zero_loss unless
    `learn_beta`: then `nu * beta` (already reduced), or per triplet `nu * beta[label_a]` over
    the same divisor. Dense: `P`, `N` `[B, K]`, `triplet_loss` `[B, K, K]`.
    """
    if triplets_per_anchor != "all":
        raise NotImplementedError("only triplets_per_anchor='all' is deterministic")
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, LP)
    )
    names = ("margin_loss", "beta_reg_loss")
    weights = _triplet_weights(pairs, indices_tuple)
    if not weights.any():
        return _zero(pairs.batch, names)
    labels = np.asarray(query_labels).reshape(-1)
    per_class = bool(num_classes)
    betas = np.full(num_classes, float(beta)) if per_class else np.asarray(float(beta))
    b = betas[labels][:, None] if per_class else betas
    dist = pairs.distance
    pos_part = relu(dist.margin(pairs.mat, b) + margin)  # [B, K]
    neg_part = relu(dist.margin(b, pairs.mat) + margin)  # [B, K]
    losses = np.where(weights > 0, pos_part[:, :, None] + neg_part[:, None, :], 0.0)
    divisor = float(
        np.sum(weights * (pos_part[:, :, None] > 0)) + np.sum(weights * (neg_part[:, None, :] > 0))
    )
    scalar, per_anchor = _weighted_reduce(losses, weights, divisor)
    margin_elements = _triplet_elements(losses, weights, indices_tuple)
    margin_elements.divisor = divisor
    reg = None
    if learn_beta:
        if per_class:
            anchors = margin_elements.indices[0]
            reg_losses = nu * betas[labels[anchors]]
            reg = SubLoss(reg_losses, (anchors,), "anchor", divisor)
            reg_anchor = np.zeros(pairs.batch)
            if divisor:
                np.add.at(reg_anchor, anchors, pairs.batch * reg_losses / divisor)
                scalar += float(reg_losses.sum() / divisor)
                per_anchor = per_anchor + reg_anchor
        else:
            reg = SubLoss(np.asarray(nu * float(beta)), (), "already_reduced")
            scalar += nu * float(beta)
            per_anchor = per_anchor + nu * float(beta)
    return LossResult(
        scalar,
        {"margin_loss": margin_elements, "beta_reg_loss": reg},
        per_anchor,
        _weighted_row_means(losses, weights),
        {"P": pos_part, "N": neg_part, "triplet_loss": losses, "weights": weights},
    )


def triplet_margin_miner(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    margin=0.2,
    type_of_triplets="all",
    distance=None,
):
    """TripletMarginMiner (default LpDistance) as a dense `[B, K, K]` mask, and its tuple.

        t_ijk = margin(D_ik, D_ij)          (distance: D_an - D_ap; similarity: S_ap - S_an)
        all:      valid & t <= margin
        hard:     valid & t <= margin & t <= 0
        semihard: valid & t <= margin & t > 0
        easy:     valid & t > margin

    PML filters its lexicographic all-triplets list, so `np.nonzero(mask)` is its exact output
    order. Returns `(mask, (a, p, n))`.
    """
    pairs = pair_masks(
        query_emb, query_labels, key_emb, key_labels, self_index, _distance(distance, LP)
    )
    dist = pairs.distance
    valid = pairs.pos[:, :, None] & pairs.neg[:, None, :]
    t = dist.margin(pairs.mat[:, None, :], pairs.mat[:, :, None])
    if type_of_triplets == "easy":
        keep = t > margin
    else:
        keep = t <= margin
        if type_of_triplets == "hard":
            keep &= t <= 0
        elif type_of_triplets == "semihard":
            keep &= t > 0
        elif type_of_triplets != "all":
            raise ValueError(type_of_triplets)
    mask = valid & keep
    return mask, np.nonzero(mask)


# ---------------------------------------------------------------------------------------------
# Batch-only losses (PML raises for a reference set)
# ---------------------------------------------------------------------------------------------


def fast_ap_loss(
    query_emb,
    query_labels,
    key_emb=None,
    key_labels=None,
    self_index=None,
    *,
    num_bins=10,
    distance=None,
):
    """FastAPLoss (LpDistance, normalised, p=2, power=2 asserted: D in [0, 4]).

    With `L = num_bins`, bin centres `c_b = 4 b / L` (b = 0..L) and width `delta = 4 / L`:

        pulse[i, j, b] = relu(1 - |D_ij - c_b| / delta)        (a soft histogram assignment)
        h+_ib = sum_j pos_ij pulse_ijb,   h_ib = h+_ib + sum_j neg_ij pulse_ijb
        H+_ib = cumsum_b h+,  H_ib = cumsum_b h
        AP_i  = 1/|pos_i| sum_b [h+ H+ > 0 and H > 0] h+_ib H+_ib / H_ib
        l_i   = 1 - AP_i              for anchors with a positive only

    MeanReducer over those anchors (elements are indexed by them). Zero loss if no anchor has a
    positive (or no bin qualifies anywhere). An anchor without negatives gets AP = 1 (its pulses
    sum to 1), so an all-one-class batch gives 0 (float32 PML: ~1e-7). `natural = l` (0 for the
    rows left out), `per_anchor = B * l / n_rows`. PML supports no reference set; the key form
    here only generalises the masks.
    """
    distance = _distance(distance, Distance("lp", True, 2, 2))
    if distance.kind != "lp" or distance.p != 2 or not distance.normalize_embeddings:
        raise ValueError("FastAPLoss needs LpDistance(normalize_embeddings=True, p=2)")
    pairs = pair_masks(query_emb, query_labels, key_emb, key_labels, self_index, distance)
    n_pos = pairs.pos.sum(axis=1)
    rows = n_pos > 0
    if not rows.any():
        return _zero(pairs.batch, ("loss",))
    top = 2.0**distance.power
    delta = top / num_bins
    centres = np.linspace(0.0, top, int(num_bins) + 1)
    pulse = relu(1.0 - np.abs(pairs.mat[:, :, None] - centres) / delta)  # [B, K, L+1]
    pos_hist = np.einsum("ijb,ij->ib", pulse, pairs.pos.astype(np.float64))
    neg_hist = np.einsum("ijb,ij->ib", pulse, pairs.neg.astype(np.float64))
    pos_cum = np.cumsum(pos_hist, axis=1)
    all_cum = np.cumsum(pos_hist + neg_hist, axis=1)
    product = pos_hist * pos_cum
    safe = (product > 0) & (all_cum > 0)
    if not safe.any():
        return _zero(pairs.batch, ("loss",))
    ap = np.where(safe, product / np.where(safe, all_cum, 1.0), 0.0).sum(axis=1)
    losses = np.where(rows, 1.0 - ap / np.maximum(n_pos, 1), 0.0)
    scalar, per_anchor = mean_reduce(losses[:, None], rows[:, None])
    return LossResult(
        scalar,
        {"loss": _anchor_elements(losses, rows)},
        per_anchor,
        losses,
        {"pos_hist": pos_hist, "neg_hist": neg_hist},
    )


def instance_loss(query_emb, query_labels, *, gamma=64.0, distance=None):
    """InstanceLoss (CosineSimilarity only), batch only:

        logits = gamma * S                        [B, B], the diagonal included
        t_i    = rank of labels[i] among the sorted unique labels
        l_i    = lse_j(logits_ij) - logits_{i, t_i}        (cross-entropy with target column t_i)

    MeanReducer over all rows: `per_anchor == natural == l`. The target is a *column* of the
    batch, so it is the sample itself only when the labels are `0..B-1` in order; with other
    labels the target is whatever sample sits in column `t_i`.
    """
    distance = _distance(distance, COSINE)
    if distance.kind != "cosine":
        raise ValueError("InstanceLoss needs CosineSimilarity")
    labels = np.asarray(query_labels).reshape(-1)
    logits = gamma * distance.matrix(query_emb, query_emb)
    _, target = np.unique(labels, return_inverse=True)
    target = target.reshape(-1)
    every = np.ones(len(labels), bool)
    lse = _masked_lse(logits, np.ones_like(logits, bool))
    losses = lse - logits[np.arange(len(labels)), target]
    return LossResult(
        float(np.mean(losses)),
        {"loss": _anchor_elements(losses, every)},
        losses,
        losses.copy(),
        {"logits": logits, "target": target},
    )


# ---------------------------------------------------------------------------------------------
# Dispatch on PML's class names
# ---------------------------------------------------------------------------------------------

LOSSES = {
    "ContrastiveLoss": contrastive_loss,
    "SignalToNoiseRatioContrastiveLoss": signal_to_noise_ratio_contrastive_loss,
    "TripletMarginLoss": triplet_margin_loss,
    "MultiSimilarityLoss": multi_similarity_loss,
    "CircleLoss": circle_loss,
    "LiftedStructureLoss": lifted_structure_loss,
    "GeneralizedLiftedStructureLoss": generalized_lifted_structure_loss,
    "MarginLoss": margin_loss,
    "NTXentLoss": ntxent_loss,
    "SupConLoss": supcon_loss,
    "FastAPLoss": fast_ap_loss,
    "TupletMarginLoss": tuplet_margin_loss,
    "InstanceLoss": instance_loss,
}

# The losses that accept a key set (PML's `ref_emb`), usable inside CrossBatchMemory.
KEYED_LOSSES = {
    name: fn for name, fn in LOSSES.items() if name not in ("FastAPLoss", "InstanceLoss")
}


def pml_call(call, kwargs, embeddings, labels, indices_tuple=None):
    """`losses.<call>(**kwargs)(embeddings, labels[, indices_tuple])` with golden-file kwargs."""
    kwargs = dict(kwargs)
    if "distance" in kwargs and isinstance(kwargs["distance"], dict):
        kwargs["distance"] = Distance.from_spec(kwargs["distance"])
    if indices_tuple is not None:
        kwargs["indices_tuple"] = indices_tuple
    return LOSSES[call](np.asarray(embeddings, np.float64), np.asarray(labels), **kwargs)


def pml_miner(miner, embeddings, labels):
    """`miners.<call>(**kwargs)(embeddings, labels)` for a TripletMarginMiner golden record."""
    if miner["call"] != "TripletMarginMiner":
        raise NotImplementedError(miner["call"])
    kwargs = dict(miner["kwargs"])
    kwargs["distance"] = Distance.from_spec(kwargs["distance"])
    return triplet_margin_miner(np.asarray(embeddings, np.float64), np.asarray(labels), **kwargs)
