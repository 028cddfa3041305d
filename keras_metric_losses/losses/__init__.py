"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

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

__all__ = [
    "NCELoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "SampledSoftmaxLoss",
    "nce_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pn_loss",
    "sampled_softmax_loss",
]
