"""Candidate samplers for sampled losses (`nce_loss`, `sampled_softmax_loss`), in `keras.ops`.

Every sampler has fixed output shapes and draws with `keras.random`, so it runs eagerly and under
`jax.jit`, `tf.function(jit_compile=True)` and `torch.compile`. Seeds are an int (the same draw
every call), a `keras.random.SeedGenerator` (a fresh draw every call, also inside a compiled
`model.fit`) or `None` (Keras' global generator: eager code only on JAX).
"""

import math

import keras
from keras import ops

from keras_metric_losses.api import export


def _check_sampler_arguments(true_classes, num_true, num_sampled, unique, range_max):
    for name, value in (("num_true", num_true), ("num_sampled", num_sampled)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    if not isinstance(range_max, int) or isinstance(range_max, bool) or range_max < 1:
        raise ValueError(f"`range_max` must be a positive int. Received: range_max={range_max!r}")
    if unique and num_sampled > range_max:
        raise ValueError(
            "With `unique=True`, `num_sampled` can be at most the number of classes "
            f"`range_max`. Received: num_sampled={num_sampled}, range_max={range_max}"
        )
    shape = tuple(true_classes.shape)
    if len(shape) != 2 or shape[1] != num_true:
        raise ValueError(
            "`true_classes` must be an integer matrix of shape [batch, num_true] with "
            f"num_true={num_true}. Received: true_classes.shape={shape}"
        )


def log_uniform_log_prob(classes, range_max):
    """`log P(k)` of the log-uniform (Zipfian) distribution over `[0, range_max)`, float32.

    `P(k) = (log(k + 2) - log(k + 1)) / log(range_max + 1)`, computed as
    `log1p(1 / (k + 1)) / log1p(range_max)` so that large `k` keeps its precision.
    """
    k = ops.cast(classes, "float32")
    return ops.log(ops.log1p(1.0 / (k + 1.0))) - math.log(math.log1p(range_max))


def _expected_count(log_prob, num_sampled, num_tries):
    """TensorFlow's expected count of a class with log-probability `log_prob`.

    `num_sampled * p` when no duplicate was drawn (`num_tries == num_sampled`), else the
    inclusion probability `1 - (1 - p) ** num_tries`, as `RangeSampler::ExpectedCountHelper`.
    """
    prob = ops.exp(log_prob)
    if isinstance(num_tries, float):
        return num_sampled * prob
    inclusion = -ops.expm1(num_tries * ops.log1p(-prob))
    return ops.where(num_tries == float(num_sampled), num_sampled * prob, inclusion)


@export
def log_uniform_candidate_sampler(
    true_classes, num_true, num_sampled, unique, range_max, seed=None
):
    """Samples classes from the log-uniform (Zipfian) distribution, as TensorFlow's sampler.

    The base distribution over the classes `k` in `[0, range_max)` is

    ```
    P(k) = (log(k + 2) - log(k + 1)) / log(range_max + 1)
    ```

    which suits class ids sorted by decreasing frequency (word ids of a vocabulary).

    - `unique=False`: `num_sampled` independent draws by inversion,
      `k = floor(exp(U * log(range_max + 1))) - 1`; expected counts `num_sampled * P(k)`.
      Cost O(`num_sampled`), independent of `range_max`.
    - `unique=True`: `num_sampled` distinct classes with the law of TensorFlow's sampler, which
      draws until it has `num_sampled` distinct values and keeps them in order of first
      appearance. Here that ordered set is the top-`num_sampled` of `log P(k) + Gumbel_k`
      (Plackett-Luce order, the same law), and the number of draws TensorFlow would have needed
      is `T = sum_r Geometric(1 - m_r)`, where `m_r` is the mass of the first `r` classes
      taken. Expected counts follow TensorFlow: `num_sampled * P(k)` if `T == num_sampled`,
      else `1 - (1 - P(k)) ** T` (an estimate of the inclusion probability that treats `T` as
      fixed). Cost per call: O(`range_max`) time and memory (one uniform number per class and a
      top-k), the price of a fixed-shape, loop-free exact draw; O(`batch * num_true`) for the
      true classes' expected counts.

    Neither variant excludes the true classes from the sample (as in TensorFlow). The random
    streams differ from TensorFlow's, so the draws are equal in law, not value by value.

    Args:
        true_classes: `[B, num_true]` integer class ids; only their expected counts are
            computed.
        num_true: Number of true classes per example (the last dimension of `true_classes`).
        num_sampled: Number of classes to sample, `S`.
        unique: Whether the `S` classes are distinct. Requires `S <= range_max`.
        range_max: Number of classes `C`.
        seed: An int (reproducible: the same draw every call), a `keras.random.SeedGenerator`
            (a new draw each call, also inside compiled training steps) or `None` (Keras'
            global seed generator; JAX requires an explicit seed under `jax.jit`).

    Returns:
        A tuple `(sampled_candidates, true_expected_count, sampled_expected_count)`: `[S]` int32
        class ids, `[B, num_true]` float32 and `[S]` float32 expected counts.

    Raises:
        ValueError: if `num_sampled > range_max` with `unique=True`, if `true_classes` is not
            `[B, num_true]`, or if a count is not a positive int.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> sampled, true_ec, sampled_ec = kml.log_uniform_candidate_sampler(
    ...     np.array([[0], [3]]), num_true=1, num_sampled=4, unique=True, range_max=10, seed=1)
    >>> tuple(sampled.shape), tuple(true_ec.shape), tuple(sampled_ec.shape)
    ((4,), (2, 1), (4,))

    Reference: Jean et al., "On Using Very Large Target Vocabulary for Neural Machine
    Translation", ACL 2015; `tf.random.log_uniform_candidate_sampler`; Kool et al., "Stochastic
    Beams and Where to Find Them: The Gumbel-Top-k Trick", ICML 2019.
    """
    true_classes = ops.convert_to_tensor(true_classes)
    _check_sampler_arguments(true_classes, num_true, num_sampled, unique, range_max)
    true_log_prob = log_uniform_log_prob(true_classes, range_max)
    log_range = math.log1p(range_max)
    if not unique:
        uniform = keras.random.uniform((num_sampled,), dtype="float32", seed=seed)
        sampled = ops.cast(ops.floor(ops.exp(uniform * log_range)), "int32") - 1
        sampled = ops.clip(sampled, 0, range_max - 1)
        tries = float(num_sampled)
    else:
        # One draw for both parts, so that an int seed does not correlate them.
        tiny = 1e-20
        uniform = keras.random.uniform(
            (range_max + num_sampled,), minval=tiny, maxval=1.0, dtype="float32", seed=seed
        )
        gumbel = -ops.log(-ops.log(uniform[:range_max]))
        keys = log_uniform_log_prob(ops.arange(range_max, dtype="int32"), range_max) + gumbel
        _, sampled = ops.top_k(keys, num_sampled, sorted=True)
        sampled = ops.cast(sampled, "int32")
        # Draws needed for the (r+1)-th new class once r classes of total mass m_r are taken:
        # Geometric(1 - m_r) = 1 + floor(log U / log m_r) (exactly 1 for r = 0).
        probs = ops.exp(log_uniform_log_prob(sampled, range_max))
        taken = ops.cumsum(probs) - probs  # m_r, mass before position r
        taken = ops.clip(taken, 0.0, 1.0 - 1e-7)
        log_taken = ops.log(ops.maximum(taken, tiny))
        extra = ops.where(taken > 0.0, ops.floor(ops.log(uniform[range_max:]) / log_taken), 0.0)
        tries = float(num_sampled) + ops.sum(extra)
    sampled_log_prob = log_uniform_log_prob(sampled, range_max)
    true_expected = _expected_count(true_log_prob, num_sampled, tries)
    sampled_expected = _expected_count(sampled_log_prob, num_sampled, tries)
    return (
        ops.stop_gradient(sampled),
        ops.stop_gradient(true_expected),
        ops.stop_gradient(sampled_expected),
    )
