"""PML's angular, histogram and ranked list losses beyond the spec tests: where PML fails or
differs, galleries against the oracle, and the hyperparameter checks."""

import json

import keras
import numpy as np
import pml_more_pair_reference as oracle
import pytest
from support import DATA, numpy, value_and_grad

import keras_metric_losses as kml

PML_ERRORS = json.loads((DATA / "pml_more.json").read_text())["pml_errors"]


@pytest.mark.parametrize(
    "case", [c for c in PML_ERRORS if c["call"] == "HistogramLoss"], ids=lambda c: c["id"]
)
def test_histogram_is_finite_and_right_where_pml_fails(case):
    """A similarity of exactly 1 and `LpDistance` index past PML's grid (RuntimeError)."""
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], "float32")
    loss = kml.compat.pml.loss("HistogramLoss", **case["kwargs"])
    value, grad = value_and_grad(lambda e: loss(labels, e), embeddings)
    expected = oracle.histogram_loss(embeddings, labels, distance=case["kwargs"]["distance"])
    np.testing.assert_allclose(value, expected.loss, rtol=1e-5, atol=1e-6)
    assert np.isfinite(grad).all()


def test_gallery_values_match_the_oracle():
    rng = np.random.default_rng(4)
    labels, keys_labels = rng.integers(0, 3, 6), rng.integers(0, 3, 9)
    embeddings, keys = rng.normal(size=(6, 5)), rng.normal(size=(9, 5))
    keyed = dict(ref_embeddings=keys.astype("float32"), ref_labels=keys_labels)
    for function, reference, kwargs in (
        (kml.angular_loss, oracle.angular_loss, {"normalize_negatives": False}),
        (kml.ranked_list_loss, oracle.ranked_list_loss, {"epsilon": 1e-5, "Tp": 1.0}),
    ):
        values = function(labels, embeddings.astype("float32"), **keyed, **kwargs)
        expected = reference(embeddings, labels, keys, keys_labels, None, **kwargs).natural
        np.testing.assert_allclose(numpy(values), expected, rtol=1e-5, atol=1e-6)


def test_angular_negatives_are_raw_only_in_pml_setting():
    labels = np.array([0, 0, 1, 1])
    unit = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]], "float32")
    for scale, changes in ((1.0, False), (3.0, True)):
        paper = numpy(kml.angular_loss(labels, scale * unit))
        pml = numpy(kml.angular_loss(labels, scale * unit, normalize_negatives=False))
        assert np.allclose(paper, numpy(kml.angular_loss(labels, unit)))
        assert np.allclose(paper, pml) != changes


def test_large_temperatures_and_angles_stay_finite():
    labels = np.array([0, 0, 1, 1])
    embeddings = np.array([[1.0, 0.0], [0.0, 1.0], [0.1, 1.0], [1.0, 0.1]], "float32")
    for loss in (
        lambda e: keras.ops.sum(kml.ranked_list_loss(labels, e, Tn=500.0, Tp=300.0)),
        lambda e: keras.ops.sum(kml.angular_loss(labels, e, alpha=89.0)),
    ):
        value, grad = value_and_grad(loss, embeddings)
        assert np.isfinite(value) and value > 0 and np.isfinite(grad).all()


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (kml.AngularLoss, {"alpha": 90}, r"`alpha`.*\(0, 90\).*Received: alpha=90"),
        (kml.HistogramLoss, {"n_bins": 10, "delta": 0.1}, r"delta = 2 / n_bins.*n_bins=10"),
        (kml.HistogramLoss, {"n_bins": 0}, r"`n_bins`.*Received: n_bins=0"),
        (kml.RankedListLoss, {"imbalance": 1.5}, r"`imbalance`.*Received: imbalance=1.5"),
        (kml.RankedListLoss, {"distance": "cosine_similarity"}, r"`distance` must be a distance"),
    ],
)
def test_bad_hyperparameters_name_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)
