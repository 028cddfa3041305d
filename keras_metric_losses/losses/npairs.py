"""N-pair losses: softmax cross-entropy over a similarity matrix with label-derived targets."""

from keras import ops

from keras_metric_losses import distributed, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import compute_dtype, label_equality, soft_target_cross_entropy


def _similarity_cross_entropy(target_weights, y_pred):
    """Per-anchor cross-entropy of similarity rows, in `compute_dtype(y_pred)` (>= float32)."""
    dtype = compute_dtype(y_pred)
    return soft_target_cross_entropy(ops.cast(target_weights, dtype), ops.cast(y_pred, dtype))


def _npairs_per_anchor(y_true, y_pred, key_labels=None, cross_replica=False):
    """Per-anchor N-pair losses `[b]` in at least float32.

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
    """Per-anchor multilabel N-pair losses `[b]` in at least float32."""
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


def _in_input_dtype(losses, y_pred):
    return ops.cast(losses, ops.convert_to_tensor(y_pred).dtype)


@export
@hyperparameters(cross_replica=validation.boolean)
def npairs_loss(y_true, y_pred, *, key_labels=None, cross_replica=False):
    """N-pair loss of a similarity matrix, one value per anchor; its mean is
    `tfa.losses.npairs_loss`.

    Row `i` of `y_pred` holds the similarities of anchor `i` to every positive `j`
    (typically `y_pred = anchors @ positives.T`, both indexed by the same labels). Each row is a
    softmax classification whose target is spread uniformly over the columns with the same label:

    ```
    t[i, j] = [y_i == y_j] / sum_k [y_i == y_k]
    loss_i = -sum_j t[i, j] * log_softmax(y_pred[i])[j]
    ```

    With distinct labels `loss_i = log(1 + sum_{j != i} exp(S_ij - S_ii))`. TF Addons returns
    the batch mean `mean_i loss_i`; this function returns the `[B]` values, as Keras' loss
    functions do, so `sample_weight` weights anchors (`keras.ops.mean` of the result is TF
    Addons' value).

    With `key_labels`, `y_pred` is `[b, K]`: rows are anchors labelled `y_true`, columns are keys
    labelled `key_labels` (a larger gallery), and `t[i, j] = [y_i == k_j] / sum_l [y_i == k_l]`.
    With `cross_replica=True` (`tf.distribute`, `torch.distributed`), `y_pred` is the `[b, B]`
    output of `PairwiseSimilarity(cross_replica=True)` and the column labels are gathered from
    every replica (see the "Distributed training" page).

    Differences from TF Addons (deliberate fixes): labels of shape `[B, 1]` are flattened (TF
    Addons returns NaN for them, which is what `model.fit` hands it in Keras 2); labels are
    compared as given, not after a cast to the logits dtype, so large ids stay distinct;
    float16/bfloat16 inputs are computed in float32 and the result is returned in the input
    dtype. An empty batch gives `[]`; a batch of one gives `[0]`. `-inf` in `y_pred` masks a
    pair: it takes no probability and adds nothing.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels (a `tf.SparseTensor` is densified).
        y_pred: `[B, B]` float similarity logits (`[B, K]` with `key_labels`).
        key_labels: Optional `[K]` or `[K, 1]` integer labels of the columns. Defaults to
            `None`: the columns are the rows' own examples (`K = B`, labels `y_true`).
        cross_replica: Keyword-only. Gather the labels of every replica for the columns of
            `y_pred`. Defaults to `False`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_true` (or `key_labels`) is not `[B]`/`[B, 1]`, `y_pred` is not square
            (has not one column per key label), or the batch sizes differ. With value checks on
            (`kml.config.enable_value_checks`), also for non-integral float labels (`3.0` is a
            class id, `0.5` is not) and NaN or `+inf` in `y_pred`.
        TypeError: if the labels are not numbers (strings), or `cross_replica` not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> losses = kml.npairs_loss(np.array([0, 1, 2, 3]), f @ f.T)
    >>> print(keras.ops.convert_to_numpy(losses).round(5))
    [0.25386 0.25386 0.25386 0.25386]

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016.
    """
    return _in_input_dtype(_npairs_per_anchor(y_true, y_pred, key_labels, cross_replica), y_pred)


@export
@hyperparameters(cross_replica=validation.boolean)
def npairs_multilabel_loss(y_true, y_pred, *, key_labels=None, cross_replica=False):
    """Multilabel N-pair loss of a similarity matrix, one value per anchor; its mean is
    `tfa.losses.npairs_multilabel_loss`.

    Targets come from the label overlap: with `K[i, j] = |labels(i) ∩ labels(j)|`
    (`K = y_true @ y_true.T`),

    ```
    t[i, j] = K[i, j] / sum_k K[i, k]
    loss_i = -sum_j t[i, j] * log_softmax(y_pred[i])[j]
    ```

    One-hot `y_true` gives `npairs_loss`. Non-binary entries act as weights, as in TF Addons.
    With `key_labels` (`[K, C]`), `y_pred` is `[B, K]` and `K = y_true @ key_labels.T`;
    `cross_replica=True` gathers the multi-hot labels of every replica for the columns.

    Difference from TF Addons: an anchor with no label has no target; its loss is 0 with zero
    gradient (TF Addons returns NaN for the whole batch). An empty batch gives `[]`. `-inf` in
    `y_pred` masks a pair, as in `npairs_loss`.

    Args:
        y_true: `[B, C]` multi-hot labels (any numeric dtype; a `tf.SparseTensor` is densified).
        y_pred: `[B, B]` float similarity logits (`[B, K]` with `key_labels`).
        key_labels: Optional `[K, C]` multi-hot labels of the columns. Defaults to `None`: the
            columns are the rows' own examples.
        cross_replica: Keyword-only. Gather the labels of every replica for the columns of
            `y_pred`. Defaults to `False`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: if `y_true` (or `key_labels`) is not rank 2, `y_pred` is not square (has
            not one column per key), or the batch sizes differ. With value checks on, also if
            the labels hold NaN or inf, or `y_pred` NaN or `+inf`.
        TypeError: if the labels are not numbers (strings), or `cross_replica` not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> y = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> losses = kml.npairs_multilabel_loss(y, f @ f.T)
    >>> float(keras.ops.mean(losses))  # TF Addons' value  # doctest: +ELLIPSIS
    1.42052...

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016.
    """
    return _in_input_dtype(
        _npairs_multilabel_per_anchor(y_true, y_pred, key_labels, cross_replica), y_pred
    )


@export
class NpairsLoss(LossFunctionWrapper):
    """N-pair loss over a `[B, B]` similarity matrix (`npairs_loss`), one value per anchor.

    With the default reduction the result equals TF Addons' `NpairsLoss`; `sample_weight`
    weights anchors and `reduction=None` returns the `[B]` per-anchor losses. Integer labels are
    compared exactly (ids 16777216 and 16777217 stay distinct, also through `model.fit`).

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

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> loss = kml.NpairsLoss()
    >>> round(float(loss(np.array([0, 1, 2, 3]), f @ f.T)), 5)
    0.25386

    In a model, `kml.PairwiseSimilarity` turns two views' embeddings into `y_pred`:

    ```python
    embed = keras.Sequential([keras.layers.Dense(32), keras.layers.UnitNormalization()])
    anchors, positives = keras.Input((16,)), keras.Input((16,))
    similarity = kml.PairwiseSimilarity()([embed(anchors), embed(positives)])
    model = keras.Model([anchors, positives], similarity)
    model.compile(optimizer="adam", loss=kml.NpairsLoss())
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
        super().__init__(
            npairs_loss, name=name, reduction=reduction, dtype=dtype, cross_replica=cross_replica
        )


@export
class NpairsMultilabelLoss(LossFunctionWrapper):
    """Multilabel N-pair loss over a `[B, B]` similarity matrix (`npairs_multilabel_loss`),
    one value per anchor.

    With the default reduction the result equals TF Addons' `NpairsMultilabelLoss`. `y_true` is
    `[B, C]` multi-hot. `cross_replica=True` gathers the multi-hot labels of every replica for
    the columns of a `[b, B]` `y_pred`, as in `NpairsLoss`.

    Args:
        name: Name of the loss. Defaults to `"npairs_multilabel_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Gather the labels of every replica for the columns of
            `y_pred`. Defaults to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> y = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> round(float(kml.NpairsMultilabelLoss()(y, f @ f.T)), 5)
    1.42052

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
        super().__init__(
            npairs_multilabel_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            cross_replica=cross_replica,
        )
