"""TensorFlow Similarity's `TripletLoss`: one mined triplet per anchor, soft margin by default."""

from keras_metric_losses import validation
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.losses.triplet import mined


def triplet_elements(
    pairs, *, distance, positive_mining_strategy, negative_mining_strategy, margin, soft_margin
):  # fmt: skip
    """Triplet loss with one mined triplet per anchor, as TensorFlow Similarity 0.17.1's
    `TripletLoss`.

    With `D = distance(y_pred, y_pred)`, each anchor `i` mines a positive and a negative from
    row `i` exactly as `pn_loss` does (ties to the first column):

    - positive: `"hard"` = farthest, `"easy"` = closest;
    - negative: `"hard"` = closest, `"easy"` = farthest, `"semi-hard"` = closest negative
      farther than the anchor's *farthest* positive, else the farthest negative.

    ```
    x_i    = D[i, p] - D[i, n]
    loss_i = softplus(x_i)               # soft margin (TF Similarity's margin=None, the default)
    loss_i = max(x_i + margin, 0)        # margin given
    ```

    It is `pn_loss` without the PN step (`d_neg = D[i, n]`, not `min(D[i, n], D[p, n])`).

    Margin arguments: `margin=None` (default) is TensorFlow Similarity 0.17's soft margin and
    `margin=0.5` its hinge, so its calls work unchanged. `soft_margin` is `PNLoss`' flag:
    `soft_margin=True` asks for the soft margin (any margin other than the default 1.0 then
    raises, as in `PNLoss`), `soft_margin=False` for the hinge (margin 1.0 unless given). The
    checked values are stored as a bool `soft_margin` and a float `margin`.

    Anchors without a positive or a negative get 0 with zero gradient (TF Similarity mines
    them from fill values and gives them an arbitrary loss); they still count in the batch
    size that `"sum_over_batch_size"` divides by. The softplus is stable (TF Similarity's
    `log(exp(-x) + 1) + x` overflows for `x < -88` in float32).

    Cost: one `[B, B]` distance matrix and masked reductions over it (`O(B^2)` memory).

    Example:

    >>> print(keras.ops.convert_to_numpy(kml.triplet_loss(labels, embeddings)).round(5))
    [0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326 0.31326]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    arXiv:1703.07737, 2017 (soft margin); TensorFlow Similarity's `TripletLoss`.
    """
    return mined.mined_per_anchor(
        pairs,
        distance,
        positive_mining_strategy,
        negative_mining_strategy,
        soft_margin,
        margin,
        pn_step=False,
    )


def _optional(check):
    return lambda value, name: None if value is None else check(value, name)


def resolve_soft_margin(values):
    """A joint check: TensorFlow Similarity's `margin=None` (soft margin) and PNLoss'
    `soft_margin` flag made one canonical pair, `soft_margin` a bool and `margin` a float
    (1.0 when soft). `soft_margin=None` means: soft exactly when `margin` is None."""
    soft = values["soft_margin"]
    if soft is None:
        soft = values["margin"] is None
    if values["margin"] is None:
        values["margin"] = 1.0
    values["soft_margin"] = soft
    mined.margin_unused_when_soft(values)
    return values


triplet_loss, TripletLoss = base.declare(
    triplet_elements,
    inputs=mined.INPUTS,
    function="triplet_loss",
    cls="TripletLoss",
    name="TripletLoss",
    original="TF Similarity 0.17.1 `TripletLoss`",
    summary="PN's mining without the PN step; soft margin by default (`margin=None`)",
    positional=("distance", "positive_mining_strategy", "negative_mining_strategy", "margin"),
    options=(base.KEYS, base.CROSS_REPLICA),
    bases=(TensorFlowSimilarityConfig,),
    joint_checks=(resolve_soft_margin,),
    hyperparameters=dict(
        distance=mined.DISTANCE,
        positive_mining_strategy=mined.POSITIVE_STRATEGY,
        negative_mining_strategy=mined.NEGATIVE_STRATEGY,
        margin=base.Hyperparameter(
            None,
            _optional(validation.real),
            "`None` for the soft margin, or the hinge margin (a finite float).",
        ),
        soft_margin=base.Hyperparameter(
            None,
            _optional(validation.boolean),
            "`None` (soft exactly when `margin` is None), `True` or `False` (`PNLoss`' flag).",
        ),
    ),
    class_doc="""TensorFlow Similarity 0.17.1's `TripletLoss` (`triplet_loss`), one value per
    anchor.

    `TripletLoss()` is TF Similarity's default (cosine distance, hard positives, semi-hard
    negatives, soft margin) and `TripletLoss(margin=0.5)` its hinge. With the default
    `"sum_over_batch_size"` reduction the value is TF Similarity's (for batches where every
    anchor has a positive and a negative); `reduction=None` gives the `[B]` values.
    Configs saved by TF Similarity 0.17 (`margin: None`, `reduction: "auto"`, the distance as
    a name or a `{"config": {"name": ...}}` dict) load with `from_config`.

    Example:

    >>> round(float(kml.TripletLoss()(labels, embeddings)), 5)
    0.31326
    >>> round(float(kml.TripletLoss(margin=1.1)(labels, embeddings)), 5)
    0.1

    Reference: Hermans et al., arXiv:1703.07737; TensorFlow Similarity's `TripletLoss`.
    """,
)
