"""SphereFace and Large-Margin Softmax (pytorch-metric-learning's `SphereFaceLoss`,
`LargeMarginSoftmaxLoss`): a multiplicative angular margin on the true class."""

from keras_metric_losses.losses.proxy import common, margin_softmax

MULTIPLICATIVE = "multiplicative_angular"


def sphereface_elements(labels, embeddings, proxies, *, margin, scale):
    """SphereFace (multiplicative angular margin) loss per example, as pytorch-metric-learning's
    `SphereFaceLoss`.

    The logits keep the embedding's norm (the class weights are normalised):
    `loss_i = CE(s |x_i| [cos_i with cos_iy -> psi(theta_iy)], y_i)`, with

    ```
    psi(theta) = (-1)^k cos(m theta) - 2k,   k = floor(theta m / pi),   theta = acos(cos_iy)
    ```

    `cos(m theta)` the Chebyshev polynomial of `cos theta` (on the unclipped cosine, as PML)
    and `k` found by comparing the cosine with `cos(j pi / m)` (no `acos`, no gradient through
    `k`, as PML's `no_grad`).

    Example:

    >>> loss = kml.sphereface_loss(labels, x, proxies, margin=2, scale=2.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.2212 0.2503 0.2945 1.8173]

    Reference: Liu et al., "SphereFace: Deep Hypersphere Embedding for Face Recognition", CVPR
    2017.
    """
    return margin_softmax.margin_softmax(
        labels, embeddings, proxies, MULTIPLICATIVE, margin, scale, normalize_embeddings=False
    )


def large_margin_softmax_elements(labels, embeddings, proxies, *, margin, scale):
    """Large-margin softmax (L-Softmax) loss per example, as pytorch-metric-learning's
    `LargeMarginSoftmaxLoss`.

    The logits are the raw products `s x_i . w_c = s |x_i| |w_c| cos_ic`, the true class's
    cosine replaced by `psi` (SphereFace's, see `sphereface_loss`):
    `loss_i = CE(s |x_i| |w_c| [cos_i with cos_iy -> psi(theta_iy)], y_i)`.

    Example:

    >>> loss = kml.large_margin_softmax_loss(labels, x, proxies, margin=2, scale=2.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0351 0.271  0.1263 1.799 ]

    Reference: Liu et al., "Large-Margin Softmax Loss for Convolutional Neural Networks", ICML
    2016.
    """
    return margin_softmax.margin_softmax(
        labels, embeddings, proxies, MULTIPLICATIVE, margin, scale,
        normalize_embeddings=False, normalize_proxies=False,
    )  # fmt: skip


MULTIPLIER = dict(margin=margin_softmax.margin(MULTIPLICATIVE), scale=common.scale(1.0))
_EXAMPLE = """Example:

    >>> head = kml.layers.ClassProxies(3, loss=kml.{cls}(margin=2, scale=2.0))
    >>> head.set_proxies(proxies)
    >>> print(keras.ops.convert_to_numpy(head.loss_values(x, labels)).round(4))
    {values}"""

sphereface_loss, SphereFaceLoss = margin_softmax.declare(
    sphereface_elements,
    function="sphereface_loss",
    cls="SphereFaceLoss",
    margin_type=MULTIPLICATIVE,
    hyperparameters=MULTIPLIER,
    positional=("margin", "scale"),
    original="PML `SphereFaceLoss`",
    summary="softmax over classes, a multiplicative angular margin, the embedding's norm kept",
    fixed={"normalize_embeddings": False},
    class_doc=f"""SphereFace loss (`sphereface_loss`), computed by `layers.ClassProxies` on
    logits that keep the embedding's norm.

    {margin_softmax.LAYER_NOTE.format(cls="SphereFaceLoss")}

    With the same weights the values are `sphereface_loss`'s, and with the default reduction
    PML's `SphereFaceLoss(margin=margin, scale=scale)`.

    {_EXAMPLE.format(cls="SphereFaceLoss", values="[0.2212 0.2503 0.2945 1.8173]")}

    Reference: Liu et al., CVPR 2017.
    """,
)

large_margin_softmax_loss, LargeMarginSoftmaxLoss = margin_softmax.declare(
    large_margin_softmax_elements,
    function="large_margin_softmax_loss",
    cls="LargeMarginSoftmaxLoss",
    margin_type=MULTIPLICATIVE,
    hyperparameters=MULTIPLIER,
    positional=("margin", "scale"),
    original="PML `LargeMarginSoftmaxLoss`",
    summary="softmax over raw class products, a multiplicative angular margin",
    fixed={"normalize_embeddings": False, "normalize_proxies": False},
    class_doc=f"""Large-margin softmax loss (`large_margin_softmax_loss`), computed by
    `layers.ClassProxies` on the raw products of embeddings and class weights.

    {margin_softmax.LAYER_NOTE.format(cls="LargeMarginSoftmaxLoss")}

    With the same weights the values are `large_margin_softmax_loss`'s, and with the default
    reduction PML's `LargeMarginSoftmaxLoss(margin=margin, scale=scale)`.

    {_EXAMPLE.format(cls="LargeMarginSoftmaxLoss", values="[0.0351 0.271  0.1263 1.799 ]")}

    Reference: Liu et al., ICML 2016.
    """,
)
