"""N-pair losses: softmax cross-entropy over a similarity matrix with label-derived targets."""

from keras import ops

from keras_metric_losses import validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LabelLoss
from keras_metric_losses.ops import compute_dtype, label_equality, mean, soft_target_cross_entropy


def _similarity_cross_entropy(target_weights, y_pred):
    """Per-anchor cross-entropy of similarity rows, in `compute_dtype(y_pred)` (>= float32)."""
    dtype = compute_dtype(y_pred)
    return soft_target_cross_entropy(ops.cast(target_weights, dtype), ops.cast(y_pred, dtype))


def _npairs_per_anchor(y_true, y_pred):
    """Per-anchor N-pair losses `[B]` in at least float32. See `npairs_loss`."""
    y_pred = ops.convert_to_tensor(y_pred)
    labels = validation.class_labels(validation.numeric_tensor(y_true, "y_true"))
    validation.square_similarity(y_pred)
    validation.same_batch(labels, y_pred)
    return _similarity_cross_entropy(label_equality(labels), y_pred)


def _npairs_multilabel_per_anchor(y_true, y_pred):
    """Per-anchor multilabel N-pair losses `[B]` in at least float32. See
    `npairs_multilabel_loss`."""
    y_true, y_pred = validation.numeric_tensor(y_true, "y_true"), ops.convert_to_tensor(y_pred)
    validation.rank(y_true, 2, "a multi-hot [batch, num_classes] label matrix", "y_true")
    validation.square_similarity(y_pred)
    validation.same_batch(y_true, y_pred)
    labels = ops.cast(y_true, compute_dtype(y_pred))
    return _similarity_cross_entropy(ops.matmul(labels, ops.transpose(labels)), y_pred)


def _mean_in_input_dtype(losses, y_pred):
    return ops.cast(mean(losses), ops.convert_to_tensor(y_pred).dtype)


@export
def npairs_loss(y_true, y_pred):
    """N-pair loss of a similarity matrix, as `tfa.losses.npairs_loss`.

    Row `i` of `y_pred` holds the similarities of anchor `i` to every positive `j`
    (typically `y_pred = anchors @ positives.T`, both indexed by the same labels). Each row is a
    softmax classification whose target is spread uniformly over the columns with the same label:

    ```
    t[i, j] = [y_i == y_j] / sum_k [y_i == y_k]
    loss = mean_i ( -sum_j t[i, j] * log_softmax(y_pred[i])[j] )
    ```

    With distinct labels this is `mean_i log(1 + sum_{j != i} exp(S_ij - S_ii))`.

    Differences from TF Addons (deliberate fixes): labels of shape `[B, 1]` are flattened (TF
    Addons returns NaN for them, which is what `model.fit` hands it in Keras 2); labels are compared
    as given, not after a cast to the logits dtype, so large ids stay distinct; float16/bfloat16
    inputs are computed in float32 and the result is returned in the input dtype.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, B]` float similarity logits.

    Returns:
        A scalar, the mean over anchors, in the dtype of `y_pred`.
            `NpairsLoss(reduction=None)` gives the per-anchor values.

    Raises:
        ValueError: if `y_true` is not `[B]`/`[B, 1]`, `y_pred` is not square, or the batch sizes
            differ.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> float(kml.npairs_loss(np.array([0, 1, 2, 3]), f @ f.T))  # doctest: +ELLIPSIS
    0.25385...

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016.
    """
    return _mean_in_input_dtype(_npairs_per_anchor(y_true, y_pred), y_pred)


@export
def npairs_multilabel_loss(y_true, y_pred):
    """Multilabel N-pair loss of a similarity matrix, as `tfa.losses.npairs_multilabel_loss`.

    Targets come from the label overlap: with `K[i, j] = |labels(i) ∩ labels(j)|`
    (`K = y_true @ y_true.T`),

    ```
    t[i, j] = K[i, j] / sum_k K[i, k]
    loss = mean_i ( -sum_j t[i, j] * log_softmax(y_pred[i])[j] )
    ```

    One-hot `y_true` gives `npairs_loss`. Non-binary entries act as weights, as in TF Addons.

    Difference from TF Addons: an anchor with no label has no target; its loss is 0 with zero
    gradient and it still counts in the mean (TF Addons returns NaN for the whole batch).

    Args:
        y_true: `[B, C]` multi-hot labels (any numeric dtype).
        y_pred: `[B, B]` float similarity logits.

    Returns:
        A scalar, the mean over anchors, in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_true` is not rank 2, `y_pred` is not square, or the batch sizes differ.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> y = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> float(kml.npairs_multilabel_loss(y, f @ f.T))  # doctest: +ELLIPSIS
    1.42052...

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016.
    """
    return _mean_in_input_dtype(_npairs_multilabel_per_anchor(y_true, y_pred), y_pred)


@export
class NpairsLoss(LabelLoss):
    """N-pair loss over a `[B, B]` similarity matrix, one value per anchor.

    Computes `npairs_loss` per anchor row and lets Keras reduce: with the default reduction the
    result equals `npairs_loss(y_true, y_pred)` (TF Addons' `NpairsLoss`); `sample_weight` weights
    anchors and `reduction=None` returns the `[B]` per-anchor losses. Integer labels are compared
    exactly (ids 16777216 and 16777217 stay distinct, also through `model.fit`).

    Args:
        name: Name of the loss. Defaults to `"npairs_loss"`.
        reduction: Keras reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"` or `None`.
        dtype: Loss dtype or policy; `y_pred` is cast to it (half precision is computed in
            float32). Defaults to `keras.config.floatx()`.

    Example:

    ```python
    embed = keras.Sequential([keras.layers.Dense(32), keras.layers.UnitNormalization()])
    anchors, positives = keras.Input((16,)), keras.Input((16,))
    similarity = kml.layers.PairwiseSimilarity()([embed(anchors), embed(positives)])
    model = keras.Model([anchors, positives], similarity)
    model.compile(optimizer="adam", loss=kml.NpairsLoss())
    model.fit([x_anchor, x_positive], labels, batch_size=64)
    ```

    Reference: Sohn, NeurIPS 2016.
    """

    def __init__(self, name="npairs_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return _npairs_per_anchor(y_true, y_pred)


@export
class NpairsMultilabelLoss(LabelLoss):
    """Multilabel N-pair loss over a `[B, B]` similarity matrix, one value per anchor.

    Computes `npairs_multilabel_loss` per anchor row; with the default reduction the result equals
    the function's scalar (TF Addons' `NpairsMultilabelLoss`). `y_true` is `[B, C]` multi-hot.

    Args:
        name: Name of the loss. Defaults to `"npairs_multilabel_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=kml.NpairsMultilabelLoss())
    model.fit([x_anchor, x_positive], multi_hot_labels)
    ```

    Reference: Sohn, NeurIPS 2016.
    """

    def __init__(self, name="npairs_multilabel_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return _npairs_multilabel_per_anchor(y_true, y_pred)
