"""Contrastive losses: TF Addons' `contrastive_loss` on pair distances, and pytorch-metric-
learning's `ContrastiveLoss` / `SignalToNoiseRatioContrastiveLoss` on a batch of embeddings
(here `BatchContrastiveLoss`, a distinct name: PML's loss and TF Addons' share a name but not
their inputs)."""

import numpy as np
from keras import ops

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses import pair_terms
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import compute_dtype

# --- TF Addons: a loss on pair distances ------------------------------------------------------


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


@export
@hyperparameters(margin=validation.real)
def contrastive_loss(y_true, y_pred, margin=1.0):
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

    Args:
        y_true: `[B]` or `[B, 1]` pair flags, 1 (or `True`) for a pair of the same class.
        y_pred: `[B]` or `[B, 1]` float pair distances.
        margin: The distance beyond which dissimilar pairs add nothing, a finite float.
            Defaults to 1.0.

    Returns:
        `[B]` per-pair losses in the dtype of `y_pred` (float32 for integer distances).

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
    return pair_terms.in_dtype_of(losses, pair_distances)


@export
class ContrastiveLoss(LossFunctionWrapper):
    """Contrastive loss of pair distances (`contrastive_loss`), as `tfa.losses.ContrastiveLoss`.

    `y_pred` holds one distance per pair (`[B]` or `[B, 1]`, the output of a siamese model),
    `y_true` one flag per pair (1: same class). With the default reduction the value is TF
    Addons'; `sample_weight` weights pairs and `reduction=None` returns the `[B]` losses.

    This is TF Addons' loss on pair *distances*. pytorch-metric-learning's `ContrastiveLoss`,
    which takes a batch of labelled embeddings and forms every pair itself, is
    `BatchContrastiveLoss`.

    Args:
        margin: The distance beyond which dissimilar pairs add nothing. Defaults to 1.0.
        name: Name of the loss. Defaults to `"contrastive_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

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
    """

    def __init__(
        self,
        margin=1.0,
        name="contrastive_loss",
        reduction="sum_over_batch_size",
        dtype=None,
    ):
        super().__init__(
            contrastive_loss, name=name, reduction=reduction, dtype=dtype, margin=margin
        )


# --- pytorch-metric-learning: every pair of a labelled batch ----------------------------------


def _snr_matrix(pairs):
    """`(D, defined)`: the SNR distances `var(q - k) / var(q)` with a safe denominator, and the
    `[b, 1]` queries whose variance is not 0 (a constant embedding, such as a zero vector, has
    no signal: its ratios are `x / 0`)."""
    queries = pairs.queries - ops.mean(pairs.queries, axis=-1, keepdims=True)
    keys = pairs.keys - ops.mean(pairs.keys, axis=-1, keepdims=True)
    signal = ops.sum(ops.square(queries), axis=-1, keepdims=True)
    defined = signal > 0
    noise = distances.squared_euclidean(queries, keys)
    return noise / ops.where(defined, signal, ops.ones_like(signal)), defined


def contrastive_elements(pairs, distance="euclidean", pos_margin=0.0, neg_margin=1.0):
    """PML's unreduced contrastive terms, dense: `{"pos_loss": (values, mask), "neg_loss":
    (values, mask)}` with `[b, K]` values (0 outside the mask) and the masks of the pairs.

    `pos_loss = max(D - pos_margin, 0)` on positive pairs and `neg_loss = max(neg_margin - D,
    0)` on negative pairs, the margins flipped for a similarity (`distances.larger_is_closer`).
    With `distance="snr"` a query of zero variance has no pairs (PML: NaN).
    """
    positive, negative = pairs.positive, pairs.negative
    if distance == "snr":
        matrix, defined = _snr_matrix(pairs)
        similarity = False
        positive, negative = ops.logical_and(positive, defined), ops.logical_and(negative, defined)
    else:
        matrix, similarity = pair_terms.pair_matrix(pairs, distance)
    pos = ops.relu(pair_terms.beyond(matrix, pos_margin, similarity))
    neg = ops.relu(pair_terms.beyond(neg_margin, matrix, similarity))
    return {
        "pos_loss": (pair_terms.masked(pos, positive), positive),
        "neg_loss": (pair_terms.masked(neg, negative), negative),
    }


def contrastive_per_anchor(pairs, distance, pos_margin, neg_margin, reducer):
    """`[b]` per-anchor values of `contrastive_elements`: for each kind of pair, the anchor's
    mean (`"anchor"`) or its share of PML's `AvgNonZeroReducer` (`"pml"`), added."""
    if pair_terms.is_empty(pairs):
        return pair_terms.zeros(pairs)
    elements = contrastive_elements(pairs, distance, pos_margin, neg_margin)
    parts = [
        pair_terms.reduce_pairs(values, mask, reducer, reduction.nonzero_mean)
        for values, mask in elements.values()
    ]
    return parts[0] + parts[1]


_CONTRASTIVE_CHECKS = {
    "pos_margin": validation.real,
    "neg_margin": validation.real,
    "normalize": validation.boolean,
    "reducer": pair_terms.check_reducer,
    "cross_replica": validation.boolean,
}


def _batch_contrastive(y_true, y_pred, distance, pos_margin, neg_margin, normalize, reducer,
                       cross_replica, ref_embeddings, ref_labels):  # fmt: skip
    pairs = pair_terms.batch_pairs(
        y_true,
        y_pred,
        normalize=normalize,
        ref_embeddings=ref_embeddings,
        ref_labels=ref_labels,
        cross_replica=cross_replica,
    )
    losses = contrastive_per_anchor(pairs, distance, pos_margin, neg_margin, reducer)
    return pair_terms.in_dtype_of(losses, y_pred)


@export
@hyperparameters(distance=distances.check, **_CONTRASTIVE_CHECKS)
def batch_contrastive_loss(
    y_true,
    y_pred,
    *,
    pos_margin=0.0,
    neg_margin=1.0,
    distance="euclidean",
    normalize=True,
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """Contrastive loss over every pair of a labelled batch, one value per anchor: PML's
    `ContrastiveLoss`.

    With `D = distance(y_pred, y_pred)` (embeddings L2-normalised first when `normalize`),
    positive pairs (same label, `j != i`) and negative pairs (other label) give

    ```
    pos_loss_ij = max(D_ij - pos_margin, 0)        # pull positives within pos_margin
    neg_loss_ij = max(neg_margin - D_ij, 0)        # push negatives beyond neg_margin
    ```

    For a similarity (`"cosine_similarity"`, `"inner_product"`, or a callable with
    `larger_is_closer = True`) the margins flip, as in PML: `max(pos_margin - S, 0)` and
    `max(S - neg_margin, 0)`.

    PML's `ContrastiveLoss(pos_margin, neg_margin, distance)` is this function with
    `reducer="pml"`; its `LpDistance()` (normalising) is `distance="euclidean",
    normalize=True` (the defaults), `LpDistance(normalize_embeddings=False)` is
    `normalize=False`, `CosineSimilarity()` is `distance="cosine_similarity"`.

    Per-anchor values (`reducer`):

    - `"anchor"` (default): `mean_{j in P_i} pos_loss_ij + mean_{j in N_i} neg_loss_ij`, each
      mean 0 for an anchor without such pairs. Positive and negative pairs weigh the same for
      every anchor, as in PML's aggregate.
    - `"pml"`: anchor `i`'s share `B * (sum_j pos_loss_ij / n_pos + sum_j neg_loss_ij / n_neg)`
      of PML's default aggregate, where `n_pos` (`n_neg`) counts the positive (negative) pairs
      of the batch with a loss `> 0` (`AvgNonZeroReducer` on each kind, added). Keras' mean of
      the values is PML's scalar loss, and its gradient PML's; the values depend on the whole
      batch (`sample_weight` reweights shares of a batch statistic).

    Every pair counts, so an anchor with only positives (a batch of one class) or only
    negatives (all labels distinct) still has a loss and a gradient, as in PML; a batch of one
    gives 0. With `ref_embeddings` / `ref_labels` the pairs are formed with those keys instead
    of the batch (a gallery, a cross-batch memory); `cross_replica=True` forms them with the
    embeddings of every replica (`tf.distribute`, `torch.distributed`).

    Cost: one `[B, B]` distance matrix and elementwise terms, memory `O(B^2)`.

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        pos_margin: Positive pairs closer than this add nothing. Defaults to 0.0.
        neg_margin: Negative pairs farther than this add nothing. Defaults to 1.0.
        distance: A name from `keras_metric_losses.distances` or a callable
            `fn(query, key) -> [Q, K]`. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings (and keys) first, as PML's distances do by
            default. Defaults to `True`.
        reducer: `"anchor"` or `"pml"`, see above. Defaults to `"anchor"`.
        cross_replica: Form pairs with the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys to pair the batch with instead of itself.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: for bad shapes (labels not `[B]`/`[B, 1]`, embeddings not rank 2, batch
            sizes that differ), an unknown distance or reducer, or non-finite margins. With
            value checks on, also for non-integral labels and non-finite embeddings.
        TypeError: if the labels are not numbers, or a flag is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> losses = kml.batch_contrastive_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6852 1.0438 0.6852 1.0438]

    Reference: Hadsell, Chopra and LeCun, CVPR 2006; pytorch-metric-learning 2.9
    `losses.ContrastiveLoss`.
    """
    return _batch_contrastive(y_true, y_pred, distance, pos_margin, neg_margin, normalize,
                              reducer, cross_replica, ref_embeddings, ref_labels)  # fmt: skip


@export
class BatchContrastiveLoss(LossFunctionWrapper):
    """Contrastive loss over every pair of a labelled batch (`batch_contrastive_loss`):
    pytorch-metric-learning's `ContrastiveLoss`.

    Takes integer labels and `[B, D]` embeddings and forms every positive and negative pair of
    the batch. With `reducer="pml"` and the default reduction the value is PML's
    `ContrastiveLoss()` (with its default `AvgNonZeroReducer` per kind of pair); the default
    `reducer="anchor"` gives each anchor its own mean positive plus mean negative term. TF
    Addons' `ContrastiveLoss`, on precomputed pair distances, is `ContrastiveLoss`.

    Args:
        pos_margin: Positive pairs closer than this add nothing. Defaults to 0.0.
        neg_margin: Negative pairs farther than this add nothing. Defaults to 1.0.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        reducer: `"anchor"` or `"pml"` (PML's aggregate). Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"batch_contrastive_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Form pairs with the embeddings of every replica.
            Defaults to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> round(float(kml.BatchContrastiveLoss(reducer="pml")(labels, embeddings)), 5)
    0.94189

    Reference: Hadsell, Chopra and LeCun, CVPR 2006; pytorch-metric-learning 2.9.
    """

    def __init__(
        self,
        pos_margin=0.0,
        neg_margin=1.0,
        distance="euclidean",
        normalize=True,
        reducer="anchor",
        name="batch_contrastive_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            batch_contrastive_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            pos_margin=pos_margin,
            neg_margin=neg_margin,
            distance=distance,
            normalize=normalize,
            reducer=reducer,
            cross_replica=cross_replica,
        )


@export
@hyperparameters(**_CONTRASTIVE_CHECKS)
def signal_to_noise_ratio_contrastive_loss(
    y_true,
    y_pred,
    *,
    pos_margin=0.0,
    neg_margin=1.0,
    normalize=True,
    reducer="anchor",
    cross_replica=False,
    ref_embeddings=None,
    ref_labels=None,
):
    """`batch_contrastive_loss` on the signal-to-noise-ratio distance: PML's
    `SignalToNoiseRatioContrastiveLoss`, one value per anchor.

    `D_ij = var(e_i - e_j) / var(e_i)` (variances over the features; `distances.snr`), the
    noise of key `j` relative to the signal of anchor `i`, then

    ```
    pos_loss_ij = max(D_ij - pos_margin, 0),   neg_loss_ij = max(neg_margin - D_ij, 0)
    ```

    as in `batch_contrastive_loss`, with the same `reducer` choices. PML normalises the
    embeddings first (`normalize=True`) and uses the unbiased variance; the ratio of two
    variances does not depend on that choice. A constant embedding (zero variance, such as a
    zero vector) has no defined ratio: its pairs are left out (loss 0, zero gradient; PML:
    NaN).

    Args:
        y_true: `[B]` or `[B, 1]` integer class labels.
        y_pred: `[B, D]` embeddings.
        pos_margin: Defaults to 0.0.
        neg_margin: Defaults to 1.0.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        reducer: `"anchor"` or `"pml"` (PML's aggregate). Defaults to `"anchor"`.
        cross_replica: Form pairs with the embeddings of every replica. Defaults to `False`.
        ref_embeddings: Optional `[K, D]` keys.
        ref_labels: Optional `[K]` labels of `ref_embeddings`.

    Returns:
        `[B]` per-anchor losses in the dtype of `y_pred`.

    Raises:
        ValueError: as `batch_contrastive_loss`.
        TypeError: as `batch_contrastive_loss`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0, 0.0], [1.0, 0.2, 0.0],
    ...                        [0.0, 0.0, 1.0], [0.1, 0.0, 1.0]])
    >>> losses = kml.signal_to_noise_ratio_contrastive_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.0426 0.0528 0.0104 0.0116]

    Reference: Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric
    Learning", CVPR 2019; pytorch-metric-learning 2.9.
    """
    return _batch_contrastive(y_true, y_pred, "snr", pos_margin, neg_margin, normalize,
                              reducer, cross_replica, ref_embeddings, ref_labels)  # fmt: skip


@export
class SignalToNoiseRatioContrastiveLoss(LossFunctionWrapper):
    """Contrastive loss on the signal-to-noise-ratio distance
    (`signal_to_noise_ratio_contrastive_loss`): PML's `SignalToNoiseRatioContrastiveLoss`.

    With `reducer="pml"` and the default reduction the value is PML's. It is
    `BatchContrastiveLoss(distance="snr")`, under its own name.

    Args:
        pos_margin: Defaults to 0.0.
        neg_margin: Defaults to 1.0.
        normalize: L2-normalise the embeddings first (PML's default). Defaults to `True`.
        reducer: `"anchor"` or `"pml"`. Defaults to `"anchor"`.
        name: Defaults to `"signal_to_noise_ratio_contrastive_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.
        cross_replica: Keyword-only. Defaults to `False`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0, 0.0], [1.0, 0.2, 0.0],
    ...                        [0.0, 0.0, 1.0], [0.1, 0.0, 1.0]])
    >>> loss = kml.SignalToNoiseRatioContrastiveLoss(reducer="pml")
    >>> round(float(loss(labels, embeddings)), 5)
    0.02936

    Reference: Yuan et al., CVPR 2019; pytorch-metric-learning 2.9.
    """

    def __init__(
        self,
        pos_margin=0.0,
        neg_margin=1.0,
        normalize=True,
        reducer="anchor",
        name="signal_to_noise_ratio_contrastive_loss",
        reduction="sum_over_batch_size",
        dtype=None,
        *,
        cross_replica=False,
    ):
        super().__init__(
            signal_to_noise_ratio_contrastive_loss,
            name=name,
            reduction=reduction,
            dtype=dtype,
            pos_margin=pos_margin,
            neg_margin=neg_margin,
            normalize=normalize,
            reducer=reducer,
            cross_replica=cross_replica,
        )
