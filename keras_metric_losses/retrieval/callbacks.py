"""`RetrievalEvaluation`: a callback that scores the retrieval of a held-out query set at the end
of an epoch and writes the values into the epoch's `logs`."""

import keras

from keras_metric_losses import distances, validation
from keras_metric_losses.api import export
from keras_metric_losses.retrieval import evaluation


@export
class RetrievalEvaluation(keras.callbacks.Callback):
    """Scores the retrieval of a query set (against a reference set, or itself) with the
    model's embeddings at the end of every `every_n_epochs`-th epoch, as `evaluate` does, and
    writes `logs[prefix + metric]`.

    For each query with `R > 0` relevant references, over its `k` nearest (see
    `get_accuracy`):

    ```
    precision_at_1 = rel_1,   MAP@R = sum_{j <= min(R, k)} rel_j P@j / R,   ...
    ```

    Keras passes one `logs` dict to the callbacks in their order, so list this callback
    **before** those that read the values (`EarlyStopping`, `ModelCheckpoint`, `CSVLogger`,
    `TensorBoard`, `ReduceLROnPlateau`); the `History` and the progress bar come last anyway.
    On the epochs it skips (`every_n_epochs > 1`) the keys are absent, as Keras' own
    `validation_freq`.

    Args:
        query: The query inputs: arrays with `query_labels`, or a re-iterable collection of
            `(x, y)` batches (`tf.data.Dataset`, `keras.utils.PyDataset`, a list; not a
            generator, used up after one epoch) with `query_labels=None`.
        query_labels: `[Nq]` class ids or `[Nq, C]` multi-hot rows of array inputs.
        reference: The reference inputs, as `query`. Defaults to `None`: the queries are their
            own reference, each query's own row left out.
        reference_labels: The references' labels, for array inputs.
        metrics: Names from `pml.KNN_METRICS`. Defaults to all of them.
        k: Neighbours per query: `None` (default, every reference), `"max_bin_count"` or a
            positive int.
        distance: How neighbours are ranked. Defaults to `"cosine_similarity"`.
        embedding_model: What embeds the data: `None` (default) for the trained model itself,
            or a Keras model (or callable `fn(x) -> [b, D]`) sharing its layers, for a model
            whose output is not the embedding (a `CrossBatchMemory` or `ClassProxies` head).
        batch_size: Rows per `predict` batch for array inputs. Defaults to `None` (32).
        chunk_size: Queries and references per block of the search: the largest matrix is
            `[chunk_size, chunk_size]`, or `[chunk_size, N_ref]` for a `k` above `chunk_size / 4`.
            Defaults to 4096 (in the second case as many queries as fit `2**24` distances).
        jit_compile: How each block runs: `"auto"` (default) as `model.fit` runs by default
            on a CPU (`jax.jit`, `tf.function`, eager torch), `True` with the backend's compiler
            (`jax.jit`, XLA, `torch.compile`), `False` eagerly.
        prefix: Prepended to the metric names in `logs`. Defaults to `"val_"`.
        every_n_epochs: Evaluate after every `every_n_epochs`-th epoch. Defaults to 1.

    Returns:
        Nothing; at the end of an evaluated epoch `logs` gains `{prefix + metric: float}`,
        which `self.scores` also holds.

    Raises:
        ValueError: for an unknown metric, a bad `k`, `batch_size`, `every_n_epochs` or
            `distance`, `reference_labels` without `reference`; at the end of an epoch, what
            `evaluate` rejects.
        TypeError: for a `prefix` that is not a string or an `embedding_model` that is not
            callable.

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import retrieval
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.3, 1.0]])
    >>> callback = retrieval.RetrievalEvaluation(x, np.array([0, 0, 1, 0]))
    >>> callback.set_model(model)
    >>> logs = {}
    >>> callback.on_epoch_end(0, logs)
    >>> round(logs["val_precision_at_1"], 4)
    0.6667

    With `fit` (the callback first):

    ```python
    model.fit(x, y, epochs=50, validation_data=(x_val, y_val), callbacks=[
        kml.retrieval.RetrievalEvaluation(x_val, y_val, k="max_bin_count"),
        keras.callbacks.EarlyStopping("val_mean_average_precision_at_r", mode="max"),
    ])
    ```

    Reference: pytorch-metric-learning's `HookContainer` / `testers` (retrieval validation
    at the end of an epoch); Musgrave, Belongie and Lim, "A Metric Learning Reality Check",
    ECCV 2020.
    """

    def __init__(
        self,
        query,
        query_labels=None,
        reference=None,
        reference_labels=None,
        *,
        metrics=None,
        k=None,
        distance="cosine_similarity",
        embedding_model=None,
        batch_size=None,
        chunk_size=None,
        jit_compile="auto",
        prefix="val_",
        every_n_epochs=1,
    ):
        super().__init__()
        options = (metrics, k, distance, batch_size, chunk_size, jit_compile)
        self.options = evaluation.check_options(*options)
        evaluation.check_reference(reference, reference_labels)
        if embedding_model is not None and not callable(embedding_model):
            raise TypeError(
                "`embedding_model` must be None, a Keras model or a callable. "
                f"Received: embedding_model={embedding_model!r}"
            )
        if not isinstance(prefix, str):
            raise TypeError(f"`prefix` must be a string. Received: prefix={prefix!r}")
        self.data = (query, query_labels, reference, reference_labels)
        self.embedding_model = embedding_model
        self.prefix = prefix
        self.every_n_epochs = validation.positive_int(every_n_epochs, "every_n_epochs")
        self.scores = {}

    def on_epoch_end(self, epoch, logs=None):
        if (epoch + 1) % self.every_n_epochs:
            return
        model = self.model if self.embedding_model is None else self.embedding_model
        options = dict(self.options)
        batch_size = options.pop("batch_size")
        embedded = evaluation.embed_sets(model, *self.data, batch_size, verbose=0)
        scores = evaluation.scores(embedded, verbose=0, **options)
        self.scores = {self.prefix + name: value for name, value in scores.items()}
        if logs is not None:
            logs.update(self.scores)

    def get_config(self):
        """The settings (not the data nor `embedding_model`), for records of a run: Keras
        saves no callbacks with a model, so there is no `from_config`."""
        options = self.options
        return {
            **options,
            "metrics": list(options["metrics"]),
            "distance": distances.serialize(options["distance"]),
            "prefix": self.prefix,
            "every_n_epochs": self.every_n_epochs,
        }
