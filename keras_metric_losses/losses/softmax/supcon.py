"""Supervised contrastive losses: pytorch-metric-learning's `SupConLoss`, and its multi-label
form with positives weighted by their label overlap."""

from keras_metric_losses.losses import base
from keras_metric_losses.losses.softmax import core

_REDUCER = (
    '`"anchor"` (each anchor\'s own loss) or `"pml"` (its share of the mean over the anchors '
    "whose loss is `> 0`)."
)


def supcon_per_anchor(pairs, *, temperature, distance, reducer, block_size):
    """Supervised contrastive (SupCon) loss of a batch of embeddings, one value per example, as
    pytorch-metric-learning's `SupConLoss`.

    With logits `x[i, j] = S(e_i, k_j) / temperature` (cosine similarity by default), positives
    `P_i` (same label, not `i` itself) and the denominator `A_i` = every key but `i` itself:

    ```
    l_i    = -1/|P_i| sum_{j in P_i} ( x[i, j] - log sum_{k in A_i} exp(x[i, k]) )
    loss_i = l_i                                          (reducer="anchor")
    loss_i = B * l_i / |{i : l_i > 0}|                    (reducer="pml")
    ```

    - `reducer="anchor"` (default): `l_i`, and 0 (zero gradient) for an anchor without a
      positive or without a negative key.
    - `reducer="pml"`: pytorch-metric-learning's `AvgNonZeroReducer` (the mean over the anchors
      whose `l_i > 0`) as per-anchor shares: Keras' mean of the values is PML's scalar. An anchor
      whose only other key is its one positive has `l_i = 0` and does not count. A batch without
      a positive pair or without a negative pair gives 0.

    The multi-view form `y_pred` `[B, V, D]` is SupCon's original batch (features
    `[batch, n_views, dim]`): every view is an anchor, the example's other views are positives,
    and each example's value is the mean over its views. `ref_embeddings` / `ref_labels`,
    `cross_replica` and `block_size` work as in `ntxent_loss`. `SupConMultilabelLoss` takes
    multi-hot labels.

    Differences from pytorch-metric-learning: see `reducer`; half-precision embeddings are
    computed in float32.

    Raises:
        ValueError: as `ntxent_loss`.
        TypeError: as `ntxent_loss`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> losses = kml.supcon_loss(np.array([0, 0, 1, 1]), embeddings, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.2333 0.6271 0.6271 0.2333]

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020.
    """
    stats = core.anchor_stats(pairs, distance=distance, temperature=temperature, pairwise=False,
                              block_size=block_size)  # fmt: skip
    return core.supcon_values(stats, reducer, pairs.cross_replica)


def supcon_multilabel_per_anchor(pairs, **hyperparameters):
    """Multi-label supervised contrastive loss, one value per example: SupCon with positives
    weighted by their label overlap.

    With multi-hot labels `Y` `[B, C]`, the overlap `w[i, j] = Y_i . Y_j` (the number of labels
    `i` and `j` share, as in `npairs_multilabel_loss`) for every key `j` but `i` itself, and the
    denominator `A_i` = every key but `i` itself:

    ```
    l_i = -1 / sum_j w[i, j] * sum_j w[i, j] ( x[i, j] - log sum_{k in A_i} exp(x[i, k]) )
    ```

    A key sharing two labels with the anchor pulls twice as hard as one sharing one; keys with
    no common label are negatives. With one-hot labels `w` is the same-class mask and the loss
    equals `supcon_loss` exactly (both reducers). Non-binary entries act as weights.

    - `reducer="anchor"` (default): `l_i`; 0 with zero gradient for an anchor with no positive
      (no label, or no key sharing one) or no negative (every key shares a label with it).
    - `reducer="pml"`: the `AvgNonZeroReducer` shares of `supcon_loss`.

    No library has this loss (pytorch-metric-learning issues #231, #669); it is the SupCon
    counterpart of TF Addons' multilabel N-pair loss. Multi-view `y_pred` `[B, V, D]`,
    `ref_embeddings` with multi-hot `ref_labels` `[K, C]`, `cross_replica` and `block_size`
    work as in `supcon_loss`.

    Raises:
        ValueError: for a hyperparameter out of range, `block_size` with another distance,
            `y_true` not rank 2, `y_pred` not rank 2 or 3, different batch sizes, or keys that
            do not match the batch (rows, dimension, classes). With value checks on
            (`kml.config`), also for non-finite labels or embeddings.
        TypeError: if the labels are not numbers, or `cross_replica` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    >>> losses = kml.supcon_multilabel_loss(labels, embeddings, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [1.0333 0.6271 1.4271 0.2333]

    Reference: Khosla et al., "Supervised Contrastive Learning", NeurIPS 2020 (the loss);
    Sohn, NeurIPS 2016 (overlap-weighted multilabel targets).
    """
    return supcon_per_anchor(pairs, **hyperparameters)


_OPTIONS = (base.KEYS, base.CROSS_REPLICA, base.TILING)

supcon_loss, SupConLoss = base.declare(
    supcon_per_anchor,
    function="supcon_loss",
    cls="SupConLoss",
    original="PML `SupConLoss`",
    summary="softmax of each anchor's positives among every other key, averaged",
    positional=("temperature", "distance", "reducer"),
    inputs=base.VIEWS,
    options=_OPTIONS,
    joint_checks=(core.check_tiling,),
    hyperparameters=core.hyperparameters(0.1, _REDUCER),
    class_doc="""Supervised contrastive loss over labelled embeddings (`supcon_loss`), one value
    per example.

    With `reducer="pml"` the default reduction gives pytorch-metric-learning's `SupConLoss()`
    value (its `AvgNonZeroReducer`); with `reducer="anchor"` (default) the mean over all
    examples of their own losses (anchors without a positive or negative count as 0).

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> round(float(kml.SupConLoss(temperature=0.5)(np.array([0, 0, 1, 1]), embeddings)), 4)
    0.4302

    Reference: Khosla et al., NeurIPS 2020.
    """,
)

supcon_multilabel_loss, SupConMultilabelLoss = base.declare(
    supcon_multilabel_per_anchor,
    function="supcon_multilabel_loss",
    cls="SupConMultilabelLoss",
    summary="SupCon on multi-hot labels, positives weighted by their label overlap",
    positional=("temperature", "distance", "reducer"),
    inputs=base.MULTI_HOT_VIEWS,
    options=_OPTIONS,
    joint_checks=(core.check_tiling,),
    hyperparameters=core.hyperparameters(0.1, _REDUCER),
    class_doc="""Multi-label supervised contrastive loss (`supcon_multilabel_loss`), one value
    per example: `y_true` is multi-hot `[B, C]`, positives are weighted by label overlap.

    With one-hot labels it equals `SupConLoss` exactly.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [-0.6, 0.8]])
    >>> labels = np.array([[1, 1, 0], [1, 0, 0], [0, 1, 1], [0, 0, 1]])
    >>> round(float(kml.SupConMultilabelLoss(temperature=0.5)(labels, embeddings)), 4)
    0.8302

    Reference: Khosla et al., NeurIPS 2020.
    """,
)
