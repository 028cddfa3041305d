"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.circle import (
    CircleLoss,
    circle_loss,
)
from keras_metric_losses.losses.contrastive import (
    BatchContrastiveLoss,
    ContrastiveLoss,
    SignalToNoiseRatioContrastiveLoss,
    batch_contrastive_loss,
    contrastive_loss,
    signal_to_noise_ratio_contrastive_loss,
)
from keras_metric_losses.losses.lifted import (
    GeneralizedLiftedStructureLoss,
    LiftedStructLoss,
    LiftedStructureLoss,
    generalized_lifted_structure_loss,
    lifted_struct_loss,
    lifted_structure_loss,
)
from keras_metric_losses.losses.margin import (
    MarginLoss,
    margin_loss,
)
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
from keras_metric_losses.losses.multi_similarity import (
    MultiSimilarityLoss,
    multi_similarity_loss,
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
from keras_metric_losses.losses.pn import (
    PNLoss,
    pn_loss,
)
from keras_metric_losses.losses.proxy import (
    ProxyAnchorLoss,
    ProxyNCALoss,
    SoftTripleLoss,
    proxy_anchor_loss,
    proxy_nca_loss,
    soft_triple_loss,
)
from keras_metric_losses.losses.soft_nearest_neighbor import (
    SoftNearestNeighborLoss,
    soft_nearest_neighbor_loss,
)
from keras_metric_losses.losses.triplet import (
    TripletHardLoss,
    TripletLoss,
    TripletMarginLoss,
    TripletSemiHardLoss,
    triplet_hard_loss,
    triplet_loss,
    triplet_margin_loss,
    triplet_semihard_loss,
)
from keras_metric_losses.losses.tuplet import (
    TupletMarginLoss,
    tuplet_margin_loss,
)

__all__ = [
    "ArcFaceLoss",
    "BatchContrastiveLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "GeneralizedLiftedStructureLoss",
    "LargeMarginSoftmaxLoss",
    "LiftedStructLoss",
    "LiftedStructureLoss",
    "MarginLoss",
    "MultiSimilarityLoss",
    "NCELoss",
    "NormalizedSoftmaxLoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "SampledSoftmaxLoss",
    "SignalToNoiseRatioContrastiveLoss",
    "SoftNearestNeighborLoss",
    "SoftTripleLoss",
    "SphereFaceLoss",
    "SubCenterArcFaceLoss",
    "TripletHardLoss",
    "TripletLoss",
    "TripletMarginLoss",
    "TripletSemiHardLoss",
    "TupletMarginLoss",
    "arcface_loss",
    "batch_contrastive_loss",
    "circle_loss",
    "contrastive_loss",
    "cosface_loss",
    "generalized_lifted_structure_loss",
    "large_margin_softmax_loss",
    "lifted_struct_loss",
    "lifted_structure_loss",
    "margin_loss",
    "multi_similarity_loss",
    "nce_loss",
    "normalized_softmax_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pn_loss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "sampled_softmax_loss",
    "signal_to_noise_ratio_contrastive_loss",
    "soft_nearest_neighbor_loss",
    "soft_triple_loss",
    "sphereface_loss",
    "subcenter_arcface_loss",
    "triplet_hard_loss",
    "triplet_loss",
    "triplet_margin_loss",
    "triplet_semihard_loss",
    "tuplet_margin_loss",
]
