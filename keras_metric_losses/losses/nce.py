"""Sampled losses over many classes: noise-contrastive estimation and sampled softmax.

`nce_loss` and `sampled_softmax_loss` reproduce `tf.nn.nce_loss` and `tf.nn.sampled_softmax_loss`
on every backend; `NCELoss` and `SampledSoftmaxLoss` compute the same values from the sampled
logits that the `keras_metric_losses.layers.NCE` layer returns, for `model.compile`. The sampled
logits themselves (`keras_metric_losses.sampling.sampled_logits`) live next to the sampler.
"""

import functools
import inspect

from keras import ops

from keras_metric_losses import docstrings, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses.base import LossFunctionWrapper, hyperparameters
from keras_metric_losses.ops import compute_dtype
from keras_metric_losses.sampling import sampled_logits


def _nce_per_example(logits, num_true):
    """Sigmoid cross-entropy summed over columns, targets `1/num_true` (true) and 0 (sampled)."""
    true_logits, noise_logits = logits[:, :num_true], logits[:, num_true:]
    true_part = ops.sum(ops.softplus(true_logits) - true_logits / num_true, axis=-1)
    return true_part + ops.sum(ops.softplus(noise_logits), axis=-1)


def _sampled_softmax_per_example(logits, num_true):
    """Softmax cross-entropy of each row against targets `1/num_true` on the true columns."""
    return ops.logsumexp(logits, axis=-1) - ops.sum(logits[:, :num_true], axis=-1) / num_true


def _sampled_loss(per_example):
    """Makes a sampled loss from a declaration: a function with `sampled_logits`' signature
    (its defaults may differ) and a docstring, and no body.

    The loss binds its arguments to the declared signature, computes `sampled_logits` with them,
    then `per_example(logits, num_true)`, returned in the dtype of `inputs`.
    """

    def decorate(declaration):
        signature = inspect.signature(declaration)

        @functools.wraps(declaration)
        def loss(*args, **kwargs):
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            arguments = bound.arguments
            arguments.pop("name")  # TensorFlow's name scope: accepted, unused in Keras 3
            logits = sampled_logits(**arguments)  # checks every argument
            per_example_loss = per_example(logits, int(arguments["num_true"]))
            return ops.cast(per_example_loss, ops.convert_to_tensor(arguments["inputs"]).dtype)

        return loss

    return decorate


_ARGS = """
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

_OUT_OF_RANGE = """
    Labels out of `[0, num_classes)` are clipped to the nearest class (`-1` is class 0,
    `num_classes` is class `num_classes - 1`) for their rows of `weights`, their expected counts
    and the accidental hits, so the loss is defined and finite, eagerly and inside `jax.jit`,
    `tf.function` or a compiled `model.fit`; no value is read from the device. To have them
    raise instead, turn value checks on (`kml.config.enable_value_checks()`): concrete labels
    out of range or non-integral, and NaN or inf `inputs`, then raise a `ValueError`.
"""

# REFERENCE_MATH 6.6: a hand-made case, verified against TensorFlow.
_EXAMPLE_DATA = """
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

_FUNCTION_EXAMPLE = """    >>> loss = kml.{fn}(
    ...     w, b, labels, x, num_sampled=3, num_classes=6, num_true=2,
    ...     sampled_values=sampled, remove_accidental_hits=True)
    >>> keras.ops.convert_to_numpy(loss).round(4)
    array({value}, dtype=float32)
"""

_CLASS_EXAMPLE = """    >>> layer = kml.layers.NCE(num_classes=6, num_sampled=3, num_true=2,
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

_REFERENCE_NCE = """
    Reference: Gutmann and Hyvärinen, "Noise-contrastive estimation: A new estimation principle
    for unnormalized statistical models", AISTATS 2010; Mnih and Teh, "A fast and simple
    algorithm for training neural probabilistic language models", ICML 2012.
"""

_REFERENCE_SAMPLED_SOFTMAX = """
    Reference: Jean et al., "On Using Very Large Target Vocabulary for Neural Machine
    Translation", ACL 2015.
"""

_NCE_VALUES = {"value": "[5.6679, 7.9347]", "mean": "6.8013"}
_SAMPLED_SOFTMAX_VALUES = {"value": "[1.5189, 1.6015]", "mean": "1.5602"}


@export
@_sampled_loss(_nce_per_example)
@docstrings.append(
    _OUT_OF_RANGE,
    _ARGS,
    _EXAMPLE_DATA,
    _FUNCTION_EXAMPLE,
    _REFERENCE_NCE,
    rah="False",
    fn="nce_loss",
    **_NCE_VALUES,
)
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
    name="nce_loss",
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
    (TF 2 has none; TF's `name` is accepted and unused); labels out of range are clipped (see
    below). An empty batch gives `[]`.
    """


@export
@_sampled_loss(_sampled_softmax_per_example)
@docstrings.append(
    _OUT_OF_RANGE,
    _ARGS,
    _EXAMPLE_DATA,
    _FUNCTION_EXAMPLE,
    _REFERENCE_SAMPLED_SOFTMAX,
    rah="True",
    fn="sampled_softmax_loss",
    **_SAMPLED_SOFTMAX_VALUES,
)
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
    name="sampled_softmax_loss",
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
@docstrings.append(_EXAMPLE_DATA, _CLASS_EXAMPLE, _REFERENCE_NCE, cls="NCELoss", **_NCE_VALUES)
class NCELoss(LossFunctionWrapper):
    """NCE loss of the sampled logits of the `keras_metric_losses.layers.NCE` layer.

    `y_pred` is the layer's `[B, num_true + S]` output (true columns first, log-Q corrected,
    accidental hits removed); `y_true` the `[B]` or `[B, num_true]` labels fed to the layer, of
    which only the last dimension (`num_true`) is used. Per example,

    ```
    loss_b = sum_k [softplus(t_bk) - t_bk / num_true] + sum_j softplus(s_bj)
    ```

    equal to `nce_loss` for the same candidates; Keras then reduces. `-inf` logits (a removed
    accidental hit in a float16 loss dtype) contribute nothing; with value checks on
    (`kml.config.enable_value_checks()`), NaN or `+inf` concrete logits raise a `ValueError`.
    An empty batch gives 0.

    Args:
        name: Name of the loss. Defaults to `"nce_loss"`.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or policy (half precision is computed in float32). Defaults to
            `keras.config.floatx()`.
    """

    def __init__(self, name="nce_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(_nce_of_logits, name=name, reduction=reduction, dtype=dtype)


@export
@docstrings.append(
    _EXAMPLE_DATA,
    _CLASS_EXAMPLE,
    _REFERENCE_SAMPLED_SOFTMAX,
    cls="SampledSoftmaxLoss",
    **_SAMPLED_SOFTMAX_VALUES,
)
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
    """

    def __init__(self, name="sampled_softmax_loss", reduction="sum_over_batch_size", dtype=None):
        super().__init__(_sampled_softmax_of_logits, name=name, reduction=reduction, dtype=dtype)
