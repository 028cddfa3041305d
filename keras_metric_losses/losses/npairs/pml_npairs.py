"""pytorch-metric-learning's `NPairsLoss`: N-pair loss on labelled embeddings (one pair per
label)."""

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import masked_logsumexp


def pml_npairs_per_anchor(pairs, *, distance, reducer):
    """N-pair loss on labelled embeddings, one value per anchor: PML's `NPairsLoss`.

    Each label with two or more rows gives one pair: its first row (in batch order) is the
    anchor, its second the positive. Each anchor classifies its own positive among the
    positives of the `n` pairs with the softmax of its similarities (`S`: the similarity, or
    the negated distance; the inner product of unit embeddings by default):

    ```
    loss_a = log sum_{b = 1..n} exp(S(anchor_a, positive_b)) - S(anchor_a, positive_a)
    ```

    The other rows give 0. Per-anchor values (`reducer`): `"anchor"` (default) `loss_a`;
    `"pml"` its share of the mean over the `n` anchors, so that Keras' mean of the values is
    PML's scalar. A batch without a pair gives 0. The softmax is computed for the at most
    `B / 2` anchors against as many positives (a quarter of the `[B, B]` matrix; PML's is
    `[n, n]` for the `n` labels with a pair, a number only known on the host). Unlike
    `npairs_loss` (TF Addons' loss of a similarity matrix of two towers), this loss takes the
    embeddings and builds the pairs from the labels.

    Example:

    >>> labels = np.array([0, 1, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8], [1.0, 0.0]])
    >>> losses = kml.pml_npairs_loss(labels, embeddings)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.5981 0.5981 0.     0.     0.    ]

    Reference: Sohn, "Improved Deep Metric Learning with Multi-class N-pair Loss Objective",
    NeurIPS 2016; pytorch-metric-learning's `NPairsLoss`.
    """
    anchors, partner = _first_pairs(pairs.labels)
    # At most B // 2 pairs: the anchors first (in row order), then the softmax of those rows
    # only, a quarter of the [B, B] matrix (ceil(B / 2) rows: a batch of one keeps one).
    size = ops.shape(anchors)[0]
    half = (size + 1) // 2
    rows = ops.arange(size, dtype="int32")
    order = ops.argsort(ops.where(anchors, rows, rows + size))
    chosen = order[:half]
    matrix = distances.get(distance)(
        ops.take(pairs.queries, chosen, axis=0),
        ops.take(pairs.keys, ops.take(partner, chosen), axis=0),
    )
    logits = matrix if distances.larger_is_closer(distance) else -matrix
    used = ops.take(anchors, chosen)
    losses = masked_logsumexp(logits, ops.expand_dims(used, 0)) - ops.diagonal(logits)
    losses = ops.where(used, losses, 0.0)
    # Back to the rows: row `order[k]` takes pair k's value (0 past the pairs).
    losses = ops.concatenate([losses, ops.zeros((size - half,), losses.dtype)], axis=0)
    losses = ops.take(losses, ops.argsort(order))
    return reduction.reduce_elements(
        ops.expand_dims(losses, 1), ops.expand_dims(anchors, 1), reducer, reduction.batch_mean
    )


def _first_pairs(labels):
    """`([B] anchors, [B] partners)`: whether each row is the first of a label with two or
    more rows (in batch order), and the int32 row of its label's second row (meaningful for
    anchors only). From one stable sort of the labels, `O(B log B)`, no `[B, B]` comparison."""
    order = ops.argsort(labels)  # stable on every backend: a label's rows in batch order
    ordered = ops.take(labels, order)
    same_as_next = ops.equal(ordered[1:], ordered[:-1])
    first = ops.concatenate([ops.ones((1,), "bool"), ops.logical_not(same_as_next)], axis=0)
    has_second = ops.concatenate([same_as_next, ops.zeros((1,), "bool")], axis=0)
    following = ops.concatenate([order[1:], order[:1]], axis=0)
    unsort = ops.argsort(order)
    anchors = ops.take(ops.logical_and(first, has_second), unsort)
    return anchors, ops.take(following, unsort)


pml_npairs_loss, PMLNPairsLoss = base.declare(
    pml_npairs_per_anchor,
    function="pml_npairs_loss",
    cls="PMLNPairsLoss",
    original="PML `NPairsLoss`",
    summary="softmax of each label's first row over the second rows of every label",
    hyperparameters=dict(
        distance=base.Hyperparameter(
            "inner_product", distances.check, "A distance name or callable (PML's `distance`)."
        ),
        normalize=base.normalize(True),
        reducer=base.reducer('`"anchor"` or `"pml"`, see the function.'),
    ),
    class_doc="""PML's N-pair loss on labelled embeddings (`pml_npairs_loss`): with
    `reducer="pml"` and the default reduction the value is PML's `NPairsLoss()`. PML's name
    with a `PML` prefix: `NpairsLoss` is TF Addons' loss of a similarity matrix.

    Example:

    >>> labels = np.array([0, 1, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [0.8, 0.6], [0.6, 0.8], [1.0, 0.0]])
    >>> round(float(kml.PMLNPairsLoss(reducer="pml")(labels, embeddings)), 4)
    0.5981

    Reference: Sohn, NeurIPS 2016.
    """,
)
