"""Lifted structure losses: TF Addons' `lifted_struct_loss` and pytorch-metric-learning's
`LiftedStructureLoss` (one implementation: they are the same loss up to the margins, the
normalisation and the reduction) and PML's `GeneralizedLiftedStructureLoss`."""

from keras import ops

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses import pair_terms
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import label_equality, masked_logsumexp


def _negative_logsumexp(matrix, negative, neg_margin, similarity):
    """`(log sum_{l in N_i} exp(neg_margin - D_il), has_negative)` per row (the log-sum-exp is
    0 for a row without negatives; `has_negative` says so)."""
    terms = pair_terms.beyond(neg_margin, matrix, similarity)
    return masked_logsumexp(terms, negative), ops.any(negative, axis=-1)


def lifted_structure_elements(pairs, distance="euclidean", neg_margin=1.0, pos_margin=0.0):
    """The lifted structure terms, dense: `{"loss": (values, mask)}`, one term per ordered
    positive pair `(i, j)` of the `[b, K]` masks (PML's unreduced elements).

    ```
    N_i   = log sum_{l in N_i} exp(neg_margin - D_il)          (the negatives of i)
    N_j   = log sum_{l in N_j} exp(neg_margin - D_jl)          (the negatives of key j)
    t_ij  = max(logaddexp(N_i, N_j) + D_ij - pos_margin, 0)^2 / 2
    ```

    (margins flipped for a similarity). The negatives of key `j` are read from row `j` of the
    matrix in a batch; for other keys (`ref_embeddings`, a memory, every replica) they are the
    key's negatives among the keys, from a `[K, K]` distance matrix. A pair counts if its
    anchor has a positive and a negative (the mask holds only those pairs); an end without
    negatives drops out of the log-sum-exp.
    """
    matrix, similarity = pair_terms.pair_matrix(pairs, distance)
    query_lse, query_has = _negative_logsumexp(matrix, pairs.negative, neg_margin, similarity)
    if pairs.keys_are_queries:
        key_lse, key_has = query_lse, query_has
    else:
        key_matrix = distances.get(distance)(pairs.keys, pairs.keys)
        key_negative = ops.logical_not(label_equality(pairs.key_labels))
        key_lse, key_has = _negative_logsumexp(key_matrix, key_negative, neg_margin, similarity)
    query_lse, query_has = ops.expand_dims(query_lse, 1), ops.expand_dims(query_has, 1)
    key_lse, key_has = ops.expand_dims(key_lse, 0), ops.expand_dims(key_has, 0)
    joint = ops.where(
        ops.logical_and(query_has, key_has),
        ops.logaddexp(query_lse, key_lse),
        ops.where(query_has, query_lse, key_lse),
    )
    terms = ops.square(ops.relu(joint + pair_terms.beyond(matrix, pos_margin, similarity))) / 2
    mask = ops.logical_and(pairs.positive, query_has)
    return {"loss": (pair_terms.masked(terms, mask), mask)}


def lifted_structure_per_anchor(pairs, distance, neg_margin, pos_margin, reducer):
    """`[b]` per-anchor values: the mean of the anchor's pair terms (`"anchor"`) or its share
    `b * sum_j t_ij / n_pairs` of the mean over the batch's pairs (`"pml"`)."""
    if pair_terms.is_empty(pairs):
        return pair_terms.zeros(pairs)
    values, mask = lifted_structure_elements(pairs, distance, neg_margin, pos_margin)["loss"]
    return pair_terms.reduce_pairs(values, mask, reducer, reduction.batch_mean)


_MARGINS = {"neg_margin": validation.real, "pos_margin": validation.real}
_FRONT_END = {"normalize": validation.boolean, "cross_replica": validation.boolean}


@export
@hyperparameters(distance=distances.check, reducer=pair_terms.check_reducer, **_MARGINS,
                 **_FRONT_END)  # fmt: skip
def lifted_structure_loss(
    y_true,
    y_pred,
    *,
    neg_margin=1.0,
    pos_margin=0.0,
    distance="euclidean",
    normalize=True,
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Lifted structure loss, one value per anchor: PML's `LiftedStructureLoss`, and TF Addons'
    `lifted_struct_loss` with other settings.

    With `D = distance(y_pred, y_pred)` (embeddings L2-normalised first when `normalize`), each
    ordered positive pair `(i, j)` (same label, `j != i`) pays for its distance and for the
    negatives of *both* its ends in one log-sum-exp:

    ```
    t_ij = max(log(sum_{l in N_i} exp(neg_margin - D_il) + sum_{l in N_j} exp(neg_margin - D_jl))
               + D_ij - pos_margin, 0)^2 / 2
    ```

    (for a similarity the margins flip: `S_il - neg_margin`, `pos_margin - S_ij`). `t` is
    symmetric, so each unordered pair `{i, j}` is counted once at each end.

    Per-anchor values (`reducer`):

    - `"anchor"` (default): the mean of `t_ij` over the anchor's positives;
    - `"pml"`: the anchor's share `B * sum_j t_ij / n_pairs` of the mean over the `n_pairs`
      ordered positive pairs of the batch (PML's `MeanReducer`; TF Addons' reduction, which
      averages over unordered pairs, is the same number). Keras' mean of the values is that
      batch mean, and its gradient too.

    PML's `LiftedStructureLoss(neg_margin, pos_margin)` is `reducer="pml"` with the defaults
    (`LpDistance()`: `distance="euclidean", normalize=True`). TF Addons'
    `lifted_struct_loss(labels, embeddings, margin)` is `neg_margin=margin, pos_margin=0,
    normalize=False, reducer="pml"`, which is what `lifted_struct_loss` calls.

    Anchors without a positive, or without a negative, get 0 and a zero gradient (PML returns 0
    for a batch without positive or negative pairs; TF Addons returns NaN). With
    `ref_embeddings` / `ref_labels` (a gallery, a cross-batch memory) or `cross_replica=True`
    the pairs join the batch to those keys, and the negatives of a key are its negatives among
    the keys (an extra `[K, K]` distance matrix). Cost: `O(B^2)` memory, no `[B, B, B]` tensor.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        neg_margin: Negatives farther than about this add little. Defaults to 1.0.
        pos_margin: Subtracted from positive distances. Defaults to 0.0.
        distance: A distance name or callable `fn(query, key) -> [Q, K]`. Defaults to
            `"euclidean"`.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        cross_replica: Pair the batch with the embeddings of every replica. Defaults to
            `False`.
        ref_embeddings: Optional `[K, D]` keys.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes, an unknown distance or reducer, or non-finite margins;
            with value checks on, also for non-integral labels and non-finite embeddings.
        TypeError: if the labels are not numbers, or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.lifted_structure_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [2.4825 2.4825 2.4825 2.4825]

    Reference: Oh Song et al., "Deep Metric Learning via Lifted Structured Feature Embedding",
    CVPR 2016; pytorch-metric-learning 2.9 `losses.LiftedStructureLoss`.
    """
    pairs = pair_terms.batch_pairs(y_true, y_pred, normalize=normalize,
                                   ref_embeddings=ref_embeddings, ref_labels=ref_labels,
                                   cross_replica=cross_replica)  # fmt: skip
    losses = lifted_structure_per_anchor(pairs, distance, neg_margin, pos_margin, reducer)
    return pair_terms.in_dtype_of(losses, y_pred)


@export
class LiftedStructureLoss(LossFunctionWrapper):
    """Lifted structure loss (`lifted_structure_loss`): PML's `LiftedStructureLoss`.

    With `reducer="pml"` and the default reduction the value is PML's
    `LiftedStructureLoss(neg_margin, pos_margin)`; the default `reducer="anchor"` gives each
    anchor the mean of its positive-pair terms. `LiftedStructLoss` is TF Addons' version of the
    same loss.

    Args:
        neg_margin: Defaults to 1.0.
        pos_margin: Defaults to 0.0.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        name: Defaults to `"lifted_structure_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Pair the batch with the embeddings of every replica.
            Defaults to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.LiftedStructureLoss(reducer="pml")(labels, embeddings)), 5)
    2.48251

    Reference: Oh Song et al., CVPR 2016; pytorch-metric-learning 2.9.
    """

    def __init__(
        self,
        neg_margin=1.0,
        pos_margin=0.0,
        distance="euclidean",
        normalize=True,
        reducer="anchor",
        name="lifted_structure_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            lifted_structure_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            neg_margin=neg_margin,
            pos_margin=pos_margin,
            distance=distance,
            normalize=normalize,
            reducer=reducer,
            cross_replica=cross_replica,
        )


@export
@hyperparameters(margin=validation.real)
def lifted_struct_loss(y_true, y_pred, margin=1.0):
    """TF Addons' lifted structure loss, as one share per anchor: the mean of the result is
    `tfa.losses.lifted_struct_loss(labels, embeddings, margin)`.

    With `D` the Euclidean distances of the (not normalised) embeddings and, for every ordered
    positive pair `(i, j)`,

    ```
    J_ij = log(sum_{l: y_l != y_i} exp(margin - D_il) + sum_{l: y_l != y_j} exp(margin - D_jl))
           + D_ij
    ```

    TF Addons returns the scalar `sum_{(i, j)} max(J_ij, 0)^2 / (2 n_pairs)` over the
    `n_pairs` ordered positive pairs (the mean over unordered pairs of `max(J, 0)^2 / 2`),
    which is not a mean of per-anchor terms. Here each unordered pair's term is split evenly
    between its two ends: anchor `i` gets

    ```
    loss_i = B * sum_{j in P_i} max(J_ij, 0)^2 / (2 n_pairs)
    ```

    so `mean_i loss_i` is TF Addons' value (and `LiftedStructLoss` with the default reduction
    returns it). It is `lifted_structure_loss(y_true, y_pred, neg_margin=margin,
    pos_margin=0.0, normalize=False, reducer="pml")`, the same code.

    Differences from TF Addons: a batch without positive pairs, or without negatives, gives
    zeros with a zero gradient (TF Addons: NaN); labels may be `[B]` or `[B, 1]`;
    float16/bfloat16 embeddings are computed in float32 (float64 works too). The values depend
    on the whole batch (the pair count), so `sample_weight` reweights shares of the batch loss.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels (TF Addons' `labels`).
        y_pred: `[B, D]` embeddings (TF Addons' `embeddings`), not normalised.
        margin: The margin on the negative distances, a finite float. Defaults to 1.0.

    Returns:
        `[B]` per-anchor shares in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes or a non-finite margin; with value checks on, also for
            non-integral labels and non-finite embeddings.
        TypeError: if the labels are not numbers.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> shares = kml.lifted_struct_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(shares).round(4))
    [2.4825 2.4825 2.4825 2.4825]
    >>> round(float(keras.ops.mean(shares)), 5)  # TF Addons' scalar
    2.48251

    Reference: Oh Song et al., "Deep Metric Learning via Lifted Structured Feature Embedding",
    CVPR 2016.
    """
    pairs = pair_terms.batch_pairs(y_true, y_pred)
    losses = lifted_structure_per_anchor(pairs, "euclidean", margin, 0.0, "pml")
    return pair_terms.in_dtype_of(losses, y_pred)


@export
class LiftedStructLoss(LossFunctionWrapper):
    """TF Addons' lifted structure loss (`lifted_struct_loss`): with the default reduction the
    value is `tfa.losses.LiftedStructLoss(margin)`'s.

    Each anchor's value is its share of TF Addons' batch loss (each unordered positive pair's
    term split between its two ends; see `lifted_struct_loss`), so `reduction=None` returns
    `[B]` shares whose mean is TF Addons' scalar. The same loss with PML's margins and
    normalisation is `LiftedStructureLoss`: `LiftedStructLoss(margin=m)` equals
    `LiftedStructureLoss(neg_margin=m, pos_margin=0.0, normalize=False, reducer="pml")`.

    Args:
        margin: The margin on the negative distances. Defaults to 1.0.
        name: Name of the loss. Defaults to `"lifted_struct_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.LiftedStructLoss()(labels, embeddings)), 5)
    2.48251

    Reference: Oh Song et al., CVPR 2016.
    """

    def __init__(
        self, margin=1.0, name="lifted_struct_loss", reduction="sum_over_batch_size", dtype=None
    ):
        super().__init__(
            lifted_struct_loss, name=name, reduction=reduction, dtype=dtype, margin=margin
        )


# --- the generalized lifted structure loss ----------------------------------------------------


def generalized_lifted_structure_elements(
    pairs, distance="euclidean", neg_margin=1.0, pos_margin=0.0
):
    """PML's `GeneralizedLiftedStructureLoss` per anchor, `[b]` (its elements, one per anchor):
    `max(lse_{j in P_i}(D_ij - pos_margin) + lse_{l in N_i}(neg_margin - D_il), 0)`, an empty
    log-sum-exp counting 0."""
    matrix, similarity = pair_terms.pair_matrix(pairs, distance)
    positive = masked_logsumexp(pair_terms.beyond(matrix, pos_margin, similarity), pairs.positive)
    negative = masked_logsumexp(pair_terms.beyond(neg_margin, matrix, similarity), pairs.negative)
    return ops.relu(positive + negative)


@export
@hyperparameters(distance=distances.check, **_MARGINS, **_FRONT_END)
def generalized_lifted_structure_loss(
    y_true,
    y_pred,
    *,
    neg_margin=1.0,
    pos_margin=0.0,
    distance="euclidean",
    normalize=True,
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Generalized lifted structure loss, one value per anchor: PML's
    `GeneralizedLiftedStructureLoss`.

    With `D = distance(y_pred, y_pred)` (embeddings L2-normalised first when `normalize`):

    ```
    loss_i = max(log sum_{j in P_i} exp(D_ij - pos_margin)
                 + log sum_{l in N_i} exp(neg_margin - D_il), 0)
    ```

    (a smooth version of "farthest positive minus closest negative"; margins flipped for a
    similarity). As in PML an empty sum counts 0: an anchor with only negatives (all labels
    distinct) or only positives (one class) still pays its one term, and a batch of one gives
    0. PML averages the anchors (`MeanReducer`), which is Keras' default reduction: the class's
    value is PML's.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        neg_margin: Defaults to 1.0.
        pos_margin: Defaults to 0.0.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        cross_replica: Compare with the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes, an unknown distance or non-finite margins; with value
            checks on, also for non-integral labels and non-finite embeddings.
        TypeError: if the labels are not numbers, or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.generalized_lifted_structure_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [1.2047 1.783  1.2047 1.783 ]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    arXiv:1703.07737 (the generalized form); pytorch-metric-learning 2.9.
    """
    pairs = pair_terms.batch_pairs(y_true, y_pred, normalize=normalize,
                                   ref_embeddings=ref_embeddings, ref_labels=ref_labels,
                                   cross_replica=cross_replica)  # fmt: skip
    if pair_terms.is_empty(pairs):
        return pair_terms.in_dtype_of(pair_terms.zeros(pairs), y_pred)
    losses = generalized_lifted_structure_elements(pairs, distance, neg_margin, pos_margin)
    return pair_terms.in_dtype_of(losses, y_pred)


@export
class GeneralizedLiftedStructureLoss(LossFunctionWrapper):
    """Generalized lifted structure loss (`generalized_lifted_structure_loss`): with the
    default reduction the value is PML's `GeneralizedLiftedStructureLoss`.

    Args:
        neg_margin: Defaults to 1.0.
        pos_margin: Defaults to 0.0.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        name: Defaults to `"generalized_lifted_structure_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Compare with the embeddings of every replica. Defaults
            to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.GeneralizedLiftedStructureLoss()(labels, embeddings)), 5)
    1.49385

    Reference: Hermans et al., arXiv:1703.07737; pytorch-metric-learning 2.9.
    """

    def __init__(
        self,
        neg_margin=1.0,
        pos_margin=0.0,
        distance="euclidean",
        normalize=True,
        name="generalized_lifted_structure_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            generalized_lifted_structure_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            neg_margin=neg_margin,
            pos_margin=pos_margin,
            distance=distance,
            normalize=normalize,
            cross_replica=cross_replica,
        )
