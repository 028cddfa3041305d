"""The docstring parts that the sampled losses share, each written once.

`nce_loss` and `sampled_softmax_loss` append them to their docstrings (`docstrings.append`, so a
`python -OO` docstring stays `None`); `NCELoss` and `SampledSoftmaxLoss` are declared with a
`class_doc` assembled from them (`class_doc`). Parts are indented like a docstring body.
"""

NCE_RULE = """
    ```
    loss_b = sum_k [softplus(t_bk) - t_bk / num_true] + sum_j softplus(s_bj)
    ```

    the sigmoid cross-entropy against targets `1/num_true` (true) and 0 (sampled), summed over
    the columns.
"""

SAMPLED_SOFTMAX_RULE = """
    ```
    loss_b = logsumexp([t_b, s_b]) - (1 / num_true) * sum_k t_bk
    ```

    the softmax cross-entropy against targets `1/num_true` on the true columns.
"""

OUT_OF_RANGE = """
    Labels out of `[0, num_classes)` are clipped to the nearest class (`-1` is class 0,
    `num_classes` is class `num_classes - 1`) for their rows of `weights`, their expected counts
    and the accidental hits, so the loss is defined and finite, eagerly and inside `jax.jit`,
    `tf.function` or a compiled `model.fit`; no value is read from the device. To have them
    raise instead, turn value checks on (`kml.config.enable_value_checks()`): concrete labels
    out of range or non-integral, and NaN or inf `inputs`, then raise a `ValueError`.
"""

ARGS = """
    Args:
        weights: `[C, D]` class embeddings, or a list of shards partitioned the "div" way
            (contiguous blocks, the first `C % num_shards` shards one row longer), as TF 2's
            `nce_loss`. Other layouts raise a `ValueError`.
        biases: `[C]` class biases, or a list of shards partitioned like `weights`.
        labels: `[B, num_true]` integer class ids (`[B]` accepted when `num_true=1`). Ids out
            of `[0, C)` are clipped to the nearest class (see above).
        inputs: `[B, D]` float activations.
        num_sampled: Number of sampled classes `S`, shared by the whole batch (a positive
            Python or NumPy int).
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
        name: Accepted for TensorFlow compatibility (its name scope); unused.

    Returns:
        `[B]` losses in the dtype of `inputs` (computed in float32 for half precision).

    Raises:
        ValueError: if the shapes of `weights`, `biases`, `labels`, `inputs` or
            `sampled_values` disagree, if shards are not a 'div' partition, if
            `num_classes` exceeds the rows of `weights`, if a count is not a positive int, if
            `num_sampled > num_classes` without `sampled_values`; with value checks on
            (`kml.config.enable_value_checks()`) and concrete inputs, also if `labels` are
            outside `[0, num_classes)` or non-integral floats, or `inputs` hold NaN or inf.
        TypeError: if `labels` are not numbers (strings), `remove_accidental_hits` is not a
            bool, or `seed` is not an int, a `keras.random.SeedGenerator` or `None`.
"""

# REFERENCE_MATH 6.6: a hand-made case, verified against TensorFlow.
EXAMPLE_DATA = """
    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> w = np.array([[.1, .2], [.3, -.1], [-.2, .4], [.5, .5], [-.3, -.2], [0., .6]], "float32")
    >>> b = np.array([0., .1, -.1, .2, 0., -.2], "float32")
    >>> x = np.array([[1., .5], [-.5, 1.]], "float32")
    >>> labels = np.array([[1, 3], [2, 2]])
    >>> sampled = (np.array([3, 0, 5]), np.array([[.4, .3], [.2, .2]]), np.array([.3, .6, .1]))
"""

FUNCTION_EXAMPLE = """    >>> loss = kml.{fn}(
    ...     w, b, labels, x, num_sampled=3, num_classes=6, num_true=2,
    ...     sampled_values=sampled, remove_accidental_hits=True)
    >>> keras.ops.convert_to_numpy(loss).round(4)
    array({value}, dtype=float32)
"""

CLASS_EXAMPLE = """    >>> layer = kml.layers.NCE(num_classes=6, num_sampled=3, num_true=2,
    ...     remove_accidental_hits=True)
    >>> layer.build(x.shape)
    >>> layer.set_weights([w, b])
    >>> logits = layer.sampled_logits(x, labels, sampled_values=sampled)
    >>> per_example = kml.{cls}(reduction=None)(labels, logits)
    >>> keras.ops.convert_to_numpy(per_example).round(4)
    array({value}, dtype=float32)
    >>> mean = kml.{cls}()(labels, logits)  # Keras reduces: the mean over the batch
    >>> print(keras.ops.convert_to_numpy(mean).round(4))
    {mean}

    In a model, `kml.layers.NCE` owns `w` and `b` and draws the candidates at every step (see
    its example).
"""

REFERENCE_NCE = """
    Reference: Gutmann and Hyvärinen, "Noise-contrastive estimation: A new estimation principle
    for unnormalized statistical models", AISTATS 2010; Mnih and Teh, "A fast and simple
    algorithm for training neural probabilistic language models", ICML 2012.
"""

REFERENCE_SAMPLED_SOFTMAX = """
    Reference: Jean et al., "On Using Very Large Target Vocabulary for Neural Machine
    Translation", ACL 2015.
"""

# The example's values (`EXAMPLE_DATA`), per example and their mean.
NCE_VALUES = {"value": "[5.6679, 7.9347]", "mean": "6.8013"}
SAMPLED_SOFTMAX_VALUES = {"value": "[1.5189, 1.6015]", "mean": "1.5602"}


def function_parts(rule, notes, reference):
    """The parts of a function's docstring after its summary (which ends on the `rule`'s
    lead-in): the rule, the function's `notes`, then the shared ones."""
    return (rule, notes, OUT_OF_RANGE, ARGS, EXAMPLE_DATA, FUNCTION_EXAMPLE, reference)


def class_doc(summary, rule, notes, reference, cls, values):
    """A class's `class_doc`: its `summary` (ending on the rule's lead-in), the `rule`, its
    `notes`, then the example on the `NCE` layer (`declare` adds the `Args`)."""
    example = CLASS_EXAMPLE.format(cls=cls, **values)
    return "".join((summary, rule, notes, EXAMPLE_DATA, example, reference))
