"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.pair.circle import (
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
from keras_metric_losses.losses.softmax.fastap import (
    FastAPLoss,
    fast_ap_loss,
)
from keras_metric_losses.losses.softmax.ntxent import (
    NTXentLoss,
    ntxent_loss,
)
from keras_metric_losses.losses.softmax.supcon import (
    SupConLoss,
    SupConMultilabelLoss,
    supcon_loss,
    supcon_multilabel_loss,
)
from keras_metric_losses.losses.softmax.instance import (
    InstanceLoss,
    instance_loss,
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
from keras_metric_losses.losses.pair.multi_similarity import (
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
from keras_metric_losses.losses.pair.soft_nearest_neighbor import (
    SoftNearestNeighborLoss,
    soft_nearest_neighbor_loss,
)
from keras_metric_losses.losses.ssl.barlow import (
    Barlow,
    barlow_loss,
)
from keras_metric_losses.losses.ssl.simclr import (
    SimCLRLoss,
    simclr_loss,
)
from keras_metric_losses.losses.ssl.simsiam import (
    SimSiamLoss,
    simsiam_loss,
)
from keras_metric_losses.losses.ssl.vicreg import (
    VicReg,
    vicreg_loss,
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
from keras_metric_losses.losses.pair.tuplet import (
    TupletMarginLoss,
    tuplet_margin_loss,
)

__all__ = [
    "ArcFaceLoss",
    "Barlow",
    "BatchContrastiveLoss",
    "CircleLoss",
    "ContrastiveLoss",
    "CosFaceLoss",
    "FastAPLoss",
    "GeneralizedLiftedStructureLoss",
    "InstanceLoss",
    "LargeMarginSoftmaxLoss",
    "LiftedStructLoss",
    "LiftedStructureLoss",
    "MarginLoss",
    "MultiSimilarityLoss",
    "NCELoss",
    "NTXentLoss",
    "NormalizedSoftmaxLoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "ProxyAnchorLoss",
    "ProxyNCALoss",
    "SampledSoftmaxLoss",
    "SignalToNoiseRatioContrastiveLoss",
    "SimCLRLoss",
    "SimSiamLoss",
    "SoftNearestNeighborLoss",
    "SoftTripleLoss",
    "SphereFaceLoss",
    "SubCenterArcFaceLoss",
    "SupConLoss",
    "SupConMultilabelLoss",
    "TripletHardLoss",
    "TripletLoss",
    "TripletMarginLoss",
    "TripletSemiHardLoss",
    "TupletMarginLoss",
    "VicReg",
    "arcface_loss",
    "barlow_loss",
    "batch_contrastive_loss",
    "circle_loss",
    "contrastive_loss",
    "cosface_loss",
    "fast_ap_loss",
    "generalized_lifted_structure_loss",
    "instance_loss",
    "large_margin_softmax_loss",
    "lifted_struct_loss",
    "lifted_structure_loss",
    "margin_loss",
    "multi_similarity_loss",
    "nce_loss",
    "normalized_softmax_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "ntxent_loss",
    "pn_loss",
    "proxy_anchor_loss",
    "proxy_nca_loss",
    "sampled_softmax_loss",
    "signal_to_noise_ratio_contrastive_loss",
    "simclr_loss",
    "simsiam_loss",
    "soft_nearest_neighbor_loss",
    "soft_triple_loss",
    "sphereface_loss",
    "subcenter_arcface_loss",
    "supcon_loss",
    "supcon_multilabel_loss",
    "triplet_hard_loss",
    "triplet_loss",
    "triplet_margin_loss",
    "triplet_semihard_loss",
    "tuplet_margin_loss",
    "vicreg_loss",
]
