"""Class logits: what the proxy and margin-softmax losses and `layers.ClassProxies` share.

One core, written once against `keras.ops`, below both of its users (`kml.losses.proxy` and
`kml.layers.ClassProxies`). From `[B, D]` embeddings and `[C * K, D]` proxies (row `c * K + k`
is sub-centre `k` of class `c`):

- `ClassLogits`: the `[B, C]` logits `scale * cos(x_i, p_c)` (times `|x_i|` and `|p_c|` where
  they are not normalised, as SphereFace and L-Softmax), pooled over the `K` sub-centres of a
  class (`"max"`, as SubCenterArcFace, or a softmax over them, as SoftTriple), the scale folded
  into the matrix product; `with_margin` replaces the true class's logit by its margin target;
- `margin_target`: the true-class cosine with a margin (additive angular = ArcFace, additive
  cosine = CosFace, multiplicative angular = SphereFace / L-Softmax), with finite gradients at
  `cos = +-1` (no `acos` on the differentiated path); `MARGINS`: each type's default and check;
- `Targets`: the true classes of a batch, read (`take`) and written (`put`) in O(B);
- `class_cross_entropy`: softmax cross-entropy against integer labels, where an id outside
  `[0, C)` matches no class (its row has no target: 0, with zero gradient);
- `checked_inputs` / `checked_logits`: the checks of a function's `(labels, embeddings,
  proxies)` and of a class's `(y_true, y_pred)`, from the front end's checked pieces;
- `ClassLogitsLoss`: what a loss class declares to the layer that computes its logits (its
  margin type and the layer arguments it fixes), read by `ClassProxies(num_classes, loss=...)`.

Normalisation is `ops.l2_normalize` (`x / max(|x|, 1e-12)`, pytorch-metric-learning's rule).
"""

import math
from typing import ClassVar

from keras_metric_losses import backend, pairs, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import l2_normalize, safe_sqrt, scalar_like

POOLINGS = ("max", "softmax")
ADDITIVE = ("additive_angular", "additive_cosine")


def _degrees(value, name):
    return validation.real(value, name, low=0.0, high=180.0)


# Each margin type: pytorch-metric-learning's default margin and its check (ArcFace's 28.6
# degrees, CosFace's 0.35, SphereFace's and L-Softmax's integer multiplier 4).
MARGINS = {
    "additive_angular": (28.6, _degrees),
    "additive_cosine": (0.35, validation.real),
    "multiplicative_angular": (4, validation.positive_int),
}
MARGIN_TYPES = tuple(MARGINS)
# The logits arguments of `layers.ClassProxies` and their defaults (a loss overrides some).
LOGITS_ARGUMENTS = {
    "sub_centers": 1,
    "sub_center_pooling": "max",
    "gamma": 0.1,
    "normalize_embeddings": True,
    "normalize_proxies": True,
    "margin_type": None,
    "margin": None,
}


def floored_norm(x):
    """`max(|x|, 1e-12)` along the last axis, kept: the divisor of `ops.l2_normalize`, a
    magnitude by which a logit divides back into its cosine (gradient 0 at `x = 0`)."""
    return ops.sqrt(ops.maximum(ops.sum(ops.square(x), axis=-1, keepdims=True), 1e-24))


def cosines(embeddings, proxies):
    """`[B, C * K]` cosines of the rows of `embeddings` `[B, D]` and `proxies` `[C * K, D]`."""
    return ops.matmul(l2_normalize(embeddings), ops.transpose(l2_normalize(proxies)))


class ClassLogits:
    """`[B, C]` class logits `scale * |x_i|^a |p_c|^b cos_ic` (`a = 0` when the embeddings are
    normalised, `b = 0` when the proxies are), pooled over each class's `K` sub-centres.

    The scale and the normalisations are applied to the `[B, D]` and `[C * K, D]` factors
    before the one matrix product, so the `[B, C]` logits take no extra pass. `magnitude`
    gives each row's factor at its true class (`scale |x_i|^a |p_y|^b`, norms at least 1e-12),
    by which a true-class logit divides into its cosine (for a margin) and back.

    Pooling over the sub-centres of a class: `"max"` (Sub-center ArcFace), the largest (the
    first of equal ones, which takes the gradient, as with PML's `max`);
    `"softmax"` (SoftTriple), `sum_k softmax_k(cos_ick / gamma) v_ick`. `K > 1` needs
    normalised proxies (a class's sub-centres then share the row's magnitude).
    """

    def __init__(self, embeddings, proxies, scale=1.0, sub_centers=1, pooling="max", gamma=0.1,
                 normalize_embeddings=True, normalize_proxies=True):  # fmt: skip
        x, p = embeddings, proxies
        if normalize_embeddings:
            x, row = l2_normalize(x) * scale, scale
        else:
            x, row = x * scale, scale * floored_norm(x)  # [B, 1]
        if normalize_proxies:
            p, self.column = l2_normalize(p), None
        else:
            self.column = ops.squeeze(floored_norm(p), 1)  # [C]
        self.row = row
        if sub_centers > 1 and pooling == "max":
            # One [B, C] product per sub-centre k (proxies k, K + k, ...) and their running
            # maximum: no [B, C, K] tensor, and O(B C) passes forward and backward.
            # max(a, b) = a + relu(b - a): a tie keeps the first sub-centre and its gradient (as
            # PML's `max`), and the backward pass is one threshold instead of `maximum`'s masks.
            values = None
            for k in range(sub_centers):
                logits = ops.matmul(x, ops.transpose(p[k::sub_centers]))
                values = logits if values is None else values + ops.relu(logits - values)
        elif sub_centers > 1:  # "softmax"
            # Proxies reordered centre-major ([K * C, D], row k * C + c): the product is
            # [B, K, C] and the softmax runs over its middle axis, with the C classes
            # contiguous (a softmax over a short last axis is slow on some backends).
            num_classes, dim = p.shape[0] // sub_centers, p.shape[1]
            by_centre = ops.reshape(p, (num_classes, sub_centers, dim))
            by_centre = ops.reshape(ops.transpose(by_centre, (1, 0, 2)), (-1, dim))
            values = ops.matmul(x, ops.transpose(by_centre))
            grouped = ops.reshape(values, (ops.shape(values)[0], sub_centers, num_classes))
            inverse = 1.0 / (gamma * (row if normalize_embeddings else ops.expand_dims(row, 2)))
            weights = ops.softmax(grouped * inverse, axis=1)
            values = ops.sum(weights * grouped, axis=1)
        else:
            values = ops.matmul(x, ops.transpose(p))
        self.logits = values

    def magnitude(self, targets):
        """`[B]`: the factor `scale |x_i|^a |p_y|^b` of each row's true-class logit."""
        row = self.row
        if isinstance(row, (int, float)):
            row = ops.full((ops.shape(self.logits)[0],), float(row), self.logits.dtype)
        else:
            row = ops.reshape(row, (-1,))
        if self.column is None:
            return row
        return row * ops.take(self.column, targets.ids)

    def with_margin(self, targets, margin_type=None, margin=0.0):
        """The logits with each valid row's true-class logit replaced by its margin target
        (`margin_target` of its cosine, times its magnitude); the logits as they are for
        `margin_type=None`."""
        if margin_type is None:
            return self.logits
        magnitude = self.magnitude(targets)
        cosine = targets.take(self.logits) / magnitude
        return targets.put(self.logits, margin_target(cosine, margin_type, margin) * magnitude)


class Targets:
    """The true classes of a batch of `[B]` labels among `num_classes` classes.

    `valid` `[B]`: the label is a class id in `[0, C)` (not NaN, not out of range); `ids` `[B]`
    int32: the label where valid, else 0 (safe to gather with); `take(values)`: each row's
    entry at its class, `[B]` from `[B, C]`, an O(B) gather rather than a pass over `[B, C]`;
    `put(values, updates)`: a copy with the true-class entries replaced (no `[B, C]` mask).
    Labels are compared with `0` and `C` in their own dtype before the cast to int32, so a
    large int64 id is out of range rather than wrapped around.
    """

    def __init__(self, labels, num_classes):
        self.labels, self.num_classes = labels, num_classes
        self.valid = ops.logical_and(labels >= 0, labels < num_classes)
        self.ids = ops.cast(ops.where(self.valid, labels, ops.zeros_like(labels)), "int32")

    def take(self, values):
        taken = ops.take_along_axis(values, ops.expand_dims(self.ids, 1), axis=1)
        return ops.squeeze(taken, axis=1)

    def put(self, values, updates):
        """`[B, C]` `values` with each valid row's true-class entry replaced by `updates[i]`: a
        copy and `B` writes (no `[B, C]` mask)."""
        kept = ops.where(self.valid, ops.cast(updates, values.dtype), self.take(values))
        rows = ops.arange(ops.shape(values)[0], dtype="int32")
        return ops.scatter_update(values, ops.stack([rows, self.ids], axis=1), kept)


def _int_power(x, exponent):
    """`x ** exponent` for a Python int `exponent >= 0`, by products (`0 ** 0 = 1`, and no
    `log` in the gradient)."""
    result = ops.ones_like(x)
    for _ in range(exponent):
        result = result * x
    return result


def multiple_angle_cosine(cosine, margin):
    """`cos(m theta)` as the Chebyshev polynomial `T_m` of `c = cos(theta)`:

    `sum_{n=0}^{m // 2} (-1)^n binom(m, 2n) c^(m - 2n) (1 - c^2)^n`, on the cosine as given
    (not clipped), as pytorch-metric-learning evaluates it.
    """
    sine_squared = 1.0 - ops.square(cosine)
    terms = [
        (-1) ** n
        * math.comb(margin, 2 * n)
        * _int_power(cosine, margin - 2 * n)
        * _int_power(sine_squared, n)
        for n in range(margin // 2 + 1)
    ]
    total = terms[0]
    for term in terms[1:]:
        total = total + term
    return total


def _angle_interval(cosine, margin):
    """`k = floor(theta / (pi / m))` with `theta = acos(clip(c, -1, 1))`, from `m` comparisons
    `c <= cos(j pi / m)` (no `acos`; piecewise constant, no gradient)."""
    clipped = ops.clip(cosine, -1.0, 1.0)
    k = ops.zeros_like(cosine)
    for j in range(1, margin + 1):
        k = k + ops.cast(clipped <= math.cos(j * math.pi / margin), cosine.dtype)
    return ops.stop_gradient(k)


def margin_target(cosine, margin_type, margin):
    """The true-class cosine with a margin, elementwise.

    - `"additive_angular"` (ArcFace, `margin` in degrees, `m` in radians): with
      `c = clip(cosine, -1, 1)`, `cos(theta + m) = c cos m - sqrt(1 - c^2) sin m` while
      `theta <= pi - m` (that is `c >= -cos m`), else `c - m sin m` (pytorch-metric-learning's
      fallback, which keeps the logit decreasing in `theta`). The square root is `safe_sqrt`,
      so the gradient is finite at `c = +-1` (where `acos` has an infinite derivative).
    - `"additive_cosine"` (CosFace): `cosine - margin`.
    - `"multiplicative_angular"` (SphereFace, L-Softmax; `margin` a Python int `m`):
      `psi = (-1)^k cos(m theta) - 2k`, `k = floor(theta m / pi)`, `cos(m theta)` the
      polynomial `multiple_angle_cosine` (no gradient through `k`).

    `margin` is a Python number or (additive margins) a scalar tensor, so that it can be a
    variable (a warm-up).
    """
    if margin_type == "additive_cosine":
        return cosine - scalar_like(margin, cosine)
    if margin_type == "multiplicative_angular":
        k = _angle_interval(cosine, margin)
        sign = 1.0 - 2.0 * ops.mod(k, 2.0)
        return sign * multiple_angle_cosine(cosine, margin) - 2.0 * k
    radians = scalar_like(margin, cosine) * (math.pi / 180.0)
    cos_m, sin_m = ops.cos(radians), ops.sin(radians)
    c = ops.clip(cosine, -1.0, 1.0)
    rotated = c * cos_m - safe_sqrt(1.0 - ops.square(c)) * sin_m
    return ops.where(c >= -cos_m, rotated, c - radians * sin_m)


def class_cross_entropy(logits, targets):
    """`[B]` softmax cross-entropy `-log_softmax(z_i)[y_i]`; 0 (zero gradient) for a row
    without a valid label (an id outside `[0, C)`)."""
    loss = -targets.take(ops.log_softmax(logits, axis=-1))
    return ops.where(targets.valid, loss, ops.zeros_like(loss))


# --- checks ----------------------------------------------------------------------------------


def checked_labels(labels, values, num_classes, true_name, pred_name):
    """Class ids `[B]` (from `[B]` or `[B, 1]`), checked against `values` `[B, ...]`, with
    value checks on, in `[0, num_classes)`."""
    labels = pairs.class_labels(labels, true_name)
    validation.same_batch(labels, values, true_name, pred_name)
    if num_classes is not None:
        validation.class_ids_in_range(labels, num_classes, true_name)
    return labels


def checked_inputs(labels, embeddings, proxies, sub_centers=1, labels_name="labels"):
    """`(labels [B], embeddings [B, D], proxies [C * K, D], C)` of a loss function, checked
    (the labels under the name `labels_name`).

    Embeddings and proxies are returned in the compute dtype (float32 for half precision).

    Raises:
        ValueError: naming `labels`, `embeddings` or `proxies`, for wrong ranks, a batch or
            feature mismatch, a proxy count that is not a multiple of the sub-centres; with
            value checks on, non-integral labels, ids outside `[0, C)`, NaN or inf.
        TypeError: for labels that are not numbers.
    """
    embeddings = pairs.embeddings(embeddings, "embeddings")
    proxies = ops.convert_to_tensor(proxies)
    validation.rank(proxies, 2, "[num_classes * sub_centers, dim] proxies", "proxies")
    rows, dim = tuple(proxies.shape)
    if rows is None or rows % sub_centers:
        raise ValueError(
            f"`proxies` must have a known number of rows, a multiple of sub_centers={sub_centers} "
            f"(row c * K + k is sub-centre k of class c). Received: proxies.shape={(rows, dim)}"
        )
    check_features(embeddings, proxies)
    num_classes = rows // sub_centers
    labels = checked_labels(labels, embeddings, num_classes, labels_name, "embeddings")
    if backend.is_concrete(embeddings):  # proxies captured by a traced function are constants
        validation.finite(proxies, "proxies")
    return labels, embeddings, ops.cast(proxies, embeddings.dtype), num_classes


def check_features(embeddings, proxies):
    """Raises a `ValueError` if `embeddings` `[B, D]` and `proxies` `[C * K, D']` have known,
    different feature sizes."""
    dim, other = embeddings.shape[-1], proxies.shape[-1]
    if None not in (dim, other) and dim != other:
        raise ValueError(
            "`embeddings` and `proxies` must have the same number of features. Received: "
            f"embeddings.shape={tuple(embeddings.shape)} and proxies.shape={tuple(proxies.shape)}"
        )


def checked_logits(y_true, y_pred):
    """`(labels [B], y_pred [B, C] in the compute dtype)` of a loss class, checked."""
    logits = pairs.embeddings(
        y_pred, "y_pred", "the [batch, num_classes] logits of `layers.ClassProxies`"
    )
    return checked_labels(y_true, logits, logits.shape[1], "y_true", "y_pred"), logits


# --- what a loss class declares to its layer -------------------------------------------------


class ClassLogitsLoss:
    """Mixin of the loss classes on the `[B, C]` logits of `layers.ClassProxies`: the logits
    their layer computes for them (read by `ClassProxies(num_classes, loss=...)`).

    Attributes:
        TAKES: What the layer hands the loss's `call` besides the labels: `"logits"`, the
            `[B, C]` logits (every loss on them); `"proxies"`, the pair `(embeddings,
            proxies)` (`losses.proxy.common.TakesProxies`, the manifold loss).
        margin_type: The margin the layer applies to the true class in training, `None` for
            none (the class constant of a margin-softmax loss: `"additive_angular"`, ...).
        LOGITS: `{layer argument: value}` the loss fixes (`normalize_embeddings=False`, ...).
        LOGITS_FROM: `{layer argument: hyperparameter}`: the loss's hyperparameters that set
            layer arguments (the margin, the sub-centres, ...).
    """

    TAKES = "logits"
    margin_type = None
    LOGITS: ClassVar[dict] = {}
    LOGITS_FROM: ClassVar[dict] = {}

    def layer_logits(self):
        """`{layer argument: value}` for every logits argument of `ClassProxies`
        (`LOGITS_ARGUMENTS`): the loss's, else the layer's defaults."""
        values = {**LOGITS_ARGUMENTS, **self.LOGITS, "margin_type": self.margin_type}
        values.update({arg: getattr(self, name) for arg, name in self.LOGITS_FROM.items()})
        return values
