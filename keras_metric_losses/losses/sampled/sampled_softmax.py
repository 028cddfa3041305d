"""Sampled softmax: `sampled_softmax_loss` (`tf.nn.sampled_softmax_loss`) and
`SampledSoftmaxLoss` (of the `NCE` layer's sampled logits)."""

from keras_metric_losses import docstrings
from keras_metric_losses.api import export
from keras_metric_losses.losses import base
from keras_metric_losses.losses.sampled import common
from keras_metric_losses.losses.sampled import docstring_parts as parts

_FUNCTION_NOTES = """
    Accidental hits are removed by default; with duplicated sampled classes only the last copy
    is removed (as in TensorFlow). Differences from TensorFlow are those of `nce_loss`.
"""


@export
@docstrings.append(
    *parts.function_parts(
        parts.SAMPLED_SOFTMAX_RULE, _FUNCTION_NOTES, parts.REFERENCE_SAMPLED_SOFTMAX
    ),
    rah="True",
    fn="sampled_softmax_loss",
    **parts.SAMPLED_SOFTMAX_VALUES,
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
    """
    del name  # TensorFlow's name scope: accepted, unused in Keras 3
    return common.of_class_weights(
        common.sampled_softmax_per_example, weights, biases, labels, inputs, num_sampled,
        num_classes, num_true, sampled_values, remove_accidental_hits, seed,
    )  # fmt: skip


def sampled_softmax_of_layer_logits(y_true, y_pred):
    """Sampled softmax loss of the `NCE` layer's sampled logits, one value per example
    (`SampledSoftmaxLoss`)."""
    return common.of_layer_logits(common.sampled_softmax_per_example, y_true, y_pred)


SampledSoftmaxLoss = base.declare(
    sampled_softmax_of_layer_logits,
    function=None,
    related="sampled_softmax_loss",
    cls="SampledSoftmaxLoss",
    name="sampled_softmax_loss",
    original="`tf.nn.sampled_softmax_loss`",
    summary="softmax cross-entropy over the true and sampled classes",
    hyperparameters={},
    inputs=common.LAYER_LOGITS,
    class_doc=parts.class_doc(
        """Sampled softmax loss of the sampled logits of `keras_metric_losses.layers.NCE`.

    Same inputs as `NCELoss`; with `t` the true and `s` the sampled columns of `y_pred`, per
    example
""",
        parts.SAMPLED_SOFTMAX_RULE,
        """
    This equals `sampled_softmax_loss` for the same candidates. Build the layer with
    `remove_accidental_hits=True` to match `sampled_softmax_loss`'s default.
""",
        parts.REFERENCE_SAMPLED_SOFTMAX,
        cls="SampledSoftmaxLoss",
        values=parts.SAMPLED_SOFTMAX_VALUES,
    ),
)
