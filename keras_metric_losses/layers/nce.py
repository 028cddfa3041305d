"""A layer that owns the class embeddings of a sampled loss and returns its logits."""

import numbers

import keras
import numpy as np

from keras_metric_losses import distributed, validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import compute_dtype
from keras_metric_losses.sampled_logits import sampled_logits


@export
class NCE(StrictConfig, keras.layers.Layer):
    """Class embeddings and sampled logits for `NCELoss` / `SampledSoftmaxLoss`.

    Owns the trainable `kernel` `[num_classes, D]` and `bias` `[num_classes]` (the `weights` and
    `biases` of `nce_loss`), so the class embeddings train with `model.fit`.

    - `layer([embeddings, labels])` (training): draws `num_sampled` classes with the unique
      log-uniform sampler (`kml.log_uniform_candidate_sampler`, seeded by the layer's
      `keras.random.SeedGenerator`, so a new sample every step, also compiled) and returns the
      logits `[B, num_true + num_sampled]`: true classes first, then the sampled ones, each
      `x . w_k + b_k - log(expected_count_k)`, accidental hits removed if asked. Feed them to
      `kml.NCELoss()` or `kml.SampledSoftmaxLoss()` with the labels as `y_true`.
    - `layer(embeddings)` (evaluation, inference): the full logits `embeddings @ kernel.T + bias`
      `[B, num_classes]`.

    Logits are computed in float32 for half-precision inputs and returned in float32. Per step the
    sampler costs O(`max(256, 4 S) + K^2`) with `K <= 4 S` tail draws, independent of
    `num_classes` once `num_classes > max(256, 4 S) + 4 S` (see `log_uniform_candidate_sampler`);
    the logits only gather the `B * num_true + num_sampled` rows they need and never build
    `[B, num_classes]`. The gradient of `kernel` is nonzero only on those rows.

    Under data parallelism (`tf.distribute`, `torch.distributed`) each replica draws its own
    `num_sampled` classes for its `b` examples by default (its seed stream is folded with the
    replica id, see `kml.distributed.replica_seed`): `R` independent candidate sets per step.
    With `cross_replica=True` every replica draws replica 0's set, so the global step equals one
    device on the global batch with that set. Under JAX `keras.distribution.DataParallel` the
    step is one program over the global batch: one set per step whatever `cross_replica` says.
    See the "Distributed training" page.

    Label ids out of `[0, num_classes)` are clipped to the nearest class, as in `nce_loss`
    (finite logits inside a compiled `model.fit`); with value checks on
    (`kml.config.enable_value_checks()`) concrete ones raise a `ValueError`.

    Args:
        num_classes: Number of classes `C` (a positive Python or NumPy int).
        num_sampled: Number of sampled classes per step, shared by the batch (at most `C`).
        num_true: Number of true classes per example (last dimension of `labels`). Defaults
            to `1`.
        remove_accidental_hits: Remove sampled classes equal to a true class of the row.
            Defaults to `False` (as `nce_loss`; `sampled_softmax_loss` uses `True`).
        seed: Int seed of the layer's `keras.random.SeedGenerator`. Defaults to `None`.
        cross_replica: Draw one candidate set per global step, shared by all replicas, instead
            of one per replica (`tf.distribute`, `torch.distributed`). Defaults to `False`.
        kernel_initializer: Initializer of `kernel`. Defaults to `"glorot_uniform"`.
        bias_initializer: Initializer of `bias`. Defaults to `"zeros"`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Raises:
        ValueError: if a count is not a positive int or `num_sampled > num_classes`.
        TypeError: if a flag is not a bool or `seed` is not an int or `None`.

    Example: a word2vec-style model over 100 classes that trains with `NCELoss`, then scores
    every class.

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> words, context = keras.Input((), dtype="int32"), keras.Input((1,), dtype="int32")
    >>> embedded = keras.layers.Embedding(100, 8)(words)
    >>> nce = kml.layers.NCE(num_classes=100, num_sampled=5, seed=0)
    >>> model = keras.Model([words, context], nce([embedded, context]))
    >>> model.compile(optimizer="sgd", loss=kml.NCELoss())
    >>> x = np.arange(32) % 100
    >>> y = (x[:, None] + 1) % 100
    >>> history = model.fit([x, y], y, batch_size=8, epochs=2, verbose=0)
    >>> len(history.history["loss"]), bool(np.isfinite(history.history["loss"]).all())
    (2, True)
    >>> scores = keras.Model(words, nce(embedded)).predict(x, verbose=0)  # [B, num_classes]
    >>> scores.shape
    (32, 100)
    """

    def __init__(
        self,
        num_classes,
        num_sampled,
        num_true=1,
        remove_accidental_hits=False,
        seed=None,
        cross_replica=False,
        kernel_initializer="glorot_uniform",
        bias_initializer="zeros",
        **kwargs,
    ):
        super().__init__(**kwargs)
        num_classes = validation.positive_int(num_classes, "num_classes")
        num_sampled = validation.positive_int(num_sampled, "num_sampled")
        num_true = validation.positive_int(num_true, "num_true")
        if num_sampled > num_classes:
            raise ValueError(
                "`num_sampled` distinct classes are drawn, so it can be at most `num_classes`. "
                f"Received: num_sampled={num_sampled}, num_classes={num_classes}"
            )
        if seed is not None and (
            isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral)
        ):
            raise TypeError(f"`seed` must be an int or None. Received: seed={seed!r}")
        seed = None if seed is None else int(seed)
        self.num_classes = num_classes
        self.num_sampled = num_sampled
        self.num_true = num_true
        self.remove_accidental_hits = validation.boolean(
            remove_accidental_hits, "remove_accidental_hits"
        )
        self.seed = seed
        self.cross_replica = validation.boolean(cross_replica, "cross_replica")
        self.kernel_initializer = validation.initializer(kernel_initializer, "kernel_initializer")
        self.bias_initializer = validation.initializer(bias_initializer, "bias_initializer")
        self.seed_generator = keras.random.SeedGenerator(seed)

    def build(self, input_shape):
        embedding_shape = input_shape[0] if validation.is_shape_pair(input_shape) else input_shape
        dim = embedding_shape[-1]
        if dim is None:
            raise ValueError(
                "The last dimension of the embeddings must be known. Received: "
                f"embeddings.shape={tuple(embedding_shape)}"
            )
        self.kernel = self.add_weight(
            name="kernel", shape=(self.num_classes, dim), initializer=self.kernel_initializer
        )
        self.bias = self.add_weight(
            name="bias", shape=(self.num_classes,), initializer=self.bias_initializer
        )

    def call(self, inputs):
        if isinstance(inputs, (list, tuple)):
            embeddings, labels = inputs
            return self.sampled_logits(embeddings, labels)
        return self.full_logits(inputs)

    def full_logits(self, embeddings):
        """Logits of every class, `[B, num_classes]`, in at least float32."""
        x = ops.convert_to_tensor(embeddings)
        dtype = compute_dtype(x)
        kernel, bias = ops.cast(self.kernel.value, dtype), ops.cast(self.bias.value, dtype)
        return ops.matmul(ops.cast(x, dtype), ops.transpose(kernel)) + bias

    def sampled_logits(self, embeddings, labels, sampled_values=None):
        """Sampled logits `[B, num_true + num_sampled]`; `sampled_values` overrides the draw."""
        return sampled_logits(
            self.kernel.value,
            self.bias.value,
            labels,
            embeddings,
            num_sampled=self.num_sampled,
            num_classes=self.num_classes,
            num_true=self.num_true,
            sampled_values=sampled_values,
            remove_accidental_hits=self.remove_accidental_hits,
            seed=distributed.replica_seed(self.seed_generator, self.cross_replica),
        )

    def compute_output_shape(self, input_shape):
        if validation.is_shape_pair(input_shape):
            return (input_shape[0][0], self.num_true + self.num_sampled)
        return (input_shape[0], self.num_classes)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "num_sampled": self.num_sampled,
            "num_true": self.num_true,
            "remove_accidental_hits": self.remove_accidental_hits,
            "seed": self.seed,
            "cross_replica": self.cross_replica,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }
