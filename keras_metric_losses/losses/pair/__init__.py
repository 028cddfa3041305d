"""Pair-based losses: every (anchor, key) pair of a labelled batch, weighted or mined."""

from keras_metric_losses.losses.pair import (  # noqa: F401 (each module declares its losses)
    angular,
    circle,
    contrastive,
    generalized_lifted,
    histogram,
    intra_pair_variance,
    lifted,
    multi_similarity,
    pnp,
    ranked_list,
    siamese,
    smooth_ap,
    soft_nearest_neighbor,
    threshold_consistent,
    tuplet,
)
