"""Layers that produce what the package's losses take."""

from keras_metric_losses.layers.dynamic_soft_margin import DynamicSoftMargin
from keras_metric_losses.layers.logit_scale import LogitScale
from keras_metric_losses.layers.memory import CrossBatchMemory
from keras_metric_losses.layers.nce import NCE
from keras_metric_losses.layers.proxies import ClassProxies
from keras_metric_losses.layers.similarity import PairwiseSimilarity

__all__ = [
    "NCE",
    "ClassProxies",
    "CrossBatchMemory",
    "DynamicSoftMargin",
    "LogitScale",
    "PairwiseSimilarity",
]
