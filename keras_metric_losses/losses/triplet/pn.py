"""PN loss (TensorFlow Similarity's `PNLoss`): a triplet loss whose negative distance also
counts the distance from the mined positive to the mined negative."""

from keras_metric_losses import validation
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.losses.triplet import mined


def pn_elements(
    pairs, *, distance, positive_mining_strategy, negative_mining_strategy, soft_margin, margin
):  # fmt: skip
    """PN loss of a batch of embeddings, one value per anchor, as TensorFlow Similarity 0.17.1.

    With `D = distance(y_pred, y_pred)`, for each anchor `i` a positive `p` (same label,
    `p != i`) and a negative `n` (other label) are mined from row `i` of `D`:

    - positive: `"hard"` = farthest positive, `"easy"` = closest positive;
    - negative: `"hard"` = closest negative, `"easy"` = farthest negative, `"semi-hard"` =
      closest negative farther than the anchor's *farthest* positive (whatever the positive
      strategy), or the farthest negative when none is.

    Ties go to the first index. Then (PN step) the negative distance is the smaller of the
    anchor's and the positive's distance to the negative:

    ```
    d_pos = D[i, p]
    d_neg = min(D[i, n], D[p, n])
    loss_i = softplus(d_pos - d_neg)            # soft_margin=True
    loss_i = max(d_pos - d_neg + margin, 0)     # otherwise
    ```

    Anchors without a positive (the only one of their class in the batch) or without a
    negative (a batch of one class) get loss 0 and zero gradient. They still count in a mean:
    `PNLoss` with the default `"sum_over_batch_size"` divides by the whole batch size. This
    departs from TensorFlow Similarity, which mines such anchors anyway from fill values
    (`row min - 1e-6` etc.) and gives them an arbitrary, usually non-zero, loss. For batches
    where every anchor has a positive and a negative the values are the same. Degenerate
    batches: an empty batch gives `[]`; a batch of one, a batch of one class and a batch where
    every label differs give 0 for every anchor.

    Other differences: `softplus` is computed stably (TensorFlow Similarity's
    `log(exp(-x) + 1) + x` form overflows to `inf` for `x < -88` in float32 and rounds values
    below ~1e-7 to 0); float16/bfloat16 embeddings are computed in float32. `"inner_product"`
    is a similarity used as is, as in TensorFlow Similarity: the mining rules then pick by
    largest/smallest product, not by closeness.

    Margin arguments: with `soft_margin=True` the margin has no effect and only its default is
    accepted (TensorFlow Similarity 0.13's rule); a TensorFlow Similarity 0.17 config with
    `margin: None` loads through `PNLoss.from_config`.

    With `ref_embeddings` / `ref_labels` the anchors are mined against those keys instead of
    the batch (a gallery, a cross-batch memory; no key is the anchor itself), and the PN step
    takes the distance between the two mined keys. Keys without gradient (a cross-batch memory)
    make that distance a constant: an anchor whose `D[p, n]` is the smaller is only pulled to
    its positive, and in `layers.CrossBatchMemory` the embeddings collapse to one point (loss
    `ln 2` with the soft margin); use `TripletLoss` or `MultiSimilarityLoss` there.
    `cross_replica=True` mines against the embeddings of every replica (`tf.distribute`,
    `torch.distributed`).

    Cost: one `[B, B]` distance matrix, a few masked `argmin`/`argmax` reductions over it and
    `[B]` gathers: memory `O(B^2)` (`O(B^2 D)` for `"manhattan"`). With a built-in distance the
    matrix only mines (no gradient) and the three mined distances of each anchor are recomputed
    from the embeddings, so the backward pass is `O(B D)`; a user's callable distance is
    differentiated through its matrix.

    Example:

    >>> losses = kml.pn_loss(labels, embeddings, soft_margin=True)
    >>> print(keras.ops.convert_to_numpy(losses).round(5))
    [0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326]

    Reference: Szubert et al., "Structure-preserving visualisation of high dimensional
    single-cell datasets" (ivis), Scientific Reports 2019; TensorFlow Similarity's `PNLoss`.
    """
    return mined.mined_per_anchor(
        pairs,
        distance,
        positive_mining_strategy,
        negative_mining_strategy,
        soft_margin,
        margin,
        pn_step=True,
    )


pn_loss, PNLoss = base.declare(
    pn_elements,
    inputs=mined.INPUTS,
    function="pn_loss",
    cls="PNLoss",
    name="PNLoss",
    original="TF Similarity 0.17.1 `PNLoss`",
    summary=(
        "triplet loss on mined positives/negatives (distances cosine, euclidean/l2, "
        "squared_euclidean/sql2, manhattan/l1, inner_product/ip or a registered callable; "
        "hard/easy positives, hard/semi-hard/easy negatives; soft or hinge margin)"
    ),
    positional=(
        "distance",
        "positive_mining_strategy",
        "negative_mining_strategy",
        "soft_margin",
        "margin",
    ),
    options=(base.KEYS, base.CROSS_REPLICA),
    bases=(TensorFlowSimilarityConfig,),
    joint_checks=(mined.soft_margin_of_none, mined.margin_unused_when_soft),
    hyperparameters=dict(
        distance=mined.DISTANCE,
        positive_mining_strategy=mined.POSITIVE_STRATEGY,
        negative_mining_strategy=mined.NEGATIVE_STRATEGY,
        soft_margin=base.boolean(False, "Use `softplus(d_pos - d_neg)` instead of the hinge."),
        margin=base.Hyperparameter(
            1.0,
            lambda value, name: None if value is None else validation.real(value, name),
            "Hinge margin, a finite float, or `None` for the soft margin (TF Similarity's "
            "`margin=None`: `soft_margin=True`); with `soft_margin=True` it has no effect and "
            "only the default is accepted.",
        ),
    ),
    class_doc="""PN loss over a batch of `[B, D]` embeddings with integer labels (`pn_loss`),
    one value per anchor.

    `reduction=None` gives the `[B]` values of TensorFlow Similarity 0.17.1's `PNLoss` (for
    batches where every anchor has a positive and a negative), the default
    `"sum_over_batch_size"` their mean, and `sample_weight` weights anchors. Anchors without a
    positive or negative contribute 0 but still count in the batch size that
    `"sum_over_batch_size"` divides by (use `sample_weight` or `"mean_with_sample_weight"` to
    exclude them). Integer labels are compared exactly.

    Configs saved by TensorFlow Similarity 0.17 (`margin: None`, no `soft_margin`,
    `reduction: "auto"`, the distance as a name or a `{"config": {"name": ...}}` dict) load
    with `from_config`. A callable distance that is not registered with
    `keras.saving.register_keras_serializable` is accepted, but `get_config` (and so
    `model.save`) raises `ValueError` for it.

    Example:

    >>> round(float(kml.PNLoss(soft_margin=True)(labels, embeddings)), 5)
    0.31326

    Reference: Szubert et al., Scientific Reports 2019 (ivis); Hermans et al., "In Defense of
    the Triplet Loss for Person Re-Identification", arXiv:1703.07737 (soft margin).
    """,
)
