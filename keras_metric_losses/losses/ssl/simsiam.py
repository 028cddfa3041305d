"""SimSiam (TensorFlow Similarity's `SimSiamLoss`): the projected similarity of a projector
and a predictor output."""

import math

from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.losses.ssl.common import TWO_VIEWS, two_views
from keras_metric_losses.ops import in_dtype_of, l2_normalize, safe_sqrt

PROJECTIONS = ("negative_cosine_sim", "cosine_distance", "angular_distance")


def _angle(a, b):
    """The angle between unit vectors, `2 atan2(|a - b|, |a + b|)`: accurate near 0 and pi
    (unlike `acos` of a rounded cosine) and with finite gradients everywhere."""
    apart = safe_sqrt(ops.sum(ops.square(a - b), axis=-1))
    together = safe_sqrt(ops.sum(ops.square(a + b), axis=-1))
    both_zero = ops.logical_and(apart == 0, together == 0)
    return 2.0 * ops.arctan2(apart, ops.where(both_zero, 1.0, together))


def simsiam_elements(y_true, y_pred, *, projection_type, margin):
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
    gradient at identical views; the outputs are normalised by `max(|z|, 1e-12)`
    (`kml.ops.l2_normalize`) rather than `max(|z|, 1e-6)`, which differs only for outputs
    shorter than 1e-6; float16/bfloat16 inputs are computed in float32.

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
    projector, predictor = (l2_normalize(z) for z in two_views(y_pred))
    if projection_type == "angular_distance":
        projected = _angle(projector, predictor) / math.pi
    else:
        cosine = ops.sum(projector * predictor, axis=-1)
        projected = -cosine if projection_type == "negative_cosine_sim" else 1.0 - cosine
    return in_dtype_of(0.5 * projected + margin, y_pred)


simsiam_loss, SimSiamLoss = base.declare(
    simsiam_elements,
    function="simsiam_loss",
    cls="SimSiamLoss",
    original="TF Similarity `SimSiamLoss`",
    summary="negative cosine (or a distance) of a projector and a predictor output",
    positional=("projection_type", "margin"),
    inputs=base.Inputs(
        TWO_VIEWS.names,
        (TWO_VIEWS.docs[0], "`[B, 2, D]`: the projector and the predictor output of each example."),
    ),
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(
        projection_type=base.one_of(
            "negative_cosine_sim",
            PROJECTIONS,
            '`"negative_cosine_sim"`, `"cosine_distance"` or `"angular_distance"`.',
        ),
        margin=base.real(0.001, "Constant added to every value."),
    ),
    class_doc="""SimSiam loss of a projector and a predictor output (`simsiam_loss`), one value
    per example; `y_true` is unused.

    With the default reduction the value is TensorFlow Similarity's
    `SimSiamLoss()(projector, predictor)` for `y_pred = keras.ops.stack([projector, predictor],
    axis=1)`. Stop the projector's gradient in the model.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.0], [1.0, 1.0]], [[0.0, 2.0], [0.0, -1.0]]])
    >>> round(float(kml.SimSiamLoss()(np.zeros(2), views)), 4)
    0.0742

    Reference: Chen and He, CVPR 2021.
    """,
)
