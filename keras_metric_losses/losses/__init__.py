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

__all__ = [
    "NCELoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "SampledSoftmaxLoss",
    "nce_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "sampled_softmax_loss",
]
