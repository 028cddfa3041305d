"""ArcFace and Sub-center ArcFace (pytorch-metric-learning's `ArcFaceLoss`,
`SubCenterArcFaceLoss`): an additive angular margin on the true class."""

from keras_metric_losses import validation
from keras_metric_losses.losses import base
from keras_metric_losses.losses.proxy import common, margin_softmax

ANGULAR = "additive_angular"


def arcface_elements(labels, embeddings, proxies, *, margin, scale):
    """ArcFace (additive angular margin) loss per example, as pytorch-metric-learning's
    `ArcFaceLoss`.

    With `cos_ic` the cosine of `x_i` and `w_c` (both normalised by the loss), `theta =
    acos(cos_iy)` the angle to the true class and `m` the margin in radians (PML takes degrees),

    ```
    target_i = cos(theta + m)             if theta <= pi - m
               cos(theta) - m sin(m)      otherwise (PML's fallback, decreasing in theta)
    loss_i = CE(s * [cos_i with cos_iy -> target_i], y_i)
    ```

    The margin is computed in float32 as `c cos m - sqrt(1 - c^2) sin m` with `c` clipped to
    `[-1, 1]` and a square root whose gradient is 0 at 0: finite gradients where PML's
    `acos` has an infinite derivative (`cos = +-1`, an embedding on its proxy's direction).

    Example:

    >>> loss = kml.arcface_loss(labels, x, proxies, margin=28.6, scale=8.0)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0103 0.0036 0.0352 3.431 ]

    Reference: Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition",
    CVPR 2019.
    """
    return margin_softmax.margin_softmax(labels, embeddings, proxies, ANGULAR, margin, scale)


def subcenter_arcface_elements(labels, embeddings, proxies, *, margin, scale, sub_centers):
    """Sub-center ArcFace loss per example, as pytorch-metric-learning's
    `SubCenterArcFaceLoss`.

    Each class has `K = sub_centers` proxies (rows `c * K .. c * K + K - 1` of `proxies`); its
    cosine is the largest of its sub-centres' (`cos_ic = max_k cos(x_i, w_ck)`), then the
    ArcFace margin and scale apply as in `arcface_loss`. PML's `get_outliers` (a host-side
    data-cleaning helper) is not part of the loss.

    Example:

    >>> two = np.repeat(proxies, 2, axis=0)  # two identical sub-centres per class
    >>> loss = kml.subcenter_arcface_loss(labels, x, two, scale=8.0, sub_centers=2)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.0103 0.0036 0.0352 3.431 ]

    Reference: Deng et al., "Sub-center ArcFace: Boosting Face Recognition by Large-Scale Noisy
    Web Faces", ECCV 2020.
    """
    return margin_softmax.margin_softmax(
        labels, embeddings, proxies, ANGULAR, margin, scale, sub_centers=sub_centers
    )


ARCFACE = dict(margin=margin_softmax.margin(ANGULAR), scale=common.scale(64.0))

arcface_loss, ArcFaceLoss = margin_softmax.declare(
    arcface_elements,
    function="arcface_loss",
    cls="ArcFaceLoss",
    margin_type=ANGULAR,
    hyperparameters=ARCFACE,
    positional=("margin", "scale"),
    original="PML `ArcFaceLoss`",
    summary="softmax over classes, an additive angular margin on the true class",
    class_doc=f"""ArcFace loss (`arcface_loss`), computed by `layers.ClassProxies`.

    {margin_softmax.LAYER_NOTE.format(cls="ArcFaceLoss")}

    With the same weights the values are `arcface_loss`'s, and with the default reduction
    PML's `ArcFaceLoss(margin=margin, scale=scale)`.

    Example:

    An ArcFace head on 3 classes; the labels are a second input of the model.

    >>> head = kml.layers.ClassProxies(3, loss=kml.ArcFaceLoss(scale=8.0))
    >>> head.set_proxies(proxies)
    >>> print(keras.ops.convert_to_numpy(head.loss_values(x, labels)).round(4))
    [0.0103 0.0036 0.0352 3.431 ]
    >>> features, ids = keras.Input((2,)), keras.Input((), dtype="int32")
    >>> model = keras.Model([features, ids], head([features, ids]))
    >>> model.compile(optimizer="adam")  # the layer adds the loss
    >>> round(float(model.evaluate([x, labels], verbose=0)), 4)  # no margin outside training
    0.1752

    Reference: Deng et al., CVPR 2019.
    """,
)

subcenter_arcface_loss, SubCenterArcFaceLoss = margin_softmax.declare(
    subcenter_arcface_elements,
    function="subcenter_arcface_loss",
    cls="SubCenterArcFaceLoss",
    margin_type=ANGULAR,
    hyperparameters=dict(
        **ARCFACE,
        sub_centers=base.Hyperparameter(
            3, validation.positive_int, "Sub-centres per class `K` (the layer's `sub_centers`)."
        ),
    ),
    positional=("margin", "scale", "sub_centers"),
    original="PML `SubCenterArcFaceLoss`",
    summary="ArcFace with the best of `K` sub-centres per class",
    sub_centers="sub_centers",
    class_doc=f"""Sub-center ArcFace loss (`subcenter_arcface_loss`), computed by
    `layers.ClassProxies` with `sub_centers` proxies per class.

    {margin_softmax.LAYER_NOTE.format(cls="SubCenterArcFaceLoss")}

    With the same weights the values are `subcenter_arcface_loss`'s, and with the default
    reduction PML's `SubCenterArcFaceLoss(margin=margin, scale=scale, sub_centers=sub_centers)`.

    Example:

    >>> loss = kml.SubCenterArcFaceLoss(scale=8.0, sub_centers=2)
    >>> head = kml.layers.ClassProxies(3, loss=loss)  # 2 sub-centres per class
    >>> two = np.repeat(np.array([[2.0, 0.0], [0.0, 1.0], [-1.5, 0.0]], "float32"), 2, axis=0)
    >>> head.set_proxies(two)
    >>> print(keras.ops.convert_to_numpy(head.loss_values(x, labels)).round(4))
    [0.0103 0.0036 0.0352 3.431 ]

    Reference: Deng et al., ECCV 2020.
    """,
)
