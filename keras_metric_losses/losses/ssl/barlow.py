"""Barlow Twins (TensorFlow Similarity's `Barlow`): a batch statistic of the views'
cross-correlation, carried by every example."""

from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.losses.ssl.common import (
    TWO_VIEWS,
    off_diagonal_square_sum,
    two_views,
)
from keras_metric_losses.ops import in_dtype_of, safe_sqrt, with_non_finite_of


def _standardize_columns(z):
    """`(z - mean) / std` per column (population std); 0 where a column is constant."""
    centred = z - ops.mean(z, axis=0, keepdims=True)
    std = safe_sqrt(ops.mean(ops.square(centred), axis=0, keepdims=True))
    positive = std > 0
    return ops.where(positive, centred / ops.where(positive, std, 1.0), 0.0)


def barlow_elements(y_true, y_pred, *, lambda_, margin):
    """Barlow Twins loss of two views, as TensorFlow Similarity's `Barlow`: the batch's value
    for every example.

    With the views' columns standardised over the batch (population standard deviation; a
    constant column becomes 0) and `c = za_std^T zb_std / B` (`[D, D]` cross-correlation):

    ```
    loss = sum_k (1 - c[k, k])^2 + lambda_ * sum_{k != l} c[k, l]^2 + margin
    ```

    The loss is a property of the batch, not of an example: the function returns it for every
    example (`[B]`), so Keras' mean is TensorFlow Similarity's scalar and the gradient is the
    scalar's. `sample_weight` then scales the batch's value.

    A batch of one (every column constant) gives `D + margin` with zero gradient.

    Returns:
        `[B]` the batch's loss for every example, in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]` or a hyperparameter is not a finite number.
            With value checks on, also non-finite views.

    Example:

    >>> losses = kml.barlow_loss(None, views)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.0245 0.0245 0.0245]

    Reference: Zbontar et al., "Barlow Twins: Self-Supervised Learning via Redundancy
    Reduction", ICML 2021.
    """
    za, zb = two_views(y_pred)
    batch = ops.cast(ops.shape(za)[0], za.dtype)
    c = ops.matmul(ops.transpose(_standardize_columns(za)), _standardize_columns(zb)) / batch
    on_diagonal = ops.sum(ops.square(1.0 - ops.diagonal(c)))
    loss = on_diagonal + lambda_ * off_diagonal_square_sum(c) + margin
    # The standardisation's `where` drops a NaN or inf of a constant column: carried explicitly.
    return in_dtype_of(with_non_finite_of(ops.ones_like(za[:, 0]) * loss, za, zb), y_pred)


barlow_loss, Barlow = base.declare(
    barlow_elements,
    function="barlow_loss",
    cls="Barlow",
    original="TF Similarity `Barlow`",
    summary="cross-correlation of the two views towards the identity (a batch statistic)",
    positional=("lambda_", "margin"),
    inputs=TWO_VIEWS,
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(
        lambda_=base.real(5e-3, "Weight of the off-diagonal (redundancy) term."),
        margin=base.real(1e-12, "Constant added to the loss."),
    ),
    class_doc="""Barlow Twins loss of two views (`barlow_loss`); `y_true` is unused.

    Every example carries the batch's value, so the default reduction gives TensorFlow
    Similarity's `Barlow()(za, zb)`.

    Example:

    >>> round(float(kml.Barlow()(np.zeros(3), views)), 4)
    0.0245

    Reference: Zbontar et al., ICML 2021.
    """,
)
