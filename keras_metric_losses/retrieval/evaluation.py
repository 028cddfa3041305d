"""`evaluate`: a model's embeddings of a query set (and a reference set), embedded batch by
batch, scored by `get_accuracy` with a progress bar over the steps of its search."""

import keras
import numpy as np

from keras_metric_losses import distances, validation
from keras_metric_losses.api import export
from keras_metric_losses.retrieval import knn, pml


def check_metrics(metrics):
    """`metrics` as a tuple of k-NN metric names (all of them for `None`).

    Raises:
        ValueError: for a string, an empty list or a name outside `pml.KNN_METRICS`.
    """
    if metrics is None:
        return pml.KNN_METRICS
    if isinstance(metrics, str) or not metrics or any(m not in pml.KNN_METRICS for m in metrics):
        raise ValueError(
            f"`metrics` must be a non-empty list of names from {list(pml.KNN_METRICS)}. "
            f"Received: metrics={metrics!r}"
        )
    return tuple(metrics)


def _host(x):
    return np.asarray(keras.ops.convert_to_numpy(x))


def _batches(data):
    """The `(x, y)` batches of a `keras.utils.PyDataset` or any iterable of tuples."""
    if isinstance(data, keras.utils.PyDataset):
        return (data[i] for i in range(len(data)))
    return iter(data)


def embed(model, data, labels, batch_size, verbose, name):
    """`(embeddings, labels)` as NumPy arrays: `model.predict(data)` of arrays, or the
    embedding of each `(x, y)` batch of an iterable when `labels` is `None`.

    `model` is a Keras model or a callable `fn(x) -> [b, D]`.

    Raises:
        ValueError: for arrays without labels.
    """
    if labels is None:
        if hasattr(data, "shape"):
            raise ValueError(
                f"`{name}` is an array: pass its labels too, or pass `{name}` as an iterable "
                f"of (x, y) batches. Received: {name}.shape={tuple(data.shape)} and no labels"
            )
        parts = [(_embed_batch(model, x), _host(y)) for x, y, *_ in _batches(data)]
        return np.concatenate([e for e, _ in parts]), np.concatenate([y for _, y in parts])
    if isinstance(model, keras.Model):
        return model.predict(data, batch_size=batch_size, verbose=verbose), labels
    size = len(keras.tree.flatten(data)[0])
    step = batch_size or 32
    parts = [
        _embed_batch(model, keras.tree.map_structure(lambda a, rows=rows: a[rows], data))
        for rows in (slice(i, i + step) for i in range(0, size, step))
    ]
    return np.concatenate(parts), labels


def _embed_batch(model, x):
    if isinstance(model, keras.Model):
        return _host(model.predict_on_batch(x))
    return _host(model(x))


def scores(embedded, *, verbose, **options):
    """`get_accuracy` of `(query, query_labels, reference, reference_labels)` NumPy arrays,
    with a `keras.utils.Progbar` over the steps of the search when `verbose`."""
    bar = None

    def progress(done, total):
        nonlocal bar
        bar = bar or keras.utils.Progbar(total, verbose=verbose, unit_name="block")
        bar.update(done)

    defaults = {"avg_of_avgs": False, "return_per_class": False, "ref_includes_query": None}
    return pml.accuracy(
        *embedded,
        cluster_labels=None,
        progress=progress if verbose else None,
        **defaults,
        **options,
    )


def check_reference(reference, reference_labels):
    """Raises ValueError for `reference_labels` without `reference`."""
    if reference is None and reference_labels is not None:
        raise ValueError(
            "`reference_labels` were given without `reference`. Received: reference=None and "
            f"reference_labels of type {type(reference_labels).__name__}"
        )


def embed_sets(model, query, query_labels, reference, reference_labels, batch_size, verbose):
    """`(query, query_labels, reference, reference_labels)` embedded (`None, None` for no
    reference).

    Raises:
        ValueError: for `reference_labels` without `reference`, arrays without labels.
    """
    check_reference(reference, reference_labels)
    embedded = embed(model, query, query_labels, batch_size, verbose, "query")
    if reference is None:
        return (*embedded, None, None)
    return embedded + embed(model, reference, reference_labels, batch_size, verbose, "reference")


def check_options(metrics, k, distance, batch_size, chunk_size, jit_compile):
    """The shared arguments of `evaluate` and `RetrievalEvaluation`, checked, as a dict."""
    batch_size = None if batch_size is None else validation.positive_int(batch_size, "batch_size")
    return {
        "metrics": check_metrics(metrics),
        "k": pml.check_k(k),
        "distance": distances.check(distance),
        "batch_size": batch_size,
        "chunk_size": knn.check_chunk_size(chunk_size),
        "jit_compile": knn.check_jit_compile(jit_compile),
    }


@export
def evaluate(
    model,
    query,
    query_labels=None,
    reference=None,
    reference_labels=None,
    *,
    metrics=None,
    k=None,
    distance="cosine_similarity",
    batch_size=None,
    chunk_size=None,
    jit_compile="auto",
    verbose=1,
):
    """Embeds a query set (and a reference set) with `model` and scores the retrieval with
    `get_accuracy`, in one call.

    The data is embedded batch by batch (`model.predict` for arrays, `predict_on_batch` for
    each batch of an iterable), then searched exactly, one block of queries and references at a
    time: for each query with `R > 0` relevant references, over its `k` nearest,

    ```
    precision_at_1 = rel_1,   r_precision = sum_{j <= min(R, k)} rel_j / min(R, k),
    MAP@R = sum_{j <= min(R, k)} rel_j P@j / R,   ...
    ```

    averaged over those queries (see `get_accuracy` for every metric).

    Args:
        model: A Keras model whose output is the embedding `[b, D]` (for a model with a loss
            head, the sub-model up to the embedding), or a callable `fn(x) -> [b, D]`.
        query: The query inputs: arrays (anything `model.predict` takes) with `query_labels`,
            or an iterable of `(x, y)` batches (a `tf.data.Dataset`, a
            `keras.utils.PyDataset`, a list, a generator) with `query_labels=None`.
        query_labels: `[Nq]` class ids or `[Nq, C]` multi-hot rows of array inputs.
        reference: The reference inputs, as `query`. Defaults to `None`: the queries are their
            own reference, each query's own row left out.
        reference_labels: The references' labels, for array inputs.
        metrics: Names from `pml.KNN_METRICS`. Defaults to all of them.
        k: Neighbours per query: `None` (default, every reference), `"max_bin_count"` or a
            positive int (see `get_accuracy`).
        distance: How neighbours are ranked (a name of `kml.distances.names()` or a
            registered callable). Defaults to `"cosine_similarity"`, as the in-batch metrics
            (`get_accuracy` itself defaults to PML's `"squared_euclidean"`).
        batch_size: Rows per `model.predict` batch for array inputs. Defaults to `None`
            (Keras' 32).
        chunk_size: Queries and references per block of the search: the largest matrix is
            `[chunk_size, chunk_size]`, or `[chunk_size, N_ref]` for a `k` above `chunk_size / 4`.
            Defaults to 4096 (in the second case as many queries as fit `2**24` distances).
        jit_compile: How each block runs: `"auto"` (default) as `model.fit` runs by default
            on a CPU (`jax.jit`, `tf.function`, eager torch), `True` with the backend's compiler
            (`jax.jit`, XLA, `torch.compile`), `False` eagerly.
        verbose: `0` silent, `1` or `2` a `keras.utils.Progbar` for the embedding (of array
            inputs) and one for the search. Defaults to `1`.

    Returns:
        The dict `{metric: float}` of `get_accuracy` on the embeddings.

    Raises:
        ValueError: for an unknown metric, a bad `k`, `batch_size` or `verbose` (an int
            >= 0), arrays without labels, `reference_labels` without `reference`, and what
            `get_accuracy` rejects (label shapes, dimensions).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> from keras_metric_losses import retrieval
    >>> model = keras.Sequential([keras.Input((2,)), keras.layers.Identity()])
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.3, 1.0]])
    >>> scores = retrieval.evaluate(model, x, np.array([0, 0, 1, 0]), verbose=0)
    >>> round(scores["precision_at_1"], 4)
    0.6667

    Reference: Musgrave, Belongie and Lim, "A Metric Learning Reality Check", ECCV 2020;
    pytorch-metric-learning 2.9's `AccuracyCalculator` and `testers`.
    """
    options = check_options(metrics, k, distance, batch_size, chunk_size, jit_compile)
    batch_size = options.pop("batch_size")
    verbose = validation.positive_int(verbose, "verbose", low=0)
    embedded = embed_sets(
        model, query, query_labels, reference, reference_labels, batch_size, verbose
    )
    return scores(embedded, verbose=verbose, **options)
