"""What open_clip's losses share: `[B, 2, D]` image and text features, the scale and bias,
and the rows of the global batch that a replica's rows are compared with."""

from keras_metric_losses import distributed, validation
from keras_metric_losses.backend import ops
from keras_metric_losses.losses import base
from keras_metric_losses.losses.ssl.common import two_views
from keras_metric_losses.losses.ssl.simclr import example_ids
from keras_metric_losses.ops import scalar_like

IMAGE_TEXT = base.Inputs(
    ("y_true", "y_pred"),
    (
        "Unused (any value, e.g. `None` or zeros `[B]`).",
        "`[B, 2, D]`: the image and text features of each pair, "
        "`keras.ops.stack([image, text], axis=1)`, as the model gives them (not normalised "
        "here).",
    ),
    returns="`[B]` per-pair losses in the dtype of `y_pred`.",
    example=""">>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> image = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
>>> text = np.array([[0.8, 0.6], [0.0, 1.0], [0.6, -0.8]])
>>> y_pred = np.stack([image, text], axis=1)  # [3 pairs, image and text, 2]""",
)


def image_text(y_pred):
    """`(images, texts)` `[B, D]` of a checked `[B, 2, D]` `y_pred`, in the compute dtype.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]`; with value checks on, if it is not finite.
    """
    return two_views(y_pred)


def gathered(features, cross_replica):
    """Every replica's `[B, D]` features with `cross_replica` (`distributed.all_gather`, whose
    backward sums the replicas' gradients of this replica's rows), else `features`."""
    return distributed.all_gather(features) if cross_replica else features


def own_columns(features, cross_replica):
    """`[b]` int32 columns of this replica's rows in the gathered batch: `arange(b)` plus the
    rows of the replicas before it."""
    return example_ids(ops.shape(features)[0], cross_replica)


def scaled(features, scale):
    """`scale * features`: `scale` a Python float or a scalar tensor (a layer's `exp(t)`), in
    the features' dtype. The logits are `(s * queries) @ keys^T`, as open_clip computes them."""
    features = ops.convert_to_tensor(features)
    return ops.multiply(features, scalar_like(scale, features))


def check_bias(value, name):
    return None if value is None else validation.real(value, name)


def hyperparameters(scale, bias, scale_doc, bias_doc):
    return dict(
        scale=base.positive_real(scale, scale_doc),
        bias=base.Hyperparameter(bias, check_bias, bias_doc + " `None`: no bias."),
        cross_replica=base.boolean(
            False,
            "Score this replica's rows against every replica's (`tf.distribute`, "
            "`torch.distributed`): open_clip's `local_loss=True, gather_with_grad=True`; the "
            "identity on one device and under JAX.",
        ),
    )
