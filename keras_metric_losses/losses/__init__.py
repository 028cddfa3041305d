"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.margin import MarginLoss, margin_loss
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

__all__ = [
    "MarginLoss",
    "NCELoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "SampledSoftmaxLoss",
    "TripletHardLoss",
    "TripletLoss",
    "TripletMarginLoss",
    "TripletSemiHardLoss",
    "margin_loss",
    "nce_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pn_loss",
    "sampled_softmax_loss",
    "triplet_hard_loss",
    "triplet_loss",
    "triplet_margin_loss",
    "triplet_semihard_loss",
]
