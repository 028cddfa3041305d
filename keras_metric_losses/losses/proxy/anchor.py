"""Proxy Anchor loss (pytorch-metric-learning's `ProxyAnchorLoss`)."""

from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import Targets, checked_inputs, checked_logits, cosines
from keras_metric_losses.losses import base
from keras_metric_losses.losses.proxy import common
from keras_metric_losses.ops import in_dtype_of, with_non_finite_of


def _log1p_sum_exp_by_class(values, targets):
    """`[C]`: `log(1 + sum_{i: y_i = c} exp(values_i))` over the `[B]` values, 0 for a class with
    no example; one shift per class (a segment maximum), so nothing overflows or underflows."""
    num_classes = targets.num_classes
    values = ops.where(targets.valid, values, float("-inf"))
    highest = ops.segment_max(ops.stop_gradient(values), targets.ids, num_segments=num_classes)
    shift = ops.maximum(ops.where(ops.isfinite(highest), highest, 0.0), 0.0)  # >= 0: the "1 +"
    terms = ops.exp(values - ops.take(shift, targets.ids))  # exp(-inf) = 0 for invalid rows
    totals = ops.segment_sum(terms, targets.ids, num_segments=num_classes)
    return ops.log(ops.exp(-shift) + totals) + shift


def _log1p_sum_exp_of_columns(values):
    """`[C]`: `log(1 + sum_i exp(values_ic))` over the rows of `[B, C]` values that may hold
    `-inf` (left out: `exp(-inf) = 0`, with zero gradient); 0 for a column of `-inf` only."""
    highest = ops.amax(ops.stop_gradient(values), axis=0)
    shift = ops.maximum(highest, 0.0)  # finite: max(-inf, 0) = 0
    totals = ops.sum(ops.exp(values - shift), axis=0)
    return ops.log(ops.exp(-shift) + totals) + shift


def proxy_anchor_shares(similarity, targets, margin, alpha):
    """Per-anchor shares `[B]` of the Proxy Anchor loss of `similarity` `[B, C]`.

    Each row has one positive class, so the positive terms only need the `[B]` true-class
    similarities (per-class sums over them); the negative terms are the one `[B, C]` pass,
    with the positives at `-inf`. The shares are O(B + C): anchor `i`'s negative part is the
    sum of every class's share minus its own class's.
    """
    batch, num_classes = similarity.shape
    if batch == 0:  # no anchor; the max of an empty column has no value on some backends
        return ops.sum(similarity, axis=1)
    dtype = similarity.dtype
    size = ops.cast(ops.shape(similarity)[0], dtype)
    valid = ops.cast(targets.valid, dtype)
    counts = ops.segment_sum(valid, targets.ids, num_segments=num_classes)  # n_c
    present = ops.sum(ops.cast(counts > 0, dtype))  # P

    positive = _log1p_sum_exp_by_class(alpha * (margin - targets.take(similarity)), targets)
    negatives = targets.put(similarity, ops.full_like(targets.take(similarity), float("-inf")))
    negative = _log1p_sum_exp_of_columns(alpha * (negatives + margin))

    positive_share = ops.divide_no_nan(positive, counts)
    negative_share = ops.divide_no_nan(negative, size - counts)
    own_negative = valid * ops.take(negative_share, targets.ids)
    positive_part = ops.divide_no_nan(size, present) * valid * ops.take(positive_share, targets.ids)
    return positive_part + (size / num_classes) * (ops.sum(negative_share) - own_negative)


def proxy_anchor_elements(labels, embeddings, proxies, *, margin, alpha):
    """Proxy Anchor loss, as pytorch-metric-learning's `ProxyAnchorLoss`, as per-anchor shares.

    With `s_ic` the cosine of `x_i` and proxy `p_c` (both normalised by the loss), `n_c` the
    count of class `c` in the batch and `P` the number of classes present,

    ```
    pos[c] = log(1 + sum_{i: y_i = c} exp(-alpha (s_ic - margin)))     (0 if n_c = 0)
    neg[c] = log(1 + sum_{i: y_i != c} exp(alpha (s_ic + margin)))
    loss   = sum_c pos[c] / P + sum_c neg[c] / C
    ```

    The loss is a statistic of the whole batch (one term per proxy). Its per-anchor values share
    each proxy term equally among the anchors that enter it:

    ```
    loss_i = B / P * pos[y_i] / n_{y_i} + B / C * sum_{c != y_i} neg[c] / (B - n_c)
    ```

    so that their mean (Keras' default reduction) is pytorch-metric-learning's scalar, with the
    same gradients. Being shares of batch terms, they are not the loss of an anchor alone:
    `sample_weight` reweights the shares. An id outside `[0, C)` is a negative for every proxy.
    An empty batch gives `[]` (the class: 0).

    Returns:
        `[B]` per-anchor shares in the dtype of `embeddings`; their mean is PML's loss.

    Example:

    >>> loss = kml.proxy_anchor_loss(labels, x, proxies, margin=0.1, alpha=8.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [3.2093 1.4991 4.0813 3.2093]
    >>> print(keras.ops.convert_to_numpy(keras.ops.mean(loss)).round(4))  # PML's loss
    2.9998

    Reference: Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies)
    shares = proxy_anchor_shares(cosines(x, p), Targets(labels, num_classes), margin, alpha)
    return in_dtype_of(shares, embeddings)


def proxy_anchor_of_similarities(y_true, y_pred, *, margin, alpha):
    """`proxy_anchor_elements` of the `[B, C]` cosines of `ClassProxies`."""
    labels, similarity = checked_logits(y_true, y_pred)
    targets = Targets(labels, ops.shape(similarity)[1])
    shares = proxy_anchor_shares(similarity, targets, margin, alpha)  # masks drop NaN: carried
    return in_dtype_of(with_non_finite_of(shares, similarity), y_pred)


HYPERPARAMETERS = dict(
    margin=base.real(0.1, "The margin `delta`."),
    alpha=base.positive_real(32.0, "The scale `alpha > 0`."),
)
_SUMMARY = "every proxy against the batch: one softplus term per proxy, shared by its anchors"

proxy_anchor_loss, ProxyAnchorLoss = common.declare(
    proxy_anchor_elements,
    proxy_anchor_of_similarities,
    function="proxy_anchor_loss",
    cls="ProxyAnchorLoss",
    positional=("margin", "alpha"),
    class_positional=("margin", "alpha"),
    original="PML `ProxyAnchorLoss`",
    summary=_SUMMARY,
    hyperparameters=HYPERPARAMETERS,
    logits=common.takes_logits(),
    class_doc="""Proxy Anchor loss (`proxy_anchor_loss`) of the `[B, C]` cosines of
    `layers.ClassProxies(num_classes)`, which owns the proxies.

    `y_pred` holds the similarities `s_ic` of each example to each class's proxy (the layer's
    output, without margin: Proxy Anchor's margin is applied here). The per-anchor values are
    shares of the batch's proxy terms: with the default reduction the value is PML's
    `ProxyAnchorLoss(margin=margin, alpha=alpha)` of the same proxies. Compile with it, or give
    it to the layer (`ClassProxies(num_classes, loss=kml.ProxyAnchorLoss())`), which then adds
    it to the model.

    Example:

    The proxies live in the layer; the paper trains them with a 100 times larger learning rate
    (`learning_rate_multiplier`, see `layers.ClassProxies`).

    >>> layer = kml.layers.ClassProxies(3)
    >>> layer.set_proxies(proxies)
    >>> loss = kml.ProxyAnchorLoss(alpha=8.0)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    2.9998

    Reference: Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020.
    """,
)
