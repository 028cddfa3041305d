"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.pair.circle import (
    CircleLoss,
    circle_loss,
)
from keras_metric_losses.losses.pair.contrastive import (
    BatchContrastiveLoss,
    SignalToNoiseRatioContrastiveLoss,
    batch_contrastive_loss,
    signal_to_noise_ratio_contrastive_loss,
)
from keras_metric_losses.losses.pair.siamese import (
    ContrastiveLoss,
    contrastive_loss,
)
from keras_metric_losses.losses.fastap import (
    FastAPLoss,
    fast_ap_loss,
)
from keras_metric_losses.losses.infonce import (
    NTXentLoss,
    SupConLoss,
    SupConMultilabelLoss,
    ntxent_loss,
    supcon_loss,
    supcon_multilabel_loss,
)
from keras_metric_losses.losses.instance import (
    InstanceLoss,
    instance_loss,
)
from keras_metric_losses.losses.pair.generalized_lifted import (
    GeneralizedLiftedStructureLoss,
    generalized_lifted_structure_loss,
)
from keras_metric_losses.losses.pair.lifted import (
    LiftedStructLoss,
    LiftedStructureLoss,
    lifted_struct_loss,
    lifted_structure_loss,
)
from keras_metric_losses.losses.triplet.margin import (
    MarginLoss,
    margin_loss,
)
from keras_metric_losses.losses.proxy.arcface import (
    ArcFaceLoss,
    SubCenterArcFaceLoss,
    arcface_loss,
    subcenter_arcface_loss,
)
from keras_metric_losses.losses.proxy.cosface import (
    CosFaceLoss,
    cosface_loss,
)
from keras_metric_losses.losses.proxy.normalized_softmax import (
    NormalizedSoftmaxLoss,
    normalized_softmax_loss,
)
from keras_metric_losses.losses.proxy.sphereface import (
    LargeMarginSoftmaxLoss,
    SphereFaceLoss,
    large_margin_softmax_loss,
    sphereface_loss,
)
from keras_metric_losses.losses.pair.multi_similarity import (
    MultiSimilarityLoss,
    multi_similarity_loss,
)
from keras_metric_losses.losses.sampled.nce import (
    NCELoss,
    nce_loss,
)
from keras_metric_losses.losses.sampled.sampled_softmax import (
    SampledSoftmaxLoss,
    sampled_softmax_loss,
)
from keras_metric_losses.losses.npairs.npairs import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)
from keras_metric_losses.losses.triplet.pn import (
    PNLoss,
    pn_loss,
)
from keras_metric_losses.losses.proxy.anchor import (
    ProxyAnchorLoss,
    proxy_anchor_loss,
)
from keras_metric_losses.losses.proxy.nca import (
    ProxyNCALoss,
    proxy_nca_loss,
)
from keras_metric_losses.losses.proxy.soft_triple import (
    SoftTripleLoss,
    soft_triple_loss,
)
from keras_metric_losses.losses.pair.soft_nearest_neighbor import (
    SoftNearestNeighborLoss,
    soft_nearest_neighbor_loss,
)
from keras_metric_losses.losses.ssl import (
    Barlow,
    SimCLRLoss,
    SimSiamLoss,
    VicReg,
    barlow_loss,
    simclr_loss,
    simsiam_loss,
    vicreg_loss,
)
from keras_metric_losses.losses.triplet.hard import (
    TripletHardLoss,
    triplet_hard_loss,
)
from keras_metric_losses.losses.triplet.semihard import (
    TripletSemiHardLoss,
    triplet_semihard_loss,
)
from keras_metric_losses.losses.triplet.tfsim_triplet import (
    TripletLoss,
    triplet_loss,
)
from keras_metric_losses.losses.triplet.triplet_margin import (
    TripletMarginLoss,
    triplet_margin_loss,
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


def markdown_table():
    """The README's table of the losses, made from their declarations (`base.DECLARED`)."""
    from keras_metric_losses.losses.base import DECLARED

    rows = ["| loss | function | reference | what it does |", "| --- | --- | --- | --- |"]
    for d in (d for d in DECLARED if d.cls is not None):  # the functions alone go with them
        function = d.function.__name__ if d.function is not None else d.related
        rows.append(
            f"| `{d.cls.__name__}` | `{function}` | {d.original or '(none)'} | {d.summary} |"
        )
    return "\n".join(rows)
