"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.npairs import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)
from keras_metric_losses.losses.pn import PNLoss, pn_loss

__all__ = [
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pn_loss",
]
