"""ProxyNCA loss (pytorch-metric-learning's `ProxyNCALoss`)."""

import math

from keras_metric_losses import distances, reduction
from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import (
    ClassLogits,
    Targets,
    checked_inputs,
    checked_logits,
    class_cross_entropy,
)
from keras_metric_losses.losses import base
from keras_metric_losses.losses.proxy import common
from keras_metric_losses.ops import in_dtype_of, l2_normalize

# pytorch-metric-learning drops a row when its float32 probability `softmax(z)[y]` underflows
# to 0, that is when `-log p` exceeds `-log(2**-150)` (half the smallest subnormal).
UNDERFLOW = 150.0 * math.log(2.0)


def _reduced(losses, targets, reducer):
    """`"anchor"`: the `[B]` cross-entropies; `"pml"`: shares of PML's mean over the rows it
    keeps (a target, and a float32 probability that does not underflow to 0)."""
    if reducer == "anchor":
        return losses
    kept = ops.logical_and(targets.valid, losses < UNDERFLOW)
    return reduction.divided(losses, kept, ops.sum(ops.cast(kept, losses.dtype)))


def proxy_nca_elements(labels, embeddings, proxies, *, softmax_scale, distance,
                       normalize_embeddings, reducer):  # fmt: skip
    """ProxyNCA loss per example, as pytorch-metric-learning's `ProxyNCALoss`.

    Softmax cross-entropy of the negated distances to one proxy per class:

    ```
    z_ic = -s d(x_i, p_c)        (+s d for a similarity)
    loss_i = logsumexp_c z_ic - z_iy_i
    ```

    with `d` the squared Euclidean distance of the L2-normalised embedding and proxy by
    default. PML's NCALoss returns 0 for a batch of one (`len(embeddings) <= 1`); ProxyNCA
    overrides that, and so do we: a single row works.

    Each example's value is its cross-entropy (`reducer="anchor"`). pytorch-metric-learning
    drops the rows whose float32 probability `softmax(z_i)[y_i]` underflows to 0 (`-log p >
    150 log 2 ~ 103.97`) from its mean; `reducer="pml"` gives each kept row the share `B
    loss_i / (number kept)` and the others 0, so that Keras' mean is PML's value (0 where PML
    returns NaN: no row kept).

    Example:

    >>> loss = kml.proxy_nca_loss(labels, x, proxies, softmax_scale=2.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0428 0.0396 0.0666 0.6949]

    Reference: Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies",
    ICCV 2017.
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
    return in_dtype_of(_reduced(losses, targets, reducer), embeddings)


def proxy_nca_of_cosines(y_true, y_pred, *, softmax_scale, reducer):
    """`proxy_nca_elements` (its defaults) of the `[B, C]` cosines of `ClassProxies`."""
    labels, cosine = checked_logits(y_true, y_pred)
    targets = Targets(labels, ops.shape(cosine)[1])
    # -s |x - p|^2 = -s (2 - 2 cos) for unit vectors; the constant cancels in the softmax.
    losses = class_cross_entropy((2.0 * softmax_scale) * cosine, targets)
    return in_dtype_of(_reduced(losses, targets, reducer), y_pred)


SOFTMAX_SCALE = base.positive_real(1.0, "The scale `s > 0`.")
REDUCER = base.reducer('`"anchor"` or `"pml"` (shares of PML\'s mean), see the function.')
_SUMMARY = "softmax over the distances to one proxy per class"

proxy_nca_loss, ProxyNCALoss = common.declare(
    proxy_nca_elements,
    proxy_nca_of_cosines,
    function="proxy_nca_loss",
    cls="ProxyNCALoss",
    positional=("softmax_scale", "distance", "normalize_embeddings", "reducer"),
    class_positional=("softmax_scale", "reducer"),
    original="PML `ProxyNCALoss`",
    summary=_SUMMARY,
    hyperparameters=dict(
        softmax_scale=SOFTMAX_SCALE,
        distance=base.Hyperparameter(
            "squared_euclidean",
            distances.check,
            "A distance name of `kml.distances` or a registered callable; a similarity "
            "(`larger_is_closer`) is used with a plus sign (the default is PML's "
            "`LpDistance(power=2)`).",
        ),
        normalize_embeddings=base.boolean(
            True, "L2-normalise the embeddings and proxies first (PML's `normalize_embeddings`)."
        ),
        reducer=REDUCER,
    ),
    class_hyperparameters=dict(softmax_scale=SOFTMAX_SCALE, reducer=REDUCER),
    logits=common.takes_logits(),
    class_doc="""ProxyNCA loss (`proxy_nca_loss`) of the `[B, C]` cosines of
    `layers.ClassProxies(num_classes)`.

    For unit vectors the squared distance is `2 - 2 cos`, so with `y_pred` the cosines the
    logits are `2 s cos_ic` (the constant cancels in the softmax), and the values equal
    `proxy_nca_loss` with its defaults (`distance="squared_euclidean"`,
    `normalize_embeddings=True`; other distances are for the function). With `reducer="pml"`
    and the default reduction the value is PML's `ProxyNCALoss(softmax_scale=softmax_scale)`.
    Compile with it, or give it to the layer (`ClassProxies(num_classes, loss=...)`).

    Example:

    >>> layer = kml.layers.ClassProxies(3)
    >>> layer.set_proxies(proxies)
    >>> loss = kml.ProxyNCALoss(softmax_scale=2.0, reduction=None)(labels, layer(x))
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0428 0.0396 0.0666 0.6949]

    Reference: Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies",
    ICCV 2017.
    """,
)
