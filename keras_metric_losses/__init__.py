"""Metric-learning and contrastive losses for Keras 3 on TensorFlow, JAX and PyTorch."""

from keras_metric_losses import distances, layers, losses, mining
from keras_metric_losses.layers import PairwiseSimilarity
from keras_metric_losses.losses import (
    NpairsLoss,
    NpairsMultilabelLoss,
    PNLoss,
    npairs_loss,
    npairs_multilabel_loss,
    pn_loss,
)

__version__ = "0.1.0"

__all__ = [
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "PairwiseSimilarity",
    "distances",
    "layers",
    "losses",
    "mining",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pn_loss",
]
