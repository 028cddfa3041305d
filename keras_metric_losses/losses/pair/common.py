"""What the pair-based losses share: margins that read a distance or a similarity, and masks."""

from keras_metric_losses import distances
from keras_metric_losses.backend import ops


def beyond(x, y, larger_is_closer):
    """How far `x` lies beyond `y` on the wrong side: `x - y` for a distance, `y - x` for a
    similarity (PML's `distance.margin(x, y)`)."""
    return y - x if larger_is_closer else x - y


def pair_matrix(pairs, distance):
    """`([b, K] matrix, larger_is_closer)` of a distance name or callable."""
    return pairs.distances(distance), distances.larger_is_closer(distance)


def masked(values, mask):
    """`values` where `mask` holds, 0 elsewhere (no NaN from the unused entries)."""
    return ops.where(mask, values, 0.0)
