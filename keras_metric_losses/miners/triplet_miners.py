"""Miners that select triplets: PML's `TripletMarginMiner`, `AngularMiner`,
`BatchEasyHardMiner`, `BatchHardMiner` and `EmbeddingsAlreadyPackagedAsTriplets`."""

import math

from keras_metric_losses import mining, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.miners.base import Mined, Miner, closeness

STRATEGIES = ("hard", "semihard", "easy", "all")


def _triplet_selection(triplets):
    """A `Mined` of a `[b, K, K]` triplet mask: its pairs are those of its triplets."""
    return Mined(ops.any(triplets, axis=2), ops.any(triplets, axis=1), triplets)


@export
class TripletMarginMiner(Miner):
    """The triplets within `margin` of violating it: PML's `TripletMarginMiner`.

    With `t = d_an - d_ap` (for a similarity `s_ap - s_an`), among every (anchor, positive,
    negative): `"all"` keeps `t <= margin`, `"hard"` also `t <= 0`, `"semihard"` `0 < t <=
    margin`, `"easy"` `t > margin` (`kml.mining.triplet_margin_mask`). Costs `[b, K, K]`.

    Args:
        margin: The margin. Defaults to 0.2.
        type_of_triplets: `"all"`, `"hard"`, `"semihard"` or `"easy"`. Defaults to `"all"`.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first. Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.TripletMarginMiner(margin=0.2, type_of_triplets="hard")(
    ...     labels, embeddings)
    >>> np.argwhere(np.asarray(mined.triplets)).tolist()  # (anchor, positive, negative)
    [[1, 0, 3], [3, 2, 1]]

    Reference: pytorch-metric-learning's `TripletMarginMiner`.
    """

    def __init__(self, margin=0.2, type_of_triplets="all", distance=None, normalize=True):
        super().__init__(distance, normalize)
        self.margin = validation.real(margin, "margin")
        self.type_of_triplets = validation.one_of(
            type_of_triplets, "type_of_triplets", mining.TYPES_OF_TRIPLETS
        )

    def select(self, batch, matrix, larger_is_closer):
        triplets = mining.triplet_margin_mask(
            matrix, batch.positive, batch.negative, self.margin, self.type_of_triplets,
            larger_is_closer,
        )  # fmt: skip
        return _triplet_selection(triplets)

    def _config(self):
        return {"margin": self.margin, "type_of_triplets": self.type_of_triplets}


@export
class AngularMiner(Miner):
    """The triplets whose angle at the negative exceeds `angle` degrees: PML's `AngularMiner`.

    With `c = (a + p) / 2`, a triplet is kept when `atan(|a - p| / (2 |n - c|)) > angle`. As in
    PML the norms are those of the **raw** embeddings (whatever `normalize` says) with
    `torch.nn.functional.pairwise_distance`'s `1e-6` added to each difference. Costs
    `[b, K, K]`.

    Args:
        angle: The threshold in degrees. Defaults to 20.
        distance: Kept for PML's signature (PML asserts a normalised L2 distance); not used.
            Defaults to `"euclidean"`.
        normalize: Kept for PML's signature; not used. Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.AngularMiner(angle=20)(labels, embeddings)
    >>> int(np.asarray(mined.triplets).sum())
    4

    Reference: Wang et al., "Deep Metric Learning with Angular Loss", ICCV 2017;
    pytorch-metric-learning's `AngularMiner`.
    """

    def __init__(self, angle=20, distance=None, normalize=True):
        super().__init__(distance, normalize)
        self.angle = validation.real(angle, "angle", 0.0, 90.0)

    def mine(self, batch):
        queries = ops.stop_gradient(batch.queries)
        keys = queries if batch.keys_are_queries else ops.stop_gradient(batch.keys)
        eps = 1e-6
        # |a - p + eps|^2 and |n - (a + p) / 2 + eps|^2 by expansion: [b, K] and [b, K, K].
        qq, kk = ops.sum(queries * queries, 1), ops.sum(keys * keys, 1)
        qk, kk_pairs = (
            ops.matmul(queries, ops.transpose(keys)),
            ops.matmul(keys, ops.transpose(keys)),
        )
        qs, ks = ops.sum(queries, 1), ops.sum(keys, 1)
        dim = ops.cast(ops.shape(queries)[1], queries.dtype)
        ap = (
            qq[:, None]
            + kk[None, :]
            - 2 * qk
            + 2 * eps * (qs[:, None] - ks[None, :])
            + dim * eps**2
        )
        center = (qq[:, None] + 2 * qk + kk[None, :]) / 4  # |c|^2, [b, K(p)]
        nc = (
            kk[None, None, :] + center[:, :, None] - qk[:, None, :] - kk_pairs[None, :, :]
            + 2 * eps * (ks[None, None, :] - (qs[:, None, None] + ks[None, :, None]) / 2)
            + dim * eps**2
        )  # fmt: skip
        tangent = math.tan(math.radians(self.angle))
        wide = ap[:, :, None] > 4 * tangent**2 * nc
        return _triplet_selection(ops.logical_and(batch.triplet_mask(), wide))

    def _config(self):
        return {"angle": self.angle}


@export
class BatchEasyHardMiner(Miner):
    """One positive and one negative per anchor, each by a strategy: PML's
    `BatchEasyHardMiner`.

    With distances (similarities flip "near" and "far"):

    | strategy | positive | negative |
    | --- | --- | --- |
    | `"hard"` | the farthest | the nearest |
    | `"easy"` | the nearest | the farthest |
    | `"semihard"` | the farthest nearer than the negative | the nearest farther than the positive |
    | `"all"` | every positive pair | every negative pair |

    `allowed_pos_range` / `allowed_neg_range` (`(low, high)` on the miner's matrix) first drop
    the pairs outside them (not with `"all"`, as in PML). Without `"all"` an anchor is kept when
    it has both a positive and a negative: its selection is one triplet (`triplets` is `None`:
    the product of its one positive and one negative). With `"all"` on one side the other side's
    choice is kept wherever it exists. Ties go to the first column.

    Args:
        pos_strategy: `"hard"`, `"semihard"`, `"easy"` or `"all"`. Defaults to `"easy"`.
        neg_strategy: The same. Defaults to `"semihard"`.
        allowed_pos_range: `(low, high)` or `None`. Defaults to `None`.
        allowed_neg_range: `(low, high)` or `None`. Defaults to `None`.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first. Defaults to `True`.

    Raises:
        ValueError: for an unknown strategy, both `"semihard"`, or `"semihard"` with `"all"`
            (PML's rules), or a range that is not two numbers.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.BatchEasyHardMiner("hard", "hard")(labels, embeddings)
    >>> np.argwhere(np.asarray(mined.negative)).tolist()  # each anchor's nearest negative
    [[0, 3], [1, 3], [2, 1], [3, 1]]

    Reference: Xuan et al., "Improved Embeddings with Easy Positive Triplet Mining", WACV 2020;
    pytorch-metric-learning's `BatchEasyHardMiner`.
    """

    def __init__(self, pos_strategy="easy", neg_strategy="semihard", allowed_pos_range=None,
                 allowed_neg_range=None, distance=None, normalize=True):  # fmt: skip
        super().__init__(distance, normalize)
        self.pos_strategy = validation.one_of(pos_strategy, "pos_strategy", STRATEGIES)
        self.neg_strategy = validation.one_of(neg_strategy, "neg_strategy", STRATEGIES)
        strategies = {self.pos_strategy, self.neg_strategy}
        if self.pos_strategy == self.neg_strategy == "semihard" or strategies == {
            "semihard",
            "all",
        }:
            raise ValueError(
                '"semihard" cannot be both strategies nor be combined with "all". Received: '
                f"pos_strategy={pos_strategy!r}, neg_strategy={neg_strategy!r}"
            )
        self.allowed_pos_range = _range(allowed_pos_range, "allowed_pos_range")
        self.allowed_neg_range = _range(allowed_neg_range, "allowed_neg_range")

    def select(self, batch, matrix, larger_is_closer):
        far = closeness(matrix, larger_is_closer)
        positive = _within(batch.positive, matrix, self.allowed_pos_range)
        negative = _within(batch.negative, matrix, self.allowed_neg_range)
        pos_strategy, neg_strategy = self.pos_strategy, self.neg_strategy
        if pos_strategy == "semihard":
            neg_index, neg_found = _pick(far, negative, nearest=neg_strategy != "easy")
            neg_far = mining.take_rows(far, neg_index)
            nearer = far < ops.expand_dims(neg_far, 1)
            pos_index, pos_found = _pick(far, ops.logical_and(positive, nearer), nearest=False)
        else:
            if pos_strategy != "all":
                pos_index, pos_found = _pick(far, positive, nearest=pos_strategy == "easy")
            if neg_strategy == "semihard":
                pos_far = mining.take_rows(far, pos_index)
                farther = far > ops.expand_dims(pos_far, 1)
                negative = ops.logical_and(negative, farther)
            if neg_strategy != "all":
                neg_index, neg_found = _pick(far, negative, nearest=neg_strategy != "easy")
        if pos_strategy == "all" or neg_strategy == "all":
            return Mined(
                batch.positive if pos_strategy == "all" else _one_hot(pos_index, pos_found, far),
                batch.negative if neg_strategy == "all" else _one_hot(neg_index, neg_found, far),
            )
        keep = ops.logical_and(pos_found, neg_found)
        return Mined(_one_hot(pos_index, keep, far), _one_hot(neg_index, keep, far))

    def _config(self):
        return {
            "pos_strategy": self.pos_strategy,
            "neg_strategy": self.neg_strategy,
            "allowed_pos_range": self.allowed_pos_range,
            "allowed_neg_range": self.allowed_neg_range,
        }


@export
class BatchHardMiner(BatchEasyHardMiner):
    """Each anchor's farthest positive and nearest negative, as one triplet: PML's
    `BatchHardMiner` (`BatchEasyHardMiner("hard", "hard")`).

    Args:
        allowed_pos_range: `(low, high)` or `None`. Defaults to `None`.
        allowed_neg_range: `(low, high)` or `None`. Defaults to `None`.
        distance: A distance name or callable. Defaults to `"euclidean"`.
        normalize: L2-normalise the embeddings first. Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> labels = np.array([0, 0, 1, 1])
    >>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])
    >>> mined = kml.miners.BatchHardMiner()(labels, embeddings)
    >>> np.argwhere(np.asarray(mined.triplet_mask())).tolist()
    [[0, 1, 3], [1, 0, 3], [2, 3, 1], [3, 2, 1]]

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    2017; pytorch-metric-learning's `BatchHardMiner`.
    """

    def __init__(self, allowed_pos_range=None, allowed_neg_range=None, distance=None,
                 normalize=True):  # fmt: skip
        super().__init__("hard", "hard", allowed_pos_range, allowed_neg_range, distance, normalize)

    def _config(self):
        config = super()._config()
        return {key: config[key] for key in ("allowed_pos_range", "allowed_neg_range")}


@export
class EmbeddingsAlreadyPackagedAsTriplets(Miner):
    """The batch is already triplets: rows `3i`, `3i + 1`, `3i + 2` are anchor, positive and
    negative. PML's `EmbeddingsAlreadyPackagedAsTriplets`; labels are not read, the keys are
    the batch, and rows past the last whole triplet are not used.

    Args:
        distance: Kept for PML's signature; not used. Defaults to `"euclidean"`.
        normalize: Kept for PML's signature; not used. Defaults to `True`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> embeddings = np.eye(6)
    >>> mined = kml.miners.EmbeddingsAlreadyPackagedAsTriplets()(np.zeros(6), embeddings)
    >>> np.argwhere(np.asarray(mined.triplet_mask())).tolist()
    [[0, 1, 2], [3, 4, 5]]

    Reference: pytorch-metric-learning's `EmbeddingsAlreadyPackagedAsTriplets`.
    """

    def mine(self, batch):
        size = ops.shape(batch.queries)[0]
        rows = ops.arange(size, dtype="int32")
        anchor = ops.logical_and(rows % 3 == 0, rows + 2 < size)
        columns = ops.expand_dims(rows, 0)
        positive = ops.logical_and(
            ops.expand_dims(anchor, 1), columns == ops.expand_dims(rows + 1, 1)
        )
        negative = ops.logical_and(
            ops.expand_dims(anchor, 1), columns == ops.expand_dims(rows + 2, 1)
        )
        return Mined(positive, negative)


def _range(value, name):
    if value is None:
        return None
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ValueError(f"`{name}` must be `(low, high)` or None. Received: {name}={value!r}")
    return [validation.real(value[0], name), validation.real(value[1], name)]


def _within(mask, matrix, bounds):
    if bounds is None:
        return mask
    low, high = bounds
    return ops.logical_and(mask, ops.logical_and(matrix >= low, matrix <= high))


def _pick(far, mask, nearest):
    """`(index, found)`: each row's nearest (or farthest) masked column."""
    index, _, found = mining._select(-far if nearest else far, mask, largest=True)
    return index, found


def _one_hot(index, keep, like):
    """`[b, K]` booleans: column `index[i]` of row `i`, where `keep[i]`."""
    chosen = ops.one_hot(index, ops.shape(like)[1], dtype="bool")
    return ops.logical_and(chosen, ops.expand_dims(keep, 1))
