"""A loss on embeddings at several truncated sizes (sentence-transformers' `MatryoshkaLoss`)."""

import math
import numbers

import keras

from keras_metric_losses import validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.losses.multiple import _loss
from keras_metric_losses.losses.wrapper import PerExampleLoss
from keras_metric_losses.ops import l2_normalize


@export
class MatryoshkaLoss(StrictConfig, PerExampleLoss):
    """A loss of embeddings applied to their first `d` features, for several `d`:
    sentence-transformers' `MatryoshkaLoss`.

    With `d_1 > d_2 > ...` the `matryoshka_dims` (sorted, each with its weight), every row of
    `y_pred` (over its last axis) is cut to its first `d_k` features and L2-normalised again,
    and the wrapped loss's per-example values are summed with the weights:

    ```
    loss(x) = sum_k w_k * inner(y_true, l2_normalize(y_pred[..., :d_k]))
    ```

    A weighted sum, not a mean; the full dimension need not be among the dims. The new
    normalisation changes nothing for a loss of cosines and does for a dot product. This
    loss's `reduction` and `sample_weight` reduce the sums once, so with the default mean the
    value is sentence-transformers' (for a wrapped loss whose mean is the original's). The
    wrapped loss's own `reduction`, `name` and `dtype` are not used.

    `n_dims_per_step` (`> 0` and below the number of dims): each call draws that many dims
    at random, without replacement, and sums only theirs (sentence-transformers draws with
    Python's `random.sample` per step; here `keras.random` with a `SeedGenerator` of `seed`).
    Every dim's loss is still computed, with weight 0 for the dims not drawn: the shapes stay
    static under `jax.jit`, XLA and `torch.compile`, so the step costs the same as with
    every dim. Keras saves no `SeedGenerator` state: a loaded loss draws from `seed` again.
    Two limits of Keras' random state in a loss: JAX's `model.fit` keeps the state of the
    model and metrics only, so there the draw does not advance and every step sums the same
    dims (eager calls do advance); Keras' torch seed generator is excluded from
    `torch.compile` (a graph break; `model.fit` on torch runs eagerly unless `jit_compile`).

    Args:
        loss: A loss of this package on embeddings `[B, D]`, two views `[B, 2, D]` or
            columns `[B, C, D]` (for example `kml.CoSENTLoss()`), with its hyperparameters.
        matryoshka_dims: The sizes `d_k`, positive ints no larger than `D` (in any order).
        matryoshka_weights: The weight of each dim, finite numbers in the same order.
            Defaults to `None`: 1 each.
        n_dims_per_step: `-1`: every dim at every step; `n > 0`: `n` dims drawn at random
            each step. Defaults to `-1`.
        seed: The seed of the draw (an int or `None`). Defaults to `None`.
        name: Name of the loss. Defaults to `"matryoshka_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or dtype policy. Defaults to `keras.config.floatx()`.

    Call arguments:
        y_true: The wrapped loss's labels.
        y_pred: The wrapped loss's embeddings, truncated over their last axis.

    Returns:
        `[B]` per-example values, reduced by `reduction`.

    Raises:
        TypeError: if `loss` is not a loss of this package, or a weight is not a number.
        ValueError: for an empty `matryoshka_dims`, a dim that is not a positive int,
            weights that do not match the dims, or `n_dims_per_step` not `-1` or positive;
            when called, for a dim larger than the last axis of `y_pred`.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> pairs = np.array([[[1.0, 0.0, 0.5, 0.1], [0.8, 0.6, 0.0, 0.3]],
    ...                   [[0.0, 1.0, 0.2, 0.0], [0.6, 0.8, -0.4, 0.1]],
    ...                   [[1.0, 0.2, 0.0, 0.7], [-0.6, 0.8, 0.3, 0.0]]])  # [3, 2 columns, 4]
    >>> scores = np.array([0.9, 0.5, 0.1])
    >>> loss = kml.MatryoshkaLoss(kml.CoSENTLoss(), [4, 2], [1.0, 0.5])
    >>> full, half = kml.CoSENTLoss()(scores, pairs), kml.CoSENTLoss()(scores, pairs[..., :2])
    >>> bool(np.isclose(loss(scores, pairs), full + 0.5 * half))
    True

    Reference: Kusupati et al., "Matryoshka Representation Learning", NeurIPS 2022;
    sentence-transformers' `MatryoshkaLoss`.
    """

    summary = "a loss of embeddings summed over truncated, renormalised prefixes"
    original = "sentence-transformers `MatryoshkaLoss`"

    def __init__(self, loss, matryoshka_dims, matryoshka_weights=None, n_dims_per_step=-1,
                 seed=None, name="matryoshka_loss", reduction="sum_over_batch_size",
                 dtype=None):  # fmt: skip
        super().__init__(name=name, reduction=reduction, dtype=dtype)
        self.loss = _loss(loss, "loss")
        if not isinstance(matryoshka_dims, list | tuple) or not matryoshka_dims:
            raise ValueError(
                "`matryoshka_dims` must be a non-empty list of positive ints. "
                f"Received: matryoshka_dims={matryoshka_dims!r}"
            )
        self.matryoshka_dims = [
            validation.positive_int(d, f"matryoshka_dims[{i}]")
            for i, d in enumerate(matryoshka_dims)
        ]
        self.matryoshka_weights = _weights(matryoshka_weights, len(self.matryoshka_dims))
        if n_dims_per_step != -1:
            n_dims_per_step = validation.positive_int(n_dims_per_step, "n_dims_per_step")
        self.n_dims_per_step = n_dims_per_step
        if seed is not None and not isinstance(seed, int):
            raise TypeError(f"`seed` must be an int or None. Received: seed={seed!r}")
        self.seed = seed
        self.seed_generator = keras.random.SeedGenerator(seed) if self._draws else None

    @property
    def _draws(self):
        return 0 < self.n_dims_per_step < len(self.matryoshka_dims)

    def call(self, y_true, y_pred):
        dim = y_pred.shape[-1]
        weights = self.matryoshka_weights or [1.0] * len(self.matryoshka_dims)
        pairs = sorted(zip(self.matryoshka_dims, weights, strict=True), key=lambda p: -p[0])
        if pairs[0][0] > dim:
            raise ValueError(
                f"`matryoshka_dims` must be at most the last axis of `y_pred` ({dim}). "
                f"Received: matryoshka_dims={self.matryoshka_dims} and y_pred.shape="
                f"{tuple(y_pred.shape)}"
            )
        drawn = self._drawn(len(pairs), y_pred.dtype)
        total = 0.0
        for k, (size, weight) in enumerate(pairs):
            values = self.loss.call(y_true, l2_normalize(y_pred[..., :size]))
            total = total + (weight if drawn is None else weight * drawn[k]) * values
        return total

    def _drawn(self, count, dtype):
        """`None` (every dim), or `[count]` 0/1 weights with `n_dims_per_step` ones, drawn
        uniformly without replacement."""
        if not self._draws:
            return None
        keys = keras.random.uniform((count,), seed=self.seed_generator)
        ranks = ops.argsort(ops.argsort(keys))
        return ops.cast(ranks < self.n_dims_per_step, dtype)

    def get_config(self):
        return {
            **super().get_config(),
            "loss": keras.saving.serialize_keras_object(self.loss),
            "matryoshka_dims": self.matryoshka_dims,
            "matryoshka_weights": self.matryoshka_weights,
            "n_dims_per_step": self.n_dims_per_step,
            "seed": self.seed,
        }


def _weights(weights, count):
    """The weights as a list of floats, or `None` (1 each)."""
    if weights is None:
        return None
    if not isinstance(weights, list | tuple) or len(weights) != count:
        raise ValueError(
            f"`matryoshka_weights` must be a list of one weight per dim ({count}). "
            f"Received: matryoshka_weights={weights!r}"
        )
    for weight in weights:
        if isinstance(weight, bool) or not isinstance(weight, numbers.Real):
            raise TypeError(
                f"`matryoshka_weights` must hold numbers. Received: matryoshka_weights={weights!r}"
            )
        if not math.isfinite(weight):
            raise ValueError(
                f"`matryoshka_weights` must be finite. Received: matryoshka_weights={weights!r}"
            )
    return [float(weight) for weight in weights]
