"""sentence-transformers' `GISTEmbedLoss`: in-batch negatives that a guide model's embeddings
(`y_true`) marks as false negatives leave the softmax."""

from keras_metric_losses import validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.softmax.core import contrastive_terms
from keras_metric_losses.losses.text.common import EXAMPLE, columns
from keras_metric_losses.ops import in_dtype_of, l2_normalize, with_non_finite_of

GUIDED = base.Inputs(
    ("y_true", "y_pred"),
    (
        "`[B, C, D_guide]`: the guide model's embeddings of the same columns (a target: no "
        "gradient flows into it).",
        "`[B, C, D]` embeddings of the columns (anchor, positive, hard negatives...).",
    ),
    example=EXAMPLE
    + """
>>> guide = np.stack([anchors, anchors[[0, 0, 2]]], axis=1)  # the guide's embeddings""",
)


def gist_elements(y_true, y_pred, *, temperature, margin_strategy, margin, contrast_anchors,
                  contrast_positives):  # fmt: skip
    """GISTEmbed loss, one value per example: sentence-transformers' `GISTEmbedLoss`, with the
    guide model's embeddings of the columns as `y_true`.

    With `a`, `p`, `n_k` the columns, `g(.)` the guide's embeddings of them, `cos` the cosine
    similarity and `t_i` each anchor's threshold from its guide similarity `s_i = cos(ga_i,
    gp_i)` (`margin_strategy="absolute"`: `s_i - margin`; `"relative"`: `s_i - |s_i| margin`),
    row `i` of the logits is the concatenation of the blocks

    ```
    cos(a_i, p_j)    dropped where cos(ga_i, gp_j) > t_i and j != i (the positive stays)
    cos(a_i, a_j)    dropped where cos(ga_i, ga_j) > t_i          (contrast_anchors)
    cos(p_i, p_j)    dropped where cos(gp_i, gp_j) > t_i          (contrast_positives)
    cos(a_i, n_k_j)  dropped where cos(ga_i, gn_k_j) > t_i        (each negative column)
    loss_i = logsumexp_j(logits_ij / temperature) - cos(a_i, p_i) / temperature
    ```

    The comparisons are strict, as in the original, so a guide similarity equal to its
    threshold stays; the self-similarities of the `a`/`a` and `p`/`p` blocks leave only
    because the guide's own cosine (1) exceeds `t_i`.

    Differences from sentence-transformers: the guide's embeddings are an input, not a model;
    the cosine normalises each side by `max(|x|, 1e-12)` (`ops.l2_normalize`) where
    `torch.nn.CosineSimilarity` divides by `max(|x| |y|, 1e-8)` (the same above those norms);
    no `gather_across_devices`.

    Example:

    >>> losses = kml.gist_embed_loss(guide, y_pred, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [1.3937 0.4157 1.3129]

    Reference: Solatorio, "GISTEmbed: Guided In-sample Selection of Training Negatives for
    Text Embedding Fine-tuning", 2024.
    """
    anchor, positive, *negatives = (l2_normalize(c) for c in columns(y_pred))
    y_true = validation.numeric_tensor(y_true, "y_true")
    guide = columns(y_true, name="y_true")
    if (len(guide), tuple(guide[0].shape)[:1]) != (len(negatives) + 2, tuple(anchor.shape)[:1]):
        raise ValueError(
            "`y_true` must hold the guide's embeddings of the same examples and columns as "
            f"`y_pred`. Received: y_true.shape={tuple(ops.shape(y_true))}, "
            f"y_pred.shape={tuple(ops.shape(y_pred))}"
        )
    g_anchor, g_positive, *g_negatives = (l2_normalize(ops.stop_gradient(g)) for g in guide)
    cosine = lambda x, y: ops.matmul(x, ops.transpose(y))  # noqa: E731
    guided = cosine(g_anchor, g_positive)
    similarity = ops.expand_dims(ops.diagonal(guided), 1)
    threshold = similarity - (margin if margin_strategy == "absolute" else
                              ops.abs(similarity) * margin)  # fmt: skip
    itself = ops.eye(ops.shape(anchor)[0], dtype="bool")
    blocks = [(cosine(anchor, positive), guided)]
    if contrast_anchors:
        blocks.append((cosine(anchor, anchor), cosine(g_anchor, g_anchor)))
    if contrast_positives:
        blocks.append((cosine(positive, positive), cosine(g_positive, g_positive)))
    blocks += [(cosine(anchor, n), cosine(g_anchor, g)) for n, g in zip(negatives, g_negatives,
                                                                         strict=True)]  # fmt: skip
    kept = [ops.logical_not(guide_block > threshold) for _, guide_block in blocks]
    kept[0] = ops.logical_or(kept[0], itself)
    targets = [itself, *(ops.zeros_like(itself) for _ in blocks[1:])]
    logits = ops.concatenate([block for block, _ in blocks], axis=1)
    weights = ops.cast(ops.concatenate(targets, axis=1), logits.dtype)
    terms = contrastive_terms(logits, weights, ops.concatenate(kept, axis=1),
                              scale=1.0 / temperature)  # fmt: skip
    return in_dtype_of(with_non_finite_of(terms.weighted_sum, y_true), y_pred)


CONTRASTS = ("contrast_anchors", "contrast_positives")
gist_embed_loss, GISTEmbedLoss = base.declare(
    gist_elements,
    function="gist_embed_loss",
    cls="GISTEmbedLoss",
    original="sentence-transformers `GISTEmbedLoss`",
    summary="in-batch softmax without the negatives a guide model scores above the positive",
    positional=("temperature", "margin_strategy", "margin", *CONTRASTS),
    inputs=GUIDED,
    hyperparameters=dict(
        temperature=base.positive_real(0.01, "Divides the cosines, `> 0`."),
        margin_strategy=base.one_of(
            "absolute", ("absolute", "relative"), "How `margin` lowers each threshold."
        ),
        margin=base.real(0.0, "The threshold is the guide's positive similarity less this."),
        contrast_anchors=base.boolean(True, "Add the anchor/anchor block."),
        contrast_positives=base.boolean(True, "Add the positive/positive block."),
    ),
    class_doc="""GISTEmbed loss (`gist_embed_loss`); `y_true` holds the guide model's
    embeddings. With the default reduction the value is sentence-transformers'
    `GISTEmbedLoss(model, guide, ...)` on the columns `y_pred[:, c]`, the guide's `y_true[:, c]`.

    Example:

    >>> round(float(kml.GISTEmbedLoss(temperature=0.5)(guide, y_pred)), 4)
    1.0408

    Reference: Solatorio, 2024.
    """,
)
