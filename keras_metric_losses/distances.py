"""Pairwise distances between two batches of embeddings, and their lookup by name.

Every distance takes `query` `[Q, D]` and `key` `[K, D]` embeddings and returns the `[Q, K]`
matrix `distance[i, j] = d(query[i], key[j])`; mining losses such as `PNLoss` call it with
`query = key = y_pred`. Built-in names (case-insensitive, aliases as in TensorFlow Similarity
and TF Addons):

| name | aliases | `d(q, k)` | larger is closer |
| --- | --- | --- | --- |
| `"cosine"` | `"cosinedistance"` | `max(1 - q.k, 0)` (no normalisation: pass unit vectors) | no |
| `"angular"` | | `max(1 - q.k / (|q| |k|), 0)` (normalises, as TF Addons) | no |
| `"euclidean"` | `"l2"`, `"pythagorean"` | `sqrt(max(|q|^2 + |k|^2 - 2 q.k, 0))` | no |
| `"squared_euclidean"` | `"sql2"`, `"sqeuclidean"`, `"squared-l2"` | the square of the above | no |
| `"manhattan"` | `"l1"`, `"taxicab"` | `sum_d |q_d - k_d|` (builds `[Q, K, D]`) | no |
| `"snr"` | `"signal_to_noise_ratio"` | `var(q - k) / var(q)` over the features | no |
| `"inner_product"` | `"ip"` | `q.k`, a *similarity* | yes |
| `"cosine_similarity"` | | `q.k / (|q| |k|)`, a *similarity* | yes |

`larger_is_closer(distance)` tells which way a matrix orders pairs, so that one loss can take a
distance or a similarity (as pytorch-metric-learning's `is_inverted`). A user distance is any
callable `fn(query, key) -> [Q, K]`; give it an attribute `larger_is_closer = True` if it is a
similarity. To be saved in a loss config it must be registered with
`keras.saving.register_keras_serializable`; it is then stored under its registered name (e.g.
`"my_package>my_distance"`) and `get` finds it again by that name.
"""

import keras

from keras_metric_losses import backend, docstrings
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import l2_normalize, positive_part, safe_sqrt


def _norm_expansion(query, key):
    """`|q|^2 - 2 q.k + |k|^2` (may round below 0), in TensorFlow Similarity's order."""
    query_norms = ops.sum(ops.square(query), axis=1, keepdims=True)
    key_norms = ops.sum(ops.square(key), axis=1, keepdims=True)
    products = ops.matmul(2.0 * query, ops.transpose(key))  # = 2 (q.k) exactly, no [Q, K] pass
    return query_norms - products + ops.transpose(key_norms)


def _squared_norm_expansion(query, key):
    """`_norm_expansion` clamped at 0, differentiably (`positive_part`)."""
    return positive_part(_norm_expansion(query, key))


def _euclidean(query, key):
    """`(euclidean(query, key), its gradient function)`, for `keras.ops.custom_gradient`.

    Nothing differentiates the forward pass: `sqrt(relu(...))` of the expansion (0 where it is
    <= 0, NaN kept), five `[Q, K]` passes with the product (eleven for `safe_sqrt`). With `g`
    the upstream gradient and `S = g / D` (`g / inf` = 0 where `D = 0`, as `safe_sqrt`'s
    gradient; a NaN `g` stays NaN), `d/dq = q sum_k S - S k` and `d/dk = k sum_q S - S^T q`:
    three `[Q, K]` passes and two products (autodiff replayed about twelve; eager torch).
    """
    distances = ops.sqrt(ops.relu(_norm_expansion(query, key)))
    # Eager torch runs the whole gradient function: no product for keys without a gradient
    # (a cross-batch memory). Graphs (TF, `torch.compile`) prune the unused part.
    key_gradient = getattr(key, "requires_grad", True)

    def grad(*args, upstream=None):
        upstream = backend.upstream_gradient(args, upstream)
        # NaN distances pass NaN on (`NaN <= 0` is false), as `safe_sqrt`.
        scaled = upstream / ops.where(distances <= 0, float("inf"), distances)
        d_query = query * ops.sum(scaled, axis=1, keepdims=True) - ops.matmul(scaled, key)
        if not key_gradient:
            return d_query, None
        d_key = key * ops.expand_dims(ops.sum(scaled, axis=0), 1) - ops.matmul(
            ops.transpose(scaled), query
        )
        return d_query, d_key

    return distances, grad


_euclidean_with_gradient = ops.custom_gradient(_euclidean)


# name: (function, larger_is_closer), filled by `_builtin`.
_CANONICAL = {}
_SHARED_DOC = """
    Args:
        query: `[Q, D]` embeddings.
        key: `[K, D]` embeddings.

    Returns:
        {returns}

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import distances
    >>> x = {x}
    >>> keras.ops.convert_to_numpy(distances.{name}(x, x)).tolist()
    {shows}
"""


def _builtin(larger_is_closer, returns, x, shows):
    """Declares a built-in distance: its name (the function's), its order, the shared `Args`
    and `Returns`, an example on `x` that shows `shows`, and its export."""

    def declare(fn):
        _CANONICAL[fn.__name__] = (fn, larger_is_closer)
        text = _SHARED_DOC.format(returns=returns, x=x, name=fn.__name__, shows=shows)
        return export(docstrings.append(text)(fn))

    return declare


@_builtin(
    larger_is_closer=False,
    returns="`[Q, K]` distances.",
    x="np.array([[1.0, 0.0], [0.0, 1.0]])",
    shows="[[0.0, 1.0], [1.0, 0.0]]",
)
def cosine(query, key):
    """Cosine distance `max(1 - q.k, 0)` of (already L2-normalised) embeddings.

    Like TensorFlow Similarity (since 0.13) the embeddings are not normalised here: add a
    `keras.layers.UnitNormalization()` to the model. Range `[0, 2]` for unit vectors.
    """
    return positive_part(1.0 - ops.matmul(query, ops.transpose(key)))


@_builtin(
    larger_is_closer=False,
    returns="`[Q, K]` distances.",
    x="np.array([[0.0, 0.0], [3.0, 4.0]])",
    shows="[[0.0, 5.0], [5.0, 0.0]]",
)
def euclidean(query, key):
    """Euclidean distance `sqrt(|q|^2 + |k|^2 - 2 q.k)`, with a finite gradient at 0.

    Computed from one matrix product (no `[Q, K, D]` tensor). The square root is
    `ops.safe_sqrt`: where the squared distance is 0 (duplicate embeddings) the distance and its
    gradient are exactly 0, so training never sees NaN. Off JAX the gradient is written out
    (`keras.ops.custom_gradient`); JAX differentiates the expression, which XLA fuses.
    """
    if backend.ALWAYS_COMPILED:  # XLA fuses the differentiated passes
        return safe_sqrt(_squared_norm_expansion(query, key))
    return _euclidean_with_gradient(ops.convert_to_tensor(query), ops.convert_to_tensor(key))


@_builtin(
    larger_is_closer=False,
    returns="`[Q, K]` distances.",
    x="np.array([[0.0, 0.0], [3.0, 4.0]])",
    shows="[[0.0, 25.0], [25.0, 0.0]]",
)
def squared_euclidean(query, key):
    """Squared Euclidean distance `max(|q|^2 + |k|^2 - 2 q.k, 0)`."""
    return _squared_norm_expansion(query, key)


@_builtin(
    larger_is_closer=False,
    returns="`[Q, K]` distances.",
    x="np.array([[0.0, 0.0], [3.0, 4.0]])",
    shows="[[0.0, 7.0], [7.0, 0.0]]",
)
def manhattan(query, key):
    """Manhattan (L1) distance `sum_d |q_d - k_d|`.

    Cost: builds the `[Q, K, D]` difference tensor (and its gradient), `Q * K * D` elements —
    512 MiB in float32 for a batch of 1024 and `D = 128`. Prefer `"euclidean"` for large batches.
    """
    differences = ops.expand_dims(query, 1) - ops.expand_dims(key, 0)
    return ops.sum(ops.abs(differences), axis=-1)


@_builtin(
    larger_is_closer=False,
    returns="`[Q, K]` distances in `[0, 2]`.",
    x="np.array([[2.0, 0.0], [0.0, 3.0]])",
    shows="[[0.0, 1.0], [1.0, 0.0]]",
)
def angular(query, key):
    """Angular (cosine) distance `max(1 - q.k / (|q| |k|), 0)`, normalising the embeddings.

    TF Addons' `"angular"` metric: each embedding is L2-normalised first (`ops.l2_normalize`),
    so zero vectors stay finite.
    """
    return cosine(l2_normalize(query), l2_normalize(key))


@_builtin(
    larger_is_closer=False,
    returns="`[Q, K]` distances.",
    x="np.array([[1.0, -1.0], [2.0, 0.0]])",
    shows="[[0.0, 0.0], [0.0, 0.0]]",
)
def snr(query, key):
    """Signal-to-noise ratio distance `var(q - k) / var(q)` (variances over the features).

    TF Similarity's `SNRDistance` and pytorch-metric-learning's (Yuan et al.): the noise
    `k - q` relative to the signal `q`; asymmetric. Computed from one matrix product of the
    centred embeddings, `(|q_c|^2 + |k_c|^2 - 2 q_c.k_c) / |q_c|^2`, without a `[Q, K, D]`
    tensor. A constant query (zero variance) gives a zero denominator: its row is 0 / 0.

    Reference: Yuan et al., "Signal-to-Noise Ratio: A Robust Distance Metric for Deep Metric
    Learning", CVPR 2019.
    """
    query, key = ops.convert_to_tensor(query), ops.convert_to_tensor(key)
    query = query - ops.mean(query, axis=-1, keepdims=True)
    key = key - ops.mean(key, axis=-1, keepdims=True)
    query_norms = ops.sum(ops.square(query), axis=1, keepdims=True)
    return _squared_norm_expansion(query, key) / query_norms


@_builtin(
    larger_is_closer=True,
    returns="`[Q, K]` inner products.",
    x="np.array([[1.0, 2.0], [3.0, 4.0]])",
    shows="[[5.0, 11.0], [11.0, 25.0]]",
)
def inner_product(query, key):
    """Inner product `q.k` — a similarity (larger = closer), returned as is.

    Losses treat the matrix as they treat a distance, exactly as TensorFlow Similarity does
    with `"inner_product"`: every mining rule is therefore reversed in meaning ("hard"
    positive mining picks the *most* similar positive) and the loss decreases when positives
    become *less* similar. It is offered for compatibility; for training use `"cosine"`, or
    pass `lambda q, k: -inner_product(q, k)` (registered) for a distance-like ordering.
    """
    return ops.matmul(query, ops.transpose(key))


@_builtin(
    larger_is_closer=True,
    returns="`[Q, K]` similarities in `[-1, 1]`.",
    x="np.array([[2.0, 0.0], [0.0, 3.0]])",
    shows="[[1.0, 0.0], [0.0, 1.0]]",
)
def cosine_similarity(query, key):
    """Cosine similarity `q.k / (|q| |k|)` — a similarity (larger = closer).

    The embeddings are L2-normalised here (`ops.l2_normalize`, as pytorch-metric-learning's
    `CosineSimilarity`).
    """
    return inner_product(l2_normalize(query), l2_normalize(key))


_ALIASES = {
    "cosinedistance": "cosine",
    "l2": "euclidean",
    "pythagorean": "euclidean",
    "sql2": "squared_euclidean",
    "sqeuclidean": "squared_euclidean",
    "squared-l2": "squared_euclidean",
    "l1": "manhattan",
    "taxicab": "manhattan",
    "signal_to_noise_ratio": "snr",
    "ip": "inner_product",
}
_NAMES = {fn: name for name, (fn, _) in _CANONICAL.items()}


def names():
    """The accepted built-in names, canonical names and aliases, sorted."""
    return sorted([*_CANONICAL, *_ALIASES])


def get(identifier):
    """The distance function for a name, an alias, a registered name or a callable.

    Names are case-insensitive (`"L2"` is `"euclidean"`). A string that is not a built-in
    name is looked up with `keras.saving.get_registered_object` (for example
    `"my_package>my_distance"`, as `serialize` writes it). A callable is returned unchanged.

    Args:
        identifier: A name from `names()`, a registered name, or a callable
            `fn(query [Q, D], key [K, D]) -> [Q, K]`.

    Returns:
        The distance function.

    Raises:
        ValueError: if the name is unknown or `identifier` is neither a string nor callable.

    Example:

    >>> from keras_metric_losses import distances
    >>> distances.get("L2") is distances.euclidean
    True
    """
    if isinstance(identifier, str):
        name = identifier.lower()
        name = _ALIASES.get(name, name)
        if name in _CANONICAL:
            return _CANONICAL[name][0]
        registered = keras.saving.get_registered_object(identifier)
        if callable(registered):
            return registered
    elif callable(identifier):
        return identifier
    raise ValueError(
        f"Unknown distance. Expected one of {names()}, the name of a distance registered with "
        "`keras.saving.register_keras_serializable`, or a callable "
        f"`fn(query, key) -> [Q, K]`. Received: distance={identifier!r}"
    )


def serialize(distance):
    """The string that `get` maps back to `distance`: its canonical or registered name.

    Raises:
        ValueError: if `distance` is a callable that is not registered with
            `keras.saving.register_keras_serializable` (it could not be loaded again).

    Example:

    >>> from keras_metric_losses import distances
    >>> distances.serialize("L2")
    'euclidean'
    """
    fn = get(distance)
    if fn in _NAMES:
        return _NAMES[fn]
    name = keras.saving.get_registered_name(fn)
    if keras.saving.get_registered_object(name) is not fn:
        raise ValueError(
            "A custom distance must be registered with "
            "`@keras.saving.register_keras_serializable()` to be saved in a config. "
            f"Received: distance={fn!r}"
        )
    return name


def larger_is_closer(distance):
    """Whether larger values of `distance` mean closer pairs (a similarity).

    `True` for `"inner_product"` and `"cosine_similarity"`, `False` for the distances; a
    callable says so with a `larger_is_closer` attribute (default `False`).

    Example:

    >>> from keras_metric_losses import distances
    >>> distances.larger_is_closer("ip"), distances.larger_is_closer("l2")
    (True, False)
    """
    fn = get(distance)
    if fn in _NAMES:
        return _CANONICAL[_NAMES[fn]][1]
    return bool(getattr(fn, "larger_is_closer", False))


def _paired_squared_norm_expansion(query, key):
    """`_squared_norm_expansion` of row `i` with row `i` (`[n, D]`, `[n, D]` -> `[n]`), in the
    same order of operations."""
    query_norms = ops.sum(ops.square(query), axis=1)
    key_norms = ops.sum(ops.square(key), axis=1)
    products = 2.0 * ops.sum(query * key, axis=1)
    return positive_part(query_norms - products + key_norms)


def _paired_snr(query, key):
    query = query - ops.mean(query, axis=-1, keepdims=True)
    key = key - ops.mean(key, axis=-1, keepdims=True)
    return _paired_squared_norm_expansion(query, key) / ops.sum(ops.square(query), axis=1)


def _paired_cosine(query, key):
    return positive_part(1.0 - ops.sum(query * key, axis=1))


# `distance(query[i], key[i])` for the rows of two `[n, D]` matrices, `[n]`, of each built-in
# distance: the value of the `[Q, K]` matrix's entry, computed from the two embeddings only.
_ROWWISE = {
    cosine: _paired_cosine,
    angular: lambda q, k: _paired_cosine(l2_normalize(q), l2_normalize(k)),
    euclidean: lambda q, k: safe_sqrt(_paired_squared_norm_expansion(q, k)),
    squared_euclidean: _paired_squared_norm_expansion,
    manhattan: lambda q, k: ops.sum(ops.abs(q - k), axis=-1),
    snr: _paired_snr,
    inner_product: lambda q, k: ops.sum(q * k, axis=-1),
    cosine_similarity: lambda q, k: ops.sum(l2_normalize(q) * l2_normalize(k), axis=-1),
}


def rowwise(distance):
    """The row-wise form `fn(query, key) -> [n]` (`distance(query[i], key[i])` of two `[n, D]`
    matrices) of a built-in distance, or `None` for a user's callable.

    With it, a loss can mine on the `[Q, K]` matrix without gradient and recompute only the
    selected distances from the embeddings (`PNLoss`): the backward pass is `O(b D)` instead
    of a `[b, K]` pass and two `[b, K] x [K, D]` matmuls.
    """
    return _ROWWISE.get(get(distance))


def check(distance, name="distance"):
    """A hyperparameter check: a built-in distance's canonical name, or a callable as given.

    Raises:
        ValueError: naming the argument `name`, for an unknown name or a non-callable.
    """
    try:
        fn = get(distance)
    except ValueError as error:
        raise ValueError(str(error).replace("distance=", f"{name}=")) from None
    return _NAMES.get(fn, fn)
