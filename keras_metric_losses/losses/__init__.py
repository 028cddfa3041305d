"""The package's losses: a function (scalar or per-example) and a Keras `Loss` class each."""

from keras_metric_losses.losses.npairs import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)

__all__ = ["NpairsLoss", "NpairsMultilabelLoss", "npairs_loss", "npairs_multilabel_loss"]
