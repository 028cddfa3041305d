"""Retrieval evaluation of embeddings: an exact k-NN search on the backend, one block of queries
and references at a time, the metrics of pytorch-metric-learning's `AccuracyCalculator` on it,
and TensorFlow Similarity's retrieval metrics.

- `knn`: `nearest_neighbors`, exact, ties by lower index, memory of one block of distances.
- `blocks`: the search's blocks, steps (compiled as `model.fit` compiles) and exact top-k.
- `pml`: `get_accuracy`, PML's metrics and settings in one call.
- `metrics`: one function per metric: `precision_at_1`, `r_precision`,
  `mean_average_precision_at_r`, `mean_average_precision`, `mean_reciprocal_rank`.
- `clustering`: `normalized_mutual_info`, `adjusted_mutual_info` of given cluster ids.
- `tfsim`: TensorFlow Similarity's `RecallAtK`, `PrecisionAtK`, `MapAtK` and `BNDCG` from each
  query's neighbour labels: `recall_at_k`, `precision_at_k`, `map_at_k`, `binary_ndcg`.
- In training: `keras_metrics`, the metrics above within each batch for
  `model.compile(metrics=[...])` (`PrecisionAt1`, `RPrecision`, `MeanAveragePrecisionAtR`,
  `MeanAveragePrecision`, `MeanReciprocalRank`); `callbacks`, `RetrievalEvaluation` (a held-out
  set scored at the end of an epoch, into `logs`); `evaluation`, `evaluate(model, ...)`.
"""

from keras_metric_losses.api import REGISTRY, public_names
from keras_metric_losses.retrieval import (  # noqa: F401 (importing a module exports its functions)
    callbacks,
    clustering,
    evaluation,
    keras_metrics,
    knn,
    metrics,
    pml,
    tfsim,
)

__all__ = public_names(__name__)
globals().update({name: REGISTRY[name] for name in __all__})
