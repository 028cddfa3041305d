"""What every miner shares: the selection it returns (`Mined`), its distance, its config."""

import dataclasses

from keras_metric_losses import distances, mining, pairs, validation
from keras_metric_losses.api import StrictConfig
from keras_metric_losses.backend import ops


@dataclasses.dataclass(frozen=True)
class Mined:
    """The pairs or triplets a miner selects, as masks of static shape.

    Attributes:
        positive: `[b, K]` booleans: the selected (anchor, positive) pairs.
        negative: `[b, K]` booleans: the selected (anchor, negative) pairs.
        triplets: `[b, K, K]` booleans (anchor, positive, negative), or `None`: every selected
            positive of an anchor with every selected negative of that anchor (PML's
            conversion of pairs to triplets).
    """

    positive: object
    negative: object
    triplets: object = None

    def triplet_mask(self):
        """`[b, K, K]` booleans: the selected triplets."""
        if self.triplets is not None:
            return self.triplets
        return mining.triplet_mask(self.positive, self.negative)


class _FromConfig:
    @classmethod
    def from_config(cls, config):
        return cls(**config)


class Miner(StrictConfig, _FromConfig):
    """A miner: from a batch's labels and embeddings (and optional keys), the pairs or
    triplets a loss should use, as masks (`Mined`). Selections are masked reductions over the
    `[b, K]` matrix of the miner's own distance, so a miner runs under `jax.jit`, XLA and
    `torch.compile`, and is computed without gradient (PML mines under `torch.no_grad`).

    Labels are class ids or multi-hot rows (an anchor's positives are the keys it shares a
    label with, its negatives those it shares none with). Subclasses define `select(pairs,
    matrix, larger_is_closer) -> Mined` and their hyperparameters (`_config`).
    """

    default_distance = "euclidean"

    def __init__(self, distance=None, normalize=True):
        self.distance = distances.check(
            self.default_distance if distance is None else distance, "distance"
        )
        self.normalize = validation.boolean(normalize, "normalize")

    def __call__(self, y_true, y_pred, ref_embeddings=None, ref_labels=None):
        """The selection of a batch: `y_true` `[B]` class ids (or `[B, C]` multi-hot),
        `y_pred` `[B, D]` embeddings; with `ref_embeddings` / `ref_labels` the keys are those
        (a gallery) instead of the batch.

        Returns:
            A `Mined` of `[B, K]` masks (`K` = keys).
        """
        labels = ops.convert_to_tensor(validation.numeric_array(y_true, "y_true"))
        multi_hot = len(labels.shape) == 2 and labels.shape[1] != 1
        keys = pairs.keys_of(ref_embeddings, ref_labels)
        return self.mine(pairs.build(labels, y_pred, keys, multi_hot=multi_hot))

    def mine(self, batch):
        """The selection of a `kml.pairs.Pairs` (as a loss's front end builds it)."""
        source = batch.normalized() if self.normalize else batch
        matrix = ops.stop_gradient(source.distances(self.distance))
        return self.select(batch, matrix, distances.larger_is_closer(self.distance))

    def select(self, batch, matrix, larger_is_closer):
        raise NotImplementedError

    def _config(self):
        return {}

    def get_config(self):
        return {
            **self._config(),
            "distance": distances.serialize(self.distance),
            "normalize": self.normalize,
        }


def closeness(matrix, larger_is_closer):
    """`matrix` as "larger is farther" (a distance; a similarity negated)."""
    return -matrix if larger_is_closer else matrix


def positive_multiplicity(batch):
    """`[b, K]`: how many times PML lists each positive pair of a `Pairs`: in as many of a
    miner's triplets as hold it (PML's `convert_to_pairs` keeps one `(a, p)` per triplet), else
    once (every positive pair, or a pair miner's)."""
    if batch.triplets is not None:
        return ops.sum(ops.cast(batch.triplets, batch.queries.dtype), axis=2)
    return ops.cast(batch.positive, batch.queries.dtype)


def occurrences(batch):
    """`[b]`: how many times each query appears in a miner's selection (PML's
    `convert_to_weights`, before its division by the largest count): as an anchor, and, when
    the keys are the queries, as a positive or negative too (a gallery's keys are other rows).
    """
    dtype = batch.queries.dtype
    if batch.triplets is not None:
        triplets = ops.cast(batch.triplets, dtype)
        as_anchor = ops.sum(triplets, axis=(1, 2))
        as_key = ops.sum(triplets, axis=(0, 2)) + ops.sum(triplets, axis=(0, 1))
    else:
        selected = ops.cast(batch.positive, dtype) + ops.cast(batch.negative, dtype)
        as_anchor, as_key = ops.sum(selected, axis=1), ops.sum(selected, axis=0)
    return as_anchor + as_key if batch.keys_are_queries else as_anchor
