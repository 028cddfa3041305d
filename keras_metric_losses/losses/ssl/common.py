"""What the two-view losses share: their inputs (`[B, 2, D]` views, an unused `y_true`) and a
term of the batch statistics."""

from keras_metric_losses import pairs, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import compute_dtype

TWO_VIEWS = base.Inputs(
    ("y_true", "y_pred"),
    (
        "Unused (any value, e.g. `None` or zeros `[B]`).",
        "`[B, 2, D]`: the two views (`za`, `zb`) of each example.",
    ),
    example=""">>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
...                   [[-1.0, 0.2], [-0.8, -0.1]]])  # [3 examples, 2 views, 2]""",
)


def views(y_pred):
    """`[2B, D]` `concat(za, zb)` of a checked `[B, 2, D]` `y_pred`, in the compute dtype
    (float32 at least).

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]`; with value checks on, if it holds NaN or
            inf (the index is that of `y_pred`).
    """
    y_pred = ops.convert_to_tensor(validation.stacked(y_pred, "y_pred"))
    flat, _ = pairs.split_views(y_pred, count=2)
    validation.finite(y_pred, "y_pred")
    return ops.cast(flat, compute_dtype(flat))


def two_views(y_pred):
    """`(za, zb)` `[B, D]` of a checked `[B, 2, D]` `y_pred`, in the compute dtype."""
    flat = views(y_pred)
    split = ops.reshape(flat, (2, -1, ops.shape(flat)[-1]))
    return split[0], split[1]


def off_diagonal_square_sum(matrix):
    """`sum_{k != l} m[k, l]^2` of a square matrix."""
    size = ops.shape(matrix)[0]
    off = ops.logical_not(ops.eye(size, dtype="bool"))
    return ops.sum(ops.where(off, ops.square(matrix), 0.0))
