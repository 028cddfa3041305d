"""pytorch-metric-learning's `ContrastiveLoss` and `SignalToNoiseRatioContrastiveLoss` on a
batch of labelled embeddings (here `BatchContrastiveLoss`, a distinct name: PML's loss and TF
Addons' `ContrastiveLoss`, in `siamese.py`, share a name but not their inputs)."""

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import beyond, masked, pair_matrix


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


def _terms(pairs, *, distance, pos_margin, neg_margin):
    """`[(pos_loss, positive), (neg_loss, negative)]`: each kind's `[b, K]` hinge values on
    every pair (not masked) and its mask."""
    positive, negative = pairs.positive, pairs.negative
    if distance == "snr":
        matrix, defined = _snr_matrix(pairs)
        similarity = False
        positive, negative = ops.logical_and(positive, defined), ops.logical_and(negative, defined)
    else:
        matrix, similarity = pair_matrix(pairs, distance)
    return [
        (ops.relu(beyond(matrix, pos_margin, similarity)), positive),
        (ops.relu(beyond(neg_margin, matrix, similarity)), negative),
    ]


def contrastive_elements(pairs, *, distance, pos_margin, neg_margin):
    """PML's unreduced contrastive terms, dense: `{"pos_loss": (values, mask), "neg_loss":
    (values, mask)}` with `[b, K]` values (0 outside the mask) and the masks of the pairs.

    `pos_loss = max(D - pos_margin, 0)` on positive pairs and `neg_loss = max(neg_margin - D,
    0)` on negative pairs, the margins flipped for a similarity (`distances.larger_is_closer`).
    With `distance="snr"` a query of zero variance has no pairs (PML: NaN).
    """
    (pos, positive), (neg, negative) = _terms(
        pairs, distance=distance, pos_margin=pos_margin, neg_margin=neg_margin
    )
    return {
        "pos_loss": (masked(pos, positive), positive),
        "neg_loss": (masked(neg, negative), negative),
    }


def contrastive_per_anchor(pairs, *, reducer, **hyperparameters):
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

    Example:

    >>> losses = kml.batch_contrastive_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.6852 1.0438 0.6852 1.0438]

    Reference: Hadsell, Chopra and LeCun, CVPR 2006; pytorch-metric-learning 2.9
    `losses.ContrastiveLoss`.
    """
    # The reducers mask the terms: masking them first too took two more `[b, K]` passes each
    # way (a cross-batch memory's `[1024, 8192]` on eager torch: 5 ms a pass).
    parts = [
        reduction.reduce_elements(values, mask, reducer, reduction.nonzero_mean)
        for values, mask in _terms(pairs, **hyperparameters)
    ]
    return parts[0] + parts[1]


def snr_contrastive_per_anchor(pairs, **hyperparameters):
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
    return contrastive_per_anchor(pairs, distance="snr", **hyperparameters)


_MARGINS = dict(
    pos_margin=base.real(0.0, "Positive pairs closer than this add nothing."),
    neg_margin=base.real(1.0, "Negative pairs farther than this add nothing."),
)
_REDUCER = base.reducer(
    '`"anchor"` (each anchor\'s mean positive plus mean negative term) or `"pml"` (its share '
    "of PML's `AvgNonZeroReducer` aggregate), see the function."
)

batch_contrastive_loss, BatchContrastiveLoss = base.declare(
    contrastive_per_anchor,
    function="batch_contrastive_loss",
    cls="BatchContrastiveLoss",
    original="PML `ContrastiveLoss`",
    summary="every pair of the batch: positives pulled within, negatives pushed beyond margins",
    positional=("pos_margin", "neg_margin", "distance", "normalize", "reducer"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(
        **_MARGINS,
        distance=base.Hyperparameter(
            "euclidean",
            distances.check,
            "A name from `keras_metric_losses.distances` or a callable (the margins flip for "
            "a similarity).",
        ),
        normalize=base.normalize(True),
        reducer=_REDUCER,
    ),
    class_doc="""Contrastive loss over every pair of a labelled batch (`batch_contrastive_loss`):
    pytorch-metric-learning's `ContrastiveLoss`.

    Takes integer labels and `[B, D]` embeddings and forms every positive and negative pair of
    the batch. With `reducer="pml"` and the default reduction the value is PML's
    `ContrastiveLoss()` (with its default `AvgNonZeroReducer` per kind of pair); the default
    `reducer="anchor"` gives each anchor its own mean positive plus mean negative term. TF
    Addons' `ContrastiveLoss`, on precomputed pair distances, is `ContrastiveLoss`.

    Example:

    >>> round(float(kml.BatchContrastiveLoss(reducer="pml")(labels, embeddings)), 5)
    0.94189

    Reference: Hadsell, Chopra and LeCun, CVPR 2006; pytorch-metric-learning 2.9.
    """,
)

signal_to_noise_ratio_contrastive_loss, SignalToNoiseRatioContrastiveLoss = base.declare(
    snr_contrastive_per_anchor,
    function="signal_to_noise_ratio_contrastive_loss",
    cls="SignalToNoiseRatioContrastiveLoss",
    original="PML `SignalToNoiseRatioContrastiveLoss`",
    summary="the contrastive loss on the signal-to-noise-ratio distance `var(q - k) / var(q)`",
    positional=("pos_margin", "neg_margin", "normalize", "reducer"),
    options=(base.KEYS, base.CROSS_REPLICA, base.MINER),
    hyperparameters=dict(**_MARGINS, normalize=base.normalize(True), reducer=_REDUCER),
    class_doc="""Contrastive loss on the signal-to-noise-ratio distance
    (`signal_to_noise_ratio_contrastive_loss`): PML's `SignalToNoiseRatioContrastiveLoss`.

    With `reducer="pml"` and the default reduction the value is PML's. It is
    `BatchContrastiveLoss(distance="snr")`, under its own name.

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
    """,
)
