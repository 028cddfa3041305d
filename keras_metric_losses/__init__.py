"""Metric-learning and contrastive losses for Keras 3 on TensorFlow, JAX and PyTorch."""

# Before anything imports keras: picks an installed backend when the configured one is missing.
from keras_metric_losses import _backend  # noqa: F401

# isort: split
from keras_metric_losses import (
    config,
    data,
    distances,
    distributed,
    layers,
    losses,
    mining,
    pairs,
    reduction,
    sampling,
)
from keras_metric_losses.layers import PairwiseSimilarity
from keras_metric_losses.losses import (
    NCELoss,
    NpairsLoss,
    NpairsMultilabelLoss,
    PNLoss,
    SampledSoftmaxLoss,
    nce_loss,
    npairs_loss,
    npairs_multilabel_loss,
    pn_loss,
    sampled_softmax_loss,
)
from keras_metric_losses.sampling import log_uniform_candidate_sampler

__version__ = "0.1.0"

__all__ = [
    "NCELoss",
    "NpairsLoss",
    "NpairsMultilabelLoss",
    "PNLoss",
    "PairwiseSimilarity",
    "SampledSoftmaxLoss",
    "config",
    "data",
    "distances",
    "distributed",
    "layers",
    "log_uniform_candidate_sampler",
    "losses",
    "mining",
    "nce_loss",
    "npairs_loss",
    "npairs_multilabel_loss",
    "pairs",
    "pn_loss",
    "reduction",
    "sampled_softmax_loss",
    "sampling",
]
