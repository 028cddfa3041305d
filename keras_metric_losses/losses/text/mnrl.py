"""sentence-transformers' `MultipleNegativesRankingLoss` family on `[B, C, D]` columns: in-batch
negatives, hard-negative columns, four directions, two partitions and hardness weighting, dense
or by tiles, on one device or every replica's batch."""

from keras_metric_losses import distributed, tiling, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.softmax.core import contrastive_terms
from keras_metric_losses.losses.text.common import EXAMPLE, columns
from keras_metric_losses.ops import (
    diagonal_cross_entropies,
    in_dtype_of,
    l2_normalize,
    scalar_like,
)

DIRECTIONS = ("query_to_doc", "query_to_query", "doc_to_query", "doc_to_doc")
HARDNESS_MODES = ("in_batch_negatives", "hard_negatives", "all_negatives")
SYMMETRIC = ("query_to_doc", "doc_to_query")

COLUMNS = base.Inputs(
    ("y_true", "y_pred"),
    (
        "Unused (any value, e.g. `None` or zeros `[B]`).",
        "`[B, C, D]` embeddings of the columns (anchor, positive, hard negatives...).",
    ),
    example=EXAMPLE,
)


def ranking_values(queries, docs, rows, *, scale, similarity_fct, directions, partition_mode,
                   hardness_mode, hardness_strength, block_size=None,
                   one_device=False):  # fmt: skip
    """`[b]` losses of the queries `rows` of `queries` `[N, D]` against the doc columns `docs`
    (`[N, D]` each, positives first): the one computation of one device (`rows = arange(N)`,
    `one_device`) and of replica `r` after the gather (`rows = r * b + arange(b)`)."""
    if similarity_fct == "cos_sim":
        queries, docs = l2_normalize(queries), [l2_normalize(doc) for doc in docs]
    docs_all = ops.concatenate(docs, axis=0)
    plain = hardness_mode is None and (directions == ("query_to_doc",) or (
        set(directions) == set(SYMMETRIC) and partition_mode == "per_direction"))  # fmt: skip
    if one_device and block_size is None and plain:
        return _one_product(queries, docs_all, scale=scale, symmetric=len(directions) == 2)
    rows = ops.cast(rows, "int32")
    local = ops.take(queries, rows, axis=0), ops.take(docs[0], rows, axis=0)
    if block_size is not None:
        return _tiled(*local, queries, docs_all, rows, scale=scale, directions=directions,
                      partition_mode=partition_mode, block_size=block_size)  # fmt: skip
    blocks = _dense_blocks(*local, queries, docs_all, rows, scale=scale, directions=directions,
                           hardness_mode=hardness_mode, strength=hardness_strength)  # fmt: skip
    if partition_mode == "joint":  # one softmax; the target is the positive of `query_to_doc`
        similarity, denominator = (ops.concatenate([b[k] for b in blocks], axis=1) for k in (0, 2))
        targets = [blocks[0][1], *(ops.zeros_like(b[1]) for b in blocks[1:])]
        return _terms(similarity, ops.concatenate(targets, axis=1), denominator, scale)
    return sum(_terms(*block, scale) for block in blocks) / len(blocks)


def _one_product(queries, docs_all, *, scale, symmetric):
    """`[N]` losses of `query_to_doc` (and `doc_to_query`) on one device without hardness,
    from one product `x = (scale * queries) @ docs_all^T`: query `i`'s target is column `i`,
    and positive `i`'s logits against the queries are column `i` of `x[:, :N]` (its first
    block, the positives), as CLIP reads both directions (`ops.diagonal_cross_entropies`)."""
    logits = ops.matmul(queries * scalar_like(scale, queries), ops.transpose(docs_all))
    return diagonal_cross_entropies(logits, both_directions=symmetric)


def _terms(similarity, targets, denominator, scale):
    """`lse_i - x[i, target_i]` of `x = scale * similarity` `[b, K]` over `denominator` (the
    scale applied after the row's largest similarity is taken off: see `contrastive_terms`)."""
    weights = ops.cast(targets, similarity.dtype)
    return contrastive_terms(similarity, weights, denominator, scale=scale).weighted_sum


def _dense_blocks(local_queries, local_positives, queries, docs_all, rows, *, scale, directions,
                  hardness_mode, strength):  # fmt: skip
    """`(similarity, target, denominator)` `[b, K_d]` of each direction, in `DIRECTIONS`'
    order; the logits are `scale * similarity`."""
    similarity = lambda x, y: ops.matmul(x, ops.transpose(y))  # noqa: E731
    doc_index = ops.arange(ops.shape(docs_all)[0], dtype="int32")
    query_index = ops.arange(ops.shape(queries)[0], dtype="int32")
    row = ops.expand_dims(rows, 1)
    positive = ops.equal(ops.expand_dims(doc_index, 0), row)  # the column of its own positive
    own = ops.equal(ops.expand_dims(doc_index % ops.shape(queries)[0], 0), row)  # its docs
    itself = ops.equal(ops.expand_dims(query_index, 0), row)
    to_docs = similarity(local_queries, docs_all)
    logits = to_docs
    if hardness_mode is not None:  # `strength * sim` in the logits, without gradient
        penalized = {
            "in_batch_negatives": ops.logical_not(own),
            "hard_negatives": ops.logical_and(own, ops.logical_not(positive)),
            "all_negatives": ops.logical_not(positive),
        }[hardness_mode]
        penalty = (strength / scale) * ops.stop_gradient(to_docs)
        logits = logits + ops.where(penalized, penalty, 0.0)
    blocks = {"query_to_doc": (logits, positive, ops.ones_like(positive))}
    if "query_to_query" in directions:
        blocks["query_to_query"] = (
            similarity(local_queries, queries),
            ops.zeros_like(itself),
            ops.logical_not(itself),
        )
    if "doc_to_query" in directions:
        blocks["doc_to_query"] = (
            similarity(local_positives, queries),
            itself,
            ops.ones_like(itself),
        )
    if "doc_to_doc" in directions:
        blocks["doc_to_doc"] = (
            similarity(local_positives, docs_all),
            ops.zeros_like(own),
            ops.logical_not(own),
        )
    return [blocks[name] for name in DIRECTIONS if name in blocks]


def _tiled(local_queries, local_positives, queries, docs_all, rows, *, scale, directions,
           partition_mode, block_size):  # fmt: skip
    """The dense values by tiles (`tiling.blockwise_cross_entropies`); the positive of row `i`
    is key `rows[i]` in every direction. Joint directions share one softmax over keys in a
    doubled space: row `[q_i, p_i]` meets `[d_j, 0]` (`query_to_doc`), `[q_j, 0]`
    (`query_to_query`, itself left out) and `[0, q_j]` (`doc_to_query`)."""
    if partition_mode == "per_direction" or directions == ("query_to_doc",):
        parts = [_blockwise(local_queries, docs_all, rows, None, scale, block_size)]
        if "doc_to_query" in directions:
            parts.append(_blockwise(local_positives, queries, rows, None, scale, block_size))
        return sum(parts) / len(parts)
    pad = lambda x, first: ops.concatenate(  # noqa: E731
        [x, ops.zeros_like(x)] if first else [ops.zeros_like(x), x], axis=1
    )
    keys, self_columns = [pad(docs_all, True)], None
    if "query_to_query" in directions:
        self_columns = ops.shape(docs_all)[0] + rows
        keys.append(pad(queries, True))
    if "doc_to_query" in directions:
        keys.append(pad(queries, False))
    doubled = ops.concatenate([local_queries, local_positives], axis=1)
    return _blockwise(doubled, ops.concatenate(keys, axis=0), rows, self_columns, scale,
                      block_size)  # fmt: skip


def _blockwise(queries, keys, rows, self_columns, scale, block_size):
    """`lse_i - x[i, rows[i]]` over every key (but `self_columns`)."""
    return tiling.blockwise_cross_entropies(queries * scale, keys, rows, block_size=block_size,
                                            self_columns=self_columns)  # fmt: skip


def mnrl_elements(y_true, y_pred, *, scale, similarity_fct, directions, partition_mode,
                  hardness_mode, hardness_strength, cross_replica, block_size):  # fmt: skip
    """Multiple negatives ranking loss (InfoNCE with in-batch negatives), one value per
    example: sentence-transformers' `MultipleNegativesRankingLoss`.

    With `q` the anchors, `p` the positives, `n_1..n_m` the hard-negative columns, `docs =
    [p; n_1; ...; n_m]` (`(m + 1) B` rows: every positive, then every first negative...),
    `s` the similarity (`"cos_sim"` normalises, `"dot_score"` does not) and `x = scale * s`,
    each direction gives row `i` a block of logits:

    ```
    query_to_doc:    x(q_i, docs_j)                  (every doc; the target: j = i)
    query_to_query:  x(q_i, q_j),      j != i
    doc_to_query:    x(p_i, q_j)
    doc_to_doc:      x(p_i, docs_j),   docs_j not a doc of example i
    loss_i = log Z_i - x(q_i, p_i)
    ```

    `partition_mode="joint"`: `log Z_i` is the log-sum-exp of the blocks together;
    `"per_direction"` (only `query_to_doc` and `doc_to_query`): the mean over the blocks of
    their log-sum-exps. `hardness_mode` adds `hardness_strength * stop_gradient(s)` (not
    scaled) to the `query_to_doc` logits of the other examples' docs (`"in_batch_negatives"`),
    of the anchor's own hard negatives (`"hard_negatives"`) or of both (`"all_negatives"`).
    Nothing is deduplicated: a duplicated positive is a false negative, as in the original.

    With `cross_replica=True` (sentence-transformers' `gather_across_devices`) the anchors and
    every column of all replicas are gathered (`kml.distributed.all_gather`); each replica's
    rows are the queries, against the global batch's docs in one device's order, so the mean
    over replicas is the global loss, and each replica's gradient of its own loss is that of
    their sum (the backward pass of the gather sums them). `block_size` computes the same
    values and gradients by tiles of `block_size` rows and columns (`kml.tiling`), with memory
    linear in the batch: `CachedMultipleNegativesRankingLoss(mini_batch_size=k)` is this loss
    with `block_size=k` (what GradCache saves in the encoder is not a loss's to save). It
    supports the directions but `doc_to_doc`, without `hardness_mode`.

    Differences from sentence-transformers: the class takes the embeddings, not the model;
    `similarity_fct` is a name; `cos_sim` normalises by `max(|x|, 1e-12)` (`ops.l2_normalize`)
    where `util.cos_sim` uses `torch.nn.functional.normalize` (the same rule).

    Example:

    >>> losses = kml.multiple_negatives_ranking_loss(None, y_pred, scale=5.0)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.0405 0.0414 0.007 ]

    Reference: Henderson et al., "Efficient Natural Language Response Suggestion for Smart
    Reply", 2017; van den Oord et al., "Representation Learning with Contrastive Predictive
    Coding", 2018; Li et al., "Towards General Text Embeddings with Multi-stage Contrastive
    Learning" (GTE), 2023; Lan et al., 2025 (hardness weighting).
    """
    anchors, *docs = columns(y_pred)
    rows = ops.arange(ops.shape(anchors)[0], dtype="int32")
    if cross_replica:
        anchors, _, rows = distributed.gather_keys(anchors, rows)
        docs = [distributed.all_gather(doc) for doc in docs]
    values = ranking_values(anchors, docs, rows, scale=scale, similarity_fct=similarity_fct,
                            directions=directions, partition_mode=partition_mode,
                            hardness_mode=hardness_mode, hardness_strength=hardness_strength,
                            block_size=block_size, one_device=not cross_replica)  # fmt: skip
    return in_dtype_of(values, y_pred)


def symmetric_elements(y_true, y_pred, *, scale, similarity_fct, cross_replica, block_size):
    """Multiple negatives symmetric ranking loss, one value per example: sentence-transformers'
    (deprecated) `MultipleNegativesSymmetricRankingLoss`, which is
    `multiple_negatives_ranking_loss` with `directions=("query_to_doc", "doc_to_query")` and
    `partition_mode="per_direction"`:

    ```
    loss_i = (CE(x(q_i, docs), i) + CE(x(p_i, q), i)) / 2
    ```

    The hard-negative columns enter the `query_to_doc` term only. With `block_size`:
    `CachedMultipleNegativesSymmetricRankingLoss(mini_batch_size=block_size)`.

    Example:

    >>> losses = kml.multiple_negatives_symmetric_ranking_loss(None, y_pred, scale=5.0)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.0385 0.0444 0.0058]

    Reference: Günther et al., "Jina Embeddings 2", 2024.
    """
    return mnrl_elements(y_true, y_pred, scale=scale, similarity_fct=similarity_fct,
                         directions=SYMMETRIC, partition_mode="per_direction", hardness_mode=None,
                         hardness_strength=0.0, cross_replica=cross_replica,
                         block_size=block_size)  # fmt: skip


def _directions(value, name):
    if (
        not isinstance(value, tuple | list)
        or "query_to_doc" not in value
        or any(not isinstance(v, str) or v not in DIRECTIONS for v in value)
    ):
        raise ValueError(
            f"`{name}` must be a tuple of {list(DIRECTIONS)} that holds 'query_to_doc' (the "
            f"positive pair's direction). Received: {name}={value!r}"
        )
    return tuple(dict.fromkeys(value))


def _check_modes(values):
    directions = values["directions"]
    if values["partition_mode"] == "per_direction" and set(directions) - set(SYMMETRIC):
        raise ValueError(
            "`partition_mode='per_direction'` needs the positive pair in every direction: use "
            f"'joint' with 'query_to_query' or 'doc_to_doc'. Received: directions={directions}"
        )
    if values["block_size"] is not None and (
        "doc_to_doc" in directions or values["hardness_mode"] is not None
    ):
        raise ValueError(
            "`block_size` supports the directions but 'doc_to_doc', without `hardness_mode`. "
            f"Received: block_size={values['block_size']}, directions={directions}, "
            f"hardness_mode={values['hardness_mode']!r}"
        )


SCALE = base.positive_real(20.0, "Multiplies the similarities (`1 / temperature`), `> 0`.")
GATHER = base.Hyperparameter(
    False,
    validation.boolean,
    "sentence-transformers' `gather_across_devices`: the queries of this replica against the "
    "columns of every replica (`tf.distribute`, `torch.distributed`; the identity on one "
    "device and under JAX).",
)
BLOCK_SIZE = base.Hyperparameter(
    None,
    lambda v, n: None if v is None else validation.positive_int(v, n),
    "`None` computes the logits at once; an int, by tiles of `block_size` rows and columns "
    "(the same values and gradients, memory linear in `B`): the Cached variants' "
    "`mini_batch_size`.",
)
SIMILARITY = base.one_of(
    "cos_sim", ("cos_sim", "dot_score"), '`"cos_sim"` (cosine) or `"dot_score"` (inner product).'
)

multiple_negatives_ranking_loss, MultipleNegativesRankingLoss = base.declare(
    mnrl_elements,
    function="multiple_negatives_ranking_loss",
    cls="MultipleNegativesRankingLoss",
    original="sentence-transformers `MultipleNegativesRankingLoss`",
    summary="each anchor classifies its positive among the batch's docs (InfoNCE, GTE variants)",
    positional=("scale", "similarity_fct"),
    inputs=COLUMNS,
    options=(base.CROSS_REPLICA, base.TILING),
    joint_checks=(_check_modes,),
    hyperparameters=dict(
        scale=SCALE,
        similarity_fct=SIMILARITY,
        directions=base.Hyperparameter(
            ("query_to_doc",), _directions, f"The blocks of logits, a tuple of {DIRECTIONS}."
        ),
        partition_mode=base.one_of(
            "joint", ("joint", "per_direction"), "One softmax over the blocks, or one each."
        ),
        hardness_mode=base.Hyperparameter(
            None,
            lambda v, n: None if v is None else validation.one_of(v, n, HARDNESS_MODES),
            f"`None` or one of {HARDNESS_MODES}: the negatives whose logits get the penalty.",
        ),
        hardness_strength=base.real(0.0, "The penalty's factor `alpha`, `>= 0`.", low=0.0),
        cross_replica=GATHER,
        block_size=BLOCK_SIZE,
    ),
    class_doc="""Multiple negatives ranking loss (`multiple_negatives_ranking_loss`); `y_true`
    is unused. With the default reduction the value is sentence-transformers'
    `MultipleNegativesRankingLoss(model, ...)` on the columns `y_pred[:, c]`.

    Example:

    >>> round(float(kml.MultipleNegativesRankingLoss(scale=5.0)(None, y_pred)), 4)
    0.0296

    Reference: Henderson et al., 2017; van den Oord et al., 2018.
    """,
)

(multiple_negatives_symmetric_ranking_loss, MultipleNegativesSymmetricRankingLoss) = base.declare(
    symmetric_elements,
    function="multiple_negatives_symmetric_ranking_loss",
    cls="MultipleNegativesSymmetricRankingLoss",
    original="sentence-transformers `MultipleNegativesSymmetricRankingLoss`",
    summary="the mean of anchor-to-docs and positive-to-anchors cross-entropies",
    positional=("scale", "similarity_fct"),
    inputs=COLUMNS,
    options=(base.CROSS_REPLICA, base.TILING),
    hyperparameters=dict(
        scale=SCALE, similarity_fct=SIMILARITY, cross_replica=GATHER, block_size=BLOCK_SIZE
    ),
    class_doc="""Multiple negatives symmetric ranking loss
    (`multiple_negatives_symmetric_ranking_loss`); `y_true` is unused.

    Example:

    >>> round(float(kml.MultipleNegativesSymmetricRankingLoss(scale=5.0)(None, y_pred)), 4)
    0.0296

    Reference: Günther et al., 2024.
    """,
)
