"""Miners that draw at random: PML's `DistanceWeightedMiner` and `UniformHistogramMiner`.

Their draws have static shapes (a fixed number of slots, the unused ones masked) and use
`keras.random`, so they run under `jax.jit`, XLA and `torch.compile`. `seed` is an int (the same
uniforms every call: the draw then changes with the batch only), a `keras.random.SeedGenerator`
(fresh uniforms every call) or `None` (Keras' global generator: eager code only on JAX).
"""

import keras

from keras_metric_losses import sampling, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.miners.base import Mined, Miner
from keras_metric_losses.miners.triplet_miners import _triplet_selection


class _Drawing(Miner):
    """A miner with a `seed`."""

    def __init__(self, distance=None, normalize=True, seed=None):
        super().__init__(distance, normalize)
        if isinstance(seed, dict):  # a SeedGenerator as `get_config` saves it
            seed = keras.saving.deserialize_keras_object(seed)
        self.seed = sampling.check_seed(seed)

    def uniform(self, shape, dtype):
        """Uniforms in `[0, 1)` of `shape`, one draw per call (the parts do not correlate)."""
        return keras.random.uniform(shape, dtype=dtype, seed=self.seed)

    def get_config(self):
        seed = self.seed
        if isinstance(seed, keras.random.SeedGenerator):
            seed = keras.saving.serialize_keras_object(seed)
        return {**super().get_config(), "seed": seed}


def _scatter_mask(flat_index, kept, size):
    """`[size]` booleans: the positions `flat_index` `[N]` where `kept` `[N]` (repeats merged)."""
    counts = ops.scatter(ops.expand_dims(flat_index, 1), ops.cast(kept, "int32"), (size,))
    return counts > 0


@export
class DistanceWeightedMiner(_Drawing):
    """Triplets whose negatives are drawn with weights that undo the density of distances on
    the unit sphere: PML's `DistanceWeightedMiner` ("sampling matters").

    With `D` the embedding size and `d` the distance clamped below at `cutoff`, a negative `n`
    of anchor `a` has weight

    ```
    log w_an = (2 - D) log d_an - ((D - 3) / 2) log(1 - d_an^2 / 4)
    ```

    set to 0 where `d_an >= nonzero_loss_cutoff` or where the logarithm is not finite, and
    each row is normalised (`weights`; as in PML the exponent is shifted by one maximum over
    the whole matrix, the same-label entries counting as 0, so a row may underflow). An anchor
    with a positive and a row of positive total draws `k` triplets, `k` = the number of keys
    with its label (itself included when it is a key): each positive uniform among its
    positives, each negative from its weights. Multi-hot labels: the positives share a label,
    the negatives none, `k` counts the positives (and the anchor).

    Where we differ: PML returns index lists whose repeated triplets count again in the loss;
    this miner returns the `[b, K, K]` mask of the distinct triplets drawn (`draw` gives the
    draws). The draw follows PML's distribution, not torch's random stream.

    Args:
        cutoff: The lower clamp of the distances. Defaults to 0.5.
        nonzero_loss_cutoff: Negatives at this distance or beyond get weight 0. Defaults to
            1.4.
        distance: A distance name or callable; the weights are those of `"euclidean"` on
            normalised embeddings (PML asserts it). Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first. Defaults to `True`.
        seed: An int, a `keras.random.SeedGenerator` or `None`. Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.DistanceWeightedMiner(seed=1)(labels, embeddings)
    >>> np.argwhere(np.asarray(mined.positive)).tolist()  # each anchor's one positive
    [[0, 1], [1, 0], [2, 3], [3, 2]]

    Reference: Wu et al., "Sampling Matters in Deep Embedding Learning", ICCV 2017;
    pytorch-metric-learning's `DistanceWeightedMiner`.
    """

    def __init__(self, cutoff=0.5, nonzero_loss_cutoff=1.4, distance=None, normalize=True,
                 seed=None):  # fmt: skip
        super().__init__(distance, normalize, seed)
        self.cutoff = validation.real(cutoff, "cutoff")
        self.nonzero_loss_cutoff = validation.real(nonzero_loss_cutoff, "nonzero_loss_cutoff")

    def weights(self, batch, matrix):
        """`[b, K]`: each anchor's distribution over its negatives (NaN rows: none)."""
        dim = float(batch.queries.shape[-1])
        clamped = ops.maximum(matrix, self.cutoff)
        log_weights = (2.0 - dim) * ops.log(clamped) - ((dim - 3.0) / 2.0) * ops.log(
            1.0 - 0.25 * clamped * clamped
        )
        finite = ops.isfinite(log_weights)
        log_weights = ops.where(batch.negative, log_weights, 0.0)
        top = ops.amax(ops.where(finite, log_weights, -float("inf")))
        kept = ops.logical_and(ops.logical_and(batch.negative, finite),
                               clamped < self.nonzero_loss_cutoff)  # fmt: skip
        weights = ops.where(kept, ops.exp(log_weights - top), 0.0)
        return weights / ops.sum(weights, axis=1, keepdims=True)

    def draw(self, batch, matrix):
        """`(positive, negative, kept)`, each `[b, K]`: slot `t` of anchor `a` is the triplet
        `(a, positive[a, t], negative[a, t])` where `kept[a, t]`."""
        weights = self.weights(batch, matrix)
        num_keys = ops.shape(matrix)[1]
        positive = ops.cast(batch.positive, "int32")
        num_positives = ops.sum(positive, axis=1, keepdims=True)
        per_anchor = num_positives + (0 if batch.self_columns is None else 1)
        total = ops.sum(weights, axis=1, keepdims=True)
        slots = ops.expand_dims(ops.arange(num_keys, dtype="int32"), 0)
        kept = (slots < per_anchor) & (num_positives > 0) & (total > 0)
        uniform = self.uniform((2, ops.shape(matrix)[0], num_keys), weights.dtype)
        # The positive: the j-th positive column, j uniform in [0, num_positives).
        rank = ops.cast(ops.floor(uniform[0] * ops.cast(num_positives, weights.dtype)), "int32")
        rank = ops.minimum(rank, num_positives - 1)
        before = ops.cumsum(positive, axis=1)[:, None, :] <= rank[:, :, None]
        positive_index = ops.sum(ops.cast(before, "int32"), axis=2)
        # The negative: inverse of the weights' cumulative sum (clamped to the last weighted
        # column, should rounding reach the total).
        cumulative = ops.cumsum(ops.where(total > 0, weights, 0.0), axis=1)
        below = cumulative[:, None, :] <= (uniform[1] * total)[:, :, None]
        negative_index = ops.sum(ops.cast(below, "int32"), axis=2)
        last = num_keys - 1 - ops.argmax(ops.flip(weights > 0, axis=1), axis=1)
        negative_index = ops.minimum(negative_index, ops.cast(last, "int32")[:, None])
        return ops.minimum(positive_index, num_keys - 1), negative_index, kept

    def select(self, batch, matrix, larger_is_closer):
        positive, negative, kept = self.draw(batch, matrix)
        rows, num_keys = ops.shape(matrix)
        anchors = ops.arange(rows, dtype="int32")[:, None]
        flat = (anchors * num_keys + positive) * num_keys + negative
        triplets = _scatter_mask(ops.reshape(flat, (-1,)), ops.reshape(kept, (-1,)),
                                 rows * num_keys * num_keys)  # fmt: skip
        return _triplet_selection(ops.reshape(triplets, (rows, num_keys, num_keys)))

    def _config(self):
        return {"cutoff": self.cutoff, "nonzero_loss_cutoff": self.nonzero_loss_cutoff}


@export
class UniformHistogramMiner(_Drawing):
    """Pairs drawn evenly over the range of their distances: PML's `UniformHistogramMiner`.

    The positive pairs' values of the miner's matrix (distances, or similarities as they
    are) are split into `num_bins` equal bins from their minimum to their maximum (the edges of
    `torch.linspace`; bins `[e_i, e_i+1)`, the last one closed); each non-empty bin gives
    `pos_per_bin` pairs drawn uniformly with replacement from its pairs. The same for the
    negative pairs with `neg_per_bin`.

    Where we differ: PML returns index lists whose repeated pairs count again in the loss;
    this miner returns the `[b, K]` masks of the distinct pairs drawn (`draw` gives the draws).
    The draw follows PML's distribution, not torch's random stream.

    Args:
        num_bins: Number of bins (a positive int). Defaults to 100.
        pos_per_bin: Positive pairs drawn per non-empty bin. Defaults to 10.
        neg_per_bin: Negative pairs drawn per non-empty bin. Defaults to 10.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first. Defaults to `True`.
        seed: An int, a `keras.random.SeedGenerator` or `None`. Defaults to `None`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> miner = kml.miners.UniformHistogramMiner(num_bins=2, pos_per_bin=1, seed=0)
    >>> int(np.asarray(miner(labels, embeddings).positive).sum())  # one of (0, 1) and (1, 0)
    1

    Reference: pytorch-metric-learning's `UniformHistogramMiner`.
    """

    def __init__(self, num_bins=100, pos_per_bin=10, neg_per_bin=10, distance=None,
                 normalize=True, seed=None):  # fmt: skip
        super().__init__(distance, normalize, seed)
        self.num_bins = validation.positive_int(num_bins, "num_bins")
        self.pos_per_bin = validation.positive_int(pos_per_bin, "pos_per_bin")
        self.neg_per_bin = validation.positive_int(neg_per_bin, "neg_per_bin")

    def bins(self, matrix, mask):
        """`(edges [num_bins + 1], bin [b, K] int32)`: the bin of every pair of `mask`
        (`num_bins` elsewhere)."""
        low = ops.amin(ops.where(mask, matrix, float("inf")))
        high = ops.amax(ops.where(mask, matrix, -float("inf")))
        count = self.num_bins
        step = (high - low) / count
        steps = ops.arange(count + 1, dtype=matrix.dtype)
        # torch.linspace: from the start in the first half, from the end in the second.
        edges = ops.where(steps < (count + 1) // 2, low + step * steps,
                          high - step * (count - steps))  # fmt: skip
        inner = ops.searchsorted(edges[1:-1], ops.reshape(matrix, (-1,)), side="right")
        inner = ops.reshape(ops.cast(inner, "int32"), ops.shape(matrix))
        return edges, ops.where(mask, inner, count)

    def draw(self, matrix, mask, per_bin, uniform):
        """`(pair, kept)`, each `[num_bins * per_bin]`: slot `j * per_bin + t` is the flat
        index `a * K + k` of a pair of bin `j` drawn with `uniform` `[num_bins * per_bin]`,
        where `kept` (bin `j` is not empty)."""
        _, bins = self.bins(matrix, mask)
        flat = ops.reshape(bins, (-1,))
        order = ops.cast(ops.argsort(flat), "int32")
        ordered = ops.take(flat, order)
        every = ops.arange(self.num_bins, dtype="int32")
        start = ops.cast(ops.searchsorted(ordered, every, side="left"), "int32")
        end = ops.cast(ops.searchsorted(ordered, every, side="right"), "int32")
        start, size = ops.repeat(start, per_bin), ops.repeat(end - start, per_bin)
        offset = ops.cast(ops.floor(uniform * ops.cast(size, uniform.dtype)), "int32")
        position = start + ops.minimum(offset, ops.maximum(size - 1, 0))
        last = ops.shape(flat)[0] - 1
        return ops.take(order, ops.minimum(position, last)), size > 0

    def select(self, batch, matrix, larger_is_closer):
        size = self.num_bins * self.pos_per_bin
        uniform = self.uniform((size + self.num_bins * self.neg_per_bin,), matrix.dtype)
        masks, sides = [], ((batch.positive, self.pos_per_bin), (batch.negative, self.neg_per_bin))
        for (mask, per_bin), part in zip(sides, (uniform[:size], uniform[size:]), strict=True):
            pair, kept = self.draw(matrix, mask, per_bin, part)
            chosen = _scatter_mask(pair, kept, ops.shape(matrix)[0] * ops.shape(matrix)[1])
            masks.append(ops.reshape(chosen, ops.shape(matrix)))
        return Mined(*masks)

    def _config(self):
        return {"num_bins": self.num_bins, "pos_per_bin": self.pos_per_bin,
                "neg_per_bin": self.neg_per_bin}  # fmt: skip
