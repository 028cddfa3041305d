"""Layers that produce what the package's losses take."""

from keras_metric_losses.layers.nce import NCE
from keras_metric_losses.layers.proxies import ClassProxies
from keras_metric_losses.layers.similarity import PairwiseSimilarity

# Sorted as Python sorts (tests/test_api.py), not ruff's constants-first order.
__all__ = ["ClassProxies", "NCE", "PairwiseSimilarity"]  # noqa: RUF022
