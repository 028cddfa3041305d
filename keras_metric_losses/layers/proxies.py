"""A layer that owns the class proxies of the proxy and margin-softmax losses, returns their
class logits and, given one of these losses, computes it."""

import numbers

import keras
import numpy as np

from keras_metric_losses import validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import (
    ADDITIVE,
    LOGITS_ARGUMENTS,
    MARGIN_TYPES,
    MARGINS,
    POOLINGS,
    ClassLogits,
    ClassLogitsLoss,
    Targets,
    check_features,
    checked_labels,
)
from keras_metric_losses.layers import meta_classes
from keras_metric_losses.layers.adds_loss import AddsLoss, deserialized, serialized
from keras_metric_losses.ops import compute_dtype


@export
class ClassProxies(AddsLoss, StrictConfig, keras.layers.Layer):
    """Class proxies (the class weights) and the class logits of the proxy and margin-softmax
    losses; given such a loss (`loss=`), the layer computes it and adds it to the model.

    Owns `num_classes * sub_centers` trainable proxies `[C * K, D]` (row `c * K + k` is
    sub-centre `k` of class `c`; `proxies` below), so they train with `model.fit`, and returns
    `[B, C]` logits:

    ```
    cos_ic    = max_k cos(x_i, p_ck)          (K = 1: the cosine; "softmax" pooling: SoftTriple's
                                               sum_k softmax_k(cos / gamma) cos)
    logits_ic = |x_i|^a |p_c|^b cos_ic        (a = 1 unless normalize_embeddings,
                                               b = 1 unless normalize_proxies)
    ```

    **With a loss** (`ClassProxies(num_classes, loss=kml.ArcFaceLoss())`, any proxy or
    margin-softmax loss class of this package), the loss declares the logits: its margin type
    and margin, sub-centres, pooling and normalisations set the layer's arguments (leave them
    out: a different value raises a `ValueError` naming both). Called on `[embeddings, labels]`,
    the layer applies the loss's margin to the true class (in training: `training=True`, as in
    `fit`, or `None`, a direct call; not with `training=False`, as in `evaluate`), adds the
    loss of these labels to the model (`add_loss`, reduced with the loss's `reduction`) and
    returns the logits **without** margin, so that accuracy metrics and inference see the
    plain class logits. The model is compiled without a loss: `model.compile(optimizer=...)`,
    `model.fit([x, y], ...)`. Called on the embeddings alone, it returns the logits.

    **With a loss on the proxies themselves** (`kml.ManifoldLoss()`, PML's `ManifoldLoss(l,
    K)` is `ClassProxies(K, loss=kml.ManifoldLoss())`): called on `[embeddings,
    meta_classes]`, the layer adds the loss of these meta classes (`[B]` ids in `[0, K)`);
    called on the embeddings alone in training (`training=True`), it draws them as PML does
    (every proxy once, the rest uniform, shuffled; `B >= K`) from a `keras.random.SeedGenerator`
    of its own, seeded by `meta_class_seed` and saved with the layer (a saved and loaded model
    draws on as the original would). It returns the `[B, K]` cosines to the proxies.

    **Without a loss** (release 0.1.0's pairing, kept for saved models): `margin_type` and
    `margin` set the margin, which `layer([embeddings, labels])` applies to the returned logits
    in training, and the loss class (a proxy loss, or a margin-softmax loss of 0.1.0) is
    compiled on them. A margin-softmax loss class called on logits directly raises.

    The logits are computed in float32 for half-precision embeddings (the margin's angles are
    where float16 fails) and returned in float32; the proxies stay float32 under a mixed
    precision policy (the layer does not autocast).

    **Margin warm-up.** For the additive margins, the margin in use is the non-trainable
    variable `margin_variable` (initialised to the margin; assign to it, for example from a
    callback, to schedule it yourself). With `margin_warmup_steps=N` the margin grows linearly
    from 0 to `margin_variable` over the layer's first `N` training calls (a non-trainable
    counter `warmup_step`, saved with the model, so a resumed training resumes the warm-up).

    **A larger learning rate for the proxies** (Proxy Anchor uses 100 times the backbone's):
    with `learning_rate_multiplier=r`, the stored variable `kernel` holds `proxies / r` and
    receives the gradient of the proxies unchanged (`proxies = kernel + stop_gradient((r - 1)
    kernel)`). Every optimizer step on the kernel is therefore `r` times larger on the
    proxies: exactly `r` times the learning rate for SGD (with or without momentum) and for
    Adam-type optimizers, whose steps do not depend on the gradient's scale. Decoupled weight
    decay (`AdamW`'s `weight_decay`) keeps the base rate.

    Labels outside `[0, num_classes)` match no class: no margin on their row (with value
    checks on, concrete ones raise a `ValueError`).

    Args:
        num_classes: Number of classes `C` (a positive int).
        sub_centers: Proxies per class `K`. Defaults to `1`.
        sub_center_pooling: How a class's `K` cosines make its cosine: `"max"` (Sub-center
            ArcFace) or `"softmax"` (SoftTriple). Defaults to `"max"`.
        gamma: Temperature of the `"softmax"` pooling (SoftTriple's `gamma`). Defaults to `0.1`.
        normalize_embeddings: Divide the logits by `|x_i|`. Defaults to `True`.
        normalize_proxies: Divide the logits by `|p_c|` (required with `sub_centers > 1`).
            Defaults to `True`.
        margin_type: `None`, `"additive_angular"`, `"additive_cosine"` or
            `"multiplicative_angular"`. Defaults to `None` (no margin).
        margin: The margin; `None` takes pytorch-metric-learning's default for the type (28.6
            degrees, 0.35, 4). Degrees in `[0, 180]` for `"additive_angular"`, a positive int
            for `"multiplicative_angular"`. Defaults to `None`.
        margin_warmup_steps: Training calls over which an additive margin grows linearly from
            0. Defaults to `0` (no warm-up).
        learning_rate_multiplier: `r > 0`, the factor on the proxies' optimizer steps.
            Defaults to `1.0`.
        proxies_initializer: Initializer of the proxies. Defaults to `"glorot_uniform"`.
        loss: A proxy or margin-softmax loss class instance of this package, which the layer
            computes and adds (see above), or `None`. Defaults to `None`.
        proxies_regularizer: A Keras regularizer of the `[C * K, D]` proxies (PML's
            `weight_regularizer`, for example `kml.regularizers.RegularFaceRegularizer(
            weight=weight_reg_weight)`): its term joins the model's losses. Defaults to `None`.
        meta_class_seed: With a loss on the proxies (`kml.ManifoldLoss()`), the int seed of
            the meta classes the layer draws, or `None` (a random seed). Defaults to `None`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: for a count that is not a positive int, an unknown `margin_type` or
            pooling, a margin out of range (or given without `margin_type`), a warm-up with a
            multiplicative margin, sub-centres with `normalize_proxies=False`, a logits
            argument that differs from the `loss`'s, a `proxies_regularizer` that is not a
            Keras regularizer, a `meta_class_seed` that is not an int `>= 0` or is given
            without a loss on the proxies; when called, for embeddings whose last dimension is
            unknown or differs from the proxies'.
        TypeError: if a flag is not a bool, or `loss` is not a loss of this package on these
            logits.

    Example: an ArcFace head on 10 classes, trained with `ArcFaceLoss`, then used for
    prediction.

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> features, labels = keras.Input((8,)), keras.Input((), dtype="int32")
    >>> embeddings = keras.layers.Dense(4)(features)
    >>> proxies = kml.layers.ClassProxies(10, loss=kml.ArcFaceLoss(scale=16.0), name="proxies")
    >>> model = keras.Model([features, labels], proxies([embeddings, labels]))
    >>> model.compile(optimizer="adam", metrics=["accuracy"])  # the layer adds the loss
    >>> x = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    >>> y = np.arange(32) % 10
    >>> history = model.fit([x, y], y, batch_size=8, epochs=2, verbose=0)
    >>> bool(np.isfinite(history.history["loss"]).all())
    True
    >>> classifier = keras.Model(features, proxies(embeddings))  # no labels: no loss
    >>> classifier.predict(x, verbose=0).shape
    (32, 10)

    Reference: Movshovitz-Attias et al., "No Fuss Distance Metric Learning using Proxies", ICCV
    2017; Kim et al., "Proxy Anchor Loss for Deep Metric Learning", CVPR 2020; Deng et al.,
    "ArcFace", CVPR 2019.
    """

    def __init__(
        self,
        num_classes,
        sub_centers=1,
        sub_center_pooling="max",
        gamma=0.1,
        normalize_embeddings=True,
        normalize_proxies=True,
        margin_type=None,
        margin=None,
        margin_warmup_steps=0,
        learning_rate_multiplier=1.0,
        proxies_initializer="glorot_uniform",
        *,
        loss=None,
        proxies_regularizer=None,
        meta_class_seed=None,
        **kwargs,
    ):
        kwargs.setdefault("autocast", False)
        super().__init__(**kwargs)
        self.loss = _checked_loss(deserialized(loss))
        given = dict(
            sub_centers=sub_centers, sub_center_pooling=sub_center_pooling, gamma=gamma,
            normalize_embeddings=normalize_embeddings, normalize_proxies=normalize_proxies,
            margin_type=margin_type, margin=margin,
        )  # fmt: skip
        if self.loss is not None:
            given = _declared_by(self.loss, given)
        self.num_classes = validation.positive_int(num_classes, "num_classes")
        self.sub_centers = validation.positive_int(given["sub_centers"], "sub_centers")
        self.sub_center_pooling = validation.one_of(
            given["sub_center_pooling"], "sub_center_pooling", POOLINGS
        )
        self.gamma = validation.positive_real(given["gamma"], "gamma")
        self.normalize_embeddings = validation.boolean(
            given["normalize_embeddings"], "normalize_embeddings"
        )
        self.normalize_proxies = validation.boolean(given["normalize_proxies"], "normalize_proxies")
        if self.sub_centers > 1 and not self.normalize_proxies:
            raise ValueError(
                "Sub-centres are pooled by their cosines, so `normalize_proxies` must be True "
                f"with sub_centers > 1. Received: normalize_proxies=False, "
                f"sub_centers={self.sub_centers}"
            )
        margin_type = given["margin_type"]
        if margin_type is not None:
            margin_type = validation.one_of(margin_type, "margin_type", MARGIN_TYPES)
        self.margin_type = margin_type
        self.margin = _checked_margin(margin_type, given["margin"])
        self.margin_warmup_steps = validation.positive_int(
            margin_warmup_steps, "margin_warmup_steps", low=0
        )
        if self.margin_warmup_steps and margin_type not in ADDITIVE:
            raise ValueError(
                "`margin_warmup_steps` needs an additive margin (`margin_type` "
                f"'additive_angular' or 'additive_cosine'). Received: margin_type={margin_type!r},"
                f" margin_warmup_steps={margin_warmup_steps!r}"
            )
        self.learning_rate_multiplier = validation.positive_real(
            learning_rate_multiplier, "learning_rate_multiplier"
        )
        self.proxies_initializer = validation.initializer(
            proxies_initializer, "proxies_initializer"
        )
        self.proxies_regularizer = validation.regularizer(
            proxies_regularizer, "proxies_regularizer"
        )
        self.meta_class_seed = meta_classes.checked_seed(meta_class_seed, self.loss)
        self.meta_class_generator = meta_classes.generator(self.loss, self.meta_class_seed)
        if margin_type in ADDITIVE:
            self.margin_variable = self.add_weight(
                name="margin", shape=(), initializer=keras.initializers.Constant(self.margin),
                dtype="float32", trainable=False, autocast=False,
            )  # fmt: skip
        if self.margin_warmup_steps:
            self.warmup_step = self.add_weight(
                name="warmup_step", shape=(), initializer="zeros", dtype="float32",
                trainable=False, autocast=False,
            )  # fmt: skip

    def build(self, input_shape):
        embedding_shape = input_shape[0] if validation.is_shape_pair(input_shape) else input_shape
        dim = embedding_shape[-1]
        if dim is None:
            raise ValueError(
                "The last dimension of the embeddings must be known. Received: "
                f"embeddings.shape={tuple(embedding_shape)}"
            )
        multiplier = self.learning_rate_multiplier
        initializer = self.proxies_initializer

        def kernel_initializer(shape, dtype=None):
            return initializer(shape, dtype=dtype) / multiplier

        self.kernel = self.add_weight(
            name="kernel",
            shape=(self.num_classes * self.sub_centers, dim),
            initializer=kernel_initializer,
            regularizer=self._proxies_penalty if self.proxies_regularizer else None,
            dtype="float32",
            autocast=False,
        )

    @property
    def proxies(self):
        """The `[C * K, D]` proxies, `learning_rate_multiplier * kernel` (float32 tensor)."""
        return self._proxies()

    def _proxies(self, kernel=None):
        kernel = self.kernel.value if kernel is None else kernel
        if self.learning_rate_multiplier == 1.0:
            return kernel
        # The value is r * kernel; the kernel's gradient is the proxies' gradient.
        return kernel + ops.stop_gradient(kernel * (self.learning_rate_multiplier - 1.0))

    def _proxies_penalty(self, kernel):
        """The regularizer's term of the proxies that `kernel` holds (Keras passes the kernel
        variable, or its value in a stateless step)."""
        return self.proxies_regularizer(self._proxies(kernel))

    def set_proxies(self, proxies):
        """Sets the proxies to `proxies` `[C * K, D]` (building the layer if needed)."""
        proxies = ops.convert_to_tensor(proxies, "float32")
        if not self.built:
            self.build((None, proxies.shape[-1]))
        self.kernel.assign(proxies / self.learning_rate_multiplier)

    def current_margin(self):
        """The margin the next training call applies (an additive margin's warm-up included),
        as a float32 scalar tensor; the configured `margin` for a multiplicative one."""
        if self.margin_type not in ADDITIVE:
            return ops.convert_to_tensor(float(self.margin or 0.0), "float32")
        margin = self.margin_variable.value
        if self.margin_warmup_steps:
            progress = ops.minimum(self.warmup_step.value / self.margin_warmup_steps, 1.0)
            margin = margin * progress
        return margin

    def call(self, inputs, training=None):
        embeddings, labels = inputs if isinstance(inputs, (list, tuple)) else (inputs, None)
        if self.loss is None:
            return self.logits(embeddings, labels, training=training)
        if meta_classes.takes_proxies(self.loss):
            pair = self._embeddings_and_proxies(embeddings)
            if labels is not None or training is True:
                self.add_reduced_loss(self.loss, self._proxies_loss(pair, labels))
            return self._logits_of(*pair).logits
        class_logits, labels = self._class_logits(embeddings, labels)
        if labels is not None:
            with_margin = self._with_margin(class_logits, labels, training is not False)
            self.add_reduced_loss(self.loss, self.loss.call(labels, with_margin))
            self._advance_warmup(training)
        return class_logits.logits

    def logits(self, embeddings, labels=None, training=None):
        """The `[B, C]` logits with the margin where it applies: what calling the layer
        returns without a `loss`, and what its `loss` takes.

        Args:
            embeddings: `[B, D]` embeddings.
            labels: Optional `[B]` (or `[B, 1]`) integer class ids. With a margin, the margin
                applies to their class unless `training=False`. Defaults to `None`.
            training: `False` drops the margin; `True` also advances the margin warm-up.
                Defaults to `None`.

        Returns:
            `[B, C]` logits: `float32` for half-precision embeddings, else their dtype.
        """
        class_logits, labels = self._class_logits(embeddings, labels)
        if labels is None:
            return class_logits.logits
        logits = self._with_margin(class_logits, labels, training is not False)
        self._advance_warmup(training)
        return logits

    def loss_values(self, embeddings, labels):
        """The `[B]` per-example values of the layer's `loss` on a batch, with the margin a
        training call applies now (the warm-up is not advanced): what the layer reduces and
        adds in training. For a loss on the proxies, `labels` are the meta classes (`None`:
        drawn from the layer's seed generator, which advances).

        Raises:
            ValueError: if the layer has no `loss`.
        """
        if self.loss is None:
            raise ValueError(
                "`loss_values` needs a layer built with a loss, for example "
                "`ClassProxies(num_classes, loss=kml.ArcFaceLoss())`. Received: loss=None"
            )
        if meta_classes.takes_proxies(self.loss):
            return self._proxies_loss(self._embeddings_and_proxies(embeddings), labels)
        class_logits, labels = self._class_logits(embeddings, labels)
        return self.loss.call(labels, self._with_margin(class_logits, labels, True))

    def _proxies_loss(self, pair, meta):
        """`[B]` values of a loss on `pair = (embeddings, proxies)` (meta classes `None`:
        drawn)."""
        return self.loss.call(meta, pair, seed=self.meta_class_generator)

    def _embeddings_and_proxies(self, embeddings):
        """`(embeddings, proxies)` checked, in the compute dtype (float32 for half precision)."""
        x = ops.convert_to_tensor(embeddings)
        validation.rank(x, 2, "[batch, dim] embeddings", "embeddings")
        x = ops.cast(x, compute_dtype(x))
        proxies = ops.cast(self._proxies(), x.dtype)
        check_features(x, proxies)
        return x, proxies

    def _class_logits(self, embeddings, labels):
        """`(ClassLogits, checked labels or None)` of a batch."""
        x, proxies = self._embeddings_and_proxies(embeddings)
        if labels is not None:
            labels = checked_labels(labels, x, self.num_classes, "labels", "embeddings")
        return self._logits_of(x, proxies), labels

    def _logits_of(self, x, proxies):
        """The `ClassLogits` of checked embeddings and proxies."""
        validation.finite(x, "embeddings")
        return ClassLogits(
            x, proxies, 1.0, self.sub_centers, self.sub_center_pooling, self.gamma,
            self.normalize_embeddings, self.normalize_proxies,
        )  # fmt: skip

    def _with_margin(self, class_logits, labels, training):
        if self.margin_type is None or not training:
            return class_logits.logits
        margin = self.margin if self.margin_type not in ADDITIVE else self.current_margin()
        targets = Targets(labels, self.num_classes)
        return class_logits.with_margin(targets, self.margin_type, margin)

    def _advance_warmup(self, training):
        if self.margin_warmup_steps and training is True:
            step = ops.minimum(self.warmup_step.value + 1.0, float(self.margin_warmup_steps))
            self.warmup_step.assign(step)

    def save_own_variables(self, store):
        super().save_own_variables(store)
        meta_classes.save(self.meta_class_generator, store)

    def load_own_variables(self, store):
        meta_classes.load(self.meta_class_generator, store, super().load_own_variables)

    def compute_output_shape(self, input_shape):
        embedding_shape = input_shape[0] if validation.is_shape_pair(input_shape) else input_shape
        return (embedding_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "sub_centers": self.sub_centers,
            "sub_center_pooling": self.sub_center_pooling,
            "gamma": self.gamma,
            "normalize_embeddings": self.normalize_embeddings,
            "normalize_proxies": self.normalize_proxies,
            "margin_type": self.margin_type,
            "margin": self.margin,
            "margin_warmup_steps": self.margin_warmup_steps,
            "learning_rate_multiplier": self.learning_rate_multiplier,
            "proxies_initializer": keras.initializers.serialize(self.proxies_initializer),
            "proxies_regularizer": keras.regularizers.serialize(self.proxies_regularizer),
            "loss": serialized(self.loss),
            "meta_class_seed": self.meta_class_seed,
        }


def _checked_loss(loss):
    if loss is not None and not (
        isinstance(loss, ClassLogitsLoss) and isinstance(loss, keras.losses.Loss)
    ):
        raise TypeError(
            "`loss` must be a proxy or margin-softmax loss class of keras_metric_losses (for "
            f"example `kml.ArcFaceLoss()`), or None. Received: loss={loss!r}"
        )
    return loss


def _declared_by(loss, given):
    """The logits arguments that `loss` declares; a given one that is not the layer's default
    must be the loss's."""
    declared = loss.layer_logits()
    for name, value in given.items():
        default, expected = LOGITS_ARGUMENTS[name], declared[name]
        if not (_same(value, default) or _same(value, expected)):
            raise ValueError(
                f"`{name}={value!r}` conflicts with loss={type(loss).__name__}, which declares "
                f"{name}={expected!r}: the loss declares the logits it takes, so leave `{name}` "
                f"out (or set it on the loss). Received: {name}={value!r} and "
                f"loss={type(loss).__name__}"
            )
    return declared


def _same(value, expected):
    """Whether a layer argument equals a declared value (a flag only another flag)."""
    if isinstance(value, (bool, np.bool_)) or isinstance(expected, bool):
        return isinstance(value, (bool, np.bool_)) and value == expected
    return isinstance(value, (numbers.Number, str, type(None))) and value == expected


def _checked_margin(margin_type, margin):
    """The margin as configured: PML's default for the type when `None`."""
    if margin_type is None:
        if margin not in (None, 0, 0.0) or isinstance(margin, bool):
            raise ValueError(
                "`margin` needs a `margin_type` (the layer applies no margin without one). "
                f"Received: margin={margin!r}, margin_type=None"
            )
        return None
    default, check = MARGINS[margin_type]
    return default if margin is None else check(margin, "margin")
