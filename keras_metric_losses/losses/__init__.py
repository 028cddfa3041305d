"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.margin_softmax import (
    ArcFaceLoss,
    CosFaceLoss,
    LargeMarginSoftmaxLoss,
    NormalizedSoftmaxLoss,
    SphereFaceLoss,
    SubCenterArcFaceLoss,
    arcface_loss,
    cosface_loss,
    large_margin_softmax_loss,
    normalized_softmax_loss,
    sphereface_loss,
    subcenter_arcface_loss,
)
from keras_metric_losses.losses.nce import (
    NCELoss,
    SampledSoftmaxLoss,
    nce_loss,
    sampled_softmax_loss,
)
from keras_metric_losses.losses.npairs import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)
from keras_metric_losses.losses.pn import PNLoss, pn_loss
from keras_metric_losses.losses.proxy import (
    ProxyAnchorLoss,
    ProxyNCALoss,
    SoftTripleLoss,
    proxy_anchor_loss,
    proxy_nca_loss,
    soft_triple_loss,
)

__all__ = [
    "ArcFaceLoss",
    "CosFaceLoss",
    "LargeMarginSoftmaxLoss",
    "NCELoss",
    "NormalizedSoftmaxLoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "SampledSoftmaxLoss",
    "SoftTripleLoss",
    "SphereFaceLoss",
    "SubCenterArcFaceLoss",
    "arcface_loss",
    "cosface_loss",
    "large_margin_softmax_loss",
    "nce_loss",
    "normalized_softmax_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pn_loss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "sampled_softmax_loss",
    "soft_triple_loss",
    "sphereface_loss",
    "subcenter_arcface_loss",
]
