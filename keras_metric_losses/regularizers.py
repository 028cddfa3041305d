"""pytorch-metric-learning 2.9's regularizers as Keras regularizers.

Each is a `keras.regularizers.Regularizer`: on embeddings through a layer's
`activity_regularizer` with `activity=True` (PML's `embedding_regularizer`: the term is added to
the model's losses; Keras divides an activity term by the batch size),
on class weights (PML's `weight_regularizer`, on `[num_classes, D]` rows) through a layer's
weight regularizer. `weight` is PML's
`embedding_reg_weight` / `weight_reg_weight`. They are saved with the model.
"""

import keras

from keras_metric_losses import distances, mining, validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import compute_dtype

__all__ = [
    "CenterInvariantRegularizer",
    "LpRegularizer",
    "RegularFaceRegularizer",
    "SparseCentersRegularizer",
    "ZeroMeanRegularizer",
]


class _Regularizer(StrictConfig, keras.regularizers.Regularizer):
    """`weight` times the mean of per-row values (`values(x)`, rows in the compute dtype)."""

    def __init__(self, weight=1.0):
        self.weight = validation.real(weight, "weight")

    def __call__(self, x):
        x = ops.convert_to_tensor(x)
        x = ops.cast(x, compute_dtype(x))
        return self.weight * self.reduce(self.values(x))

    def reduce(self, values):
        return ops.mean(values)

    def values(self, x):
        raise NotImplementedError

    def get_config(self):
        return {"weight": self.weight}


def _norms(x, p):
    """Row norms `(sum |x|^p)^(1/p)`, with a zero gradient at a zero row (NaN stays NaN)."""
    powered = ops.sum(ops.square(x), axis=1) if p == 2 else ops.sum(ops.power(ops.abs(x), p), 1)
    zero = ops.equal(powered, 0.0)
    safe = ops.where(zero, ops.ones_like(powered), powered)
    norms = ops.sqrt(safe) if p == 2 else ops.power(safe, 1.0 / p)
    return ops.where(zero, ops.zeros_like(norms), norms)


class _EmbeddingRegularizer(_Regularizer):
    """A regularizer of embedding rows: `activity=True` gives the sum over rows, which a
    layer's `activity_regularizer` divides by the batch size (Keras 3), so that the term added
    to the model's losses is PML's mean."""

    def __init__(self, weight=1.0, activity=False):
        super().__init__(weight)
        self.activity = validation.boolean(activity, "activity")

    def reduce(self, values):
        return ops.sum(values) if self.activity else ops.mean(values)

    def get_config(self):
        return {**super().get_config(), "activity": self.activity}


@export
class LpRegularizer(_EmbeddingRegularizer):
    """The mean over rows of `|x_r|_p ** power`: PML's `LpRegularizer`.

    Args:
        p: The norm's order, `> 0`. Defaults to 2.
        power: The power of each norm. Defaults to 1.
        weight: The factor of the term (PML's `*_reg_weight`). Defaults to 1.
        activity: Return the sum over rows, for a layer's `activity_regularizer` (which divides
            it by the batch size: the term added is then the mean). Defaults to `False`: the
            mean.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> float(kml.regularizers.LpRegularizer()(np.array([[3.0, 4.0], [0.0, 1.0]])))
    3.0

    Reference: pytorch-metric-learning's `LpRegularizer`.
    """

    def __init__(self, p=2, power=1, weight=1.0, activity=False):
        super().__init__(weight, activity)
        self.p = validation.real(p, "p", 0.0, low_open=True)
        self.power = validation.real(power, "power")

    def values(self, x):
        return ops.power(_norms(x, self.p), self.power)

    def get_config(self):
        return {"p": self.p, "power": self.power, **super().get_config()}


@export
class ZeroMeanRegularizer(_EmbeddingRegularizer):
    """The mean over rows of `|sum_d x_rd|`: PML's `ZeroMeanRegularizer`.

    Args:
        weight: The factor of the term. Defaults to 1.
        activity: Return the sum over rows, for a layer's `activity_regularizer` (which divides
            it by the batch size: the term added is then the mean). Defaults to `False`: the
            mean.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> float(kml.regularizers.ZeroMeanRegularizer()(np.array([[1.0, -3.0], [0.5, 0.5]])))
    1.5

    Reference: pytorch-metric-learning's `ZeroMeanRegularizer`.
    """

    def values(self, x):
        return ops.abs(ops.sum(x, axis=1))


@export
class RegularFaceRegularizer(_Regularizer):
    """The mean over class rows of the similarity to the most similar other row: PML's
    `RegularFaceRegularizer` (the other row is chosen without gradient).

    Args:
        distance: A similarity (larger is closer). Defaults to `"cosine_similarity"`.
        weight: The factor of the term. Defaults to 1.

    Raises:
        ValueError: for a distance (smaller is closer), as PML asserts.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> w = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0]])
    >>> round(float(kml.regularizers.RegularFaceRegularizer()(w)), 4)  # (0.8 + 0.8 + 0.6) / 3
    0.7333

    Reference: Zhao et al., "RegularFace: Deep Face Recognition via Exclusive Regularization",
    CVPR 2019; pytorch-metric-learning's `RegularFaceRegularizer`.
    """

    def __init__(self, distance="cosine_similarity", weight=1.0):
        super().__init__(weight)
        self.distance = distances.check(distance, "distance")
        if not distances.larger_is_closer(self.distance):
            raise ValueError(
                "`distance` must be a similarity (larger is closer). "
                f"Received: distance={distance!r}"
            )

    def values(self, x):
        similarity = distances.get(self.distance)(x, x)
        others = ops.logical_not(ops.eye(ops.shape(x)[0], dtype="bool"))
        nearest = mining.masked_argmax(ops.stop_gradient(similarity), others)
        return mining.take_rows(similarity, nearest)

    def get_config(self):
        return {"distance": distances.serialize(self.distance), **super().get_config()}


@export
class CenterInvariantRegularizer(_Regularizer):
    """The mean over class rows of `(|w_r|^2 - mean |w|^2)^2 / 4`: PML's
    `CenterInvariantRegularizer` (rows of equal norms pay nothing).

    Args:
        p: The order of the norm (PML's `LpDistance(p)`). Defaults to 2.
        weight: The factor of the term. Defaults to 1.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> w = np.array([[1.0, 0.0], [0.0, 3.0]])  # squared norms 1 and 9, mean 5
    >>> float(kml.regularizers.CenterInvariantRegularizer()(w))
    4.0

    Reference: Wu et al., "Deep Features for Recognizing Disguised Faces in the Wild", CVPR 2018
    workshops; pytorch-metric-learning's `CenterInvariantRegularizer`.
    """

    def __init__(self, p=2, weight=1.0):
        super().__init__(weight)
        self.p = validation.real(p, "p", 0.0, low_open=True)

    def values(self, x):
        squared = ops.square(_norms(x, self.p))
        return ops.square(squared - ops.mean(squared)) / 4.0

    def get_config(self):
        return {"p": self.p, **super().get_config()}


@export
class SparseCentersRegularizer(_Regularizer):
    """Pulls the centres of each class together: PML's `SparseCentersRegularizer` (for
    `SoftTripleLoss`'s centres).

    The rows are `num_classes` blocks of `centers_per_class` centres (rows `c K .. c K + K - 1`
    are class `c`'s, as `kml.ClassProxies(..., sub_centers=K)` lays them out with
    `pooling="softmax"`). Each pair `i < j` of centres of one class adds
    `sqrt(2 - min(2 cos_ij, 2))`; the sum is divided by twice the number of pairs.

    Args:
        num_classes: Number of classes.
        centers_per_class: Centres per class, at least 2.
        weight: The factor of the term. Defaults to 1.

    Raises:
        ValueError: for fewer than 2 centres per class, or when called on a number of rows
            other than `num_classes * centers_per_class`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> w = np.array([[1.0, 0.0], [0.0, 1.0]])  # one class, two orthogonal centres
    >>> round(float(kml.regularizers.SparseCentersRegularizer(1, 2)(w)), 4)  # sqrt(2) / 2
    0.7071

    Reference: Qian et al., "SoftTriple Loss: Deep Metric Learning Without Triplet Sampling",
    ICCV 2019; pytorch-metric-learning's `SparseCentersRegularizer`.
    """

    def __init__(self, num_classes, centers_per_class, weight=1.0):
        super().__init__(weight)
        self.num_classes = validation.positive_int(num_classes, "num_classes")
        self.centers_per_class = validation.positive_int(
            centers_per_class, "centers_per_class", low=2
        )

    def values(self, x):
        rows = self.num_classes * self.centers_per_class
        if x.shape[0] != rows:
            raise ValueError(
                f"SparseCentersRegularizer({self.num_classes}, {self.centers_per_class}) takes "
                f"{rows} rows of centres. Received: shape={tuple(x.shape)}"
            )
        cosine = distances.cosine_similarity(x, x)
        index = ops.arange(rows)
        same = ops.equal(index[:, None] // self.centers_per_class,
                         index[None, :] // self.centers_per_class)  # fmt: skip
        pairs = ops.logical_and(same, index[:, None] < index[None, :])
        gap = 2.0 - ops.minimum(2.0 * cosine, 2.0)
        return ops.where(pairs, ops.sqrt(ops.maximum(gap, 1e-30)), 0.0)

    def reduce(self, values):
        num_pairs = self.num_classes * self.centers_per_class * (self.centers_per_class - 1) // 2
        return ops.sum(values) / (2.0 * num_pairs)

    def get_config(self):
        return {
            "num_classes": self.num_classes,
            "centers_per_class": self.centers_per_class,
            **super().get_config(),
        }
