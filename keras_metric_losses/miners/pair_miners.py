"""Miners that select pairs: PML's `PairMarginMiner`, `MultiSimilarityMiner`, `HDCMiner`."""

from keras_metric_losses import mining, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.miners.base import Mined, Miner, closeness


@export
class PairMarginMiner(Miner):
    """The positive pairs farther than `pos_margin` and the negative pairs closer than
    `neg_margin`: PML's `PairMarginMiner`.

    For a distance `d`: positives with `d > pos_margin`, negatives with `d < neg_margin`; for a
    similarity `s` the comparisons flip (`s < pos_margin`, `s > neg_margin`).

    Args:
        pos_margin: Positive pairs beyond it are kept. Defaults to 0.2.
        neg_margin: Negative pairs within it are kept. Defaults to 0.8.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first (PML's `LpDistance()`). Defaults to
            `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.PairMarginMiner(pos_margin=0.5, neg_margin=0.5)(labels, embeddings)
    >>> np.argwhere(np.asarray(mined.negative)).tolist()  # the close negative pairs
    [[1, 3], [3, 1]]

    Reference: pytorch-metric-learning's `PairMarginMiner`.
    """

    def __init__(self, pos_margin=0.2, neg_margin=0.8, distance=None, normalize=True):
        super().__init__(distance, normalize)
        self.pos_margin = validation.real(pos_margin, "pos_margin")
        self.neg_margin = validation.real(neg_margin, "neg_margin")

    def select(self, batch, matrix, larger_is_closer):
        far = closeness(matrix, larger_is_closer)
        sign = -1.0 if larger_is_closer else 1.0
        return Mined(
            ops.logical_and(batch.positive, far > sign * self.pos_margin),
            ops.logical_and(batch.negative, far < sign * self.neg_margin),
        )

    def _config(self):
        return {"pos_margin": self.pos_margin, "neg_margin": self.neg_margin}


@export
class MultiSimilarityMiner(Miner):
    """The positives less similar than the anchor's most similar negative (plus `epsilon`),
    and the negatives more similar than its least similar positive (minus `epsilon`): PML's
    `MultiSimilarityMiner`.

    With similarities `s`: positive `(a, p)` is kept when `s_ap - epsilon < max_n s_an`, negative
    `(a, n)` when `s_an + epsilon > min_p s_ap`; for a distance the same with the order flipped
    (`d_ap + epsilon > min_n d_an`, `d_an - epsilon < max_p d_ap`). An anchor without negatives
    keeps no positive, and without positives no negative.

    Args:
        epsilon: The slack. Defaults to 0.1.
        distance: A distance name or callable. Defaults to `"cosine_similarity"` (PML's
            `CosineSimilarity`).
        normalize: L2-normalise the embeddings first. Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.MultiSimilarityMiner()(labels, embeddings)
    >>> np.argwhere(np.asarray(mined.positive)).tolist()
    [[1, 0], [3, 2]]

    Reference: Wang et al., "Multi-Similarity Loss with General Pair Weighting for Deep Metric
    Learning", CVPR 2019; pytorch-metric-learning's `MultiSimilarityMiner`.
    """

    default_distance = "cosine_similarity"

    def __init__(self, epsilon=0.1, distance=None, normalize=True):
        super().__init__(distance, normalize)
        self.epsilon = validation.real(epsilon, "epsilon")

    def select(self, batch, matrix, larger_is_closer):
        far = closeness(matrix, larger_is_closer)
        nearest_negative = -mining.masked_max(-far, batch.negative)[:, None]
        farthest_positive = mining.masked_max(far, batch.positive)[:, None]
        return Mined(
            ops.logical_and(batch.positive, far + self.epsilon > nearest_negative),
            ops.logical_and(batch.negative, far - self.epsilon < farthest_positive),
        )

    def _config(self):
        return {"epsilon": self.epsilon}


@export
class HDCMiner(Miner):
    """The hardest `filter_percentage` of the positive pairs and of the negative pairs of the
    batch: PML's `HDCMiner` (hard-aware deeply cascaded embedding).

    Of the `n` positive pairs, the `ceil(filter_percentage * n)` farthest are kept; of the
    negative pairs, the same share of the closest. The count is a tensor and the selection a
    threshold on the sorted pairs, so shapes stay static; pairs tied with the last one kept are
    kept too (PML's `topk` keeps one of them).

    Args:
        filter_percentage: The share of each kind kept, in `(0, 1]`. Defaults to 0.5.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first. Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.HDCMiner(filter_percentage=0.25)(labels, embeddings)
    >>> np.argwhere(np.asarray(mined.negative)).tolist()  # 2 of the 8 negative pairs
    [[1, 3], [3, 1]]

    Reference: Yuan et al., "Hard-Aware Deeply Cascaded Embedding", ICCV 2017;
    pytorch-metric-learning's `HDCMiner`.
    """

    def __init__(self, filter_percentage=0.5, distance=None, normalize=True):
        super().__init__(distance, normalize)
        self.filter_percentage = validation.real(
            filter_percentage, "filter_percentage", 0.0, 1.0, low_open=True
        )

    def select(self, batch, matrix, larger_is_closer):
        far = closeness(matrix, larger_is_closer)
        return Mined(self._hardest(far, batch.positive), self._hardest(-far, batch.negative))

    def _hardest(self, hardness, mask):
        """`mask` restricted to its `ceil(filter_percentage * count)` largest `hardness`."""
        flat = ops.reshape(ops.where(mask, hardness, -float("inf")), (-1,))
        count = ops.sum(ops.cast(mask, "float32"))
        keep = ops.cast(ops.ceil(self.filter_percentage * count), "int32")
        ranked = ops.flip(ops.sort(flat))
        threshold = ops.take(ranked, ops.maximum(keep - 1, 0))
        return ops.logical_and(mask, hardness >= threshold)

    def _config(self):
        return {"filter_percentage": self.filter_percentage}
