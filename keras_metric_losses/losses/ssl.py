"""Self-supervised two-view losses of TensorFlow Similarity 0.17.1: SimCLR, Barlow Twins,
VICReg and SimSiam.

The original losses are called `loss(za, zb)` with the two views' embeddings. A Keras model
outputs both views as one tensor, and Keras hands the loss a `y_true` that these losses do not
use, so here:

- `y_pred` is `[B, 2, D]`: `y_pred[:, 0]` is `za` (SimSiam: the projector output),
  `y_pred[:, 1]` is `zb` (SimSiam: the predictor output). In a model:
  `keras.ops.stack([za, zb], axis=1)`.
- `y_true` is ignored: pass any array with one row per example to `fit` (e.g.
  `np.zeros(len(x))`); the functions accept `None`.

Each loss returns one value per example, `[B]`. Barlow Twins is a batch statistic: every example
carries the batch's value, so the batch mean is TensorFlow Similarity's scalar.
"""

import math

from keras import ops

from keras_metric_losses import distributed, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import (
    LossFunctionWrapper,
    TensorFlowSimilarityConfig,
    hyperparameters,
)
from keras_metric_losses.losses.infonce import (
    check_temperature,
    class_contrast,
    contrastive_terms,
)
from keras_metric_losses.ops import compute_dtype, safe_sqrt

# `tf.math.l2_normalize`'s epsilon is 1e-12 on the squared norm: `x / max(|x|, 1e-6)`.
_L2_EPSILON = 1e-6
PROJECTIONS = ("negative_cosine_sim", "cosine_distance", "angular_distance")


def two_views(y_pred):
    """`(za, zb)` `[B, D]` of a `[B, 2, D]` `y_pred`, in the compute dtype (float32 at least)."""
    y_pred = ops.convert_to_tensor(y_pred)
    shape = tuple(y_pred.shape)
    if len(shape) != 3 or shape[1] != 2:
        raise ValueError(
            "`y_pred` must hold the two views of each example as [batch, 2, dim] (e.g. "
            f"`keras.ops.stack([za, zb], axis=1)`). Received: y_pred.shape={shape}"
        )
    validation.finite(y_pred, "y_pred")
    y_pred = ops.cast(y_pred, compute_dtype(y_pred))
    return y_pred[:, 0], y_pred[:, 1]


def _l2_normalize(x):
    return ops.normalize(x, axis=-1, epsilon=_L2_EPSILON)


def _in_input_dtype(values, y_pred):
    return ops.cast(values, ops.convert_to_tensor(y_pred).dtype)


def _example_ids(batch, cross_replica):
    """`[b]` int32 ids of this replica's examples, distinct across replicas."""
    ids = ops.arange(batch, dtype="int32")
    if not cross_replica:
        return ids
    replica_id, num_replicas = distributed.replica_context()
    if num_replicas == 1:
        return ids
    sizes = distributed.all_gather(ops.reshape(ops.cast(batch, "int32"), (1,)))
    before = ops.less(ops.arange(num_replicas, dtype="int32"), ops.cast(replica_id, "int32"))
    return ids + ops.sum(ops.where(before, sizes, ops.zeros_like(sizes)))


@export
@hyperparameters(temperature=check_temperature, cross_replica=validation.boolean)
def simclr_loss(y_true, y_pred, *, temperature=0.05, cross_replica=False):
    """SimCLR loss of two views, one value per example, as TensorFlow Similarity's
    `SimCLRLoss`.

    With `a`, `b` the L2-normalised views and `x(u, v) = u . v / temperature`, each view of
    example `i` classifies its other view among the `2B - 1` other embeddings of the batch:

    ```
    l_a[i] = -log( exp(x(a_i, b_i)) / (sum_j exp(x(a_i, b_j)) + sum_{j != i} exp(x(a_i, a_j))) )
    loss_i = l_a[i] + l_b[i]           (l_b: the same with a and b swapped)
    ```

    The sum of both directions is TensorFlow Similarity's per-example value; on the same views
    it is twice `ntxent_loss` (SimCLR form, `reducer="anchor"`), whose per-example value is the
    mean over the views. A batch of one gives 0.

    With `cross_replica=True` (`tf.distribute`, `torch.distributed`) the views of every replica
    are the keys, as TensorFlow Similarity does under a `tf.distribute` strategy: the loss and
    gradients are those of one device on the global batch.

    Differences from TensorFlow Similarity: the anchor's own similarity is left out of the
    softmax instead of lowered by `1e9` (the same value); float16/bfloat16 views are computed in
    float32.

    Args:
        y_true: Unused (any value, e.g. `None` or zeros `[B]`).
        y_pred: `[B, 2, D]` the two views (`za`, `zb`) of each example.
        temperature: Keyword-only. Softmax temperature, `> 0`. Defaults to 0.05.
        cross_replica: Keyword-only. Contrast with the views of every replica. Defaults to
            `False`.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]` or `temperature <= 0`. With value checks on,
            also non-finite views.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])  # [3 examples, 2 views, 2]
    >>> losses = kml.simclr_loss(None, views, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.9481 1.2148 0.5494]

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020.
    """
    za, zb = two_views(y_pred)
    batch = ops.shape(za)[0]
    embeddings = ops.concatenate([_l2_normalize(za), _l2_normalize(zb)], axis=0)
    ids = _example_ids(batch, cross_replica)
    labels = ops.concatenate([ids, ids], axis=0)
    contrast = class_contrast(labels, embeddings, "inner_product", temperature, cross_replica,
                              None, None)  # fmt: skip
    terms = contrastive_terms(contrast.logits, contrast.positive, contrast.candidates)
    losses = ops.reshape(terms.anchor_mean, (2, batch))
    return _in_input_dtype(ops.sum(losses, axis=0), y_pred)


def _standardize_columns(z):
    """`(z - mean) / std` per column (population std); 0 where a column is constant."""
    centred = z - ops.mean(z, axis=0, keepdims=True)
    std = safe_sqrt(ops.mean(ops.square(centred), axis=0, keepdims=True))
    positive = std > 0
    return ops.where(positive, centred / ops.where(positive, std, 1.0), 0.0)


def _off_diagonal_square_sum(matrix):
    size = ops.shape(matrix)[0]
    off = ops.logical_not(ops.eye(size, dtype="bool"))
    return ops.sum(ops.where(off, ops.square(matrix), 0.0))


@export
@hyperparameters(lambda_=validation.real, margin=validation.real)
def barlow_loss(y_true, y_pred, *, lambda_=5e-3, margin=1e-12):
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

    Args:
        y_true: Unused.
        y_pred: `[B, 2, D]` the two views of each example.
        lambda_: Keyword-only. Weight of the off-diagonal (redundancy) term. Defaults to 5e-3.
        margin: Keyword-only. Constant added to the loss. Defaults to 1e-12.

    Returns:
        `[B]` the batch's loss for every example, in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]` or a hyperparameter is not a finite number.
            With value checks on, also non-finite views.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
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
    loss = on_diagonal + lambda_ * _off_diagonal_square_sum(c) + margin
    return _in_input_dtype(ops.ones_like(za[:, 0]) * loss, y_pred)


def _variance_term(z, std_const):
    std = safe_sqrt(ops.var(z, axis=0) + std_const)
    return ops.mean(ops.relu(1.0 - std))


def _covariance_term(z):
    centred = z - ops.mean(z, axis=0, keepdims=True)
    dof = ops.cast(ops.shape(z)[0] - 1, z.dtype)
    covariance = ops.divide_no_nan(ops.matmul(ops.transpose(centred), centred), dof)
    return _off_diagonal_square_sum(covariance) / ops.cast(ops.shape(z)[1], z.dtype)


@export
@hyperparameters(
    std_const=lambda v, n: validation.real(v, n, low=0.0),
    lambda_=validation.real,
    mu=validation.real,
    nu=validation.real,
)
def vicreg_loss(y_true, y_pred, *, std_const=1e-4, lambda_=25.0, mu=25.0, nu=1.0):
    """VICReg loss of two views, one value per example, as TensorFlow Similarity's `VicReg`.

    Per example an invariance term, plus two batch terms (the same for every example):

    ```
    sim_i    = mean_d (za[i, d] - zb[i, d])^2
    std(z)   = mean_d max(0, 1 - sqrt(var_d(z) + std_const))        (population variance)
    cov(z)   = sum_{d != e} C[d, e]^2 / D,  C = (z - mean)^T (z - mean) / (B - 1)
    loss_i   = lambda_ * sim_i + mu * (std(za) + std(zb)) / 2 + nu * (cov(za) + cov(zb))
    ```

    TensorFlow Similarity's `VicReg` defaults to `reduction=NONE` and returns these `[B]`
    values; `VicReg(reduction=None)` does the same here, while the class's default reduction
    gives their mean (TensorFlow Similarity's `expected` value for a batch).

    A batch of one has no covariance: the covariance terms are 0 (TensorFlow Similarity
    divides by `B - 1 = 0`: NaN). The square root has a zero gradient at 0 (`std_const=0` and a
    constant column).

    Args:
        y_true: Unused.
        y_pred: `[B, 2, D]` the two views of each example.
        std_const: Keyword-only. Added to the variance inside the square root, `>= 0`.
            Defaults to 1e-4.
        lambda_: Keyword-only. Weight of the invariance term. Defaults to 25.
        mu: Keyword-only. Weight of the variance term. Defaults to 25.
        nu: Keyword-only. Weight of the covariance term. Defaults to 1.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]` or a hyperparameter is not a finite number
            (`std_const` also `>= 0`). With value checks on, also non-finite views.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
    >>> losses = kml.vicreg_loss(None, views)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [11.3855 11.7605 12.3855]

    Reference: Bardes et al., "VICReg: Variance-Invariance-Covariance Regularization for
    Self-Supervised Learning", ICLR 2022.
    """
    za, zb = two_views(y_pred)
    invariance = ops.mean(ops.square(za - zb), axis=-1)
    variance = (_variance_term(za, std_const) + _variance_term(zb, std_const)) / 2.0
    covariance = _covariance_term(za) + _covariance_term(zb)
    losses = lambda_ * invariance + mu * variance + nu * covariance
    return _in_input_dtype(losses, y_pred)


def _angle(a, b):
    """The angle between unit vectors, `2 atan2(|a - b|, |a + b|)`: accurate near 0 and pi
    (unlike `acos` of a rounded cosine) and with finite gradients everywhere."""
    apart = safe_sqrt(ops.sum(ops.square(a - b), axis=-1))
    together = safe_sqrt(ops.sum(ops.square(a + b), axis=-1))
    both_zero = ops.logical_and(apart == 0, together == 0)
    return 2.0 * ops.arctan2(apart, ops.where(both_zero, 1.0, together))


@export
@hyperparameters(
    projection_type=lambda v, n: validation.one_of(v, n, PROJECTIONS), margin=validation.real
)
def simsiam_loss(y_true, y_pred, *, projection_type="negative_cosine_sim", margin=0.001):
    """SimSiam loss of a projector and a predictor output, one value per example, as
    TensorFlow Similarity's `SimSiamLoss`.

    With `p` the projector output (`y_pred[:, 0]`, TensorFlow Similarity's first argument),
    `q` the predictor output (`y_pred[:, 1]`), both L2-normalised, and `cos_i = p_i . q_i`:

    ```
    loss_i = 0.5 * projection(cos_i) + margin
    projection: "negative_cosine_sim" -cos, "cosine_distance" 1 - cos,
                "angular_distance" angle / pi
    ```

    The loss does not stop the projector's gradient (neither does TensorFlow Similarity's):
    SimSiam needs it stopped, so apply `keras.ops.stop_gradient` to the projector output in the
    model (see the docs' two-view recipe), and add the symmetric term as a second output.

    Differences from TensorFlow Similarity: the angle is `2 atan2(|p - q|, |p + q|)` rather
    than `acos(cos)`, which is NaN when rounding pushes `|cos|` above 1 and has an infinite
    gradient at identical views; float16/bfloat16 inputs are computed in float32.

    Args:
        y_true: Unused.
        y_pred: `[B, 2, D]`: projector and predictor output of each example.
        projection_type: Keyword-only. `"negative_cosine_sim"`, `"cosine_distance"` or
            `"angular_distance"`. Defaults to `"negative_cosine_sim"`.
        margin: Keyword-only. Constant added to every value. Defaults to 0.001.

    Returns:
        `[B]` per-example losses in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]`, for an unknown `projection_type` or a
            non-finite `margin`. With value checks on, also non-finite inputs.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [0.0, -1.0]]])
    >>> losses = kml.simsiam_loss(None, views, projection_type="angular_distance")
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.126 0.501]

    Reference: Chen and He, "Exploring Simple Siamese Representation Learning", CVPR 2021.
    """
    projector, predictor = (_l2_normalize(z) for z in two_views(y_pred))
    if projection_type == "angular_distance":
        projected = _angle(projector, predictor) / math.pi
    else:
        cosine = ops.sum(projector * predictor, axis=-1)
        projected = -cosine if projection_type == "negative_cosine_sim" else 1.0 - cosine
    return _in_input_dtype(0.5 * projected + margin, y_pred)


class _TwoViewLoss(TensorFlowSimilarityConfig, LossFunctionWrapper):
    """A loss of `[B, 2, D]` two views whose `y_true` is not used."""


@export
class SimCLRLoss(_TwoViewLoss):
    """SimCLR loss of two views (`simclr_loss`), one value per example; `y_true` is unused.

    With the default reduction the value is TensorFlow Similarity's `SimCLRLoss()(za, zb)`
    for `y_pred = keras.ops.stack([za, zb], axis=1)`.

    Args:
        temperature: Softmax temperature, `> 0`. Defaults to 0.05.
        name: Name of the loss. Defaults to `"simclr_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Contrast with the views of every replica. Defaults to
            `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
    >>> round(float(kml.SimCLRLoss(temperature=0.5)(np.zeros(3), views)), 4)
    0.9041

    Reference: Chen et al., ICML 2020.
    """

    def __init__(
        self,
        temperature=0.05,
        name="simclr_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(simclr_loss, name=name, reduction=reduction, dtype=dtype,
                         temperature=temperature, cross_replica=cross_replica)  # fmt: skip


@export
class Barlow(_TwoViewLoss):
    """Barlow Twins loss of two views (`barlow_loss`); `y_true` is unused.

    Every example carries the batch's value, so the default reduction gives TensorFlow
    Similarity's `Barlow()(za, zb)`.

    Args:
        lambda_: Weight of the off-diagonal term. Defaults to 5e-3.
        margin: Constant added to the loss. Defaults to 1e-12.
        name: Name of the loss. Defaults to `"barlow_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
    >>> round(float(kml.Barlow()(np.zeros(3), views)), 4)
    0.0245

    Reference: Zbontar et al., ICML 2021.
    """

    def __init__(
        self,
        lambda_=5e-3,
        margin=1e-12,
        name="barlow_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(barlow_loss, name=name, reduction=reduction, dtype=dtype,
                         lambda_=lambda_, margin=margin)  # fmt: skip


@export
class VicReg(_TwoViewLoss):
    """VICReg loss of two views (`vicreg_loss`), one value per example; `y_true` is unused.

    `reduction=None` gives TensorFlow Similarity's `VicReg()(za, zb)` (its default reduction
    is NONE); the default reduction gives their mean.

    Args:
        std_const: Added to the variance inside the square root. Defaults to 1e-4.
        lambda_: Weight of the invariance term. Defaults to 25.
        mu: Weight of the variance term. Defaults to 25.
        nu: Weight of the covariance term. Defaults to 1.
        name: Name of the loss. Defaults to `"vicreg_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
    >>> round(float(kml.VicReg()(np.zeros(3), views)), 4)
    11.8438

    Reference: Bardes et al., ICLR 2022.
    """

    def __init__(
        self,
        std_const=1e-4,
        lambda_=25.0,
        mu=25.0,
        nu=1.0,
        name="vicreg_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(vicreg_loss, name=name, reduction=reduction, dtype=dtype,
                         std_const=std_const, lambda_=lambda_, mu=mu, nu=nu)  # fmt: skip


@export
class SimSiamLoss(_TwoViewLoss):
    """SimSiam loss of a projector and a predictor output (`simsiam_loss`), one value per
    example; `y_true` is unused.

    With the default reduction the value is TensorFlow Similarity's
    `SimSiamLoss()(projector, predictor)` for `y_pred = keras.ops.stack([projector, predictor],
    axis=1)`. Stop the projector's gradient in the model.

    Args:
        projection_type: `"negative_cosine_sim"`, `"cosine_distance"` or
            `"angular_distance"`. Defaults to `"negative_cosine_sim"`.
        margin: Constant added to every value. Defaults to 0.001.
        name: Name of the loss. Defaults to `"simsiam_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [0.0, -1.0]]])
    >>> round(float(kml.SimSiamLoss()(np.zeros(2), views)), 4)
    0.0742

    Reference: Chen and He, CVPR 2021.
    """

    def __init__(
        self,
        projection_type="negative_cosine_sim",
        margin=0.001,
        name="simsiam_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(simsiam_loss, name=name, reduction=reduction, dtype=dtype,
                         projection_type=projection_type, margin=margin)  # fmt: skip
