"""A layer that owns CLIP's and SigLIP's learnable logit scale (and bias) and adds their loss."""

import math

import keras

from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.layers.adds_loss import AddsLoss, deserialized, serialized
from keras_metric_losses.losses.clip import clip, common, siglip
from keras_metric_losses.ops import in_dtype_of

# open_clip's training loop clamps t to [0, ln 100] after every optimiser step (s <= 100).
MAX_LOG_SCALE = math.log(100.0)
_VALUES = {clip.ClipLoss: clip.clip_values, siglip.SigLipLoss: siglip.siglip_values}


def clamp_log_scale(t):
    """The constraint of `t`: `clip(t, 0, ln 100)`, which Keras' optimizers apply after each
    update (open_clip_train's `logit_scale.clamp_(0, math.log(100))`)."""
    return ops.clip(t, 0.0, MAX_LOG_SCALE)


@export
class LogitScale(AddsLoss, StrictConfig, keras.layers.Layer):
    """The learnable log-scale `t` (and bias) of CLIP and SigLIP; computes their loss with
    `s = exp(t)` and adds it to the model.

    open_clip's models own `logit_scale = t` (and SigLIP's `logit_bias`) and pass the loss
    `logit_scale.exp()`: the loss receives the multiplier, already exponentiated. This layer
    does the same in Keras. It takes the `[B, 2, D]` features
    (`keras.ops.stack([image, text], axis=1)`, normalised by the model as open_clip's are),
    computes `loss` on them with

    ```
    s = exp(t)      (the loss's `scale` argument, as open_clip's `logit_scale.exp()`)
    bias            (its `bias`, a trainable weight; none when the loss's `bias` is None)
    ```

    adds the loss (reduced with the loss's `reduction`), and returns its input unchanged. The
    weights start from the loss's own `scale` and `bias`: `t = log(scale)`, which for the
    defaults is open_clip's inits (`ClipLoss()`: `t = log(1 / 0.07)`, no bias;
    `SigLipLoss()`: open_clip_train's SigLIP init `t = log 10`, bias `-10`). `t` has the
    constraint `clip(t, 0, ln 100)` (`clamp_log_scale`), which Keras' optimizers apply after
    every update, as open_clip's training loop does after every step. Both weights are saved
    with the model. The loss's `cross_replica` and `block_size` apply.

    The gradient reaching `t` is `s * d loss / d s` (the chain rule through `exp`).

    Args:
        loss: `kml.ClipLoss(...)` or `kml.SigLipLoss(...)`: the loss, whose `scale` and `bias`
            are the weights' initial values.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Raises:
        TypeError: if `loss` is not a `ClipLoss` or `SigLipLoss`.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> images, texts = keras.Input((6,)), keras.Input((5,))
    >>> image = keras.layers.UnitNormalization()(keras.layers.Dense(4)(images))
    >>> text = keras.layers.UnitNormalization()(keras.layers.Dense(4)(texts))
    >>> scale = kml.layers.LogitScale(loss=kml.SigLipLoss(), name="logit_scale")
    >>> model = keras.Model([images, texts], scale(keras.ops.stack([image, text], axis=1)))
    >>> float(scale.scale), float(scale.bias)  # exp(t) and the bias: SigLIP's init
    (10.0, -10.0)
    >>> model.compile(optimizer="adam")  # the layer adds the loss
    >>> rng = np.random.default_rng(0)
    >>> x = [rng.normal(size=(32, 6)), rng.normal(size=(32, 5))]
    >>> history = model.fit(x, batch_size=8, epochs=2, verbose=0)
    >>> bool(np.isfinite(history.history["loss"]).all()) and float(scale.bias) != -10.0
    True

    Reference: Radford et al., "Learning Transferable Visual Models From Natural Language
    Supervision", ICML 2021; Zhai et al., "Sigmoid Loss for Language Image Pre-Training",
    ICCV 2023; open_clip's `CLIP.logit_scale` and `logit_bias`.
    """

    def __init__(self, loss, **kwargs):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.loss = deserialized(loss)
        if type(self.loss) not in _VALUES:
            raise TypeError(
                "`loss` must be `kml.ClipLoss(...)` or `kml.SigLipLoss(...)`. Received: "
                f"loss={self.loss!r}"
            )
        config = self.loss.get_config()
        self.log_scale = self.add_weight(
            name="logit_scale", shape=(), dtype="float32", autocast=False,
            initializer=keras.initializers.Constant(math.log(config["scale"])),
            constraint=clamp_log_scale,
        )  # fmt: skip
        self.logit_bias = None
        if config["bias"] is not None:
            self.logit_bias = self.add_weight(
                name="logit_bias", shape=(), dtype="float32", autocast=False,
                initializer=keras.initializers.Constant(config["bias"]),
            )  # fmt: skip
        self.built = True  # the weights do not depend on the input shape

    @property
    def scale(self):
        """`s = exp(t)`, what the loss receives (float32 scalar tensor)."""
        return ops.exp(self.log_scale.value)

    @property
    def bias(self):
        """The bias (float32 scalar tensor), or `None`."""
        return None if self.logit_bias is None else self.logit_bias.value

    def loss_values(self, y_pred):
        """The `[B]` per-example values of the loss on `y_pred` `[B, 2, D]` with `s = exp(t)`
        and the bias: what the layer reduces and adds."""
        config = self.loss.get_config()
        images, texts = common.image_text(y_pred)
        values = _VALUES[type(self.loss)](
            images, texts, scale=self.scale, bias=self.bias,
            cross_replica=config["cross_replica"], block_size=config["block_size"],
        )  # fmt: skip
        return in_dtype_of(values, y_pred)

    def call(self, y_pred):
        self.add_reduced_loss(self.loss, self.loss_values(y_pred))
        return y_pred

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "loss": serialized(self.loss)}
