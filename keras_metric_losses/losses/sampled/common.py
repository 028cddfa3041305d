"""The shared core of the sampled losses: their per-example rules over the sampled logits, and
the two inputs they are computed from (class weights and inputs, or the `NCE` layer's logits)."""

from keras_metric_losses import validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.ops import compute_dtype, in_dtype_of
from keras_metric_losses.sampled_logits import sampled_logits

# What `NCELoss` and `SampledSoftmaxLoss` take: the `NCE` layer's output.
LAYER_LOGITS = base.Inputs(
    ("y_true", "y_pred"),
    (
        "The `[B]` or `[B, num_true]` labels fed to the `NCE` layer; only their last dimension "
        "(`num_true`) is used.",
        "The layer's `[B, num_true + S]` sampled logits (true columns first).",
    ),
    returns="`[B]` per-example losses in the dtype of `y_pred`.",
)


def nce_per_example(logits, num_true):
    """Sigmoid cross-entropy summed over columns, targets `1/num_true` (true) and 0 (sampled)."""
    true_logits, noise_logits = logits[:, :num_true], logits[:, num_true:]
    true_part = ops.sum(ops.softplus(true_logits) - true_logits / num_true, axis=-1)
    return true_part + ops.sum(ops.softplus(noise_logits), axis=-1)


def sampled_softmax_per_example(logits, num_true):
    """Softmax cross-entropy of each row against targets `1/num_true` on the true columns."""
    return ops.logsumexp(logits, axis=-1) - ops.sum(logits[:, :num_true], axis=-1) / num_true


def of_class_weights(per_example, weights, biases, labels, inputs, num_sampled, num_classes,
                     num_true, sampled_values, remove_accidental_hits, seed):  # fmt: skip
    """`per_example` of the sampled logits of `tf.nn`'s arguments (`sampled_logits` checks
    them all), in the dtype of `inputs`."""
    logits = sampled_logits(weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                            sampled_values, remove_accidental_hits, seed)  # fmt: skip
    return in_dtype_of(per_example(logits, int(num_true)), inputs)


def of_layer_logits(per_example, y_true, y_pred):
    """`per_example` of the `[B, num_true + S]` logits of the `NCE` layer, computed in
    `compute_dtype(y_pred)` (float32 at least) and returned in the dtype of `y_pred`; `num_true`
    is the last dimension of `y_true`."""
    y_pred = ops.convert_to_tensor(y_pred)
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
    validation.finite(y_pred, "y_pred", allow_negative_inf=True)
    return in_dtype_of(per_example(ops.cast(y_pred, compute_dtype(y_pred)), num_true), y_pred)


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
