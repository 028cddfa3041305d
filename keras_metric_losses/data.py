"""Class-balanced batches: `classes_per_batch` classes x `samples_per_class` samples each.

Pair, triplet and contrastive losses learn only from anchors that have a positive in the batch.
A plain shuffled batch of 64 drawn from 256 classes usually has none: the loss is 0 and nothing
is learnt. `ClassBalancedSampler` builds every batch from `classes_per_batch` distinct classes
with `samples_per_class` samples each, so every anchor has `samples_per_class - 1` positives.

It is a `keras.utils.PyDataset`, so `model.fit(sampler, epochs=...)` takes it on every backend;
`ClassBalancedSampler.as_tf_dataset()` yields the same batches as a `tf.data.Dataset` where
TensorFlow is installed. It replaces TensorFlow Similarity's `MultiShotMemorySampler` and
PyTorch Metric Learning's `MPerClassSampler` (see the migration page).

The rule, per batch (batch `i` of epoch `e`):

1. `classes_per_batch` distinct classes are drawn uniformly among the classes of `y`;
2. from each, `samples_per_class` distinct samples are drawn uniformly. A class with fewer
   samples than that contributes all of them, then copies drawn uniformly with replacement from
   its own samples to fill its share (PML's `MPerClassSampler` rule), so every batch has
   `classes_per_batch * samples_per_class` rows. A class of one sample then only has copies of
   itself as positives;
3. the batch is shuffled, so its classes are interleaved.

The draw of batch `i` in epoch `e` depends only on `(seed, e, i)`: the batches are the same in
any order, with workers or multiprocessing, and rerun for rerun under the same seed. Each
epoch (`on_epoch_end`) draws new batches. Batches are drawn independently, so an epoch does
not visit every sample exactly once; `steps_per_epoch` defaults to the number of batches that
one pass over the data would take.
"""

import math
import numbers

import keras
import numpy as np

from keras_metric_losses import validation

__all__ = ["ClassBalancedSampler"]


def _rows(x):
    """Number of rows of an array or of each array of a (nested) list, tuple or dict."""
    leaves = keras.tree.flatten(x)
    if not leaves:
        raise ValueError(f"`x` must hold at least one array. Received: x={x!r}")
    counts = {len(leaf) for leaf in leaves}
    if len(counts) != 1:
        raise ValueError(
            "Every array of `x` must have the same number of rows. Received: row counts "
            f"{sorted(counts)}"
        )
    return counts.pop()


class ClassBalancedSampler(keras.utils.PyDataset):
    """Batches of `classes_per_batch` classes x `samples_per_class` samples, for `model.fit`.

    A `keras.utils.PyDataset` (every backend) over in-memory data. The draw rule (including
    classes with fewer samples than `samples_per_class`) is in the module docstring
    (`keras_metric_losses.data`).

    Args:
        x: Inputs: an array with one row per sample (NumPy, or anything `numpy.asarray` takes),
            or a list, tuple or dict of such arrays (a model with several inputs).
        y: `[N]` (or `[N, 1]`) class labels, one per row of `x`: integers, or any values NumPy
            can sort (strings too; turn them into integer ids before they reach a loss, see the
            docs' bad-inputs section).
        classes_per_batch: Number of distinct classes in a batch. At most the number of classes.
        samples_per_class: Number of samples of each class in a batch. Defaults to `2`.
        steps_per_epoch: Number of batches in an epoch. Defaults to `None`: one pass's worth,
            `ceil(N / (classes_per_batch * samples_per_class))`.
        seed: A non-negative int: the same batches on every run. Defaults to `None`: a random
            seed (kept in `self.seed`).
        **kwargs: `keras.utils.PyDataset` arguments (`workers`, `use_multiprocessing`,
            `max_queue_size`).

    Raises:
        ValueError: if `y` does not have one label per row of `x`, a count is not a positive
            int, `seed` is not a non-negative int or `None`, or `classes_per_batch` exceeds the
            number of classes.

    Example:

    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> x = np.arange(20, dtype="float32").reshape(10, 2)
    >>> y = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 3])
    >>> batches = kml.data.ClassBalancedSampler(
    ...     x, y, classes_per_batch=2, samples_per_class=3, seed=0)
    >>> len(batches), batches.batch_size
    (2, 6)
    >>> x_batch, y_batch = batches[0]
    >>> np.bincount(y_batch, minlength=4)  # two classes, three samples each
    array([0, 0, 3, 3])
    >>> x_batch[y_batch == 3, 0]  # class 3 has one sample: it fills its share with copies
    array([18., 18., 18.], dtype=float32)

    Then `model.fit(batches, epochs=10)`.

    Reference: Hermans et al., "In Defense of the Triplet Loss for Person Re-Identification",
    2017 (P x K batches); TensorFlow Similarity's `MultiShotMemorySampler`; PyTorch Metric
    Learning's `MPerClassSampler`.
    """

    def __init__(
        self,
        x,
        y,
        classes_per_batch,
        samples_per_class=2,
        *,
        steps_per_epoch=None,
        seed=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.x = keras.tree.map_structure(np.asarray, x)
        y = np.asarray(y)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        num_rows = _rows(self.x)
        if y.ndim != 1 or len(y) != num_rows:
            raise ValueError(
                "`y` must hold one class label per row of `x`, of shape [N] or [N, 1]. "
                f"Received: y.shape={y.shape} for {num_rows} rows of x"
            )
        self.y = y
        self.classes_per_batch = validation.positive_int(classes_per_batch, "classes_per_batch")
        self.samples_per_class = validation.positive_int(samples_per_class, "samples_per_class")
        self.classes, inverse = np.unique(y, return_inverse=True)
        if self.classes_per_batch > len(self.classes):
            raise ValueError(
                f"`classes_per_batch` can be at most the number of classes in `y` "
                f"({len(self.classes)}). Received: classes_per_batch={classes_per_batch}"
            )
        order = np.argsort(inverse, kind="stable")
        self._members = np.split(order, np.cumsum(np.bincount(inverse))[:-1])
        self.batch_size = self.classes_per_batch * self.samples_per_class
        if steps_per_epoch is None:
            steps_per_epoch = max(1, math.ceil(num_rows / self.batch_size))
        self.steps_per_epoch = validation.positive_int(steps_per_epoch, "steps_per_epoch")
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
        if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"`seed` must be a non-negative int or None. Received: seed={seed!r}")
        self.seed = int(seed)
        self.epoch = 0

    def __len__(self):
        return self.steps_per_epoch

    def batch_indices(self, index, epoch=None):
        """`[batch_size]` row indices of batch `index` of `epoch` (the current one by default)."""
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, epoch, index])
        picked = rng.choice(len(self.classes), self.classes_per_batch, replace=False)
        rows = []
        for label in picked:
            members = self._members[label]
            k = self.samples_per_class
            if len(members) >= k:
                rows.append(rng.choice(members, k, replace=False))
            else:
                extra = rng.choice(members, k - len(members), replace=True)
                rows.append(np.concatenate([members, extra]))
        return rng.permutation(np.concatenate(rows))

    def __getitem__(self, index):
        if not 0 <= index < self.steps_per_epoch:
            raise IndexError(f"Batch index out of range [0, {self.steps_per_epoch}): {index}")
        rows = self.batch_indices(index)
        x = keras.tree.map_structure(lambda a: a[rows], self.x)
        return x, self.y[rows]

    def on_epoch_end(self):
        self.epoch += 1

    def as_tf_dataset(self, epochs=None):
        """The same batches as a `tf.data.Dataset` (needs TensorFlow, on any Keras backend).

        Iterating over the dataset once gives one epoch (`steps_per_epoch` batches); each new
        iteration (`model.fit` starts one per epoch) draws the next epoch's batches, in the
        same sequence as the `PyDataset`, starting from this sampler's current epoch.

        Args:
            epochs: Number of epochs in one iteration. Defaults to `None`: one epoch per
                iteration, as `model.fit` expects.

        Returns:
            A `tf.data.Dataset` of `(x, y)` batches.

        Raises:
            ImportError: if TensorFlow is not installed.
        """
        try:
            import tensorflow as tf
        except ImportError as error:
            raise ImportError(
                "`ClassBalancedSampler.as_tf_dataset()` needs TensorFlow "
                "(`pip install tensorflow`); on other backends pass the "
                "sampler itself to `model.fit`."
            ) from error
        per_iteration = 1 if epochs is None else validation.positive_int(epochs, "epochs")
        start = {"epoch": self.epoch}

        def indices():
            first = start["epoch"]
            start["epoch"] += per_iteration
            for epoch in range(first, first + per_iteration):
                for index in range(self.steps_per_epoch):
                    yield self.batch_indices(index, epoch)

        rows = tf.data.Dataset.from_generator(
            indices, output_signature=tf.TensorSpec((self.batch_size,), tf.int64)
        )
        x = keras.tree.map_structure(tf.constant, self.x)
        y = tf.constant(self.y)
        return rows.map(
            lambda r: (keras.tree.map_structure(lambda a: tf.gather(a, r), x), tf.gather(y, r))
        ).prefetch(tf.data.AUTOTUNE)
