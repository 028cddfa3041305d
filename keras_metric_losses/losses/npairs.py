"""N-pair losses: softmax cross-entropy over a similarity matrix with label-derived targets."""

from keras import ops

from keras_metric_losses import distributed, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LabelLoss
from keras_metric_losses.ops import compute_dtype, label_equality, mean, soft_target_cross_entropy


def _similarity_cross_entropy(target_weights, y_pred):
    """Per-anchor cross-entropy of similarity rows, in `compute_dtype(y_pred)` (>= float32)."""
    dtype = compute_dtype(y_pred)
    return soft_target_cross_entropy(ops.cast(target_weights, dtype), ops.cast(y_pred, dtype))


def _npairs_per_anchor(y_true, y_pred, key_labels=None, cross_replica=False):
    """Per-anchor N-pair losses `[b]` in at least float32. See `npairs_loss`.

    Square path (`key_labels=None`, `cross_replica=False`): columns share the rows' labels.
    Otherwise `y_pred` is `[b, B]` and the columns' labels are `key_labels` (or, with
    `cross_replica=True`, the labels of every replica, gathered).
    """
    y_pred = ops.convert_to_tensor(y_pred)
    labels = validation.class_labels(validation.numeric_tensor(y_true, "y_true"))
    square = key_labels is None and not cross_replica
    if square:
        validation.square_similarity(y_pred)
    validation.same_batch(labels, y_pred)
    validation.integral_labels(labels, "y_true")
    validation.finite(y_pred, "y_pred", allow_negative_inf=True)
    if square:
        return _similarity_cross_entropy(label_equality(labels), y_pred)
    if cross_replica:
        key_labels = distributed.all_gather(labels)
    key_labels = validation.class_labels(
        validation.numeric_tensor(key_labels, "key_labels"), "key_labels"
    )
    validation.similarity_to_keys(y_pred, key_labels)
    validation.integral_labels(key_labels, "key_labels")
    return _similarity_cross_entropy(label_equality(labels, key_labels), y_pred)


def _npairs_multilabel_per_anchor(y_true, y_pred, key_labels=None, cross_replica=False):
    """Per-anchor multilabel N-pair losses `[b]` in at least float32. See
    `npairs_multilabel_loss`."""
    y_true, y_pred = validation.numeric_tensor(y_true, "y_true"), ops.convert_to_tensor(y_pred)
    validation.rank(y_true, 2, "a multi-hot [batch, num_classes] label matrix", "y_true")
    labels = ops.cast(y_true, compute_dtype(y_pred))
    square = key_labels is None and not cross_replica
    if square:
        validation.square_similarity(y_pred)
    validation.same_batch(y_true, y_pred)
    validation.finite(y_true, "y_true")
    validation.finite(y_pred, "y_pred", allow_negative_inf=True)
    if square:
        return _similarity_cross_entropy(ops.matmul(labels, ops.transpose(labels)), y_pred)
    if cross_replica:
        key_labels = distributed.all_gather(y_true)
    key_labels = validation.numeric_tensor(key_labels, "key_labels")
    validation.rank(key_labels, 2, "a multi-hot [num_keys, num_classes] label matrix", "key_labels")
    validation.similarity_to_keys(y_pred, key_labels)
    validation.finite(key_labels, "key_labels")
    keys = ops.cast(key_labels, compute_dtype(y_pred))
    return _similarity_cross_entropy(ops.matmul(labels, ops.transpose(keys)), y_pred)


def _mean_in_input_dtype(losses, y_pred):
    return ops.cast(mean(losses), ops.convert_to_tensor(y_pred).dtype)


@export
def npairs_loss(y_true, y_pred, *, key_labels=None):
    """N-pair loss of a similarity matrix, as `tfa.losses.npairs_loss`.

    Row `i` of `y_pred` holds the similarities of anchor `i` to every positive `j`
    (typically `y_pred = anchors @ positives.T`, both indexed by the same labels). Each row is a
    softmax classification whose target is spread uniformly over the columns with the same label:

    ```
    t[i, j] = [y_i == y_j] / sum_k [y_i == y_k]
    loss = mean_i ( -sum_j t[i, j] * log_softmax(y_pred[i])[j] )
    ```

    With distinct labels this is `mean_i log(1 + sum_{j != i} exp(S_ij - S_ii))`.

    With `key_labels`, `y_pred` is `[b, B]`: rows are anchors labelled `y_true`, columns are keys
    labelled `key_labels` (a larger gallery, or the global batch of a distributed step), and
    `t[i, j] = [y_i == k_j] / sum_l [y_i == k_l]`.

    Differences from TF Addons (deliberate fixes): labels of shape `[B, 1]` are flattened (TF
    Addons returns NaN for them, which is what `model.fit` hands it in Keras 2); labels are compared
    as given, not after a cast to the logits dtype, so large ids stay distinct; float16/bfloat16
    inputs are computed in float32 and the result is returned in the input dtype.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, B]` float similarity logits (`[B, K]` with `key_labels`).
        key_labels: Optional `[K]` or `[K, 1]` integer labels of the columns. Defaults to
            `None`: the columns are the rows' own examples (`K = B`, labels `y_true`).

    Returns:
        A scalar, the mean over anchors, in the dtype of `y_pred`.
            `NpairsLoss(reduction=None)` gives the per-anchor values.

    An empty batch gives 0; a batch of one gives 0 (its only column is its positive).
    `-inf` in `y_pred` masks a pair: it takes no probability and adds nothing.

    Raises:
        ValueError: if `y_true` (or `key_labels`) is not `[B]`/`[B, 1]`, `y_pred` is not square
            (has not one column per key label), or the batch sizes differ. For concrete
            (eager) inputs also if float labels are not integral (`3.0` is a class id, `0.5`
            is not) or `y_pred` holds NaN or `+inf`; inside a compiled function values are not
            checked.
        TypeError: if the labels are not numbers (strings).

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> float(kml.npairs_loss(np.array([0, 1, 2, 3]), f @ f.T))  # doctest: +ELLIPSIS
    0.25385...

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016.
    """
    return _mean_in_input_dtype(_npairs_per_anchor(y_true, y_pred, key_labels), y_pred)


@export
def npairs_multilabel_loss(y_true, y_pred, *, key_labels=None):
    """Multilabel N-pair loss of a similarity matrix, as `tfa.losses.npairs_multilabel_loss`.

    Targets come from the label overlap: with `K[i, j] = |labels(i) ∩ labels(j)|`
    (`K = y_true @ y_true.T`),

    ```
    t[i, j] = K[i, j] / sum_k K[i, k]
    loss = mean_i ( -sum_j t[i, j] * log_softmax(y_pred[i])[j] )
    ```

    One-hot `y_true` gives `npairs_loss`. Non-binary entries act as weights, as in TF Addons.
    With `key_labels` (`[K, C]`), `y_pred` is `[B, K]` and `K = y_true @ key_labels.T`.

    Difference from TF Addons: an anchor with no label has no target; its loss is 0 with zero
    gradient and it still counts in the mean (TF Addons returns NaN for the whole batch).

    Args:
        y_true: `[B, C]` multi-hot labels (any numeric dtype).
        y_pred: `[B, B]` float similarity logits (`[B, K]` with `key_labels`).
        key_labels: Optional `[K, C]` multi-hot labels of the columns. Defaults to `None`: the
            columns are the rows' own examples.

    Returns:
        A scalar, the mean over anchors, in the dtype of `y_pred`.

    An empty batch gives 0. `-inf` in `y_pred` masks a pair, as in `npairs_loss`.

    Raises:
        ValueError: if `y_true` (or `key_labels`) is not rank 2, `y_pred` is not square (has
            not one column per key), or the batch sizes differ. For concrete (eager) inputs
            also if the labels hold NaN or inf, or `y_pred` NaN or `+inf`.
        TypeError: if the labels are not numbers (strings).

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
    return _mean_in_input_dtype(_npairs_multilabel_per_anchor(y_true, y_pred, key_labels), y_pred)


@export
class NpairsLoss(LabelLoss):
    """N-pair loss over a `[B, B]` similarity matrix, one value per anchor.

    Computes `npairs_loss` per anchor row and lets Keras reduce: with the default reduction the
    result equals `npairs_loss(y_true, y_pred)` (TF Addons' `NpairsLoss`); `sample_weight` weights
    anchors and `reduction=None` returns the `[B]` per-anchor losses. Integer labels are compared
    exactly (ids 16777216 and 16777217 stay distinct, also through `model.fit`).

    With `cross_replica=True` (TensorFlow `tf.distribute`, `torch.distributed`), `y_pred` is
    the `[b, B]` output of `PairwiseSimilarity(cross_replica=True)`: this replica's anchors
    against the keys of every replica. The loss gathers the labels of all replicas for the
    columns and returns the losses of its own `b` anchors; Keras' reduction and the summation of
    gradients over replicas then give the loss and gradients of the global batch. Under JAX's
    `keras.distribution.DataParallel` the step already sees the global batch and the option
    changes nothing. See the "Distributed training" page.

    Args:
        name: Name of the loss. Defaults to `"npairs_loss"`.
        reduction: Keras reduction: `"sum_over_batch_size"` (default), `"sum"`, `"mean"`,
            `"mean_with_sample_weight"` or `None`.
        dtype: Loss dtype or policy; `y_pred` is cast to it (half precision is computed in
            float32). Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Gather the labels of every replica for the columns of
            `y_pred`. Defaults to `False`.

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

    def __init__(
        self,
        name="npairs_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        validation.boolean(cross_replica, "cross_replica")
        self.cross_replica = cross_replica

    def call(self, y_true, y_pred):
        return _npairs_per_anchor(y_true, y_pred, cross_replica=self.cross_replica)

    def get_config(self):
        return {**super().get_config(), "cross_replica": self.cross_replica}


@export
class NpairsMultilabelLoss(LabelLoss):
    """Multilabel N-pair loss over a `[B, B]` similarity matrix, one value per anchor.

    Computes `npairs_multilabel_loss` per anchor row; with the default reduction the result equals
    the function's scalar (TF Addons' `NpairsMultilabelLoss`). `y_true` is `[B, C]` multi-hot.

    `cross_replica=True` gathers the multi-hot labels of every replica for the columns of a
    `[b, B]` `y_pred`, as in `NpairsLoss`.

    Args:
        name: Name of the loss. Defaults to `"npairs_multilabel_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Gather the labels of every replica for the columns of
            `y_pred`. Defaults to `False`.

    Example:

    ```python
    model.compile(optimizer="adam", loss=kml.NpairsMultilabelLoss())
    model.fit([x_anchor, x_positive], multi_hot_labels)
    ```

    Reference: Sohn, NeurIPS 2016.
    """

    def __init__(
        self,
        name="npairs_multilabel_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        validation.boolean(cross_replica, "cross_replica")
        self.cross_replica = cross_replica

    def call(self, y_true, y_pred):
        return _npairs_multilabel_per_anchor(y_true, y_pred, cross_replica=self.cross_replica)

    def get_config(self):
        return {**super().get_config(), "cross_replica": self.cross_replica}
