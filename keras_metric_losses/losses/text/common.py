"""What the text-embedding losses share: their `[B, C, D]` columns."""

from keras_metric_losses import validation
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import compute_dtype

# Three (anchor, positive) examples: the inputs of the ranking losses' doctests.
EXAMPLE = """>>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> anchors = np.array([[1.0, 0.1], [0.0, 1.0], [-1.0, 0.2]])
>>> positives = np.array([[0.9, 0.3], [0.2, 0.8], [-0.8, -0.1]])
>>> y_pred = np.stack([anchors, positives], axis=1)  # [3 examples, 2 columns, 2]"""


def columns(y_pred, minimum=2, maximum=None, name="y_pred"):
    """The `C` columns `[B, D]` of a checked `[B, C, D]` `y_pred` (named `name` in errors), in
    the compute dtype (float32 at least).

    A list or tuple of `C` `[B, D]` columns is stacked first (`validation.stacked`).

    Raises:
        ValueError: if `y_pred` is not `[B, C, D]` with `minimum <= C <= maximum`, or a list of
            columns of different shapes; with value checks on, if it holds NaN or inf (the
            index is that of `y_pred`).
    """
    y_pred = ops.convert_to_tensor(validation.stacked(y_pred, name))
    shape = tuple(y_pred.shape)
    count = shape[1] if len(shape) == 3 else None
    if count is None or count < minimum or (maximum is not None and count > maximum):
        wanted = f"{minimum}" + ("" if maximum == minimum else f" to {maximum or 'any number of'}")
        raise ValueError(
            f"`{name}` must hold {wanted} columns of each example as [batch, columns, dim] "
            "(anchor, positive, negatives...; e.g. `keras.ops.stack([anchor, positive], "
            f"axis=1)`). Received: {name}.shape={shape}"
        )
    validation.finite(y_pred, name)
    y_pred = ops.cast(y_pred, compute_dtype(y_pred))
    return [y_pred[:, c] for c in range(count)]
