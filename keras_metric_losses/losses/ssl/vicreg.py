"""VICReg (TensorFlow Similarity's `VicReg`): invariance per example, variance and covariance
of the batch."""

from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.losses.ssl.common import (
    TWO_VIEWS,
    off_diagonal_square_sum,
    two_views,
)
from keras_metric_losses.ops import in_dtype_of, safe_sqrt


def _variance_term(z, std_const, unbiased_variance):
    variance = ops.var(z, axis=0)
    if unbiased_variance:
        rows = ops.cast(ops.shape(z)[0], z.dtype)
        variance = ops.divide_no_nan(variance * rows, rows - 1.0)
    std = safe_sqrt(variance + std_const)
    return ops.mean(ops.relu(1.0 - std))


def _covariance_term(z):
    centred = z - ops.mean(z, axis=0, keepdims=True)
    dof = ops.cast(ops.shape(z)[0] - 1, z.dtype)
    covariance = ops.divide_no_nan(ops.matmul(ops.transpose(centred), centred), dof)
    return off_diagonal_square_sum(covariance) / ops.cast(ops.shape(z)[1], z.dtype)


def vicreg_elements(y_true, y_pred, *, std_const, lambda_, mu, nu, unbiased_variance):
    """VICReg loss of two views, one value per example, as TensorFlow Similarity's `VicReg`
    (or, with `unbiased_variance=True`, pytorch-metric-learning's `VICRegLoss`).

    Per example an invariance term, plus two batch terms (the same for every example):

    ```
    sim_i    = mean_d (za[i, d] - zb[i, d])^2
    std(z)   = mean_d max(0, 1 - sqrt(var_d(z) + std_const))
    cov(z)   = sum_{d != e} C[d, e]^2 / D,  C = (z - mean)^T (z - mean) / (B - 1)
    loss_i   = lambda_ * sim_i + mu * (std(za) + std(zb)) / 2 + nu * (cov(za) + cov(zb))
    ```

    `var_d` is the population variance of column `d` (TensorFlow Similarity's), or the
    unbiased one, divided by `B - 1` (`unbiased_variance=True`: PML's and the paper's).
    TensorFlow Similarity's `VicReg` defaults to `reduction=NONE` and returns these `[B]`
    values; `VicReg(reduction=None)` does the same here, while the class's default reduction
    gives their mean (TensorFlow Similarity's `expected` value for a batch, and PML's
    `VICRegLoss(invariance_lambda=lambda_, variance_mu=mu, covariance_v=nu, eps=std_const)`
    of `embeddings = za`, `ref_emb = zb` with `unbiased_variance=True`).

    A batch of one has no covariance: the covariance terms are 0 (TensorFlow Similarity
    divides by `B - 1 = 0`: NaN), and its unbiased variance is 0 (PML: NaN). The square root
    has a zero gradient at 0 (`std_const=0` and a constant column).

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]` or a hyperparameter is not a finite number
            (`std_const` also `>= 0`). With value checks on, also non-finite views.

    Example:

    >>> losses = kml.vicreg_loss(None, views)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [11.3855 11.7605 12.3855]

    Reference: Bardes et al., "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022.
    """
    za, zb = two_views(y_pred)
    invariance = ops.mean(ops.square(za - zb), axis=-1)
    variance = (
        _variance_term(za, std_const, unbiased_variance)
        + _variance_term(zb, std_const, unbiased_variance)
    ) / 2.0
    covariance = _covariance_term(za) + _covariance_term(zb)
    return in_dtype_of(lambda_ * invariance + mu * variance + nu * covariance, y_pred)


vicreg_loss, VicReg = base.declare(
    vicreg_elements,
    function="vicreg_loss",
    cls="VicReg",
    original="TF Similarity `VicReg`",
    summary="invariance of the two views plus variance and covariance terms of the batch",
    positional=("std_const", "lambda_", "mu", "nu"),
    inputs=TWO_VIEWS,
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(
        std_const=base.real(1e-4, "Added to the variance inside the square root, `>= 0`.", low=0.0),
        lambda_=base.real(25.0, "Weight of the invariance term."),
        mu=base.real(25.0, "Weight of the variance term."),
        nu=base.real(1.0, "Weight of the covariance term."),
        unbiased_variance=base.boolean(
            False,
            "Divide the variance by `B - 1` (PML's `VICRegLoss`, the paper) rather than `B` "
            "(TF Similarity's).",
        ),
    ),
    class_doc="""VICReg loss of two views (`vicreg_loss`), one value per example; `y_true` is
    unused.

    `reduction=None` gives TensorFlow Similarity's `VicReg()(za, zb)` (its default reduction
    is NONE); the default reduction gives their mean. With `unbiased_variance=True` the
    default reduction gives PML's `VICRegLoss()(za, ref_emb=zb)`.

    Example:

    >>> round(float(kml.VicReg()(np.zeros(3), views)), 4)
    11.8438

    Reference: Bardes et al., ICLR 2022.
    """,
)
