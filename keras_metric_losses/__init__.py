"""Metric-learning and contrastive losses for Keras 3 on TensorFlow, JAX and PyTorch."""

# Before anything imports keras: picks an installed backend when the configured one is missing.
from keras_metric_losses import _backend  # noqa: F401

# isort: split

from keras_metric_losses import (
    compat,
    config,
    data,
    distances,
    distributed,
    layers,
    losses,
    miners,
    mining,
    pairs,
    reduction,
    regularizers,
    retrieval,
    sampling,
)
from keras_metric_losses.layers import (
    ClassProxies,
    PairwiseSimilarity,
)
from keras_metric_losses.losses import *  # noqa: F403 (every loss, by its registered name)
from keras_metric_losses.sampling import log_uniform_candidate_sampler

__version__ = "0.1.0"

# The modules, the two layers used at the top level, the sampler and every loss (its
# registered name), in ruff's RUF022 order (tests/test_registry.py checks it).
__all__ = [
    "ClassProxies",
    "PairwiseSimilarity",
    "compat",
    "config",
    "data",
    "distances",
    "distributed",
    "layers",
    "log_uniform_candidate_sampler",
    "losses",
    "miners",
    "mining",
    "pairs",
    "reduction",
    "regularizers",
    "retrieval",
    "sampling",
]
__all__ += losses.__all__
__all__.sort(key=lambda name: (1 if name[:1].isupper() else 2, name))
