"""The sampled logits: the shared core of `nce_loss`, `sampled_softmax_loss` and the `NCE`
layer (below both of its users), built on the candidate sampler of `sampling`.

Class ids out of `[0, num_classes)` are clipped to the nearest class, for the lookup of their rows
and for their expected counts alike; with value checks on, concrete ids out of range raise.
"""

from keras_metric_losses import validation
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import compute_dtype, lowest_finite
from keras_metric_losses.sampling import (
    check_seed,
    clip_class_ids,
    index_dtypes,
    log_uniform_candidate_sampler,
)


def _shards(params, rank, name):
    """`params` as a list of tensors of rank `rank` (one tensor or a list of shards)."""
    shards = list(params) if isinstance(params, (list, tuple)) else [params]
    if not shards:
        raise ValueError(f"`{name}` must be a tensor or a non-empty list of shards. Received: []")
    shards = [ops.convert_to_tensor(shard) for shard in shards]
    for shard in shards:
        if len(shard.shape) != rank:
            what = "[num_classes, dim]" if rank == 2 else "[num_classes]"
            raise ValueError(
                f"`{name}` must be a {what} tensor or a list of such shards. Received: "
                f"{name}.shape={tuple(shard.shape)}"
            )
    rows = [shard.shape[0] for shard in shards]
    if len(shards) > 1:
        if None in rows:
            raise ValueError(
                f"The shards of `{name}` must have static row counts. Received: rows={rows}"
            )
        total, count = sum(rows), len(rows)
        div = [total // count + (1 if i < total % count else 0) for i in range(count)]
        if rows != div:
            raise ValueError(
                f"The shards of `{name}` must be partitioned the 'div' way (contiguous blocks, the "
                f"first num_classes % num_shards shards one row longer): {div} rows for "
                f"{total} classes in {count} shards. Received: rows={rows}"
            )
    return shards


def _gather(shards, ids):
    """Rows `ids` of the concatenation of `shards` (a 'div' partition), without concatenating.

    Each shard gathers only the ids it owns (others are clipped into range, then masked out),
    so the cost is O(num_shards * len(ids)), independent of the number of classes.
    """
    if len(shards) == 1:
        return ops.take(shards[0], ids, axis=0)
    result, start = None, 0
    for shard in shards:
        rows = shard.shape[0]
        local = ids - start
        picked = ops.take(shard, ops.clip(local, 0, rows - 1), axis=0)
        if result is None:
            result = picked
        else:
            owned = ops.logical_and(local >= 0, local < rows)
            owned = ops.reshape(
                owned, tuple(owned.shape) + (1,) * (len(picked.shape) - len(ids.shape))
            )
            result = ops.where(owned, picked, result)
        start += rows
    return result


def _check_sampled_values(sampled_values, batch, num_true, num_sampled):
    if not isinstance(sampled_values, (list, tuple)) or len(sampled_values) != 3:
        raise ValueError(
            "`sampled_values` must be a tuple (sampled_candidates, true_expected_count, "
            f"sampled_expected_count). Received: sampled_values={sampled_values!r}"
        )
    sampled, true_ec, sampled_ec = (ops.convert_to_tensor(v) for v in sampled_values)
    expected = {
        "sampled_candidates": (sampled, (num_sampled,)),
        "true_expected_count": (true_ec, (batch, num_true)),
        "sampled_expected_count": (sampled_ec, (num_sampled,)),
    }
    for name, (value, shape) in expected.items():
        got = tuple(value.shape)
        if len(got) != len(shape) or any(
            g is not None and s is not None and g != s for g, s in zip(got, shape, strict=True)
        ):
            raise ValueError(
                f"`sampled_values` must hold `{name}` of shape {shape} (batch, num_true, "
                f"num_sampled). Received: {name}.shape={got}"
            )
    return sampled, true_ec, sampled_ec


def _check_shapes(weight_shards, bias_shards, labels, inputs, num_classes, num_true):
    """`labels` as `[B, num_true]`, after checking every static shape against the others."""
    validation.rank(inputs, 2, "a [batch, dim] float tensor", "inputs")
    if len(labels.shape) == 1 and num_true == 1:
        labels = ops.expand_dims(labels, -1)
    if len(labels.shape) != 2 or labels.shape[1] != num_true:
        raise ValueError(
            f"`labels` must be an integer tensor of shape [batch, num_true] with "
            f"num_true={num_true}. Received: labels.shape={tuple(labels.shape)}"
        )
    if None not in (labels.shape[0], inputs.shape[0]) and labels.shape[0] != inputs.shape[0]:
        raise ValueError(
            "`labels` and `inputs` must have the same batch size. Received: "
            f"labels.shape={tuple(labels.shape)} and inputs.shape={tuple(inputs.shape)}"
        )
    dims = {shard.shape[1] for shard in weight_shards}
    if len(dims) > 1 or (inputs.shape[1] is not None and dims != {inputs.shape[1]}):
        raise ValueError(
            "`weights` must be [num_classes, dim] with the `dim` of `inputs` [batch, dim]. "
            f"Received: weights.shape={[tuple(s.shape) for s in weight_shards]} and "
            f"inputs.shape={tuple(inputs.shape)}"
        )
    num_rows = sum(shard.shape[0] for shard in weight_shards if shard.shape[0] is not None)
    num_biases = sum(shard.shape[0] for shard in bias_shards if shard.shape[0] is not None)
    if num_rows != num_biases:
        raise ValueError(
            "`biases` must hold one bias per row of `weights`. Received: "
            f"biases.shape=({num_biases},) and weights.shape=({num_rows}, ...)"
        )
    if num_classes > num_rows:
        raise ValueError(
            f"`num_classes` can be at most the number of rows of `weights` ({num_rows}). "
            f"Received: num_classes={num_classes}"
        )
    return labels


def _accidental_hits(labels, sampled, num_sampled):
    """`[B, S]` mask of the sampled classes equal to a true class of the row; of a class
    sampled several times only the last copy counts (as TensorFlow)."""
    hits = ops.any(ops.equal(ops.expand_dims(labels, -1), ops.reshape(sampled, (1, 1, -1))), axis=1)
    same = ops.equal(ops.expand_dims(sampled, 1), ops.expand_dims(sampled, 0))
    later = ops.triu(ops.ones((num_sampled, num_sampled), dtype="bool"), k=1)
    is_last = ops.logical_not(ops.any(ops.logical_and(same, later), axis=1))
    return ops.logical_and(hits, ops.expand_dims(is_last, 0))


def sampled_logits(
    weights,
    biases,
    labels,
    inputs,
    num_sampled,
    num_classes,
    num_true=1,
    sampled_values=None,
    remove_accidental_hits=False,
    seed=None,
):
    """Logits `[B, num_true + num_sampled]` of the true then the sampled classes, log-Q corrected.

    The shared core of `nce_loss`, `sampled_softmax_loss` and the `NCE` layer (TensorFlow's
    `_compute_sampled_logits` with `subtract_log_q=True`). Computed in `compute_dtype(inputs)`
    (float32 for half precision); removed accidental hits hold the most negative finite value of
    that dtype. Label and candidate ids out of `[0, num_classes)` are clipped to the nearest
    class (`clip_class_ids`) before the lookup, the expected counts and the accidental hits;
    with value checks on, concrete labels out of range raise. See `nce_loss` for the arguments.
    """
    num_sampled = validation.positive_int(num_sampled, "num_sampled")
    num_classes = validation.positive_int(num_classes, "num_classes")
    num_true = validation.positive_int(num_true, "num_true")
    remove_accidental_hits = validation.boolean(remove_accidental_hits, "remove_accidental_hits")
    seed = check_seed(seed)
    weight_shards = _shards(weights, 2, "weights")
    bias_shards = _shards(biases, 1, "biases")
    inputs = ops.convert_to_tensor(inputs)
    labels = validation.numeric_tensor(labels, "labels")
    labels = _check_shapes(weight_shards, bias_shards, labels, inputs, num_classes, num_true)
    id_dtype, _ = index_dtypes(num_classes, "num_classes")

    validation.finite(inputs, "inputs")
    validation.integral_labels(labels, "labels")
    validation.class_ids_in_range(labels, num_classes, "labels")
    labels = clip_class_ids(labels, num_classes, id_dtype)
    if sampled_values is None:
        if num_sampled > num_classes:
            raise ValueError(
                "`num_sampled` can be at most `num_classes`: the sampled classes are drawn "
                "without replacement among the `num_classes` classes (pass `sampled_values` to "
                f"use your own). Received: num_sampled={num_sampled}, num_classes={num_classes}"
            )
        sampled_values = log_uniform_candidate_sampler(
            labels, num_true, num_sampled, unique=True, range_max=num_classes, seed=seed
        )
    sampled, true_ec, sampled_ec = _check_sampled_values(
        sampled_values, labels.shape[0], num_true, num_sampled
    )
    sampled = ops.stop_gradient(clip_class_ids(sampled, num_classes, id_dtype))
    dtype = compute_dtype(inputs)
    true_ec = ops.stop_gradient(ops.cast(true_ec, dtype))
    sampled_ec = ops.stop_gradient(ops.cast(sampled_ec, dtype))

    x = ops.cast(inputs, dtype)
    true_w = ops.cast(_gather(weight_shards, labels), dtype)  # [B, num_true, D]
    true_b = ops.cast(_gather(bias_shards, labels), dtype)  # [B, num_true]
    sampled_w = ops.cast(_gather(weight_shards, sampled), dtype)  # [S, D]
    sampled_b = ops.cast(_gather(bias_shards, sampled), dtype)  # [S]

    true_logits = ops.sum(ops.expand_dims(x, 1) * true_w, axis=-1) + true_b
    noise_logits = ops.matmul(x, ops.transpose(sampled_w)) + sampled_b
    true_logits = true_logits - ops.log(true_ec)
    noise_logits = noise_logits - ops.log(sampled_ec)
    if remove_accidental_hits:
        hits = _accidental_hits(labels, sampled, num_sampled)
        noise_logits = ops.where(hits, lowest_finite(dtype), noise_logits)
    return ops.concatenate([true_logits, noise_logits], axis=-1)
