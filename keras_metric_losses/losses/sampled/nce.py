"""Noise-contrastive estimation: `nce_loss` (`tf.nn.nce_loss`) and `NCELoss` (of the `NCE`
layer's sampled logits)."""

from keras_metric_losses import docstrings
from keras_metric_losses.api import export
from keras_metric_losses.losses import base
from keras_metric_losses.losses.sampled import common
from keras_metric_losses.losses.sampled import docstring_parts as parts

_FUNCTION_NOTES = """
    Only the `B * num_true + S` needed rows of `weights` are gathered; the `[B, C]` logits are
    never built.

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
@docstrings.append(
    *parts.function_parts(parts.NCE_RULE, _FUNCTION_NOTES, parts.REFERENCE_NCE),
    rah="False",
    fn="nce_loss",
    **parts.NCE_VALUES,
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
    """
    del name  # TensorFlow's name scope: accepted, unused in Keras 3
    return common.of_class_weights(
        common.nce_per_example, weights, biases, labels, inputs, num_sampled, num_classes,
        num_true, sampled_values, remove_accidental_hits, seed,
    )  # fmt: skip


def nce_of_layer_logits(y_true, y_pred):
    """NCE loss of the `NCE` layer's sampled logits, one value per example (`NCELoss`)."""
    return common.of_layer_logits(common.nce_per_example, y_true, y_pred)


NCELoss = base.declare(
    nce_of_layer_logits,
    function=None,
    related="nce_loss",
    cls="NCELoss",
    name="nce_loss",
    original="`tf.nn.nce_loss`",
    summary="noise-contrastive estimation over sampled classes; trainable class embeddings in "
    "`kml.layers.NCE`",
    hyperparameters={},
    inputs=common.LAYER_LOGITS,
    class_doc=parts.class_doc(
        """NCE loss of the sampled logits of the `keras_metric_losses.layers.NCE` layer.

    `y_pred` is the layer's `[B, num_true + S]` output (true columns first, log-Q corrected,
    accidental hits removed); `y_true` the `[B]` or `[B, num_true]` labels fed to the layer, of
    which only the last dimension (`num_true`) is used. With `t` the true and `s` the sampled
    columns of `y_pred`, per example
""",
        parts.NCE_RULE,
        """
    This equals `nce_loss` for the same candidates; Keras then reduces. `-inf` logits (a removed
    accidental hit in a float16 loss dtype) contribute nothing; with value checks on
    (`kml.config.enable_value_checks()`), NaN or `+inf` concrete logits raise a `ValueError`.
    An empty batch gives 0.
""",
        parts.REFERENCE_NCE,
        cls="NCELoss",
        values=parts.NCE_VALUES,
    ),
)
