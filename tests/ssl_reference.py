"""NumPy (float64) references for TensorFlow Similarity 0.17.1's self-supervised losses.

Each takes the two batches `za`, `zb` `[B, D]` (SimSiam: projector, predictor) and the class's
own argument names and defaults, and returns `(expected, per_example)`: the value with the
class's default reduction and the `reduction=NONE` output (`None` for Barlow, which always
returns a scalar). Keras' default `AUTO` reduction is the mean over the batch.

`tf.math.l2_normalize(x, axis=1)` is `x / sqrt(max(sum x^2, 1e-12))`: the epsilon is on the
squared norm (PML / torch put 1e-12 on the norm).
"""

import numpy as np

L2_EPS = 1e-12  # tf.math.l2_normalize epsilon, on the squared norm
SIMCLR_LARGE_NUM = 1e9  # SimCLRLoss.LARGE_NUM, subtracted from the self-similarity logits


def l2_normalize(x):
    x = np.asarray(x, np.float64)
    return x / np.sqrt(np.maximum(np.sum(x * x, axis=1, keepdims=True), L2_EPS))


def _logsumexp_rows(x):
    top = np.max(x, axis=1, keepdims=True)
    return np.log(np.sum(np.exp(x - top), axis=1)) + top[:, 0]


def simclr_contrast(h1, h2, temperature):
    """One direction: row `i` is a softmax cross-entropy over `2B` logits

        [h1_i . h2_j / T for j]  ++  [h1_i . h1_j / T - 1e9 [i == j] for j]

    with target column `i` (its own other view). On one replica.
    """
    ab = h1 @ h2.T / temperature
    aa = h1 @ h1.T / temperature - SIMCLR_LARGE_NUM * np.eye(len(h1))
    logits = np.concatenate([ab, aa], axis=1)
    return _logsumexp_rows(logits) - np.diag(ab)


def simclr_loss(za, zb, temperature=0.05):
    """SimCLRLoss: `l_i = contrast(a, b)_i + contrast(b, a)_i` after L2-normalising the rows.

    Both directions are summed per example, so with the same two views this is 2x PML's
    NTXentLoss in SimCLR form. Default reduction: mean over the batch. A batch of one gives 0
    (the only other logit is the self-similarity minus 1e9).
    """
    a, b = l2_normalize(za), l2_normalize(zb)
    per_example = simclr_contrast(a, b, temperature) + simclr_contrast(b, a, temperature)
    return float(np.mean(per_example)), per_example


def standardize_columns(z):
    """`(z - mean) / std` per column, population std (ddof 0); `divide_no_nan`: 0 where std = 0."""
    z = np.asarray(z, np.float64)
    centred = z - z.mean(axis=0)
    std = z.std(axis=0)
    return np.divide(centred, std, out=np.zeros_like(centred), where=std != 0)


def off_diagonal(m):
    return m[~np.eye(len(m), dtype=bool)]


def barlow_loss(za, zb, lambda_=5e-3, margin=1e-12):
    """Barlow: with `c = standardize(za)^T standardize(zb) / B` `[D, D]`,

        loss = sum_i (1 - c_ii)^2 + lambda_ * sum_{i != j} c_ij^2 + margin

    always a scalar (any reduction leaves it unchanged); `per_example` is `None`.
    """
    batch = len(za)
    c = standardize_columns(za).T @ standardize_columns(zb) / batch
    on_diag = np.sum((1.0 - np.diag(c)) ** 2)
    off_diag = np.sum(off_diagonal(c) ** 2)
    return float(on_diag + lambda_ * off_diag + margin), None


def vicreg_loss(za, zb, std_const=1e-4, lambda_=25, mu=25, nu=1):
    """VicReg: per row `lambda_ * mean_d (za - zb)^2_id + mu * std_term + nu * cov_term`.

        std_term = (mean_d relu(1 - sqrt(var_d(za) + std_const))
                    + mean_d relu(1 - sqrt(var_d(zb) + std_const))) / 2   (var: ddof 0)
        cov_term = cov(za) + cov(zb),  cov(z) = sum_{i != j} C_ij^2 / D,
                   C = (z - mean)^T (z - mean) / (B - 1)

    The two batch terms are the same for every row. Default reduction NONE, so the class
    returns `per_example` `[B]`; `expected` is its mean. `B = 1` divides by zero.
    """
    za = np.asarray(za, np.float64)
    zb = np.asarray(zb, np.float64)
    batch = len(za)
    sim = np.mean((za - zb) ** 2, axis=1)

    def std_term(z):
        return np.mean(np.maximum(0.0, 1.0 - np.sqrt(z.var(axis=0) + std_const)))

    def cov_term(z):
        centred = z - z.mean(axis=0)
        cov = centred.T @ centred / (batch - 1)
        return np.sum(off_diagonal(cov) ** 2) / z.shape[1]

    std_loss = std_term(za) / 2 + std_term(zb) / 2
    cov_loss = cov_term(za) + cov_term(zb)
    per_example = lambda_ * sim + mu * std_loss + nu * cov_loss
    return float(np.mean(per_example)), per_example


SIMSIAM_PROJECTIONS = {
    "negative_cosine_sim": lambda cos: -cos,
    "cosine_distance": lambda cos: 1.0 - cos,
    # TF applies acos to the raw value (NaN if rounding pushes |cos| past 1); clipped here.
    "angular_distance": lambda cos: np.arccos(np.clip(cos, -1.0, 1.0)) / np.pi,
}


def simsiam_loss(projector, predictor, projection_type="negative_cosine_sim", margin=0.001):
    """SimSiamLoss: `l_i = 0.5 * projection(cos(projector_i, predictor_i)) + margin`.

    Projections: `negative_cosine_sim` `-cos`, `cosine_distance` `1 - cos`, `angular_distance`
    `acos(cos) / pi`. Default reduction: mean. Symmetric in its two inputs (the stop-gradient
    is the caller's business).
    """
    if projection_type not in SIMSIAM_PROJECTIONS:
        raise ValueError(f"{projection_type} is not supported.")
    cos = np.sum(l2_normalize(projector) * l2_normalize(predictor), axis=1)
    per_example = 0.5 * SIMSIAM_PROJECTIONS[projection_type](cos) + margin
    return float(np.mean(per_example)), per_example


LOSSES = {
    "SimCLRLoss": simclr_loss,
    "Barlow": barlow_loss,
    "VicReg": vicreg_loss,
    "SimSiamLoss": simsiam_loss,
}


def ssl_reference(case):
    """Runs the oracle named by `case["call"]` on a tfsim_ssl.json case (not XBM)."""
    return LOSSES[case["call"]](case["za"], case["zb"], **case.get("kwargs", {}))
