"""Proxy losses: every anchor meets a learned proxy of every class.

`proxy_anchor_loss`, `proxy_nca_loss` and `soft_triple_loss` reproduce pytorch-metric-learning
2.9's `ProxyAnchorLoss`, `ProxyNCALoss` and `SoftTripleLoss` from labels, embeddings and the
proxies (`[C * K, D]`, PML's `proxies`, or `fc.T` for SoftTriple). The classes compute the same
values from the class cosines of `keras_metric_losses.layers.ClassProxies`, which owns the
proxies.
"""

import math

from keras import ops

from keras_metric_losses import distances, docstrings, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.losses.proxy_logits import (
    ClassLogits,
    Targets,
    checked_inputs,
    checked_logits,
    class_cross_entropy,
    cosines,
    finite,
    in_dtype_of,
    l2_normalize,
    positive,
)

REDUCERS = ("anchor", "pml")
# pytorch-metric-learning drops a row when its float32 probability `softmax(z)[y]` underflows
# to 0, that is when `-log p` exceeds `-log(2**-150)` (half the smallest subnormal).
UNDERFLOW = 150.0 * math.log(2.0)


def _reducer(value, name):
    return validation.one_of(value, name, REDUCERS)


# --- ProxyAnchor -----------------------------------------------------------------------------


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


def _proxy_anchor_per_anchor(similarity, targets, margin, alpha):
    """Per-anchor shares `[B]` of the Proxy Anchor loss of `similarity` `[B, C]`.

    `pos[c] = log(1 + sum_{i: y_i = c} exp(-alpha (s_ic - margin)))`,
    `neg[c] = log(1 + sum_{i: y_i != c} exp(alpha (s_ic + margin)))`, and every proxy term is
    shared equally among the anchors that enter it:
    `a_i = B / P * pos[y_i] / n_{y_i} + B / C * sum_{c != y_i} neg[c] / (B - n_c)`.

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


_PROXY_ANCHOR_MATH = """
    With `s_ic` the cosine of `x_i` and proxy `p_c`, `n_c` the count of class `c` in the batch
    and `P` the number of classes present,

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
"""


@export
@hyperparameters(margin=finite, alpha=positive)
@docstrings.append(
    _PROXY_ANCHOR_MATH,
    """
    Args:
        labels: `[B]` or `[B, 1]` integer class ids in `[0, C)`.
        embeddings: `[B, D]` float embeddings (normalised by the loss).
        proxies: `[C, D]` proxies (PML's `proxies`; normalised by the loss).
        margin: The margin `delta`. Defaults to `0.1`.
        alpha: The scale `alpha > 0`. Defaults to `32.0`.

    Returns:
        `[B]` per-anchor shares in the dtype of `embeddings`; their mean is PML's loss.

    Raises:
        ValueError: if `labels` is not `[B]`/`[B, 1]`, `embeddings` or `proxies` not rank 2,
            their sizes disagree, or `alpha <= 0`; with value checks on, also for
            non-integral or out-of-range labels and NaN or inf in `embeddings` or `proxies`.
        TypeError: if `labels` are not numbers.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> proxies = np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
    >>> loss = kml.proxy_anchor_loss(labels, x, proxies, margin=0.1, alpha=8.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [3.2093 1.4991 4.0813 3.2093]
    >>> print(keras.ops.convert_to_numpy(keras.ops.mean(loss)).round(4))  # PML's loss
    2.9998

    Reference: Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020.
""",
)
def proxy_anchor_loss(labels, embeddings, proxies, margin=0.1, alpha=32.0):
    """Proxy Anchor loss, as pytorch-metric-learning's `ProxyAnchorLoss`, as per-anchor shares."""
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies)
    targets = Targets(labels, num_classes)
    return in_dtype_of(_proxy_anchor_per_anchor(cosines(x, p), targets, margin, alpha), embeddings)


@hyperparameters(margin=finite, alpha=positive)
def _proxy_anchor_of_similarities(y_true, y_pred, margin=0.1, alpha=32.0):
    labels, similarity = checked_logits(y_true, y_pred)
    targets = Targets(labels, ops.shape(similarity)[1])
    return _proxy_anchor_per_anchor(similarity, targets, margin, alpha)


@export
@docstrings.append(_PROXY_ANCHOR_MATH)
class ProxyAnchorLoss(LossFunctionWrapper):
    """Proxy Anchor loss of the `[B, C]` cosines of `layers.ClassProxies(num_classes)`.

    `y_pred` holds the similarities `s_ic` of each example to each class's proxy (the layer's
    output, without margin: Proxy Anchor's margin is applied here); `y_true` the `[B]` (or
    `[B, 1]`) labels. The values equal `proxy_anchor_loss` of the same proxies.

    Args:
        margin: The margin `delta`. Defaults to `0.1`.
        alpha: The scale `alpha > 0`. Defaults to `32.0`.
        name: Name of the loss. Defaults to `"proxy_anchor_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"` (PML's value).
        dtype: Loss dtype or policy (half precision is computed in float32). Defaults to
            `keras.config.floatx()`.

    Raises:
        ValueError: for `alpha <= 0`; when called, for `y_pred` not `[B, C]` or a batch
            mismatch; with value checks on, for out-of-range or non-integral ids and NaN or
            inf in `y_pred`.

    Example: the proxies live in the layer; the paper trains them with a 100 times larger
    learning rate (`learning_rate_multiplier`, see `layers.ClassProxies`).

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
    >>> layer = kml.layers.ClassProxies(3)
    >>> layer.set_proxies(np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32"))
    >>> loss = kml.ProxyAnchorLoss(alpha=8.0)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    2.9998

    Reference: Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020.
    """

    def __init__(self, margin=0.1, alpha=32.0, name="proxy_anchor_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(_proxy_anchor_of_similarities, name=name, reduction=reduction,
                         dtype=dtype, margin=margin, alpha=alpha)  # fmt: skip


# --- ProxyNCA --------------------------------------------------------------------------------


def _nca_reduced(losses, targets, reducer):
    """`"anchor"`: the `[B]` cross-entropies; `"pml"`: shares of PML's mean over the rows it
    keeps (a target, and a float32 probability that does not underflow to 0)."""
    if reducer == "anchor":
        return losses
    kept = ops.logical_and(targets.valid, losses < UNDERFLOW)
    return reduction.divided(losses, kept, ops.sum(ops.cast(kept, losses.dtype)))


_NCA_REDUCER = """
    Each example's value is its cross-entropy (`reducer="anchor"`). pytorch-metric-learning
    drops the rows whose float32 probability `softmax(z_i)[y_i]` underflows to 0 (`-log p >
    150 log 2 ~ 103.97`) from its mean; `reducer="pml"` gives each kept row the share `B
    loss_i / (number kept)` and the others 0, so that Keras' mean is PML's value (0 where PML
    returns NaN: no row kept).
"""


@export
@hyperparameters(
    softmax_scale=positive,
    distance=distances.check,
    normalize_embeddings=validation.boolean,
    reducer=_reducer,
)
@docstrings.append(
    _NCA_REDUCER,
    """
    Args:
        labels: `[B]` or `[B, 1]` integer class ids in `[0, C)`.
        embeddings: `[B, D]` float embeddings.
        proxies: `[C, D]` proxies (PML's `proxies`).
        softmax_scale: The scale `s > 0`. Defaults to `1.0`.
        distance: A distance name of `kml.distances` or a registered callable; a similarity
            (`larger_is_closer`) is used with a plus sign. Defaults to `"squared_euclidean"`
            (PML's `LpDistance(power=2)`).
        normalize_embeddings: L2-normalise the embeddings and the proxies first (PML's
            `normalize_embeddings`). Defaults to `True`.
        reducer: `"anchor"` or `"pml"` (see above). Defaults to `"anchor"`.

    Returns:
        `[B]` losses in the dtype of `embeddings`.

    Raises:
        ValueError: if `labels` is not `[B]`/`[B, 1]`, `embeddings` or `proxies` not rank 2,
            their sizes disagree, `softmax_scale <= 0`, or the distance or reducer is unknown;
            with value checks on, also for non-integral or out-of-range labels and NaN or inf.
        TypeError: if `labels` are not numbers or `normalize_embeddings` is not a bool.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> proxies = np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
    >>> loss = kml.proxy_nca_loss(labels, x, proxies, softmax_scale=2.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0428 0.0396 0.0666 0.6949]

    Reference: Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies",
    ICCV 2017.
""",
)
def proxy_nca_loss(labels, embeddings, proxies, softmax_scale=1.0, distance="squared_euclidean",
                   normalize_embeddings=True, reducer="anchor"):  # fmt: skip
    """ProxyNCA loss per example, as pytorch-metric-learning's `ProxyNCALoss`.

    Softmax cross-entropy of the negated distances to one proxy per class:

    ```
    z_ic = -s d(x_i, p_c)        (+s d for a similarity)
    loss_i = logsumexp_c z_ic - z_iy_i
    ```

    with `d` the squared Euclidean distance of the L2-normalised embedding and proxy by
    default. PML's NCALoss returns 0 for a batch of one (`len(embeddings) <= 1`); ProxyNCA
    overrides that, and so do we: a single row works.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies)
    if normalize_embeddings and distance == "squared_euclidean":
        # |x - p|^2 = 2 - 2 cos for unit vectors; the constant cancels in the softmax.
        logits = ClassLogits(x, p, 2.0 * softmax_scale).logits
    else:
        if normalize_embeddings:
            x, p = l2_normalize(x), l2_normalize(p)
        values = distances.get(distance)(x, p)
        logits = softmax_scale * (values if distances.larger_is_closer(distance) else -values)
    targets = Targets(labels, num_classes)
    losses = class_cross_entropy(logits, targets)
    return in_dtype_of(_nca_reduced(losses, targets, reducer), embeddings)


@hyperparameters(softmax_scale=positive, reducer=_reducer)
def _proxy_nca_of_cosines(y_true, y_pred, softmax_scale=1.0, reducer="anchor"):
    labels, cosine = checked_logits(y_true, y_pred)
    targets = Targets(labels, ops.shape(cosine)[1])
    # -s |x - p|^2 = -s (2 - 2 cos) for unit vectors; the constant cancels in the softmax.
    losses = class_cross_entropy((2.0 * softmax_scale) * cosine, targets)
    return _nca_reduced(losses, targets, reducer)


@export
@docstrings.append(_NCA_REDUCER)
class ProxyNCALoss(LossFunctionWrapper):
    """ProxyNCA loss of the `[B, C]` cosines of `layers.ClassProxies(num_classes)`.

    For unit vectors the squared distance is `2 - 2 cos`, so with `y_pred` the cosines the
    logits are `2 s cos_ic` (the constant cancels in the softmax), and the values equal
    `proxy_nca_loss` with its defaults (`distance="squared_euclidean"`,
    `normalize_embeddings=True`). Other distances are for the function.

    Args:
        softmax_scale: The scale `s > 0`. Defaults to `1.0`.
        reducer: `"anchor"` or `"pml"` (see below). Defaults to `"anchor"`.
        name: Name of the loss. Defaults to `"proxy_nca_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy (half precision is computed in float32). Defaults to
            `keras.config.floatx()`.

    Raises:
        ValueError: for `softmax_scale <= 0` or an unknown reducer; when called, for `y_pred`
            not `[B, C]` or a batch mismatch; with value checks on, for out-of-range or
            non-integral ids and NaN or inf in `y_pred`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
    >>> layer = kml.layers.ClassProxies(3)
    >>> layer.set_proxies(np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32"))
    >>> loss = kml.ProxyNCALoss(softmax_scale=2.0, reduction=None)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0428 0.0396 0.0666 0.6949]

    Reference: Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies",
    ICCV 2017.
    """

    def __init__(self, softmax_scale=1.0, reducer="anchor", name="proxy_nca_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(_proxy_nca_of_cosines, name=name, reduction=reduction, dtype=dtype,
                         softmax_scale=softmax_scale, reducer=reducer)  # fmt: skip


# --- SoftTriple ------------------------------------------------------------------------------


def _soft_triple_per_example(similarity, targets, la, margin):
    """`CE(la * (S - margin onehot(y)))` of pooled similarities `S`: only the true class's
    logit moves."""
    lowered = targets.take(similarity) - margin
    return class_cross_entropy(la * targets.put(similarity, lowered), targets)


@export
@hyperparameters(
    centers_per_class=validation.positive_int, la=positive, gamma=positive, margin=finite
)
@docstrings.append(
    """
    Args:
        labels: `[B]` or `[B, 1]` integer class ids in `[0, C)`.
        embeddings: `[B, D]` float embeddings (normalised by the loss).
        proxies: `[C * K, D]` centres (PML's `fc` transposed): rows `c * K .. c * K + K - 1`
            are the centres of class `c`.
        centers_per_class: Centres per class `K`. Defaults to `10`.
        la: The scale `lambda > 0`. Defaults to `20.0`.
        gamma: The temperature `gamma > 0` of the softmax over a class's centres. Defaults to
            `0.1`.
        margin: The margin `delta`. Defaults to `0.01`.

    Returns:
        `[B]` losses in the dtype of `embeddings`.

    Raises:
        ValueError: if `labels` is not `[B]`/`[B, 1]`, `embeddings` or `proxies` not rank 2,
            their sizes disagree, the proxies are not a multiple of `centers_per_class`, or a
            hyperparameter is out of range; with value checks on, also for non-integral or
            out-of-range labels and NaN or inf.
        TypeError: if `labels` are not numbers.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> proxies = np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
    >>> centres = np.repeat(proxies, 2, axis=0) + [[0.0, 0.1], [0.0, -0.1]] * 3
    >>> loss = kml.soft_triple_loss(labels, x, centres, centers_per_class=2, la=4.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0446 0.0459 0.0689 0.6929]

    Reference: Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019.
""",
)
def soft_triple_loss(labels, embeddings, proxies, centers_per_class=10, la=20.0, gamma=0.1,
                     margin=0.01):  # fmt: skip
    """SoftTriple loss per example, as pytorch-metric-learning's `SoftTripleLoss` (which adds no
    centre regulariser).

    With `s_ick` the cosine of `x_i` and centre `k` of class `c`,

    ```
    S_ic   = sum_k softmax_k(s_ick / gamma) s_ick
    loss_i = CE(lambda (S_i - margin onehot(y_i)), y_i)
    ```

    PML stores `1 / gamma` and multiplies; the values are the same.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies, centers_per_class)
    targets = Targets(labels, num_classes)
    logits = ClassLogits(x, p, la, centers_per_class, "softmax", gamma)  # la * S
    loss = class_cross_entropy(logits.with_margin(targets, "additive_cosine", margin), targets)
    return in_dtype_of(loss, embeddings)


@hyperparameters(la=positive, margin=finite)
def _soft_triple_of_similarities(y_true, y_pred, la=20.0, margin=0.01):
    labels, similarity = checked_logits(y_true, y_pred)
    return _soft_triple_per_example(
        similarity, Targets(labels, ops.shape(similarity)[1]), la, margin
    )


@export
class SoftTripleLoss(LossFunctionWrapper):
    """SoftTriple loss of the pooled class similarities of `layers.ClassProxies`.

    `y_pred` is the `[B, C]` output of `ClassProxies(num_classes, sub_centers=K,
    sub_center_pooling="softmax", gamma=gamma)`: `S_ic = sum_k softmax_k(s_ick / gamma)
    s_ick`, so the centres and their temperature are the layer's. Per example
    `loss_i = CE(lambda (S_i - margin onehot(y_i)), y_i)`, equal to `soft_triple_loss`.

    Args:
        la: The scale `lambda > 0`. Defaults to `20.0`.
        margin: The margin `delta`. Defaults to `0.01`.
        name: Name of the loss. Defaults to `"soft_triple_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy (half precision is computed in float32). Defaults to
            `keras.config.floatx()`.

    Raises:
        ValueError: for `la <= 0`; when called, for `y_pred` not `[B, C]` or a batch mismatch;
            with value checks on, for out-of-range or non-integral ids and NaN or inf.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> proxies = np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
    >>> centres = np.repeat(proxies, 2, axis=0) + [[0.0, 0.1], [0.0, -0.1]] * 3
    >>> layer = kml.layers.ClassProxies(3, sub_centers=2, sub_center_pooling="softmax")
    >>> layer.set_proxies(centres)
    >>> loss = kml.SoftTripleLoss(la=4.0, reduction=None)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0446 0.0459 0.0689 0.6929]

    Reference: Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019.
    """

    def __init__(self, la=20.0, margin=0.01, name="soft_triple_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(_soft_triple_of_similarities, name=name, reduction=reduction,
                         dtype=dtype, la=la, margin=margin)  # fmt: skip
