"""Sampled losses over many classes: noise-contrastive estimation and sampled softmax.

`nce_loss` and `sampled_softmax_loss` reproduce `tf.nn.nce_loss` and `tf.nn.sampled_softmax_loss`
on every backend; `NCELoss` and `SampledSoftmaxLoss` compute the same values from the sampled
logits that the `keras_metric_losses.layers.NCE` layer returns, for `model.compile`.
"""

import numpy as np
from keras import ops

from keras_metric_losses import validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import compute_dtype, lowest_finite
from keras_metric_losses.sampling import log_uniform_candidate_sampler

_REFERENCE_NCE = (
    'Gutmann and Hyvärinen, "Noise-contrastive estimation: A new estimation principle for '
    'unnormalized statistical models", AISTATS 2010; Mnih and Teh, "A fast and simple algorithm '
    'for training neural probabilistic language models", ICML 2012.'
)


def _positive_int(value, name):
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise ValueError(f"`{name}` must be a positive int. Received: {name}={value!r}")
    return int(value)


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
    that dtype. See `nce_loss` for the arguments.
    """
    num_sampled = _positive_int(num_sampled, "num_sampled")
    num_classes = _positive_int(num_classes, "num_classes")
    num_true = _positive_int(num_true, "num_true")
    weight_shards = _shards(weights, 2, "weights")
    bias_shards = _shards(biases, 1, "biases")
    inputs = ops.convert_to_tensor(inputs)
    labels = validation.numeric_tensor(labels, "labels")
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

    validation.finite(inputs, "inputs")
    validation.integral_labels(labels, "labels")
    validation.class_ids_in_range(labels, num_classes, "labels")
    labels = ops.cast(labels, "int32")
    if sampled_values is None:
        sampled_values = log_uniform_candidate_sampler(
            labels, num_true, num_sampled, unique=True, range_max=num_classes, seed=seed
        )
    sampled, true_ec, sampled_ec = _check_sampled_values(
        sampled_values, labels.shape[0], num_true, num_sampled
    )
    sampled = ops.stop_gradient(ops.cast(sampled, "int32"))
    dtype = compute_dtype(inputs)
    true_ec = ops.stop_gradient(ops.cast(true_ec, dtype))
    sampled_ec = ops.stop_gradient(ops.cast(sampled_ec, dtype))

    # Out-of-range ids are clipped for the lookup (jnp.take would fill NaN).
    true_ids = ops.clip(labels, 0, num_classes - 1)
    sampled_ids = ops.clip(sampled, 0, num_classes - 1)
    x = ops.cast(inputs, dtype)
    true_w = ops.cast(_gather(weight_shards, true_ids), dtype)  # [B, num_true, D]
    true_b = ops.cast(_gather(bias_shards, true_ids), dtype)  # [B, num_true]
    sampled_w = ops.cast(_gather(weight_shards, sampled_ids), dtype)  # [S, D]
    sampled_b = ops.cast(_gather(bias_shards, sampled_ids), dtype)  # [S]

    true_logits = ops.sum(ops.expand_dims(x, 1) * true_w, axis=-1) + true_b
    sampled_logits_ = ops.matmul(x, ops.transpose(sampled_w)) + sampled_b
    true_logits = true_logits - ops.log(true_ec)
    sampled_logits_ = sampled_logits_ - ops.log(sampled_ec)

    if remove_accidental_hits:
        hits = ops.any(
            ops.equal(ops.expand_dims(labels, -1), ops.reshape(sampled, (1, 1, -1))), axis=1
        )  # [B, S]
        # TensorFlow masks only the last copy of a repeated sampled class.
        same = ops.equal(ops.expand_dims(sampled, 1), ops.expand_dims(sampled, 0))
        later = ops.triu(ops.ones((num_sampled, num_sampled), dtype="bool"), k=1)
        is_last = ops.logical_not(ops.any(ops.logical_and(same, later), axis=1))
        hits = ops.logical_and(hits, ops.expand_dims(is_last, 0))
        sampled_logits_ = ops.where(hits, lowest_finite(dtype), sampled_logits_)
    return ops.concatenate([true_logits, sampled_logits_], axis=-1)


def _nce_per_example(logits, num_true):
    """Sigmoid cross-entropy summed over columns, targets `1/num_true` (true) and 0 (sampled)."""
    true_logits, noise_logits = logits[:, :num_true], logits[:, num_true:]
    true_part = ops.sum(ops.softplus(true_logits) - true_logits / num_true, axis=-1)
    return true_part + ops.sum(ops.softplus(noise_logits), axis=-1)


def _sampled_softmax_per_example(logits, num_true):
    """Softmax cross-entropy of each row against targets `1/num_true` on the true columns."""
    return ops.logsumexp(logits, axis=-1) - ops.sum(logits[:, :num_true], axis=-1) / num_true


_ARGS = """
    Args:
        weights: `[C, D]` class embeddings, or a list of shards partitioned the "div" way
            (contiguous blocks, the first `C % num_shards` shards one row longer), as TF 2's
            `nce_loss`. Other layouts raise a `ValueError`.
        biases: `[C]` class biases, or a list of shards partitioned like `weights`.
        labels: `[B, num_true]` integer class ids (`[B]` accepted when `num_true=1`).
        inputs: `[B, D]` float activations.
        num_sampled: Number of sampled classes `S`, shared by the whole batch.
        num_classes: Number of classes `C` (the sampler's range).
        num_true: Number of true classes per example. Defaults to `1`.
        sampled_values: Optional `(sampled_candidates [S], true_expected_count [B, num_true],
            sampled_expected_count [S])`. Defaults to `None`: draw with
            `log_uniform_candidate_sampler(labels, num_true, S, unique=True, range_max=C, seed)`.
        remove_accidental_hits: Whether to remove sampled classes that equal one of the row's
            true classes (their logit becomes the most negative finite float). Defaults to
            `{rah}`.
        seed: Sampler seed: an int, a `keras.random.SeedGenerator` or `None`. Defaults to
            `None`. Under `jax.jit` pass an int or a generator.
"""


def _per_example_in_input_dtype(per_example, inputs):
    return ops.cast(per_example, ops.convert_to_tensor(inputs).dtype)


@export
def nce_loss(
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
    """Noise-contrastive estimation loss per example, as `tf.nn.nce_loss`.

    With `t` the logits of the `num_true` true classes and `s` those of the `S` sampled classes
    (`x_b . w_k + bias_k - log(expected_count_k)`, the same sampled classes for every row),

    ```
    loss_b = sum_k [softplus(t_bk) - t_bk / num_true] + sum_j softplus(s_bj)
    ```

    the sigmoid cross-entropy against targets `1/num_true` (true) and 0 (sampled), summed over
    the columns. Only the `B * num_true + S` needed rows of `weights` are gathered; the `[B, C]`
    logits are never built.

    Accidental hits: with `remove_accidental_hits=True` a sampled class equal to one of row `b`'s
    true classes is removed from row `b` (its logit contributes 0). As in TensorFlow, when a class
    is sampled several times (`unique=False` candidates) only its **last** copy is removed.

    Differences from TensorFlow (deliberate fixes): the removed logit is the most negative
    *finite* value of the compute dtype (TensorFlow's `-FLT_MAX` becomes `-inf` in float16 and
    the loss NaN); float16/bfloat16 inputs are computed in float32 (TensorFlow fails on them with
    its own sampler) and the loss is returned in the input dtype; a `seed` argument is accepted
    (TF 2 has none); label ids are compared as int32. Labels out of `[0, num_classes)`,
    non-integral float labels and NaN or inf `inputs` raise when the inputs are concrete
    (eager); inside a compiled function values cannot be checked: labels are then clipped into
    range for the lookup (finite but meaningless values). An empty batch gives `[]`.
    """
    logits = sampled_logits(
        weights,
        biases,
        labels,
        inputs,
        num_sampled,
        num_classes,
        num_true,
        sampled_values,
        remove_accidental_hits,
        seed,
    )
    return _per_example_in_input_dtype(_nce_per_example(logits, num_true), inputs)


@export
def sampled_softmax_loss(
    weights,
    biases,
    labels,
    inputs,
    num_sampled,
    num_classes,
    num_true=1,
    sampled_values=None,
    remove_accidental_hits=True,
    seed=None,
):
    """Sampled softmax loss per example, as `tf.nn.sampled_softmax_loss`.

    Over the same log-Q corrected logits as `nce_loss` (true columns `t`, sampled columns `s`),

    ```
    loss_b = logsumexp([t_b, s_b]) - (1 / num_true) * sum_k t_bk
    ```

    the softmax cross-entropy against targets `1/num_true` on the true columns. Accidental hits
    are removed by default; with duplicated sampled classes only the last copy is removed (as in
    TensorFlow). Differences from TensorFlow are those of `nce_loss`.
    """
    logits = sampled_logits(
        weights,
        biases,
        labels,
        inputs,
        num_sampled,
        num_classes,
        num_true,
        sampled_values,
        remove_accidental_hits,
        seed,
    )
    return _per_example_in_input_dtype(_sampled_softmax_per_example(logits, num_true), inputs)


_RETURNS = """
    Returns:
        `[B]` losses in the dtype of `inputs` (computed in float32 for half precision).

    Raises:
        ValueError: if the shapes of `weights`, `biases`, `labels`, `inputs` or
            `sampled_values` disagree, if shards are not a 'div' partition, if
            `num_classes` exceeds the rows of `weights`, if `num_sampled > num_classes` when
            sampling; for concrete (eager) inputs also if `labels` are outside
            `[0, num_classes)` or non-integral floats, or `inputs` hold NaN or inf.
        TypeError: if `labels` are not numbers (strings).
"""

_EXAMPLE = """
    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> w = np.array([[.1, .2], [.3, -.1], [-.2, .4], [.5, .5], [-.3, -.2], [0., .6]])
    >>> b = np.array([0., .1, -.1, .2, 0., -.2])
    >>> x = np.array([[1., .5], [-.5, 1.]])
    >>> sampled = (np.array([3, 0, 5]), np.array([[.4, .3], [.2, .2]]), np.array([.3, .6, .1]))
    >>> kml.{fn}(w, b, np.array([[1, 3], [2, 2]]), x, num_sampled=3, num_classes=6,
    ...     num_true=2, sampled_values=sampled, remove_accidental_hits=True)  # doctest: +SKIP
    {value}
"""

nce_loss.__doc__ += (
    _ARGS.format(rah="False")
    + _RETURNS
    + _EXAMPLE.format(fn="nce_loss", value="[5.6678658, 7.934709]")
    + "\n    Reference: "
    + _REFERENCE_NCE
    + "\n"
)
sampled_softmax_loss.__doc__ += (
    _ARGS.format(rah="True")
    + _RETURNS
    + _EXAMPLE.format(fn="sampled_softmax_loss", value="[1.5188559, 1.601496]")
    + '\n    Reference: Jean et al., "On Using Very Large Target Vocabulary for Neural Machine '
    'Translation", ACL 2015.\n'
)


def _num_true(y_true):
    shape = tuple(y_true.shape)
    if len(shape) == 1:
        return 1
    if len(shape) == 2 and shape[1] is not None:
        return shape[1]
    raise ValueError(
        "`y_true` must hold the true class ids, of shape [batch] or [batch, num_true]. "
        f"Received: y_true.shape={shape}"
    )


def _check_logits(y_true, y_pred):
    num_true = _num_true(y_true)
    validation.rank(
        y_pred, 2, "the [batch, num_true + num_sampled] logits of the `NCE` layer", "y_pred"
    )
    validation.same_batch(y_true, y_pred)
    width = y_pred.shape[1]
    if width is not None and width <= num_true:
        raise ValueError(
            f"`y_pred` must have more than num_true={num_true} columns (true classes first, then "
            f"the sampled ones). Received: y_pred.shape={tuple(y_pred.shape)}"
        )
    return num_true


def _of_sampled_logits(per_example):
    """A `(y_true, y_pred) -> [B]` loss of the `NCE` layer's sampled logits."""

    @hyperparameters()
    def loss(y_true, y_pred):
        num_true = _check_logits(y_true, y_pred)
        validation.finite(y_pred, "y_pred", allow_negative_inf=True)
        return per_example(ops.cast(y_pred, compute_dtype(y_pred)), num_true)

    return loss


_nce_of_logits = _of_sampled_logits(_nce_per_example)
_sampled_softmax_of_logits = _of_sampled_logits(_sampled_softmax_per_example)


@export
class NCELoss(LossFunctionWrapper):
    """NCE loss of the sampled logits of the `keras_metric_losses.layers.NCE` layer.

    `y_pred` is the layer's `[B, num_true + S]` output (true columns first, log-Q corrected,
    accidental hits removed); `y_true` the `[B]` or `[B, num_true]` labels fed to the layer, of
    which only the last dimension (`num_true`) is used. Per example,

    ```
    loss_b = sum_k [softplus(t_bk) - t_bk / num_true] + sum_j softplus(s_bj)
    ```

    equal to `nce_loss` for the same candidates; Keras then reduces. `-inf` logits (a removed
    accidental hit in a float16 loss dtype) contribute nothing; NaN or `+inf` logits raise a
    `ValueError` when eager (compiled functions do not read values). An empty batch gives 0.

    Args:
        name: Name of the loss. Defaults to `"nce_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy (half precision is computed in float32). Defaults to
            `keras.config.floatx()`.

    Example:

    ```python
    words, context = keras.Input((), dtype="int32"), keras.Input((1,), dtype="int32")
    embedded = keras.layers.Embedding(vocab_size, 64)(words)
    logits = kml.layers.NCE(vocab_size, num_sampled=16)([embedded, context])
    model = keras.Model([words, context], logits)
    model.compile(optimizer="adam", loss=kml.NCELoss())
    model.fit([x, labels], labels)
    ```

    Reference: Gutmann and Hyvärinen, "Noise-contrastive estimation: A new estimation principle
    for unnormalized statistical models", AISTATS 2010; Mnih and Teh, "A fast and simple
    algorithm for training neural probabilistic language models", ICML 2012.
    """

    def __init__(self, name="nce_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(_nce_of_logits, name=name, reduction=reduction, dtype=dtype)


@export
class SampledSoftmaxLoss(LossFunctionWrapper):
    """Sampled softmax loss of the sampled logits of the `keras_metric_losses.layers.NCE` layer.

    Same inputs as `NCELoss`; per example

    ```
    loss_b = logsumexp([t_b, s_b]) - (1 / num_true) * sum_k t_bk
    ```

    equal to `sampled_softmax_loss` for the same candidates. Build the layer with
    `remove_accidental_hits=True` to match `sampled_softmax_loss`'s default.

    Args:
        name: Name of the loss. Defaults to `"sampled_softmax_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy. Defaults to `keras.config.floatx()`.

    Example:

    ```python
    logits = kml.layers.NCE(vocab_size, 16, remove_accidental_hits=True)([embedded, context])
    model = keras.Model([words, context], logits)
    model.compile(optimizer="adam", loss=kml.SampledSoftmaxLoss())
    ```

    Reference: Jean et al., "On Using Very Large Target Vocabulary for Neural Machine
    Translation", ACL 2015.
    """

    def __init__(self, name="sampled_softmax_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(_sampled_softmax_of_logits, name=name, reduction=reduction, dtype=dtype)
