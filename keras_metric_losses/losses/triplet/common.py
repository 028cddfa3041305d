"""The hyperparameters that several triplet losses share: TF Addons' `distance_metric` and
pytorch-metric-learning's `distance`, `triplets_per_anchor` and `normalize_embeddings`."""

import dataclasses
import inspect

from keras_metric_losses import distances
from keras_metric_losses.losses import base


def check_distance_metric(value, name):
    """`distances.check`, with a clear error for TF Addons' one-argument callables.

    TF Addons calls `distance_metric(embeddings) -> [B, B]`; the losses of this package call
    `distance(query, key) -> [Q, K]` (the keys may be the global batch or a memory).
    """
    if callable(value) and _takes_one_argument(value):
        raise ValueError(
            f"A callable `{name}` takes two arguments here, `fn(query, key) -> [Q, K]` "
            "(TF Addons' `fn(embeddings) -> [B, B]` is called with `query = key = y_pred`): "
            "for example `lambda x: x @ tf.transpose(x)` becomes "
            "`lambda q, k: keras.ops.matmul(q, keras.ops.transpose(k))`. "
            f"Received: {name}={value!r}"
        )
    return distances.check(value, name)


def _takes_one_argument(fn):
    try:
        parameters = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):  # builtins without a signature: let them be called
        return False
    if any(p.kind is inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in parameters) == 1


# TF Addons 0.23
DISTANCE_METRIC = base.Hyperparameter(
    "L2",
    check_distance_metric,
    '`"L2"` (Euclidean), `"squared-L2"`, `"angular"` (cosine distance of the L2-normalised '
    "embeddings), any name of `kml.distances` (case-insensitive), or a callable "
    "`fn(query, key) -> [Q, K]` (TF Addons' callables take one argument, `fn(embeddings)`: "
    "write `lambda q, k: ...` instead; a one-argument callable raises). A callable must be "
    "registered with `keras.saving.register_keras_serializable` to be saved.",
)


def check_triplets_per_anchor(value, name):
    """Only PML's default `"all"`: random subsampling of triplets is not offered."""
    if value != "all":
        raise ValueError(
            f"`{name}` must be 'all' (every triplet is used; select triplets with "
            f"`type_of_triplets` instead of sampling them). Received: {name}={value!r}"
        )
    return value


# pytorch-metric-learning 2.9
PML_DISTANCE = base.Hyperparameter(
    "euclidean",
    distances.check,
    'A distance of `kml.distances`: `"euclidean"` (PML\'s `LpDistance`), '
    '`"squared_euclidean"` (`LpDistance(power=2)`), `"manhattan"` (`LpDistance(p=1)`), '
    '`"cosine_similarity"` (`CosineSimilarity`), `"inner_product"` (`DotProductSimilarity`), '
    '`"snr"` (`SNRDistance`), or a callable `fn(query, key) -> [Q, K]` (with '
    "`larger_is_closer = True` for a similarity).",
)
TRIPLETS_PER_ANCHOR = base.Hyperparameter(
    "all",
    check_triplets_per_anchor,
    'Only `"all"` (PML\'s default; its random subsampling is not offered).',
)


# Two classes of two unit embeddings: the inputs of the PML triplet losses' examples.
PML_INPUTS = dataclasses.replace(
    base.EMBEDDINGS,
    example=""">>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> labels = np.array([0, 0, 1, 1])
>>> embeddings = np.array([[1, 0], [0.6, 0.8], [0.8, 0.6], [0, 1]], "float32")""",
)
