"""Candidate samplers (the sampled logits of `nce_loss` / `sampled_softmax_loss` are
`sampled_logits`).

Every sampler has fixed output shapes and draws with `keras.random`, so it runs eagerly and under
`jax.jit`, `tf.function(jit_compile=True)` and `torch.compile`. Seeds are an int (the same draw
every call), a `keras.random.SeedGenerator` (a fresh draw every call, also inside a compiled
`model.fit`) or `None` (Keras' global generator: eager code only on JAX).

Class ids out of `[0, num_classes)` are clipped to the nearest class (`-1` counts as class 0,
`num_classes` as class `num_classes - 1`), for the lookup of their rows and for their expected
counts alike, so the result is finite and defined inside compiled code. With value checks on
(`keras_metric_losses.config.enable_value_checks`) concrete ids out of range raise instead.
"""

import math
import numbers

import keras
import numpy as np

from keras_metric_losses import backend, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import is_float_dtype

INT32_LIMIT = 2**31 - 1  # the most classes that int32 ids can index


def index_dtypes(num_classes, name):
    """`(int dtype, float dtype)` for class ids in `[0, num_classes)`.

    `("int32", "float32")` up to `2**31 - 1` classes, else `("int64", "float64")` (TensorFlow,
    PyTorch, JAX with `jax_enable_x64`).

    Raises:
        ValueError: naming `name` and the limit, for more than `2**31 - 1` classes on JAX
            without `jax_enable_x64` (its int64 is int32, so ids would wrap around).
    """
    if num_classes <= INT32_LIMIT:
        return "int32", "float32"
    if not backend.has_64_bit_types():
        raise ValueError(
            f"`{name}` can be at most 2**31 - 1 = {INT32_LIMIT} on JAX without 64-bit types "
            "(class ids are int32); enable them with "
            "`jax.config.update('jax_enable_x64', True)`. "
            f"Received: {name}={num_classes}"
        )
    return "int64", "float64"


def clip_class_ids(ids, num_classes, dtype="int32"):
    """Class ids clipped to the nearest class in `[0, num_classes)`, cast to `dtype`.

    Integer ids are clipped in their own dtype before the cast (an int64 id of `2**32` becomes
    `num_classes - 1`, not 0). Float ids (half precision through float32) are clipped to the
    largest float at most `num_classes - 1`, NaN becomes 0, and the cast rounds the
    non-integral ones down; the result is then an exact integer in range.
    """
    ids = ops.convert_to_tensor(ids)
    source = keras.backend.standardize_dtype(ids.dtype)
    high = num_classes - 1
    if is_float_dtype(source):
        if source != "float64":
            ids, source = ops.cast(ids, "float32"), "float32"
        bound = np.asarray(high, source)
        if int(bound) > high:  # float32(2**31 - 2) is 2**31, out of int32
            bound = np.nextafter(bound, np.asarray(0, source))
        ids = ops.where(ops.isnan(ids), 0.0, ops.clip(ids, 0.0, float(bound)))
        return ops.cast(ids, dtype)
    if source == "bool":
        return ops.cast(ids, dtype)
    high = min(high, int(np.iinfo(source).max))
    return ops.cast(ops.clip(ids, 0, high), dtype)


def check_seed(seed, name="seed"):
    """`seed` for `keras.random`: `None`, a `keras.random.SeedGenerator`, or an int (a NumPy
    integer becomes a Python int, which Keras requires).

    Raises:
        TypeError: for any other value.
    """
    if seed is None or isinstance(seed, keras.random.SeedGenerator):
        return seed
    if isinstance(seed, numbers.Integral) and not isinstance(seed, (bool, np.bool_)):
        return int(seed)
    raise TypeError(
        f"`{name}` must be an int, a `keras.random.SeedGenerator` or None. "
        f"Received: {name}={seed!r}"
    )


def _check_sampler_arguments(true_classes, num_true, num_sampled, unique, range_max):
    """The checked `(num_true, num_sampled, unique, range_max)`; `true_classes` `[B, num_true]`."""
    num_true = validation.positive_int(num_true, "num_true")
    num_sampled = validation.positive_int(num_sampled, "num_sampled")
    range_max = validation.positive_int(range_max, "range_max")
    unique = validation.boolean(unique, "unique")
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
    return num_true, num_sampled, unique, range_max


def log_uniform_log_prob(classes, range_max, dtype="float32"):
    """`log P(k)` of the log-uniform (Zipfian) distribution over `[0, range_max)`, in `dtype`.

    `P(k) = (log(k + 2) - log(k + 1)) / log(range_max + 1)`, computed as
    `log1p(1 / (k + 1)) / log1p(range_max)` so that large `k` keeps its precision.
    """
    k = ops.cast(classes, dtype)
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


def _unique_log_uniform(num_sampled, range_max, seed, plan, dtypes=("int32", "float32")):
    """`(sampled [S], tries)`: the ordered unique sample and TensorFlow's draw count.

    `dtypes` are the `(int, float)` dtypes of the ids and of the draw (`index_dtypes`).
    """
    id_dtype, float_dtype = dtypes
    log_range = math.log1p(range_max)
    head, draws = (range_max, 0) if plan is None else plan
    # One draw for every part, so that an int seed does not correlate them.
    uniform = keras.random.uniform(
        (head + 2 * draws + num_sampled,), minval=_TINY, maxval=1.0, dtype=float_dtype, seed=seed
    )
    head_classes = ops.arange(head, dtype=id_dtype)
    # Arrival time E / p, as a key to maximise: log(U) / p = -E / p.
    keys = ops.log(uniform[:head]) * ops.exp(
        -log_uniform_log_prob(head_classes, range_max, float_dtype)
    )
    classes = head_classes
    if draws:
        log_head = math.log1p(head)
        tail_mass = 1.0 - log_head / log_range
        inverse = uniform[head : head + draws]
        tail = ops.exp(log_head + inverse * (log_range - log_head)) - 1.0
        tail = ops.clip(clip_class_ids(tail, range_max, id_dtype), head, range_max - 1)
        # Arrival times of the tail process (rate tail_mass): cumulative sums of Exp(1).
        gaps = -ops.log(uniform[head + draws : head + 2 * draws])
        times = ops.cumsum(gaps) / tail_mass
        same = ops.equal(ops.expand_dims(tail, 1), ops.expand_dims(tail, 0))
        earlier = ops.tril(ops.ones((draws, draws), dtype="bool"), k=-1)
        repeat = ops.any(ops.logical_and(same, earlier), axis=1)
        keys = ops.concatenate([keys, ops.where(repeat, -3e38, -times)])
        classes = ops.concatenate([head_classes, tail])
    _, order = ops.top_k(keys, num_sampled, sorted=True)
    sampled = ops.take(classes, order) if draws else ops.cast(order, id_dtype)
    # Draws needed for the (r+1)-th new class once r classes of total mass m_r are taken:
    # Geometric(1 - m_r) = 1 + floor(log U / log m_r) (exactly 1 for r = 0).
    probs = ops.exp(log_uniform_log_prob(sampled, range_max, float_dtype))
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

    Candidates always lie in `[0, range_max)`. Up to `range_max = 2**31 - 1` they are int32,
    drawn by inversion of float32 uniforms: from about `2**20` classes on, ids `k` of the far
    tail then lie on a grid of spacing about `k * log(C + 1) * 2**-24` rather than one by one.
    Above `2**31 - 1` they are int64, drawn in float64 (TensorFlow, PyTorch, JAX with
    `jax_enable_x64`; JAX without it raises a `ValueError`).

    True classes out of `[0, range_max)` are clipped to the nearest class: `-1` gets the
    expected count of class 0, `range_max` that of class `range_max - 1`, so the counts are
    finite inside compiled code. With value checks on
    (`keras_metric_losses.config.enable_value_checks()`), concrete ids out of range, or
    non-integral float ids, raise instead.

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
        A tuple `(sampled_candidates, true_expected_count, sampled_expected_count)`: `[S]`
        class ids (int32; int64 when `range_max > 2**31 - 1`), `[B, num_true]` float32 and
        `[S]` float32 expected counts.

    Raises:
        ValueError: if `num_sampled > range_max` with `unique=True`, if `true_classes` is not
            `[B, num_true]`, if a count is not a positive int (Python or NumPy), if
            `range_max > 2**31 - 1` on JAX without `jax_enable_x64`; with value checks on,
            if concrete `true_classes` are out of range or non-integral.
        TypeError: if `unique` is not a bool, `true_classes` are not numbers or `seed` is not
            an int, a `keras.random.SeedGenerator` or `None`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> sampled, true_ec, sampled_ec = kml.log_uniform_candidate_sampler(
    ...     np.array([[0], [3]]), num_true=1, num_sampled=4, unique=True, range_max=10, seed=1)
    >>> tuple(sampled.shape), tuple(true_ec.shape), tuple(sampled_ec.shape)
    ((4,), (2, 1), (4,))

    With replacement the expected counts are `S * P(k)`; `-1` and `10` count as the nearest
    classes, 0 and 9:

    >>> _, true_ec, _ = kml.log_uniform_candidate_sampler(
    ...     np.array([[0, -1], [9, 10]]), num_true=2, num_sampled=4, unique=False, range_max=10,
    ...     seed=1)
    >>> keras.ops.convert_to_numpy(true_ec).round(4)
    array([[1.1563, 1.1563],
           [0.159 , 0.159 ]], dtype=float32)

    Reference: Jean et al., "On Using Very Large Target Vocabulary for Neural Machine
    Translation", ACL 2015; `tf.random.log_uniform_candidate_sampler`; Kool et al., "Stochastic
    Beams and Where to Find Them: The Gumbel-Top-k Trick", ICML 2019.
    """
    true_classes = validation.numeric_tensor(true_classes, "true_classes")
    num_true, num_sampled, unique, range_max = _check_sampler_arguments(
        true_classes, num_true, num_sampled, unique, range_max
    )
    seed = check_seed(seed)
    dtypes = id_dtype, float_dtype = index_dtypes(range_max, "range_max")
    validation.integral_labels(true_classes, "true_classes")
    validation.class_ids_in_range(true_classes, range_max, "true_classes")
    true_classes = clip_class_ids(true_classes, range_max, id_dtype)
    true_log_prob = log_uniform_log_prob(true_classes, range_max, float_dtype)
    log_range = math.log1p(range_max)
    if not unique:
        uniform = keras.random.uniform((num_sampled,), dtype=float_dtype, seed=seed)
        # floor(exp(U log(C + 1))) - 1, floored by the cast of `clip_class_ids` (Keras'
        # `ops.floor` returns float32 for float64 on JAX and PyTorch).
        sampled = clip_class_ids(ops.exp(uniform * log_range) - 1.0, range_max, id_dtype)
        tries = float(num_sampled)
    else:
        plan = _race_plan(num_sampled, range_max)
        sampled, tries = _unique_log_uniform(num_sampled, range_max, seed, plan, dtypes)
    sampled_log_prob = log_uniform_log_prob(sampled, range_max, float_dtype)
    true_expected = _expected_count(true_log_prob, num_sampled, tries)
    sampled_expected = _expected_count(sampled_log_prob, num_sampled, tries)
    return (
        ops.stop_gradient(sampled),
        ops.stop_gradient(ops.cast(true_expected, "float32")),
        ops.stop_gradient(ops.cast(sampled_expected, "float32")),
    )


# --- the sampled-logits core of `nce_loss`, `sampled_softmax_loss` and `layers.NCE` ---------
