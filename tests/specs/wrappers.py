"""Losses made of other losses (`MultipleLosses`, `SelfSupervisedLoss`): their golden checks
(pml_more.json). They are not declared losses, so they have no spec entry; their own tests are
in test_loss_wrappers.py."""

import keras
import numpy as np
import pytest
from support import value_and_grad

import keras_metric_losses as kml
from specs.pair import _close, _values

SPECS = []


def _pml_loss(spec):
    return kml.compat.pml.loss(spec["call"], **spec["kwargs"])


def check_multiple(case, run):
    """PML's total and each weighted term, and the gradient of the total (eager tier)."""
    kwargs = case["kwargs"]
    if kwargs.get("miners"):
        pytest.skip("a PML miner per loss: the `miner=` argument is issue 24's")
    specs = kwargs["losses"]
    named = isinstance(specs, dict)
    losses = {k: _pml_loss(s) for k, s in specs.items()} if named else list(map(_pml_loss, specs))
    loss = kml.MultipleLosses(losses, kwargs.get("weights"), reduction=None)
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    _close(_values(run(loss, labels, embeddings)).mean(), case["expected"], case["id"])
    for term, sub_loss in zip(case["expected_sub_losses"], loss.losses, strict=True):
        value = _values(run(sub_loss, labels, embeddings))
        _close(value, term["value"], f"{case['id']}: {term['call']}")
    if not getattr(run, "compiled", False):
        gradient = value_and_grad(lambda e: keras.ops.mean(loss(labels, e)), embeddings)[1]
        _close(gradient, case["expected_grad"], f"{case['id']}: grad")


def check_self_supervised(case, run):
    """PML's value from the two views `[N, 2, D]` (embeddings, ref_emb), and its gradients with
    respect to both (eager tier)."""
    kwargs = case["kwargs"]
    inner = _pml_loss(kwargs["loss"])
    loss = kml.SelfSupervisedLoss(inner, symmetric=kwargs["symmetric"], reduction=None)
    views = np.stack(
        [np.asarray(case["embeddings"], case["dtype"]), np.asarray(case["ref_emb"], case["dtype"])],
        axis=1,
    )
    values = _values(run(lambda v: loss(None, v), views))
    assert values.shape == (len(views),)
    _close(values.mean(), case["expected"], case["id"])
    if not getattr(run, "compiled", False):
        gradient = value_and_grad(lambda v: keras.ops.mean(loss(None, v)), views)[1]
        _close(gradient[:, 0], case["expected_grad"], f"{case['id']}: grad")
        _close(gradient[:, 1], case["expected_grad_ref"], f"{case['id']}: grad of ref_emb")


GOLDEN = {
    ("pml_more.json", "MultipleLosses"): check_multiple,
    ("pml_more.json", "SelfSupervisedLoss"): check_self_supervised,
}
