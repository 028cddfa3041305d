"""N-pair losses: softmax cross-entropy over a similarity matrix with label-derived targets."""

from keras_metric_losses import distributed, pairs, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import (
    compute_dtype,
    in_dtype_of,
    label_equality,
    soft_target_cross_entropy,
)

_MULTI_HOT_KEYS = "a multi-hot [num_keys, num_classes] label matrix"
_SIMILARITIES = "`[B, B]` float similarity logits (`[B, K]` with `key_labels`)."


def _similarities(labels, y_pred, key_labels, cross_replica, checked_labels):
    """`(y_pred, key_labels)`, checked: a `[b, b]` matrix whose columns are the rows' own
    examples (`key_labels` `None`), else `[b, K]` with one column per key label (`key_labels`,
    or with `cross_replica` the `labels` of every replica), checked by `checked_labels`."""
    y_pred = ops.convert_to_tensor(y_pred)
    square = key_labels is None and not cross_replica
    if square:
        validation.square_similarity(y_pred)
    validation.same_batch(labels, y_pred)
    validation.finite(y_pred, "y_pred", allow_negative_inf=True)
    if square:
        return y_pred, None
    if cross_replica:
        key_labels = distributed.all_gather(labels)
    key_labels = checked_labels(key_labels, "key_labels")
    validation.similarity_to_keys(y_pred, key_labels)
    return y_pred, key_labels


def _cross_entropy(target_weights, y_pred):
    """Per-anchor cross-entropy of the similarity rows against the row-normalised
    `target_weights`, computed in `compute_dtype(y_pred)` (float32 at least), returned in the
    dtype of `y_pred`."""
    dtype = compute_dtype(y_pred)
    losses = soft_target_cross_entropy(ops.cast(target_weights, dtype), ops.cast(y_pred, dtype))
    return in_dtype_of(losses, y_pred)


# The option's own text: here `y_pred` is already the similarity matrix.
_GATHER_KEY_LABELS = base.boolean(
    False,
    "Gather the labels of every replica for the columns of a `[b, B]` `y_pred` "
    "(`PairwiseSimilarity(cross_replica=True)`'s output).",
)


def npairs_per_anchor(y_true, y_pred, *, cross_replica, key_labels=None):
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
    labels = pairs.class_labels(y_true)
    y_pred, key_labels = _similarities(
        labels, y_pred, key_labels, cross_replica, pairs.class_labels
    )
    return _cross_entropy(label_equality(labels, key_labels), y_pred)


def npairs_multilabel_per_anchor(y_true, y_pred, *, cross_replica, key_labels=None):
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
    labels = pairs.multi_hot_labels(y_true)
    y_pred, key_labels = _similarities(
        labels,
        y_pred,
        key_labels,
        cross_replica,
        lambda keys, name: pairs.multi_hot_labels(keys, name, _MULTI_HOT_KEYS),
    )
    dtype = compute_dtype(y_pred)
    keys = labels if key_labels is None else key_labels
    overlap = ops.matmul(ops.cast(labels, dtype), ops.transpose(ops.cast(keys, dtype)))
    return _cross_entropy(overlap, y_pred)


def _inputs(labels, key_labels):
    """The inputs of an N-pair loss: labels, the similarity matrix, the columns' labels."""
    return base.Inputs(("y_true", "y_pred"), (labels, _SIMILARITIES),
                       keywords=(("key_labels", key_labels),))  # fmt: skip


npairs_loss, NpairsLoss = base.declare(
    npairs_per_anchor,
    function="npairs_loss",
    cls="NpairsLoss",
    original="`tfa.losses.NpairsLoss`",
    summary="softmax cross-entropy of each anchor's similarity row, target spread over "
    "same-label columns",
    options=(base.CROSS_REPLICA,),
    hyperparameters={"cross_replica": _GATHER_KEY_LABELS},
    inputs=_inputs(
        "`[B]` or `[B, 1]` integer class labels (a `tf.SparseTensor` is densified).",
        "Optional `[K]` or `[K, 1]` integer labels of the columns of `y_pred`. Defaults to `None`:"
        " the columns are the rows' own examples (`K = B`, labels `y_true`).",
    ),
    class_doc="""N-pair loss over a `[B, B]` similarity matrix (`npairs_loss`), one value per
    anchor.

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
    """,
)

npairs_multilabel_loss, NpairsMultilabelLoss = base.declare(
    npairs_multilabel_per_anchor,
    function="npairs_multilabel_loss",
    cls="NpairsMultilabelLoss",
    original="`tfa.losses.npairs_multilabel_loss`",
    summary="the same with targets from label-set overlap of multi-hot labels",
    options=(base.CROSS_REPLICA,),
    hyperparameters={"cross_replica": _GATHER_KEY_LABELS},
    inputs=_inputs(
        "`[B, C]` multi-hot labels (any numeric dtype; a `tf.SparseTensor` is densified).",
        "Optional `[K, C]` multi-hot labels of the columns of `y_pred`. Defaults to `None`: the "
        "columns are the rows' own examples.",
    ),
    class_doc="""Multilabel N-pair loss over a `[B, B]` similarity matrix
    (`npairs_multilabel_loss`), one value per anchor.

    With the default reduction the result equals TF Addons' `NpairsMultilabelLoss`. `y_true` is
    `[B, C]` multi-hot. `cross_replica=True` gathers the multi-hot labels of every replica for
    the columns of a `[b, B]` `y_pred`, as in `NpairsLoss`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> f = np.array([[1., 1.], [1., -1.], [-1., 1.], [-1., -1.]])
    >>> y = np.array([[1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 1, 1], [0, 0, 0, 1]])
    >>> round(float(kml.NpairsMultilabelLoss()(y, f @ f.T)), 5)
    1.42052

    Reference: Sohn, NeurIPS 2016.
    """,
)
