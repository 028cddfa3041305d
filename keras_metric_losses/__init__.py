"""Metric-learning and contrastive losses for Keras 3 on TensorFlow, JAX and PyTorch."""

from keras_metric_losses import distributed, layers, losses
from keras_metric_losses.layers import PairwiseSimilarity
from keras_metric_losses.losses import (
    NpairsLoss,
    NpairsMultilabelLoss,
    npairs_loss,
    npairs_multilabel_loss,
)

__version__ = "0.1.0"

__all__ = [
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PairwiseSimilarity",
    "distributed",
    "layers",
    "losses",
    "npairs_loss",
    "npairs_multilabel_loss",
]
