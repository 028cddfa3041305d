"""Margin-softmax losses: softmax cross-entropy over class logits with a margin on the true class.

`normalized_softmax_loss`, `arcface_loss`, `subcenter_arcface_loss`, `cosface_loss`,
`sphereface_loss` and `large_margin_softmax_loss` reproduce pytorch-metric-learning 2.9's losses
of the same names from labels, embeddings and the class weights (`proxies` `[C * K, D]`, PML's
`W.T`). The classes (`ArcFaceLoss`, ...) compute the same values from the logits of the
`keras_metric_losses.layers.ClassProxies` layer, which owns the weights and applies the margin
(in training only); the class applies the scale and the cross-entropy. Each row is one example:
PML's default (mean) reducer is Keras' mean of the `[B]` values.
"""

from keras import ops

from keras_metric_losses import docstrings, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.losses.proxy_logits import (
    ClassLogits,
    Targets,
    checked_inputs,
    checked_logits,
    class_cross_entropy,
    degrees,
    finite,
    in_dtype_of,
    positive,
)


def _margin_softmax(labels, embeddings, proxies, margin_type, margin, scale, sub_centers=1,
                    normalize_embeddings=True, normalize_proxies=True):  # fmt: skip
    """Per-example cross-entropy of the scaled logits with a margin, in the input dtype."""
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies, sub_centers)
    targets = Targets(labels, num_classes)
    logits = ClassLogits(x, p, scale, sub_centers, normalize_embeddings=normalize_embeddings,
                         normalize_proxies=normalize_proxies)  # fmt: skip
    loss = class_cross_entropy(logits.with_margin(targets, margin_type, margin), targets)
    return in_dtype_of(loss, embeddings)


# --- docstring parts -------------------------------------------------------------------------

_FUNCTION_ARGS = """
    Args:
        labels: `[B]` or `[B, 1]` integer class ids in `[0, C)`.
        embeddings: `[B, D]` float embeddings (not normalised: the loss normalises them{norm}).
        proxies: `[C{k}, D]` class weights (PML's `W` transposed{rows}).
"""

_FUNCTION_RAISES = """
    Returns:
        `[B]` losses in the dtype of `embeddings` (computed in float32 for half precision).

    Raises:
        ValueError: if `labels` is not `[B]`/`[B, 1]`, `embeddings` or `proxies` not rank 2,
            their batch or feature sizes disagree, or a hyperparameter is out of range; with
            value checks on (`kml.config.enable_value_checks()`), also for non-integral or
            out-of-range labels and NaN or inf in `embeddings` or `proxies`.
        TypeError: if `labels` are not numbers.
"""

_OUT_OF_RANGE = """
    An id outside `[0, C)` matches no class: its row has no target, loss 0 and zero gradient
    (with value checks on, concrete ids out of range raise a `ValueError` instead).
"""

_CLASS_ARGS = """
    Args:
        {first}
        name: Name of the loss. Defaults to `"{name}"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy (half precision is computed in float32). Defaults to
            `keras.config.floatx()`.

    Raises:
        ValueError: for a hyperparameter out of range; when called, for `y_pred` not
            `[B, C]`, a batch mismatch; with value checks on, for out-of-range or
            non-integral ids and NaN or inf in `y_pred`.
"""

_EXAMPLE_DATA = """
    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.array([[1.0, 0.2], [0.1, 1.0], [-1.0, 0.3], [0.8, 0.8]], "float32")
    >>> proxies = np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32")
    >>> labels = np.array([0, 1, 2, 0])
"""

_CLASS_EXAMPLE = """    >>> layer = kml.layers.ClassProxies(3{layer_args})
    >>> layer.set_proxies({weights})
    >>> logits = layer([x, labels])  # the margin on the true class (training only)
    >>> loss = kml.{cls}({loss_args}reduction=None)(labels, logits)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
"""

_REFERENCES = {
    "normalized": 'Zhai and Wu, "Classification is a Strong Baseline for Deep Metric Learning", '
    "BMVC 2019.",
    "arcface": 'Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition", '
    "CVPR 2019.",
    "subcenter": 'Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale '
    'Noisy Web Faces", ECCV 2020.',
    "cosface": 'Wang et al., "CosFace: Large Margin Cosine Loss for Deep Face Recognition", '
    "CVPR 2018.",
    "sphereface": 'Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", '
    "CVPR 2017.",
    "large_margin": 'Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", '
    "ICML 2016.",
}


def _reference(key):
    return f"\n    Reference: {_REFERENCES[key]}\n"


_VALUES = {
    "normalized": "[0.2054 0.2459 0.2494 0.7223]",
    "arcface": "[0.0103 0.0036 0.0352 3.431 ]",
    "subcenter": "[0.0103 0.0036 0.0352 3.431 ]",
    "cosface": "[0.0305 0.0152 0.0742 2.859 ]",
    "sphereface": "[0.2212 0.2503 0.2945 1.8173]",
    "large_margin": "[0.0351 0.271  0.1263 1.799 ]",
}


# --- NormalizedSoftmax -----------------------------------------------------------------------


@export
@hyperparameters(temperature=positive, normalize_embeddings=validation.boolean)
@docstrings.append(
    _OUT_OF_RANGE,
    _FUNCTION_ARGS,
    """        temperature: Softmax temperature `T > 0`. Defaults to `0.05`.
        normalize_embeddings: Normalise the embeddings (PML's
            `DotProductSimilarity(normalize_embeddings=...)`). Defaults to `True`.
""",
    _FUNCTION_RAISES,
    _EXAMPLE_DATA,
    """    >>> loss = kml.normalized_softmax_loss(labels, x, proxies, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
""",
    _reference("normalized"),
    norm=" unless `normalize_embeddings=False`",
    k="",
    rows=", always normalised",
    values=_VALUES["normalized"],
)
def normalized_softmax_loss(labels, embeddings, proxies, temperature=0.05,
                            normalize_embeddings=True):  # fmt: skip
    """Normalized softmax loss per example, as pytorch-metric-learning's `NormalizedSoftmaxLoss`.

    Softmax cross-entropy of the cosines to the (L2-normalised) class weights over a
    temperature:

    ```
    z_ic = x_i . w_c / (|x_i| |w_c| T)
    loss_i = logsumexp_c z_ic - z_iy_i
    ```

    With `normalize_embeddings=False` the embeddings keep their norm (`z_ic = x_i . w_c /
    (|w_c| T)`). PML's default (mean) reducer is the mean of the `[B]` values.
    """
    labels, x, p, num_classes = checked_inputs(labels, embeddings, proxies)
    logits = ClassLogits(x, p, 1.0 / temperature, normalize_embeddings=normalize_embeddings)
    loss = class_cross_entropy(logits.logits, Targets(labels, num_classes))
    return in_dtype_of(loss, embeddings)


# --- the ArcFace family ----------------------------------------------------------------------

_SCALE_ARG = "        scale: Logit scale `s > 0`. Defaults to `{scale}`.\n"


@export
@hyperparameters(margin=degrees, scale=positive)
@docstrings.append(
    _OUT_OF_RANGE,
    _FUNCTION_ARGS,
    "        margin: Additive angular margin in degrees, in `[0, 180]`. Defaults to `28.6`"
    " (0.5 rad).\n",
    _SCALE_ARG,
    _FUNCTION_RAISES,
    _EXAMPLE_DATA,
    """    >>> loss = kml.arcface_loss(labels, x, proxies, margin=28.6, scale=8.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
""",
    _reference("arcface"),
    norm="",
    k="",
    rows="",
    scale="64.0",
    values=_VALUES["arcface"],
)
def arcface_loss(labels, embeddings, proxies, margin=28.6, scale=64.0):
    """ArcFace (additive angular margin) loss per example, as pytorch-metric-learning's
    `ArcFaceLoss`.

    With `cos_ic` the cosine of `x_i` and `w_c`, `theta = acos(cos_iy)` the angle to the true
    class and `m` the margin in radians (PML takes degrees),

    ```
    target_i = cos(theta + m)             if theta <= pi - m
               cos(theta) - m sin(m)      otherwise (PML's fallback, decreasing in theta)
    loss_i = CE(s * [cos_i with cos_iy -> target_i], y_i)
    ```

    The margin is computed in float32 as `c cos m - sqrt(1 - c^2) sin m` with `c` clipped to
    `[-1, 1]` and a square root whose gradient is 0 at 0: finite gradients where PML's
    `acos` has an infinite derivative (`cos = +-1`, an embedding on its proxy's direction).
    """
    return _margin_softmax(labels, embeddings, proxies, "additive_angular", margin, scale)


@export
@hyperparameters(margin=degrees, scale=positive, sub_centers=validation.positive_int)
@docstrings.append(
    _OUT_OF_RANGE,
    _FUNCTION_ARGS,
    "        margin: Additive angular margin in degrees, in `[0, 180]`. Defaults to `28.6`.\n",
    _SCALE_ARG,
    "        sub_centers: Sub-centres per class `K`. Defaults to `3`.\n",
    _FUNCTION_RAISES,
    _EXAMPLE_DATA,
    """    >>> two = np.repeat(proxies, 2, axis=0)  # two identical sub-centres per class
    >>> loss = kml.subcenter_arcface_loss(labels, x, two, scale=8.0, sub_centers=2)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
""",
    _reference("subcenter"),
    norm="",
    k=" * K",
    rows=": rows `c * K .. c * K + K - 1` are the sub-centres of class `c`",
    scale="64.0",
    values=_VALUES["subcenter"],
)
def subcenter_arcface_loss(labels, embeddings, proxies, margin=28.6, scale=64.0, sub_centers=3):
    """Sub-center ArcFace loss per example, as pytorch-metric-learning's
    `SubCenterArcFaceLoss`.

    Each class has `K = sub_centers` proxies; its cosine is the largest of its sub-centres'
    (`cos_ic = max_k cos(x_i, w_ck)`), then the ArcFace margin and scale apply as in
    `arcface_loss`. PML's `get_outliers` (a host-side data-cleaning helper) is not part of the
    loss.
    """
    return _margin_softmax(
        labels, embeddings, proxies, "additive_angular", margin, scale, sub_centers=sub_centers
    )


@export
@hyperparameters(margin=finite, scale=positive)
@docstrings.append(
    _OUT_OF_RANGE,
    _FUNCTION_ARGS,
    "        margin: Additive cosine margin. Defaults to `0.35`.\n",
    _SCALE_ARG,
    _FUNCTION_RAISES,
    _EXAMPLE_DATA,
    """    >>> loss = kml.cosface_loss(labels, x, proxies, margin=0.35, scale=8.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
""",
    _reference("cosface"),
    norm="",
    k="",
    rows="",
    scale="64.0",
    values=_VALUES["cosface"],
)
def cosface_loss(labels, embeddings, proxies, margin=0.35, scale=64.0):
    """CosFace (large margin cosine) loss per example, as pytorch-metric-learning's
    `CosFaceLoss`:

    ```
    loss_i = CE(s * [cos_i with cos_iy -> cos_iy - m], y_i)
    ```
    """
    return _margin_softmax(labels, embeddings, proxies, "additive_cosine", margin, scale)


_MULTIPLICATIVE = """
    ```
    psi(theta) = (-1)^k cos(m theta) - 2k,   k = floor(theta m / pi),   theta = acos(cos_iy)
    ```

    with `cos(m theta)` the Chebyshev polynomial of `cos theta` (on the unclipped cosine, as
    PML) and `k` found by comparing the cosine with `cos(j pi / m)` (no `acos`, no gradient
    through `k`, as PML's `no_grad`).
"""


@export
@hyperparameters(margin=validation.positive_int, scale=positive)
@docstrings.append(
    _MULTIPLICATIVE,
    _OUT_OF_RANGE,
    _FUNCTION_ARGS,
    "        margin: Integer angular multiplier `m >= 1`. Defaults to `4`.\n",
    _SCALE_ARG,
    _FUNCTION_RAISES,
    _EXAMPLE_DATA,
    """    >>> loss = kml.sphereface_loss(labels, x, proxies, margin=2, scale=2.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
""",
    _reference("sphereface"),
    norm=" for the cosine; their norms scale the logits",
    k="",
    rows="; only their directions matter",
    scale="1.0",
    values=_VALUES["sphereface"],
)
def sphereface_loss(labels, embeddings, proxies, margin=4, scale=1.0):
    """SphereFace (multiplicative angular margin) loss per example, as pytorch-metric-learning's
    `SphereFaceLoss`.

    The logits keep the embedding's norm:
    `loss_i = CE(s |x_i| [cos_i with cos_iy -> psi(theta_iy)], y_i)`, with
    """
    return _margin_softmax(
        labels, embeddings, proxies, "multiplicative_angular", margin, scale,
        normalize_embeddings=False,
    )  # fmt: skip


@export
@hyperparameters(margin=validation.positive_int, scale=positive)
@docstrings.append(
    _MULTIPLICATIVE,
    _OUT_OF_RANGE,
    _FUNCTION_ARGS,
    "        margin: Integer angular multiplier `m >= 1`. Defaults to `4`.\n",
    _SCALE_ARG,
    _FUNCTION_RAISES,
    _EXAMPLE_DATA,
    """    >>> loss = kml.large_margin_softmax_loss(labels, x, proxies, margin=2, scale=2.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    {values}
""",
    _reference("large_margin"),
    norm=" for the cosine; their norms scale the logits",
    k="",
    rows="; their norms scale the logits",
    scale="1.0",
    values=_VALUES["large_margin"],
)
def large_margin_softmax_loss(labels, embeddings, proxies, margin=4, scale=1.0):
    """Large-margin softmax (L-Softmax) loss per example, as pytorch-metric-learning's
    `LargeMarginSoftmaxLoss`.

    The logits are the raw products `s x_i . w_c = s |x_i| |w_c| cos_ic`, the true class's
    cosine replaced by `psi`: `loss_i = CE(s |x_i| |w_c| [cos_i with cos_iy -> psi], y_i)`,
    with
    """
    return _margin_softmax(
        labels, embeddings, proxies, "multiplicative_angular", margin, scale,
        normalize_embeddings=False, normalize_proxies=False,
    )  # fmt: skip


# --- classes on the logits of `layers.ClassProxies` ------------------------------------------


@hyperparameters(scale=positive)
def _scaled_cross_entropy(y_true, y_pred, scale=1.0):
    labels, logits = checked_logits(y_true, y_pred)
    return class_cross_entropy(scale * logits, Targets(labels, ops.shape(logits)[1]))


@hyperparameters(temperature=positive)
def _tempered_cross_entropy(y_true, y_pred, temperature=0.05):
    labels, logits = checked_logits(y_true, y_pred)
    return class_cross_entropy(logits / temperature, Targets(labels, ops.shape(logits)[1]))


_CLASS_INTRO = """
    `y_pred` is the `[B, C]` output of `keras_metric_losses.layers.ClassProxies({layer})`
    called on `[embeddings, labels]`: {what}. `y_true` are the `[B]` (or `[B, 1]`) labels.
    Per example `loss_i = CE({scaled}, y_i)`, equal to `{fn}` of the same weights; Keras then
    reduces (the mean is PML's value). The margin lives in the layer (a variable, so that it
    can warm up; see the layer), the scale here.
"""


def _class_doc(cls, fn, layer_args, what, scaled, first, name, reference, weights="proxies",
               loss_args=""):  # fmt: skip
    key = reference
    return docstrings.append(
        _CLASS_INTRO,
        _CLASS_ARGS,
        _EXAMPLE_DATA,
        _CLASS_EXAMPLE,
        _reference(reference),
        cls=cls,
        fn=fn,
        layer=f"num_classes{layer_args}",
        what=what,
        scaled=scaled,
        first=first,
        name=name,
        values=_VALUES[key],
        layer_args=layer_args,
        weights=weights,
        loss_args=loss_args,
    )


_ANGULAR = ', margin_type="additive_angular", margin=28.6'
_COSINE = ', margin_type="additive_cosine", margin=0.35'
_SPHERE = ', normalize_embeddings=False, margin_type="multiplicative_angular", margin=2'
_LARGE = (
    ", normalize_embeddings=False, normalize_proxies=False, "
    'margin_type="multiplicative_angular", margin=2'
)


def _scale_arg(default):
    return f"scale: Logit scale `s > 0`. Defaults to `{default}`."


@export
@_class_doc(
    "NormalizedSoftmaxLoss",
    "normalized_softmax_loss",
    "",
    "the cosines `cos(x_i, w_c)` (with `normalize_embeddings=False`, `x_i . w_c / |w_c|`)",
    "y_pred / T",
    "temperature: Softmax temperature `T > 0`. Defaults to `0.05`.",
    "normalized_softmax_loss",
    "normalized",
    loss_args="temperature=0.5, ",
)
class NormalizedSoftmaxLoss(LossFunctionWrapper):
    """Normalized softmax loss of the cosines of `layers.ClassProxies`."""

    def __init__(self, temperature=0.05, name="normalized_softmax_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(_tempered_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         temperature=temperature)  # fmt: skip


@export
@_class_doc(
    "ArcFaceLoss",
    "arcface_loss",
    _ANGULAR,
    "the cosines with `cos(theta + m)` at the true class",
    "s * y_pred",
    _scale_arg(64.0),
    "arcface_loss",
    "arcface",
    loss_args="scale=8.0, ",
)
class ArcFaceLoss(LossFunctionWrapper):
    """ArcFace loss of the additive-angular-margin logits of `layers.ClassProxies`."""

    def __init__(self, scale=64.0, name="arcface_loss", reduction="sum_over_batch_size",
                 dtype=None):  # fmt: skip
        super().__init__(_scaled_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         scale=scale)  # fmt: skip


@export
@_class_doc(
    "SubCenterArcFaceLoss",
    "subcenter_arcface_loss",
    ", sub_centers=2" + _ANGULAR,
    "each class's largest sub-centre cosine, with `cos(theta + m)` at the true class",
    "s * y_pred",
    _scale_arg(64.0),
    "subcenter_arcface_loss",
    "subcenter",
    weights="np.repeat(proxies, 2, axis=0)",
    loss_args="scale=8.0, ",
)
class SubCenterArcFaceLoss(LossFunctionWrapper):
    """Sub-center ArcFace loss of the logits of `layers.ClassProxies(sub_centers=K)`."""

    def __init__(self, scale=64.0, name="subcenter_arcface_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(_scaled_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         scale=scale)  # fmt: skip


@export
@_class_doc(
    "CosFaceLoss",
    "cosface_loss",
    _COSINE,
    "the cosines with `cos - m` at the true class",
    "s * y_pred",
    _scale_arg(64.0),
    "cosface_loss",
    "cosface",
    loss_args="scale=8.0, ",
)
class CosFaceLoss(LossFunctionWrapper):
    """CosFace loss of the additive-cosine-margin logits of `layers.ClassProxies`."""

    def __init__(self, scale=64.0, name="cosface_loss", reduction="sum_over_batch_size",
                 dtype=None):  # fmt: skip
        super().__init__(_scaled_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         scale=scale)  # fmt: skip


@export
@_class_doc(
    "SphereFaceLoss",
    "sphereface_loss",
    _SPHERE,
    "`|x_i| cos_ic`, with `|x_i| psi(theta)` at the true class",
    "s * y_pred",
    _scale_arg(1.0),
    "sphereface_loss",
    "sphereface",
    loss_args="scale=2.0, ",
)
class SphereFaceLoss(LossFunctionWrapper):
    """SphereFace loss of the multiplicative-margin logits of `layers.ClassProxies`."""

    def __init__(self, scale=1.0, name="sphereface_loss", reduction="sum_over_batch_size",
                 dtype=None):  # fmt: skip
        super().__init__(_scaled_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         scale=scale)  # fmt: skip


@export
@_class_doc(
    "LargeMarginSoftmaxLoss",
    "large_margin_softmax_loss",
    _LARGE,
    "`x_i . w_c`, with `|x_i| |w_y| psi(theta)` at the true class",
    "s * y_pred",
    _scale_arg(1.0),
    "large_margin_softmax_loss",
    "large_margin",
    loss_args="scale=2.0, ",
)
class LargeMarginSoftmaxLoss(LossFunctionWrapper):
    """L-Softmax loss of the multiplicative-margin logits of `layers.ClassProxies`."""

    def __init__(self, scale=1.0, name="large_margin_softmax_loss",
                 reduction="sum_over_batch_size", dtype=None):  # fmt: skip
        super().__init__(_scaled_cross_entropy, name=name, reduction=reduction, dtype=dtype,
                         scale=scale)  # fmt: skip
