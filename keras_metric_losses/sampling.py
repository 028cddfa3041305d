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


# Sampling without replacement by an exponential race: class k "arrives" at time E_k / p_k
# (E_k ~ Exp(1)); the first `S` arrivals in order are the Plackett-Luce sample, the same law as
# TensorFlow's "draw until S distinct" loop (its first-appearance order).
_TINY = 1e-20
_HEAD = 256  # classes raced explicitly before the tail is drawn
_FAILURE_BOUND = 1e-12  # bound on the probability that the head + tail race is not exact


def _binomial_upper_tail(n, p, r):
    """`P(Binomial(n, p) >= r)`, computed in log space."""
    if r <= 0 or p >= 1.0:
        return 1.0
    if r > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    log_terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1)
        + i * math.log(p) + (n - i) * math.log1p(-p)
        for i in range(r, n + 1)
    ]  # fmt: skip
    top = max(log_terms)
    return math.exp(top) * sum(math.exp(t - top) for t in log_terms)


def _race_plan(num_sampled, range_max):
    """`(head, tail_draws)` for the O(head + tail_draws**2) race, or `None` to race every class.

    The `head` most likely classes race explicitly; the tail `[head, range_max)` is replaced by
    its first `tail_draws` arrivals, i.i.d. draws by inversion at Gamma-distributed times. The
    result is exact unless fewer than `num_sampled` of those draws are distinct. Each draw
    repeats an earlier one with probability at most `rho = tail_draws * max_k q_k` (`q` the
    tail's normalised probabilities), so the repeats are dominated by `Binomial(tail_draws,
    rho)`; `tail_draws` is the smallest count for which that bound is below 1e-12.
    """
    head = max(_HEAD, 4 * num_sampled)
    if head + 4 * num_sampled >= range_max:
        return None
    log_range = math.log1p(range_max)
    tail_mass = 1.0 - math.log1p(head) / log_range
    max_tail_prob = math.log1p(1.0 / (head + 1)) / log_range / tail_mass
    step = max(1, num_sampled // 16)
    for draws in range(num_sampled, 4 * num_sampled + 1, step):
        rho = draws * max_tail_prob
        if _binomial_upper_tail(draws, rho, draws - num_sampled + 1) < _FAILURE_BOUND:
            return head, draws
    return None


def _unique_log_uniform(num_sampled, range_max, seed, plan):
    """`(sampled [S] int32, tries)`: the ordered unique sample and TensorFlow's draw count."""
    log_range = math.log1p(range_max)
    head, draws = (range_max, 0) if plan is None else plan
    # One draw for every part, so that an int seed does not correlate them.
    uniform = keras.random.uniform(
        (head + 2 * draws + num_sampled,), minval=_TINY, maxval=1.0, dtype="float32", seed=seed
    )
    head_classes = ops.arange(head, dtype="int32")
    # Arrival time E / p, as a key to maximise: log(U) / p = -E / p.
    keys = ops.log(uniform[:head]) * ops.exp(-log_uniform_log_prob(head_classes, range_max))
    classes = head_classes
    if draws:
        log_head = math.log1p(head)
        tail_mass = 1.0 - log_head / log_range
        inverse = uniform[head : head + draws]
        tail = ops.floor(ops.exp(log_head + inverse * (log_range - log_head))) - 1.0
        tail = ops.clip(ops.cast(tail, "int32"), head, range_max - 1)
        # Arrival times of the tail process (rate tail_mass): cumulative sums of Exp(1).
        gaps = -ops.log(uniform[head + draws : head + 2 * draws])
        times = ops.cumsum(gaps) / tail_mass
        same = ops.equal(ops.expand_dims(tail, 1), ops.expand_dims(tail, 0))
        earlier = ops.tril(ops.ones((draws, draws), dtype="bool"), k=-1)
        repeat = ops.any(ops.logical_and(same, earlier), axis=1)
        keys = ops.concatenate([keys, ops.where(repeat, -3e38, -times)])
        classes = ops.concatenate([head_classes, tail])
    _, order = ops.top_k(keys, num_sampled, sorted=True)
    sampled = ops.take(classes, order) if draws else ops.cast(order, "int32")
    # Draws needed for the (r+1)-th new class once r classes of total mass m_r are taken:
    # Geometric(1 - m_r) = 1 + floor(log U / log m_r) (exactly 1 for r = 0).
    probs = ops.exp(log_uniform_log_prob(sampled, range_max))
    taken = ops.clip(ops.cumsum(probs) - probs, 0.0, 1.0 - 1e-7)  # m_r, mass before r
    log_taken = ops.log(ops.maximum(taken, _TINY))
    extra = ops.where(taken > 0.0, ops.floor(ops.log(uniform[head + 2 * draws :]) / log_taken), 0.0)
    return sampled, float(num_sampled) + ops.sum(extra)


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
      appearance. Here that ordered set comes from an exponential race (the Gumbel-top-k trick,
      Plackett-Luce order, the same law): class `k` arrives at time `E_k / P(k)`,
      `E_k ~ Exp(1)`, and the first `num_sampled` arrivals are taken. The number of draws
      TensorFlow would have needed is drawn given that order, `T = sum_r Geometric(1 - m_r)`
      (`m_r` the mass of the first `r` classes taken). Expected counts follow TensorFlow:
      `num_sampled * P(k)` if `T == num_sampled`, else `1 - (1 - P(k)) ** T` (an estimate of
      the inclusion probability that treats `T` as fixed).

    Cost per call, with `S = num_sampled`, `C = range_max`: O(`S`) for `unique=False`. For
    `unique=True`, the `H = max(256, 4 S)` most likely classes race explicitly and the tail
    `[H, C)` is replaced by its first `K` arrivals (i.i.d. draws by inversion at Gamma times;
    `K` is between `S` and `4 S`, `K = 92` for `S = 64`, `C = 100,000`), so time and memory are
    O(`H + K^2`), **independent of `C`**. This is exact unless fewer than `S` of the `K` tail
    draws are distinct, an event whose probability is bounded below 1e-12 when `K` is chosen
    (in that event a tail class may appear twice). When `C <= H + 4 S`, or no `K <= 4 S`
    meets the bound, every class races: O(`C`). Plus O(`B * num_true`) for the true classes.

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
        sampled, tries = _unique_log_uniform(
            num_sampled, range_max, seed, _race_plan(num_sampled, range_max)
        )
    sampled_log_prob = log_uniform_log_prob(sampled, range_max)
    true_expected = _expected_count(true_log_prob, num_sampled, tries)
    sampled_expected = _expected_count(sampled_log_prob, num_sampled, tries)
    return (
        ops.stop_gradient(sampled),
        ops.stop_gradient(true_expected),
        ops.stop_gradient(sampled_expected),
    )
