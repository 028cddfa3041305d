"""`kml.retrieval` in Keras training: the in-batch metric classes (against `get_accuracy` of the
batch, streamed, in `compile` + `fit`, saved), the `RetrievalEvaluation` callback and
`evaluate`, and their errors."""

import csv
import json
import pathlib
import subprocess
import sys

import keras
import numpy as np
import pytest
from support import compiled, numpy, python_block

import keras_metric_losses as kml
from keras_metric_losses import retrieval

CLASSES = {
    "precision_at_1": retrieval.PrecisionAt1,
    "r_precision": retrieval.RPrecision,
    "mean_average_precision_at_r": retrieval.MeanAveragePrecisionAtR,
    "mean_average_precision": retrieval.MeanAveragePrecision,
    "mean_reciprocal_rank": retrieval.MeanReciprocalRank,
}
PAGE = pathlib.Path(__file__).resolve().parent.parent / "docs" / "retrieval.md"
X4 = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.3, 1.0]], "float32")
Y4 = np.array([0, 0, 1, 0])


def grid(n=40, seed=0, classes=4):
    """Integer grid points (exact distances, many ties, some zero vectors) and class ids."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 3, (n, 3)).astype("float32"), rng.integers(0, classes, n)


def batch_value(cls, y, x, sample_weight=None, **kwargs):
    metric = cls(**kwargs)
    metric.update_state(y, x, sample_weight=sample_weight)
    return float(numpy(metric.result()))


def embedding_data(n=64, classes=4, dim=6, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return (rng.normal(size=(n, dim)) + 2 * np.eye(dim)[y]).astype("float32"), y


def embedding_model(dim=6, out=4):
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((dim,)), keras.layers.Dense(out)])


# --- the metric classes ------------------------------------------------------------------------


def test_hand_computed_batch():
    # Cosine: 0 <-> 1 closest; 3 is nearer 2 (class 1) than 1 and 0; 2 alone in class 1.
    expected = {
        "precision_at_1": 2 / 3,
        "r_precision": (1 + 1 + 1 / 2) / 3,
        "mean_average_precision_at_r": (1 + 1 + (1 / 2) / 2) / 3,
        "mean_average_precision": (1 + 1 + (1 / 2 + 2 / 3) / 2) / 3,
        "mean_reciprocal_rank": (1 + 1 + 1 / 2) / 3,
    }
    for name, cls in CLASSES.items():
        assert batch_value(cls, Y4, X4) == pytest.approx(expected[name], rel=1e-6), name
        assert cls().name == f"batch_{name}"


@pytest.mark.parametrize("distance", ["cosine_similarity", "squared_euclidean", "manhattan"])
def test_each_class_is_get_accuracy_of_the_batch(distance):
    x, y = grid()
    # Both eager: the cosines of the grid's collinear points tie only up to rounding, which a
    # compiled search's fusion may change (an ulp that reorders two neighbours).
    expected = retrieval.get_accuracy(x, y, k=None, distance=distance, jit_compile=False)
    for name, cls in CLASSES.items():
        value = batch_value(cls, y, x, distance=distance)
        assert value == pytest.approx(expected[name], rel=1e-6, abs=1e-7), name
    # [B, 1] labels are class ids; multi-hot labels are relevant when they share a class.
    column = batch_value(retrieval.MeanAveragePrecisionAtR, y[:, None], x, distance=distance)
    assert column == pytest.approx(expected["mean_average_precision_at_r"], rel=1e-6)
    hot = np.random.default_rng(1).integers(0, 2, (len(x), 5))
    multi = retrieval.get_accuracy(x, hot, k=None, distance=distance, jit_compile=False)
    for name, cls in CLASSES.items():
        assert batch_value(cls, hot, x, distance=distance) == pytest.approx(
            multi[name], rel=1e-6, abs=1e-7
        )


def test_in_batch_scores_compile():
    """`jax.jit`, `tf.function(jit_compile=True)`, `torch.compile` (traced by Dynamo)."""
    x, y = grid(n=12)
    for name in CLASSES:

        def fn(labels, embeddings, name=name):
            return retrieval.keras_metrics.in_batch_scores(name, labels, embeddings, "cosine")

        eager = [numpy(part) for part in fn(y, x)]
        traced = [numpy(part) for part in compiled(fn, trace_only=True)(y, x)]
        np.testing.assert_allclose(traced[0], eager[0], rtol=1e-6)
        np.testing.assert_array_equal(traced[1], eager[1])


def per_query(x, y, name, distance="cosine_similarity"):
    """Each query's value against the rest of its batch, from `get_accuracy` (the query moved
    to row 0 of the reference; continuous data, so no ties that the move could reorder);
    NaN for a query with no other example of its class."""
    values = []
    for i in range(len(x)):
        order = [i, *(j for j in range(len(x)) if j != i)]
        if np.sum(y == y[i]) == 1:
            values.append(np.nan)
            continue
        scores = retrieval.get_accuracy(
            x[i : i + 1],
            y[i : i + 1],
            x[order],
            y[order],
            ref_includes_query=True,
            k=None,
            metrics=[name],
            distance=distance,
        )
        values.append(scores[name])
    return np.array(values)


def test_streaming_over_two_batches_is_the_weighted_mean_of_the_queries():
    x, y = embedding_data(n=24, classes=5, seed=3)
    y[0] = 7  # alone in its batch: not scored
    weights = np.random.default_rng(0).uniform(0.5, 2.0, len(x)).astype("float32")
    for name, cls in CLASSES.items():
        metric = cls()
        values = []
        for rows in (slice(0, 10), slice(10, 24)):
            metric.update_state(y[rows], x[rows], sample_weight=weights[rows])
            values.append(per_query(x[rows], y[rows], name))
        values = np.concatenate(values)
        scored = ~np.isnan(values)
        expected = np.sum(weights[scored] * values[scored]) / np.sum(weights[scored])
        assert float(numpy(metric.result())) == pytest.approx(expected, rel=1e-5), name
        metric.reset_state()
        assert np.isnan(float(numpy(metric.result())))  # no query scored yet


def test_non_finite_embeddings_give_nan_as_get_accuracy():
    x = X4.copy()
    x[1, 0] = np.nan
    assert np.isnan(batch_value(retrieval.PrecisionAt1, Y4, x))
    assert np.isnan(retrieval.get_accuracy(x, Y4, distance="cosine_similarity")["precision_at_1"])


def test_compile_fit_and_evaluate_report_the_metrics():
    """In the backend's compiled step (`jax.jit`, `tf.function`, torch): a partial last batch,
    validation data, and `evaluate` of one batch equal to `get_accuracy` of `predict`."""
    x, y = embedding_data(n=50)
    model = embedding_model()
    model.compile(
        optimizer=keras.optimizers.Adam(0.01),
        loss=kml.MultiSimilarityLoss(),
        metrics=[cls() for cls in CLASSES.values()],
    )
    history = model.fit(
        x, y, batch_size=16, epochs=2, validation_data=(x[:20], y[:20]), verbose=0
    ).history
    for name in CLASSES:
        for key in (f"batch_{name}", f"val_batch_{name}"):
            assert len(history[key]) == 2 and all(0 <= v <= 1 for v in history[key]), key
    logs = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    embedded = numpy(model.predict(x, batch_size=len(x), verbose=0))
    expected = retrieval.get_accuracy(embedded, y, distance="cosine_similarity")
    for name in CLASSES:
        assert logs[f"batch_{name}"] == pytest.approx(expected[name], rel=1e-5), name


LOADER = """
import json, sys
import numpy as np
import keras, keras_metric_losses
model = keras.saving.load_model(sys.argv[1])
x, y = (np.array(v, dtype) for v, dtype in zip(json.loads(sys.argv[2]), ("float32", "int64")))
print(json.dumps(model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)))
"""


def test_config_round_trip_and_a_saved_model_loads_with_only_the_package_import(tmp_path):
    for cls in CLASSES.values():
        metric = cls(distance="L2", name="m", dtype="float32")
        config = metric.get_config()
        assert config == {"name": "m", "dtype": "float32", "distance": "euclidean"}
        restored = keras.saving.deserialize_keras_object(
            keras.saving.serialize_keras_object(metric)
        )
        assert type(restored) is cls and restored.get_config() == config
    with pytest.raises(TypeError, match="Unknown key"):
        retrieval.PrecisionAt1.from_config({"distance": "cosine", "k": 3})
    x, y = embedding_data(n=16)
    model = embedding_model()
    model.compile(loss=kml.MultiSimilarityLoss(), metrics=[retrieval.MeanAveragePrecisionAtR()])
    expected = model.evaluate(x, y, batch_size=len(x), verbose=0, return_dict=True)
    path = str(tmp_path / "model.keras")
    model.save(path)
    data = json.dumps([x.tolist(), y.tolist()])
    result = subprocess.run(
        [sys.executable, "-c", LOADER, path, data], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    key = "batch_mean_average_precision_at_r"
    assert loaded[key] == pytest.approx(expected[key], rel=1e-6)


# --- the callback ------------------------------------------------------------------------------


class Seen(keras.callbacks.Callback):
    """Records the `logs` a later callback sees."""

    def __init__(self):
        super().__init__()
        self.logs = []

    def on_epoch_end(self, epoch, logs=None):
        self.logs.append(dict(logs))


def test_callback_writes_val_values_that_early_stopping_and_csv_logger_see(tmp_path):
    x, y = embedding_data(n=48)
    x_val, y_val = embedding_data(n=30, seed=1)
    model = embedding_model()
    model.compile(optimizer=keras.optimizers.Adam(0.01), loss=kml.MultiSimilarityLoss())
    evaluation = retrieval.RetrievalEvaluation(x_val, y_val, k="max_bin_count")
    stopping = keras.callbacks.EarlyStopping(
        monitor="val_mean_average_precision_at_r", mode="max", patience=10
    )
    seen, path = Seen(), tmp_path / "log.csv"
    callbacks = [evaluation, stopping, keras.callbacks.CSVLogger(str(path)), seen]
    history = model.fit(x, y, batch_size=16, epochs=3, verbose=0, callbacks=callbacks).history
    keys = [f"val_{name}" for name in retrieval.pml.KNN_METRICS]
    values = history["val_mean_average_precision_at_r"]
    assert len(values) == 3 and stopping.best == max(values)
    assert all(set(keys) <= set(logs) for logs in seen.logs)
    with path.open() as file:
        rows = list(csv.DictReader(file))
    assert [float(row["val_mean_average_precision_at_r"]) for row in rows] == pytest.approx(values)
    embedded = model.predict(x_val, verbose=0)
    expected = retrieval.get_accuracy(
        embedded, y_val, k="max_bin_count", distance="cosine_similarity"
    )
    assert evaluation.scores == {f"val_{name}": value for name, value in expected.items()}


def test_callback_with_an_embedding_model_batches_a_reference_and_every_n_epochs():
    x, y = embedding_data(n=40)
    inputs = keras.Input((6,))
    embedding = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, keras.layers.Dense(3)(embedding))  # the output is not it
    encoder = keras.Model(inputs, embedding)
    model.compile(optimizer="sgd", loss="mse")
    batches = [(x[i : i + 8], y[i : i + 8]) for i in range(20, 40, 8)]  # the reference
    evaluation = retrieval.RetrievalEvaluation(
        x[:20],
        y[:20],
        batches,
        metrics=["precision_at_1"],
        embedding_model=encoder,
        prefix="ret_",
        every_n_epochs=2,
        distance="euclidean",
    )
    seen = Seen()
    model.fit(x, np.zeros((40, 3)), epochs=4, verbose=0, callbacks=[evaluation, seen])
    assert [sorted(k for k in logs if k.startswith("ret_")) for logs in seen.logs] == [
        [],
        ["ret_precision_at_1"],
        [],
        ["ret_precision_at_1"],
    ]
    expected = retrieval.get_accuracy(
        encoder.predict(x[:20], verbose=0),
        y[:20],
        encoder.predict(x[20:], verbose=0),
        y[20:],
        metrics=["precision_at_1"],
        distance="euclidean",
    )
    assert evaluation.scores["ret_precision_at_1"] == pytest.approx(expected["precision_at_1"])
    assert evaluation.get_config()["every_n_epochs"] == 2


# --- evaluate ----------------------------------------------------------------------------------


def test_evaluate_is_get_accuracy_of_the_embeddings(capsys):
    x, y = embedding_data(n=60)
    model = embedding_model()
    embedded = numpy(model.predict(x, verbose=0))
    expected = retrieval.get_accuracy(embedded, y, distance="cosine_similarity")
    result = retrieval.evaluate(model, x, y, batch_size=16, verbose=1, chunk_size=25)
    assert result == pytest.approx(expected, rel=1e-6)
    # The search's progress bar: 3 blocks of 25 queries against the 60 references.
    out = capsys.readouterr().out
    assert "3/3" in out and "/block" in out
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 60, 16)]
    assert retrieval.evaluate(model, batches, verbose=0) == pytest.approx(expected, rel=1e-6)
    gallery = retrieval.evaluate(
        model, x[:20], y[:20], x[20:], y[20:], metrics=["mean_reciprocal_rank"], k=3, verbose=0
    )
    assert gallery == pytest.approx(
        retrieval.get_accuracy(
            embedded[:20],
            y[:20],
            embedded[20:],
            y[20:],
            metrics=["mean_reciprocal_rank"],
            k=3,
            distance="cosine_similarity",
        )
    )

    # A plain callable embeds slices of the arrays.
    def double(inputs):
        return 2 * keras.ops.convert_to_tensor(inputs)

    assert retrieval.evaluate(double, x, y, batch_size=7, verbose=0) == pytest.approx(
        retrieval.get_accuracy(x, y, distance="cosine_similarity"), rel=1e-6
    )


# --- errors ------------------------------------------------------------------------------------


def test_bad_inputs_raise_clear_errors():
    x, y = embedding_data(n=8)
    model = embedding_model()
    with pytest.raises(ValueError, match=r"y_true\.shape=\(2, 2, 2\)"):
        retrieval.PrecisionAt1().update_state(np.zeros((2, 2, 2)), x[:2])
    with pytest.raises(ValueError, match=r"y_pred\.shape=\(8,\)"):
        retrieval.PrecisionAt1().update_state(y, x[:, 0])
    with pytest.raises(ValueError, match="same batch size"):
        retrieval.PrecisionAt1().update_state(y[:4], x)
    with pytest.raises(ValueError, match="distance='nope'"):
        retrieval.RPrecision(distance="nope")
    with pytest.raises(ValueError, match="k=0"):
        retrieval.evaluate(model, x, y, k=0)
    with pytest.raises(ValueError, match="k=0"):
        retrieval.RetrievalEvaluation(x, y, k=0)
    with pytest.raises(ValueError, match=r"metrics=\['nope'\]"):
        retrieval.evaluate(model, x, y, metrics=["nope"])
    with pytest.raises(ValueError, match=r"metrics=\['NMI'\]"):
        retrieval.RetrievalEvaluation(x, y, metrics=["NMI"])
    with pytest.raises(ValueError, match="pass its labels"):
        retrieval.evaluate(model, x, y, x)
    with pytest.raises(ValueError, match="reference_labels"):
        retrieval.RetrievalEvaluation(x, y, reference_labels=y)
    with pytest.raises(ValueError, match="every_n_epochs=0"):
        retrieval.RetrievalEvaluation(x, y, every_n_epochs=0)
    with pytest.raises(ValueError, match="verbose=-1"):
        retrieval.evaluate(model, x, y, verbose=-1)
    with pytest.raises(TypeError, match="embedding_model=3"):
        retrieval.RetrievalEvaluation(x, y, embedding_model=3)
    with pytest.raises(ValueError, match=r"query_labels\.shape"):
        retrieval.evaluate(model, x, y[:3], verbose=0)


def test_evaluate_takes_a_py_dataset():
    x, y = embedding_data(n=40)
    model = embedding_model()
    expected = retrieval.evaluate(model, x, y, verbose=0)

    class Batches(keras.utils.PyDataset):
        def __len__(self):
            return 3

        def __getitem__(self, index):
            rows = slice(16 * index, 16 * (index + 1))
            return x[rows], y[rows]

    assert retrieval.evaluate(model, Batches(), verbose=0) == pytest.approx(expected, rel=1e-6)


def test_evaluate_takes_a_tf_data_dataset():
    tf = pytest.importorskip("tensorflow")  # installed with the TensorFlow backend only
    x, y = embedding_data(n=40)
    model = embedding_model()
    expected = retrieval.evaluate(model, x, y, verbose=0)
    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(16)
    assert retrieval.evaluate(model, dataset, verbose=0) == pytest.approx(expected, rel=1e-6)


def test_the_docs_example_runs(capsys):
    block = python_block(PAGE, "## In training: metrics and a callback")
    exec(compile(block, str(PAGE), "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert len(printed) == 2 and 0 < float(printed[0]) <= 1
