"""Retrieval metrics for `model.compile(metrics=[...])`: each example of a batch is a query
against the rest of the batch, and the per-query scores stream over batches as a weighted mean.

One class per function of `retrieval.metrics`, named in CamelCase (`precision_at_1` is
`PrecisionAt1`), logged as `batch_<function name>`. The whole batch is searched (`k` is every
other example), so each batch's value is `get_accuracy(y_pred, y_true, k=None,
distance=...)[name]` of that batch: its own row left out, ties by lower index, queries with no
other example of their class not scored. Everything is `keras.ops` on the `[B, B]` distance
matrix: it runs inside the compiled training step (`jax.jit`, `tf.function`, torch).
"""

import math

import keras

from keras_metric_losses import backend, distances, docstrings, validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.retrieval import blocks, knn


def _relevance(y_true):
    """`[B, B]` bool: whether example `j` is relevant to query `i` (same class id, or sharing a
    class of multi-hot rows), the diagonal included."""
    shape = tuple(y_true.shape)
    if len(shape) == 1 or (len(shape) == 2 and shape[1] == 1):
        ids = ops.reshape(y_true, (-1,))
        return ops.expand_dims(ids, 1) == ops.expand_dims(ids, 0)
    if len(shape) == 2:
        hot = ops.cast(y_true != 0, "float32")
        return ops.matmul(hot, ops.transpose(hot)) > 0
    raise ValueError(
        "`y_true` must hold one class id per example ([batch] or [batch, 1]) or one multi-hot "
        f"row per example ([batch, num_classes]). Received: y_true.shape={shape}"
    )


def _ranked(y_true, y_pred, distance):
    """`(relevant [B, B], counts [B], finite [B])`: query `i`'s relevance of its `j`-th nearest
    other example (the batch ranked as `knn.search` ranks it, its own row last and not
    relevant), its number of relevant examples `R`, and whether its distances are finite."""
    y_pred = knn.embeddings(y_pred, "y_pred")
    validation.same_batch(y_true, y_pred)
    relevant = _relevance(y_true)
    size = ops.shape(y_pred)[0]
    own = ops.eye(size, dtype="bool")
    relevant = ops.cast(relevant & ~own, y_pred.dtype)
    matrix = distances.get(distance)(y_pred, y_pred)
    keys = blocks.ranking_keys(matrix, distances.larger_is_closer(distance))
    _, order = backend.top_k_first_index(ops.where(own, -math.inf, keys), size)
    finite = ops.all(ops.isfinite(matrix), axis=1)
    return ops.take_along_axis(relevant, order, axis=1), ops.sum(relevant, axis=1), finite


def _precision_terms(relevant):
    """`rel_j * P@j`, `P@j` the precision of the first `j` neighbours."""
    ranks = ops.cast(ops.arange(1, ops.shape(relevant)[1] + 1), relevant.dtype)
    return relevant * ops.cumsum(relevant, axis=1) / ranks


def _within_r(relevant, counts):
    positions = ops.cast(ops.arange(ops.shape(relevant)[1]), counts.dtype)
    return relevant * ops.cast(positions < ops.expand_dims(counts, 1), relevant.dtype)


# Each metric's per-query value from `(relevant [B, B] ranked, R [B] clipped to >= 1)`, the
# formulas of `pml._scores` (there every other example is searched: `min(R, k) = R`).
_PER_QUERY = {
    "precision_at_1": lambda rel, r: rel[:, 0],
    "r_precision": lambda rel, r: ops.sum(_within_r(rel, r), axis=1) / r,
    "mean_average_precision_at_r": lambda rel, r: (
        ops.sum(_within_r(_precision_terms(rel), r), axis=1) / r
    ),
    "mean_average_precision": lambda rel, r: ops.sum(_precision_terms(rel), axis=1) / r,
    "mean_reciprocal_rank": lambda rel, r: ops.amax(
        rel / ops.cast(ops.arange(1, ops.shape(rel)[1] + 1), rel.dtype), axis=1
    ),
}


def in_batch_scores(name, y_true, y_pred, distance):
    """`(scores [B], scored [B] bool)`: metric `name` of each query against the rest of the
    batch (NaN where its distances are not finite), and whether it has a relevant example."""
    relevant, counts, finite = _ranked(y_true, y_pred, distance)
    scores = _PER_QUERY[name](relevant, ops.maximum(counts, 1))
    return ops.where(finite, scores, math.nan), counts > 0


class InBatchRetrievalMetric(StrictConfig, keras.metrics.Metric):
    """The shared part of the in-batch retrieval metrics: state, update, result, config."""

    metric = None  # the name in `pml.KNN_METRICS`, set by each subclass

    def __init__(self, distance="cosine_similarity", name=None, dtype=None):
        super().__init__(name=f"batch_{self.metric}" if name is None else name, dtype=dtype)
        self.distance = distances.check(distance)
        self.total = self.add_variable(shape=(), initializer="zeros", name="total")
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        scores, scored = in_batch_scores(self.metric, y_true, y_pred, self.distance)
        weights = ops.cast(scored, self.dtype)
        if sample_weight is not None:
            weight = ops.cast(validation.numeric_tensor(sample_weight, "sample_weight"), self.dtype)
            weights = weights * ops.reshape(weight, (-1,))
        terms = ops.where(scored, weights * ops.cast(scores, self.dtype), 0.0)
        self.total.assign_add(ops.sum(terms))
        self.count.assign_add(ops.sum(weights))

    def result(self):
        """The weighted mean of the scored queries' values; NaN before any query is scored."""
        return self.total / self.count

    def get_config(self):
        return {**super().get_config(), "distance": distances.serialize(self.distance)}


_SHARED = """
    Each example of a batch is a query against the other examples of the batch (its own row
    left out, equal distances by lower index); a query with no other example of its class is
    not scored (pytorch-metric-learning's rule). The state is the sum of the scored queries'
    values (weighted by `sample_weight` if given) and their number (weight): the result is the
    mean over all batches seen, each batch's value being
    `kml.retrieval.get_accuracy(y_pred, y_true, k=None, distance=distance)["{name}"]`.
    Logged as `batch_{name}` (`val_batch_{name}` on validation data), apart from the
    `val_{name}` that `RetrievalEvaluation` writes over a whole query set.

    Args:
        distance: How neighbours are ranked: a name of `kml.distances.names()` or a registered
            callable. Defaults to `"cosine_similarity"` (direction of the embeddings; note that
            `get_accuracy` defaults to PML's `"squared_euclidean"`).
        name: The metric's name in the logs. Defaults to `"batch_{name}"`.
        dtype: The dtype of the state and result. Defaults to `keras.backend.floatx()`.

    `update_state(y_true, y_pred, sample_weight=None)` takes `y_true` `[B]` (or `[B, 1]`)
    class ids or `[B, C]` multi-hot rows (relevant when they share a class), `y_pred` `[B, D]`
    embeddings and `sample_weight` `[B]`, one weight per query.

    Returns:
        `result()`: a scalar, the weighted mean of the scored queries' values; NaN while no
        query has been scored.

    Raises:
        ValueError: for an unknown `distance`, labels of rank above 2, embeddings that are not
            a `[B, D]` matrix, or batch sizes that differ.

    Example (class 1 has no other member: not scored):

    >>> import numpy as np
    >>> from keras_metric_losses import retrieval
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.3, 1.0]])
    >>> labels = np.array([0, 0, 1, 0])
    >>> metric = retrieval.{cls}()
    >>> metric.update_state(labels, x)
    >>> round(float(metric.result()), 4)
    {shows}

    In a model whose output is the embedding:

    ```python
    model.compile(optimizer="adam", loss=kml.MultiSimilarityLoss(),
                  metrics=[kml.retrieval.{cls}()])
    ```
"""


def _declare(name, shows):
    """Sets the class's metric `name`, appends the shared docstring and exports it."""

    def declare(cls):
        cls.metric = name
        doc = docstrings.append(_SHARED, name=name, cls=cls.__name__, shows=shows)
        return export(doc(cls))

    return declare


@_declare("precision_at_1", shows="0.6667")
class PrecisionAt1(InBatchRetrievalMetric):
    """Precision@1 within each batch (Recall@1 in metric-learning papers): the fraction of
    queries whose nearest other example of the batch is of their class.

    ```
    P@1 = mean over the scored queries of rel_1
    ```

    Reference: pytorch-metric-learning 2.9's `AccuracyCalculator` (`"precision_at_1"`).
    """


@_declare("r_precision", shows="0.8333")
class RPrecision(InBatchRetrievalMetric):
    """R-precision within each batch: the fraction of its class among each query's `R` nearest
    other examples, `R` the number of other examples of its class in the batch.

    ```
    RP = mean over the scored queries of  sum_{j <= R} rel_j / R
    ```

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020.
    """


@_declare("mean_average_precision_at_r", shows="0.75")
class MeanAveragePrecisionAtR(InBatchRetrievalMetric):
    """MAP@R within each batch: average precision over each query's `R` nearest other
    examples, divided by `R`.

    ```
    MAP@R = mean over the scored queries of  sum_{j <= R} rel_j P@j / R
    P@j   = sum_{i <= j} rel_i / j
    ```

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020.
    """


@_declare("mean_average_precision", shows="0.8611")
class MeanAveragePrecision(InBatchRetrievalMetric):
    """Mean average precision within each batch, over every other example of the batch.

    ```
    MAP = mean over the scored queries of  sum_{j <= B - 1} rel_j P@j / R
    ```

    Reference: pytorch-metric-learning 2.9's `AccuracyCalculator` (`"mean_average_precision"`).
    """


@_declare("mean_reciprocal_rank", shows="0.8333")
class MeanReciprocalRank(InBatchRetrievalMetric):
    """Mean reciprocal rank within each batch: one over the rank of each query's first other
    example of its class.

    ```
    MRR = mean over the scored queries of  1 / min{j : rel_j = 1}
    ```

    Reference: Voorhees, "The TREC-8 Question Answering Track Report", TREC 1999.
    """
