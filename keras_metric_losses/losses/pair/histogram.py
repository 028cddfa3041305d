"""Histogram loss (pytorch-metric-learning's `HistogramLoss`)."""

from keras_metric_losses import distances, reduction, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.pair.common import pair_matrix


def histogram_per_anchor(pairs, *, n_bins, delta, distance):
    """Histogram loss, as per-anchor shares of the batch's value: PML's `HistogramLoss`.

    The similarities `s` of the positive pairs and of the negative pairs (cosine by default)
    are spread over the nodes `r delta - 1` (`r = 0, 1, ...`, `delta = 2 / n_bins`) by linear
    interpolation: with `t = (s + 1) / delta`, node `floor(t)` gets `1 - frac(t)` and the next
    one `frac(t)`. The loss is the probability that a negative pair is more similar than a
    positive one, read off the two histograms:

    ```
    p+, p- = the histograms of the positive and of the negative pairs, each summing to 1
    loss   = sum_r p-[r] Phi+[r],  Phi+ = cumsum(p+)
    ```

    The pairs are those of the batch's triplets (of the mined pairs or triplets with `miner=`),
    as in PML: every positive pair whose anchor has a negative, every negative pair whose
    anchor has a positive, each unordered pair once (`(a, p)` and `(p, a)` are one pair).
    Each anchor gets `B` times its negative pairs' share of the sum, so Keras' mean of the
    values is the loss (a batch statistic: `sample_weight` reweights shares). The
    interpolation weights are differentiated and the node indices are not, as in PML. A
    batch without triplets gives 0.

    Differences from PML: similarities are clipped to `[-1, 1]` (PML fails on a similarity of
    exactly 1, two identical rows, as on any value past the grid); a distance `D` (smaller is
    closer) is read as `s = 1 - D`, so the grid spans `D` in `[0, 2]`, the Euclidean distances
    of unit embeddings (PML fails with `LpDistance`).

    Cost: `O(B^2)` time and memory (the histogram of the positive pairs is one segment sum).

    Example:

    >>> losses = kml.histogram_loss(labels, embeddings, n_bins=10)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.  0.5 0.  0.5]

    Reference: Ustinova and Lempitsky, "Learning Deep Embeddings with Histogram Loss",
    NeurIPS 2016; pytorch-metric-learning's `HistogramLoss`.
    """
    width = 2.0 / (100 if n_bins is None else n_bins) if delta is None else delta
    matrix, similarity = pair_matrix(pairs, distance)
    similarities = ops.clip(matrix if similarity else 1.0 - matrix, -1.0, 1.0)
    position = (similarities + 1.0) / width
    node = ops.stop_gradient(ops.floor(position))
    upper = (similarities + 1.0 - node * width) / width  # the weight of node + 1
    # The pairs of the triplets, unordered: (a, p) or (p, a) with a an anchor of a triplet.
    positive = _either_order(
        ops.logical_and(pairs.positive, ops.expand_dims(pairs.has_negative, 1))
    )
    negative = _either_order(
        ops.logical_and(pairs.negative, ops.expand_dims(pairs.has_positive, 1))
    )
    nodes = int(2.0 / width) + 3  # every node a similarity in [-1, 1] reaches, and one more
    index = ops.clip(ops.cast(node, "int32"), 0, nodes - 2)  # (a NaN input casts anywhere)
    flat_index = ops.reshape(index, (-1,))
    # The positive pairs' histogram: 1 - upper at their node, upper at the next one.
    histogram = sum(
        ops.segment_sum(ops.reshape(ops.where(positive, w, 0.0), (-1,)), flat_index + k, nodes)
        for w, k in ((1.0 - upper, 0), (upper, 1))
    )
    positives = reduction.count(positive, histogram.dtype)
    cumulative = ops.cumsum(histogram) / ops.maximum(positives, 1.0)
    terms = (1.0 - upper) * ops.take(cumulative, index) + upper * ops.take(cumulative, index + 1)
    return reduction.reduce_elements(terms, negative, "pml", reduction.batch_mean)


def _either_order(mask):
    """`mask | mask^T`: a pair counts once whichever end is the anchor (each unordered pair is
    then two entries, which leaves the normalised histograms as they are)."""
    return ops.logical_or(mask, ops.transpose(mask))


def _bins_and_delta(values):
    """PML's rule: `delta = 2 / n_bins` when both are given."""
    n_bins, delta = values["n_bins"], values["delta"]
    if n_bins is not None and delta is not None and abs(delta - 2.0 / n_bins) > 1e-12:
        raise ValueError(
            "`delta` and `n_bins` must satisfy delta = 2 / n_bins (give one of them). "
            f"Received: n_bins={n_bins}, delta={delta}"
        )


histogram_loss, HistogramLoss = base.declare(
    histogram_per_anchor,
    function="histogram_loss",
    cls="HistogramLoss",
    original="PML `HistogramLoss`",
    summary="the probability that a negative pair beats a positive one, from soft histograms",
    positional=("n_bins", "delta"),
    options=(base.MINER,),
    hyperparameters=dict(
        n_bins=base.Hyperparameter(
            None,
            lambda v, n: None if v is None else validation.positive_int(v, n),
            "Number of bins over `[-1, 1]`; `None` (with `delta` `None` too) is 100.",
        ),
        delta=base.Hyperparameter(
            None,
            lambda v, n: None if v is None else validation.real(v, n, 0.0, 2.0, low_open=True),
            "Bin width, in `(0, 2]`, instead of `n_bins` (`delta = 2 / n_bins`).",
        ),
        distance=base.Hyperparameter(
            "cosine_similarity", distances.check, "A distance name or callable (PML's `distance`)."
        ),
        normalize=base.normalize(True),
    ),
    joint_checks=(_bins_and_delta,),
    class_doc="""Histogram loss (`histogram_loss`): with the default reduction the value is
    PML's `HistogramLoss(n_bins, delta)`.

    Example:

    >>> round(float(kml.HistogramLoss(n_bins=10)(labels, embeddings)), 4)
    0.25

    Reference: Ustinova and Lempitsky, NeurIPS 2016.
    """,
)
