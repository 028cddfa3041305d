"""Mining of positives and negatives from a distance matrix, with masks and static shapes.

Everything here works on a `[B, K]` distance matrix (row = anchor, column = key) and `[B, K]`
boolean masks, and returns one column index per anchor (`[B]` integers) plus, where it
matters, whether the anchor had a candidate at all. Selections are masked `argmin`/`argmax`
over `where(mask, distances, +inf / -inf)`: no index lists, no data-dependent shapes, no
host syncs, so they run under `jax.jit`, XLA and `torch.compile`. Ties go to the first
column, as in TensorFlow Similarity. The distance of a selected pair is read with `take_rows`
(a gather), so the gradient flows to that one entry of the matrix only.

An anchor whose mask row is empty gets column 0 and `found = False`; callers decide what such
an anchor contributes (`PNLoss` gives it loss 0 and zero gradient). `found` is read from the
masked max/min itself (it differs from the fill value `-inf`/`+inf`), so distances are
expected to be finite.

Triplets. `semi_hard_negatives` mines one negative per (anchor, positive) pair from each
anchor's sorted row (`O(B K log K)`), without enumerating triplets. `triplet_mask` and
`triplet_margin_mask` do enumerate them: they return dense `[B, K, K]` masks (anchor,
positive, negative), as do the losses built on them (`TripletMarginLoss`). That costs
`B * K * K` elements per tensor: 16.8 million (64 MiB in float32) for a batch of 256,
1.07 billion (4 GiB) for 1024. They are the only `O(B K^2)` functions of the package.
"""

from keras_metric_losses import backend, docstrings, validation
from keras_metric_losses.api import export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import label_equality

POSITIVE_STRATEGIES = ("hard", "easy")
NEGATIVE_STRATEGIES = ("hard", "semi-hard", "easy")
TYPES_OF_TRIPLETS = ("all", "hard", "semihard", "easy")


@export
def label_masks(labels, key_labels=None, self_columns=None):
    """Positive and negative masks of anchors against keys, from integer class labels.

    `positive[i, j] = labels[i] == key_labels[j] and j != self_columns[i]` (an anchor is not
    its own positive); `negative[i, j] = labels[i] != key_labels[j]`. Without keys the anchors
    are the keys (`[B, B]`, self = the diagonal), as in a single-device batch; with
    `kml.distributed.gather_keys` the keys are every replica's examples (`[b, B]`).

    Args:
        labels: `[b]` or `[b, 1]` integer class labels of the anchors (compared in their own
            dtype).
        key_labels: `[B]` or `[B, 1]` labels of the keys. Defaults to `labels`.
        self_columns: `[b]` int column of each anchor among the keys. Defaults to `arange(b)`.

    Returns:
        `(positive, negative)`, two `[b, B]` boolean masks.

    Raises:
        ValueError: if the labels are neither `[b]` nor `[b, 1]`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> positive, negative = mining.label_masks(np.array([[0], [0], [1]]))
    >>> keras.ops.convert_to_numpy(positive).astype(int).tolist()
    [[0, 1, 0], [1, 0, 0], [0, 0, 0]]
    """
    labels = validation.class_labels(ops.convert_to_tensor(labels), "labels")
    if key_labels is not None:
        key_labels = validation.class_labels(ops.convert_to_tensor(key_labels), "key_labels")
    same = label_equality(labels, key_labels)
    if self_columns is None:
        self_columns = ops.arange(ops.shape(same)[0], dtype="int32")
    columns = ops.arange(ops.shape(same)[1], dtype="int32")
    not_self = ops.not_equal(ops.expand_dims(columns, 0), ops.expand_dims(self_columns, 1))
    return ops.logical_and(same, not_self), ops.logical_not(same)


# The arguments of the masked selections, and their example.
_MASKED = """
    Args:
        values: `[B, K]` floats.
        mask: `[B, K]` booleans.

    Returns:
        {returns}

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> d = np.array([[0.0, 3.0, 2.0]])
    >>> keras.ops.convert_to_numpy(mining.{name}(d, np.array([{mask}]))).tolist()
    {shows}
"""


@export
@docstrings.append(_MASKED, returns="`[B]` int32 column indices.", name="masked_argmax",
                   mask="[True, False, True]", shows="[2]")  # fmt: skip
def masked_argmax(values, mask):
    """Per row, the first column of the largest `values` where `mask` is set (0 if none)."""
    return _select(values, mask, largest=True)[0]


@export
@docstrings.append(_MASKED, returns="`[B]` row maxima, in the dtype of `values`.",
                   name="masked_max", mask="[True, False, True]", shows="[2.0]")  # fmt: skip
def masked_max(values, mask):
    """Per row, the largest `values` where `mask` is set (`-inf` if none).

    A value, not a selection: on ties the gradient is the backend's gradient of a max. Use
    `masked_argmax` and `take_rows` to differentiate through one entry.
    """
    return ops.amax(ops.where(mask, values, _INF[True]), axis=-1)


@export
@docstrings.append(_MASKED, returns="`[B]` int32 column indices.", name="masked_argmin",
                   mask="[False, True, True]", shows="[2]")  # fmt: skip
def masked_argmin(values, mask):
    """Per row, the first column of the smallest `values` where `mask` is set (0 if none)."""
    return _select(values, mask, largest=False)[0]


@export
def take_rows(matrix, index):
    """`matrix[i, index[i]]` for every row `i` (`[B, K]`, `[B]` -> `[B]`), by a gather.

    With `[B, T]` indices, `T` columns per row: `matrix[i, index[i, t]]` (`[B, T]`). Works for
    boolean masks too (`take_rows(mask, index)` tells whether the selected column was a
    candidate). The gradient flows to the selected entries only. A gather from the flattened
    matrix: `take_along_axis` costs a `[B, K]` copy on TensorFlow.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> row_values = mining.take_rows(np.array([[1.0, 2.0], [3.0, 4.0]]), np.array([1, 0]))
    """
    num_rows, num_columns = ops.shape(matrix)
    index = ops.cast(index, "int32")
    rows = ops.arange(num_rows, dtype="int32") * num_columns
    if len(index.shape) == 2:
        rows = ops.expand_dims(rows, 1)
    return ops.take(ops.reshape(matrix, (-1,)), rows + index)


@export
def mine_positives(distances, positive_mask, strategy="hard"):
    """The positive of each anchor: `"hard"` = farthest, `"easy"` = closest.

    Args:
        distances: `[B, K]` distances (row = anchor).
        positive_mask: `[B, K]` booleans, the positives of each anchor.
        strategy: `"hard"` or `"easy"`. Defaults to `"hard"`.

    Returns:
        `(index, found)`: `[B]` int32 column of the mined positive, `[B]` bool `True` where
        the anchor has a positive (`index` is 0 where it has none).

    Raises:
        ValueError: for an unknown strategy.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> d = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    >>> positive, _ = mining.label_masks(np.array([0, 0, 0]))
    >>> index, found = mining.mine_positives(d, positive, "hard")  # [2, 2, 0]
    """
    validation.one_of(strategy, "positive_mining_strategy", POSITIVE_STRATEGIES)
    index, _, found = _select(distances, positive_mask, largest=strategy == "hard")
    return index, found


@export
def mine_negatives(distances, negative_mask, strategy="semi-hard", threshold=None):
    """The negative of each anchor: `"hard"` = closest, `"easy"` = farthest, or `"semi-hard"`.

    `"semi-hard"` takes the closest negative strictly farther than `threshold[i]` (usually the
    distance of the anchor's hardest positive); when no negative is that far it falls back to
    the farthest negative (the one closest to the threshold without exceeding it). This is
    TensorFlow Similarity's rule since 0.17.

    Args:
        distances: `[B, K]` distances (row = anchor).
        negative_mask: `[B, K]` booleans, the negatives of each anchor.
        strategy: `"hard"`, `"semi-hard"` or `"easy"`. Defaults to `"semi-hard"`.
        threshold: `[B]` distances, required for `"semi-hard"`.

    Returns:
        `(index, found)`: `[B]` int32 column of the mined negative, `[B]` bool `True` where
        the anchor has a negative (`index` is 0 where it has none).

    Raises:
        ValueError: for an unknown strategy, or `"semi-hard"` without `threshold`.

    Example:

    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> d = np.array([[0.0, 1.0, 3.0], [1.0, 0.0, 2.0], [3.0, 2.0, 0.0]])
    >>> _, negative = mining.label_masks(np.array([0, 1, 1]))
    >>> index, found = mining.mine_negatives(d, negative, "hard")  # [1, 0, 0]
    """
    validation.one_of(strategy, "negative_mining_strategy", NEGATIVE_STRATEGIES)
    if strategy == "semi-hard" and threshold is None:
        raise ValueError("`threshold` is required for semi-hard negative mining.")
    if strategy != "semi-hard":
        index, _, found = _select(distances, negative_mask, largest=strategy == "easy")
        return index, found
    farthest_filled = ops.where(negative_mask, distances, _INF[True])
    beyond = ops.greater(farthest_filled, ops.expand_dims(threshold, 1))
    beyond_filled = ops.where(beyond, distances, _INF[False])
    # The closest negative beyond the threshold, else the farthest one.
    if backend.FIRST_INDEX_ARG_REDUCTIONS:
        farthest_index, farthest = _arg_extreme(farthest_filled, largest=True)
        closest_index, closest_beyond = _arg_extreme(beyond_filled, largest=False)
        none_beyond = ops.equal(closest_beyond, _INF[False])
        index = ops.where(none_beyond, farthest_index, closest_index)
        return index, ops.not_equal(farthest, _INF[True])
    # The value of the semi-hard negative first (the closest beyond the threshold, else the
    # farthest), then one search for its column: every negative at that distance is beyond
    # the threshold exactly when the closest one beyond it exists.
    farthest = ops.amax(farthest_filled, axis=-1)
    closest_beyond = ops.amin(beyond_filled, axis=-1)
    extreme = ops.where(ops.equal(closest_beyond, _INF[False]), farthest, closest_beyond)
    return _first_index_of(farthest_filled, extreme), ops.not_equal(farthest, _INF[True])


_INF = {True: float("-inf"), False: float("inf")}  # the fill value of a largest/smallest search


def _select(values, mask, largest):
    """`(index, extreme, found)` of the largest (or smallest) masked value of each row.

    `extreme` is the masked row max (min), the fill value `-inf` (`+inf`) where no column is
    set; `found` is `extreme != fill`, `index` the first column holding `extreme` (0 if none).
    """
    filled = ops.where(mask, values, _INF[largest])
    if backend.FIRST_INDEX_ARG_REDUCTIONS:
        index, extreme = _arg_extreme(filled, largest)
    else:
        extreme = (ops.amax if largest else ops.amin)(filled, axis=-1)
        index = _first_index_of(filled, extreme)
    return index, extreme, ops.not_equal(extreme, _INF[largest])


def _arg_extreme(filled, largest):
    """`(index, value)`: the first column of each row's max (min) of `filled` by
    `ops.argmax` (`ops.argmin`), and its value, read by a `[B]` gather."""
    index = (ops.argmax if largest else ops.argmin)(filled, axis=-1)
    return index, take_rows(filled, index)


def _first_index_of(filled, extreme):
    """The first column where `filled` equals the row's `extreme` (`[B]`), as int32 `[B]`.

    A min over the column numbers where a max/min reduction's value is reached: the same
    result as `argmax`/`argmin` with ties to the first index on every backend, and 2-3x
    faster than XLA's CPU arg-reductions. A row that is all fill value (no candidate) gives
    column 0; a row whose extreme is NaN (NaN inputs inside a compiled program, where they are
    not checked) gives the last column, still a valid index for the gathers that follow.
    (`ops.amax`/`ops.amin` rather than `ops.max`/`ops.min`: the latter break `torch.compile`
    graphs with Keras' torch backend.)
    """
    num_columns = ops.shape(filled)[-1]
    columns = ops.arange(num_columns, dtype="int32")
    reached = ops.equal(filled, ops.expand_dims(extreme, -1))
    first = ops.amin(ops.where(reached, columns, num_columns), axis=-1)
    return ops.minimum(first, num_columns - 1)


@export
def semi_hard_negatives(distances, negative_mask, thresholds):
    """For each anchor and each threshold, the closest negative strictly beyond the threshold,
    or the anchor's farthest negative when none is (TF Addons' semi-hard rule).

    TF Addons' `triplet_semihard_loss` uses one threshold per (anchor, positive) pair, the
    positive's distance `D[a, p]`: `thresholds = distances` gives the semi-hard negative of
    every pair at once. Each row's negatives are sorted once and every threshold is located by
    a binary search (`ceil(log2(K + 1))` steps of `[B, T]` gathers), so the cost is
    `O(B K log K + B T log K)` time and `O(B (K + T))` memory, not the `[B, T, K]` of the
    comparisons themselves. The comparison is the exact `D[a, n] > threshold` of the original.
    Among negatives at the same distance the column is any one of them (the value is the same).

    Args:
        distances: `[B, K]` distances (row = anchor).
        negative_mask: `[B, K]` booleans, the negatives of each anchor.
        thresholds: `[B, T]` distances to exceed (`T` thresholds per anchor).

    Returns:
        `(index, found)`: `[B, T]` int32 columns of the mined negatives and `[B]` booleans,
        `True` where the anchor has a negative (`index` is an arbitrary column where not).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> d = np.array([[0.0, 1.0, 3.0, 2.0]])
    >>> negative = np.array([[False, False, True, True]])
    >>> index, found = mining.semi_hard_negatives(d, negative, np.array([[0.5, 2.0, 5.0]]))
    >>> keras.ops.convert_to_numpy(index).tolist()  # beyond 0.5: 3; beyond 2.0: 2; else 2
    [[3, 2, 2]]
    """
    distances = ops.convert_to_tensor(distances)
    thresholds = ops.cast(thresholds, distances.dtype)
    filled = ops.where(negative_mask, distances, _INF[False])
    order = ops.cast(ops.argsort(filled, axis=-1), "int32")  # negatives first, ascending
    ascending = take_rows(filled, order)
    num_negatives = ops.sum(ops.cast(negative_mask, "int32"), axis=-1)
    low = _count_not_beyond(ascending, thresholds)
    farthest = ops.expand_dims(ops.maximum(num_negatives - 1, 0), -1)
    position = ops.where(ops.less(low, ops.expand_dims(num_negatives, -1)), low, farthest)
    return take_rows(order, position), ops.greater(num_negatives, 0)


def _count_not_beyond(ascending, thresholds):
    """`[B, T]` int32: how many values of each ascending row `[B, K]` are `<= thresholds[b, t]`.

    A branchless binary search over `[0, K]` (`ceil(log2(K + 1))` steps): each step probes one
    column per threshold and moves the count on by the step where the probed value is not
    beyond the threshold; a probe past the row reads the `+inf` appended to it. The `+inf`
    values (also the fill of the non-negatives) are never `<=` a finite threshold. The probes
    are `take_rows` gathers with the row offsets computed once for all steps (recomputing them
    in every step made the eager torch step 1-8% slower at B = 1024).
    """
    num_columns = ascending.shape[-1]
    steps = 31 if num_columns is None else max(int(num_columns).bit_length(), 1)
    num_rows, width = ops.shape(ascending)[0], ops.shape(ascending)[1] + 1
    padded = ops.pad(ascending, [(0, 0), (0, 1)], constant_values=float("inf"))
    starts = ops.expand_dims(ops.arange(num_rows, dtype="int32") * width, 1)
    flat, count = ops.reshape(padded, (-1,)), ops.zeros_like(thresholds, "int32")
    last = width - 1
    for step in (2**k for k in reversed(range(steps))):
        probe = starts + ops.minimum(count + (step - 1), last)
        count = count + ops.where(ops.less_equal(ops.take(flat, probe), thresholds), step, 0)
    return count


@export
def triplet_mask(positive_mask, negative_mask):
    """`[B, K, K]` booleans, the valid triplets: `mask[a, p, n] = positive[a, p] and
    negative[a, n]`.

    Cost: `B * K * K` booleans (see the module docstring).

    Args:
        positive_mask: `[B, K]` booleans, the positives of each anchor.
        negative_mask: `[B, K]` booleans, the negatives of each anchor.

    Returns:
        `[B, K, K]` booleans.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> positive, negative = mining.label_masks(np.array([0, 0, 1]))
    >>> int(keras.ops.convert_to_numpy(mining.triplet_mask(positive, negative)).sum())
    2
    """
    positive = ops.expand_dims(ops.convert_to_tensor(positive_mask), 2)
    return ops.logical_and(positive, ops.expand_dims(ops.convert_to_tensor(negative_mask), 1))


@export
def triplet_margin_mask(
    distances,
    positive_mask,
    negative_mask,
    margin=0.2,
    type_of_triplets="all",
    larger_is_closer=False,
):
    """The triplets that pytorch-metric-learning's `TripletMarginMiner` selects, as a mask.

    With `t[a, p, n] = D[a, n] - D[a, p]` (for a similarity, `S[a, p] - S[a, n]`: how much
    closer the positive is than the negative), among the valid triplets:

    | `type_of_triplets` | selected |
    | --- | --- |
    | `"all"` | `t <= margin` |
    | `"hard"` | `t <= margin` and `t <= 0` |
    | `"semihard"` | `0 < t <= margin` |
    | `"easy"` | `t > margin` |

    PML 2.9 returns the same triplets as index lists in lexicographic `(a, p, n)` order: the
    order of `numpy.nonzero` on this mask. Here the shape is static, so the miner runs under
    `jax.jit`, XLA and `torch.compile`. Cost: `[B, K, K]` (see the module docstring).

    Args:
        distances: `[B, K]` distances, or similarities with `larger_is_closer=True`.
        positive_mask: `[B, K]` booleans, the positives of each anchor.
        negative_mask: `[B, K]` booleans, the negatives of each anchor.
        margin: The miner's margin. Defaults to 0.2 (PML's default).
        type_of_triplets: `"all"`, `"hard"`, `"semihard"` or `"easy"`. Defaults to `"all"`.
        larger_is_closer: `True` for a similarity (PML's inverted distances). Defaults to
            `False`.

    Returns:
        `[B, K, K]` booleans.

    Raises:
        ValueError: for an unknown `type_of_triplets`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import mining
    >>> d = np.array([[0.0, 1.0, 1.1], [1.0, 0.0, 2.0], [1.1, 2.0, 0.0]])
    >>> positive, negative = mining.label_masks(np.array([0, 0, 1]))
    >>> mask = mining.triplet_margin_mask(d, positive, negative, 0.2, "semihard")
    >>> np.argwhere(keras.ops.convert_to_numpy(mask)).tolist()  # (a, p, n)
    [[0, 1, 2]]

    Reference: pytorch-metric-learning's `miners.TripletMarginMiner`; Schroff et al.,
    "FaceNet", CVPR 2015 (semi-hard negatives).
    """
    validation.one_of(type_of_triplets, "type_of_triplets", TYPES_OF_TRIPLETS)
    distances = ops.convert_to_tensor(distances)
    anchor_positive = ops.expand_dims(distances, 2)
    anchor_negative = ops.expand_dims(distances, 1)
    if larger_is_closer:
        closer_by = anchor_positive - anchor_negative
    else:
        closer_by = anchor_negative - anchor_positive
    if type_of_triplets == "easy":
        selected = ops.greater(closer_by, margin)
    else:
        selected = ops.less_equal(closer_by, margin)
        if type_of_triplets == "hard":
            selected = ops.logical_and(selected, ops.less_equal(closer_by, 0))
        elif type_of_triplets == "semihard":
            selected = ops.logical_and(selected, ops.greater(closer_by, 0))
    return ops.logical_and(triplet_mask(positive_mask, negative_mask), selected)
