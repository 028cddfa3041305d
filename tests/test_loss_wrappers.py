"""`MultipleLosses` and `SelfSupervisedLoss` (their PML values: specs/wrappers.py)."""

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml
from keras_metric_losses.losses import self_supervised

RNG = np.random.default_rng(0)
LABELS = np.array([0, 0, 1, 1, 2, 2, 0, 1])
EMBEDDINGS = RNG.normal(size=(8, 5)).astype("float32")
VIEWS = RNG.normal(size=(6, 2, 5)).astype("float32")


def test_multiple_losses_weigh_each_example_and_reduce_once():
    first, second = kml.MultiSimilarityLoss(), kml.TripletMarginLoss(margin=0.3)
    loss = kml.MultipleLosses({"ms": first, "tm": second}, {"tm": 0.5, "ms": 2.0}, reduction=None)
    expected = 2.0 * numpy(first.call(LABELS, EMBEDDINGS)) + 0.5 * numpy(
        second.call(LABELS, EMBEDDINGS)
    )
    np.testing.assert_allclose(numpy(loss(LABELS, EMBEDDINGS)), expected, rtol=1e-6)
    weights = np.array([1, 0, 2, 0, 1, 1, 3, 0], "float32")
    loss = kml.MultipleLosses({"ms": first, "tm": second}, {"tm": 0.5, "ms": 2.0})
    np.testing.assert_allclose(
        numpy(loss(LABELS, EMBEDDINGS, sample_weight=weights)), (weights * expected).mean(), 1e-6
    )


def test_multiple_losses_keep_integer_labels_above_float32():
    labels = LABELS.astype("int64") + 2**24  # 2**24 and 2**24 + 1 merge in float32
    loss = kml.MultipleLosses([kml.MultiSimilarityLoss()])
    np.testing.assert_allclose(
        numpy(loss(labels, EMBEDDINGS)), numpy(loss(LABELS, EMBEDDINGS)), rtol=1e-6
    )


def test_self_supervised_labels_each_example_by_its_index():
    inner = kml.TripletMarginLoss(margin=0.5)
    flat = np.concatenate([VIEWS[:, 0], VIEWS[:, 1]])
    labels = np.concatenate([np.arange(6), np.arange(6)])
    symmetric = kml.SelfSupervisedLoss(inner, reduction=None)(None, VIEWS)
    by_row = numpy(inner.call(labels, flat)).reshape(2, 6).mean(axis=0)
    np.testing.assert_allclose(numpy(symmetric), by_row, rtol=1e-6)
    asymmetric = kml.SelfSupervisedLoss(inner, symmetric=False, reduction=None)(None, VIEWS)
    expected = kml.triplet_margin_loss(
        np.arange(6), VIEWS[:, 0], margin=0.5, ref_embeddings=VIEWS[:, 1], ref_labels=np.arange(6)
    )
    np.testing.assert_allclose(numpy(asymmetric), numpy(expected), rtol=1e-6)


def test_self_supervised_labels_differ_across_replicas(monkeypatch):
    loss = kml.SelfSupervisedLoss(kml.NTXentLoss(cross_replica=True))
    monkeypatch.setattr(self_supervised.backend, "replica_context", lambda: (1, 2))
    np.testing.assert_array_equal(numpy(loss._labels(3)), [3, 4, 5])
    local = kml.SelfSupervisedLoss(kml.NTXentLoss())
    np.testing.assert_array_equal(numpy(local._labels(3)), [0, 1, 2])


@pytest.mark.parametrize(
    "loss",
    [
        kml.MultipleLosses([kml.NTXentLoss(), kml.MultiSimilarityLoss()]),
        kml.SelfSupervisedLoss(kml.NTXentLoss(), symmetric=False),
    ],
    ids=["MultipleLosses", "SelfSupervisedLoss"],
)
def test_a_non_finite_input_gives_a_non_finite_loss(loss):
    inputs = (
        (LABELS, EMBEDDINGS.copy())
        if isinstance(loss, kml.MultipleLosses)
        else (None, VIEWS.copy())
    )
    inputs[1][1, ..., 0] = np.nan
    assert not np.isfinite(numpy(loss(*inputs)))


def test_errors_name_the_argument():
    with pytest.raises(
        TypeError, match=r"`losses` must be a non-empty list.*Received: losses=\[\]"
    ):
        kml.MultipleLosses([])
    with pytest.raises(TypeError, match=r"`losses\[1\]` must be a loss of keras_metric_losses"):
        kml.MultipleLosses([kml.PNLoss(), keras.losses.MeanSquaredError()])
    with pytest.raises(ValueError, match=r"one weight per loss \(2\). Received: weights=\[1.0\]"):
        kml.MultipleLosses([kml.PNLoss(), kml.NTXentLoss()], [1.0])
    with pytest.raises(ValueError, match="with the keys of `losses`"):
        kml.MultipleLosses({"a": kml.PNLoss()}, {"b": 1.0})
    with pytest.raises(ValueError, match=r"finite. Received: weights=\[nan\]"):
        kml.MultipleLosses([kml.PNLoss()], [float("nan")])
    with pytest.raises(TypeError, match=r"numbers. Received: weights=\['1'\]"):
        kml.MultipleLosses([kml.PNLoss()], ["1"])
    with pytest.raises(TypeError, match="on class labels and embeddings"):
        kml.SelfSupervisedLoss(kml.SimCLRLoss())
    with pytest.raises(TypeError, match="Received: symmetric=1"):
        kml.SelfSupervisedLoss(kml.NTXentLoss(), symmetric=1)
    with pytest.raises(ValueError, match=r"`y_pred` must hold the 2 views .*\(6, 5\)"):
        kml.SelfSupervisedLoss(kml.NTXentLoss())(None, VIEWS[:, 0])
    with pytest.raises(TypeError, match=r"`y_true` must hold numbers.*Received: y_true=None"):
        kml.MultipleLosses([kml.PNLoss()])(None, EMBEDDINGS)


def test_symmetric_false_needs_a_loss_that_takes_keys():
    keyless = kml.LiftedStructLoss  # TF Addons' loss of the batch alone
    assert not keyless.declaration.supports_keys
    kml.SelfSupervisedLoss(keyless())
    with pytest.raises(ValueError, match=r"does not take\. Received: symmetric=False"):
        kml.SelfSupervisedLoss(keyless(), symmetric=False)


def test_losses_without_labels_take_y_true_none():
    """`model.fit(x)` passes `y_true=None`: the two-view losses ignore it."""
    expected = kml.SimCLRLoss()(np.zeros(6), VIEWS)
    np.testing.assert_allclose(numpy(kml.SimCLRLoss()(None, VIEWS)), numpy(expected))


@pytest.mark.slow
def test_fit_without_labels_learns_and_the_model_reloads(tmp_path):
    """A two-view model trains with `SelfSupervisedLoss` and `MultipleLosses` around it, with
    `fit(x)` (no `y`), and reloads from a `.keras` file with the losses in its config."""
    keras.utils.set_random_seed(0)
    x = RNG.normal(size=(64, 2, 6)).astype("float32")
    x[:, 1] = x[:, 0] + 0.1 * RNG.normal(size=(64, 6))
    inputs = keras.Input((2, 6))
    outputs = keras.layers.Dense(4)(inputs)
    model = keras.Model(inputs, outputs)
    loss = kml.MultipleLosses(
        [kml.SelfSupervisedLoss(kml.NTXentLoss(temperature=0.2)),
         kml.SelfSupervisedLoss(kml.TripletMarginLoss(), symmetric=False)],
        [1.0, 0.5],
    )  # fmt: skip
    model.compile(optimizer=keras.optimizers.Adam(0.05), loss=loss)
    history = model.fit(x, epochs=10, batch_size=16, verbose=0).history["loss"]
    assert np.isfinite(history).all() and history[-1] < history[0], history
    path = tmp_path / "model.keras"
    model.save(path)
    restored = keras.saving.load_model(path)
    assert restored.loss.get_config() == loss.get_config()
    np.testing.assert_allclose(
        model.evaluate(x, verbose=0), restored.evaluate(x, verbose=0), rtol=1e-6
    )
