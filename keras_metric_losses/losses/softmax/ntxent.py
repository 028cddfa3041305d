"""NT-Xent (InfoNCE): pytorch-metric-learning's `NTXentLoss`, also in SimCLR's multi-view form and
CLIP's two-tower form."""

from keras_metric_losses.losses import base
from keras_metric_losses.losses.softmax import core


def ntxent_per_anchor(pairs, *, temperature, distance, reducer, block_size):
    """NT-Xent (InfoNCE) loss of a batch of embeddings, one value per example, as
    pytorch-metric-learning's `NTXentLoss`.

    With logits `x[i, j] = S(e_i, k_j) / temperature` (`S` the cosine similarity by default; a
    distance is negated), every positive pair `(i, j)` (same label, `j` not `i` itself) is a
    softmax classification of `j` against the anchor's negatives `N_i` (other labels); the
    anchor's other positives are left out:

    ```
    l[i, j] = -log( exp(x[i, j]) / (exp(x[i, j]) + sum_{k in N_i} exp(x[i, k])) )
    loss_i  = mean_{j in P_i} l[i, j]                      (reducer="anchor")
    loss_i  = B * sum_{j in P_i} l[i, j] / sum_i |P_i|     (reducer="pml")
    ```

    - `reducer="anchor"` (default): each anchor's mean over its positives (0 without one).
    - `reducer="pml"`: pytorch-metric-learning's `MeanReducer` over all positive pairs of the
      batch, as per-anchor shares: Keras' mean of the values is PML's scalar. A batch without a
      positive pair or without a negative pair gives 0 (PML's `zero_loss`).

    Forms:

    - Supervised: class labels `y_true` `[B]`, embeddings `y_pred` `[B, D]`.
    - SimCLR (two views of `N` examples): `y_pred = concat(view1, view2)` `[2N, D]` with
      `y_true = concat(arange(N), arange(N))` (PML's form); or `y_pred` `[N, 2, D]` (the views
      stacked, as a Keras model outputs them) with `y_true` any `[N]` ids that differ within the
      batch, e.g. the examples' indices. Then each example's value is the mean over its views.
    - CLIP-style two towers: anchors `y_pred` (e.g. images) against keys `ref_embeddings`
      (e.g. texts) with `ref_labels`; `y_true = ref_labels = arange(B)` pairs row `i` with
      key `i`. No key is the anchor itself. For CLIP's symmetric loss add the call with the
      towers swapped.

    With `cross_replica=True` (`tf.distribute`, `torch.distributed`) each replica's anchors are
    compared with the embeddings of every replica; the loss and gradients are those of one device
    on the global batch (also with `reducer="pml"`, whose counts are summed over replicas).

    PML's `LpDistance()` is `distance="euclidean"` of unit-norm embeddings (normalise them in
    the model, e.g. `keras.layers.UnitNormalization`). `block_size` supports the distances
    `"cosine_similarity"` and `"inner_product"`.

    Differences from pytorch-metric-learning: PML adds float32's smallest normal number inside
    the log, which caps a pair's loss at 87.3 (reached only when a negative's logit exceeds the
    positive's by more than 87, i.e. `temperature < 0.023` with cosine similarities); here the
    loss is exact. Under `reducer="anchor"` an anchor without a positive or a negative has loss
    0 with zero gradient. Half-precision embeddings are computed in float32.

    Raises:
        ValueError: for a hyperparameter out of range, `block_size` with another distance,
            labels not `[B]`/`[B, 1]`, `y_pred` not rank 2 or 3, different batch sizes, or keys
            that do not match the batch. With value checks on (`kml.config`), also for
            non-integral float labels and NaN or inf in `y_pred`.
        TypeError: if the labels are not numbers, or `cross_replica` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])  # [3 examples, 2 views, 2]
    >>> losses = kml.ntxent_loss(np.arange(3), views, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.4741 0.6074 0.2747]

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations" (SimCLR), ICML 2020; Oord et al., "Representation Learning with
    Contrastive Predictive Coding" (InfoNCE), 2018; Radford et al., CLIP, ICML 2021.
    """
    stats = core.anchor_stats(pairs, distance=distance, temperature=temperature, pairwise=True,
                              block_size=block_size)  # fmt: skip
    return core.ntxent_values(stats, reducer, pairs.cross_replica)


ntxent_loss, NTXentLoss = base.declare(
    ntxent_per_anchor,
    function="ntxent_loss",
    cls="NTXentLoss",
    original="PML `NTXentLoss`",
    summary="softmax of each positive pair against the anchor's negatives (InfoNCE, SimCLR, CLIP)",
    positional=("temperature", "distance", "reducer"),
    inputs=base.VIEWS,
    options=(base.KEYS, base.CROSS_REPLICA, base.TILING),
    joint_checks=(core.check_tiling,),
    hyperparameters=core.hyperparameters(
        0.07,
        '`"anchor"` (each anchor\'s mean over its positives) or `"pml"` (its share of the mean '
        "over the batch's positive pairs).",
    ),
    class_doc="""NT-Xent (InfoNCE) loss over labelled embeddings (`ntxent_loss`), one value per
    example.

    `y_pred` is `[B, D]` embeddings with `[B]` labels, or `[B, V, D]` with `V` views of each
    example (a SimCLR model outputs `keras.ops.stack([z1, z2], axis=1)`; pass the examples'
    indices as `y_true`). With `reducer="pml"` the default reduction gives
    pytorch-metric-learning's `NTXentLoss()` value; with `reducer="anchor"` (default) the mean
    of the anchors' own means, which is the same for SimCLR batches (one positive per anchor).

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> views = np.array([[[1.0, 0.1], [0.9, 0.3]], [[0.0, 1.0], [0.2, 0.8]],
    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])
    >>> round(float(kml.NTXentLoss(temperature=0.5)(np.arange(3), views)), 4)
    0.4521

    Reference: Chen et al., SimCLR, ICML 2020.
    """,
)
