"""TF Addons' contrastive loss on pair distances (a siamese network's output): one distance and
one same/different flag per pair, not a batch of labelled embeddings."""

import numpy as np

from keras_metric_losses import validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import compute_dtype, in_dtype_of


def _pair_vector(x, name, what):
    """`x` of shape `[B]` or `[B, 1]`, flattened to `[B]`."""
    shape = tuple(x.shape)
    if len(shape) == 2 and shape[1] == 1:
        return ops.reshape(x, (-1,))
    if len(shape) != 1:
        raise ValueError(
            f"`{name}` must hold {what}, of shape [batch] or [batch, 1]. "
            f"Received: {name}.shape={shape}"
        )
    return x


def _binary_flags(flags):
    """With value checks on: `y_true` holds only 0 and 1 (or bools)."""
    validation.finite(flags, "y_true")
    if not validation.reads_values(flags):
        return
    values = np.asarray(ops.convert_to_numpy(ops.cast(ops.stop_gradient(flags), "float32")))
    bad = (values != 0) & (values != 1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ValueError(
            "`y_true` must hold pair flags, 1 (or True) for a pair of the same class and 0 for "
            f"a pair of different classes; {int(bad.sum())} of its values are neither "
            f"(first: {values[first]:g} at index ({first},)). "
            f"Received: y_true.shape={tuple(flags.shape)}"
        )


def contrastive_pair_losses(y_true, y_pred, *, margin):
    """Contrastive loss of pair distances, one value per pair, as `tfa.losses.contrastive_loss`.

    `y_pred[i]` is the distance between the two embeddings of pair `i` (for example the
    Euclidean distance of a siamese network's two outputs) and `y_true[i]` is 1 if the two
    belong to the same class, 0 otherwise:

    ```
    loss_i = y_i * d_i^2 + (1 - y_i) * max(margin - d_i, 0)^2
    ```

    Similar pairs are pulled together, dissimilar pairs pushed beyond `margin`. A flag is
    "similar" when it is not 0 (as a bool cast reads it); with value checks on, flags other
    than 0 and 1 raise.

    Difference from TF Addons: `y_true` and `y_pred` may each be `[B]` or `[B, 1]` and are
    matched pair by pair (TF Addons broadcasts a `[B]` `y_true` against a `[B, 1]` `y_pred` into
    a `[B, B]` matrix of meaningless terms, which is what a Keras model with a `[B, 1]` distance
    output gave it); float16/bfloat16 distances are computed in float32 and returned in their
    own dtype. TF Addons documents binary flags; it also takes other values as weights of the
    two terms (`y d^2 + (1 - y) ...`), which here read as "similar" when not 0.

    Raises:
        ValueError: if `y_true` or `y_pred` is not `[B]` / `[B, 1]`, their batch sizes differ,
            or `margin` is not a finite number. With value checks on
            (`kml.config.enable_value_checks`), also for NaN/inf in either and flags other
            than 0 and 1.
        TypeError: if `y_true` does not hold numbers.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> same = np.array([1, 1, 0, 0])
    >>> distance = np.array([0.5, 0.0, 0.25, 1.5])
    >>> losses = kml.contrastive_loss(same, distance)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.25   0.     0.5625 0.    ]

    Reference: Hadsell, Chopra and LeCun, "Dimensionality Reduction by Learning an Invariant
    Mapping", CVPR 2006.
    """
    flags = validation.numeric_tensor(y_true, "y_true")
    pair_distances = ops.convert_to_tensor(y_pred)
    validation.same_batch(flags, pair_distances)
    flags = _pair_vector(flags, "y_true", "one same/different flag per pair")
    pair_distances = _pair_vector(pair_distances, "y_pred", "one distance per pair")
    _binary_flags(flags)
    validation.finite(pair_distances, "y_pred")
    d = ops.cast(pair_distances, compute_dtype(pair_distances))
    similar = ops.not_equal(flags, ops.zeros_like(flags))
    losses = ops.where(similar, ops.square(d), ops.square(ops.relu(margin - d)))
    return in_dtype_of(losses, pair_distances)


contrastive_loss, ContrastiveLoss = base.declare(
    contrastive_pair_losses,
    function="contrastive_loss",
    cls="ContrastiveLoss",
    original="TF Addons `contrastive_loss` / `ContrastiveLoss`",
    summary="pair distances: `d^2` for a similar pair, `max(margin - d, 0)^2` for a dissimilar one",
    positional=("margin",),
    function_positional=True,
    inputs=base.Inputs(
        ("y_true", "y_pred"),
        (
            "`[B]` or `[B, 1]` pair flags, 1 (or `True`) for a pair of the same class.",
            "`[B]` or `[B, 1]` float pair distances.",
        ),
        returns="`[B]` per-pair losses in the dtype of `y_pred` (float32 for integer distances).",
    ),
    hyperparameters=dict(
        margin=base.real(1.0, "The distance beyond which dissimilar pairs add nothing."),
    ),
    class_doc="""Contrastive loss of pair distances (`contrastive_loss`), as
    `tfa.losses.ContrastiveLoss`.

    `y_pred` holds one distance per pair (`[B]` or `[B, 1]`, the output of a siamese model),
    `y_true` one flag per pair (1: same class). With the default reduction the value is TF
    Addons'; `sample_weight` weights pairs and `reduction=None` returns the `[B]` losses.

    This is TF Addons' loss on pair *distances*. pytorch-metric-learning's `ContrastiveLoss`,
    which takes a batch of labelled embeddings and forms every pair itself, is
    `BatchContrastiveLoss`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> same = np.array([1, 1, 0, 0])
    >>> distance = np.array([0.5, 0.0, 0.25, 1.5])
    >>> round(float(kml.ContrastiveLoss()(same, distance)), 5)
    0.20312

    In a siamese model (both branches share `embed`; the output is the `[B, 1]` distance):

    ```python
    a, b = keras.Input((16,)), keras.Input((16,))
    embed = keras.Sequential([keras.layers.Dense(32), keras.layers.UnitNormalization()])
    difference = keras.layers.Subtract()([embed(a), embed(b)])
    squared = keras.layers.Dot(axes=1)([difference, difference])  # squared distance
    model = keras.Model([a, b], squared)
    model.compile(optimizer="adam", loss=kml.ContrastiveLoss(margin=1.0))
    ```

    Reference: Hadsell, Chopra and LeCun, CVPR 2006.
    """,
)
