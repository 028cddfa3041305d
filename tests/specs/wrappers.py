"""Losses made of other losses (`MultipleLosses`, `SelfSupervisedLoss`): their golden checks
(pml_more.json). They are not declared losses, so they have no spec entry; their own tests are
in test_loss_wrappers.py."""

import keras
import numpy as np
from support import value_and_grad

import keras_metric_losses as kml
from specs.pair import _close, _values

SPECS = []


def _pml_loss(spec, miner=None):
    """Our loss for PML's, with our miner for PML's where one is given."""
    ours, arguments = kml.compat.pml.arguments(spec["call"], **spec["kwargs"])
    if miner is not None:
        arguments["miner"] = kml.compat.pml.mining(miner["call"], **miner["kwargs"])
    return getattr(kml, ours)(**arguments)


def check_multiple(case, run):
    """PML's total and each weighted term, and the gradient of the total (eager tier)."""
    kwargs = case["kwargs"]
    specs, miners = kwargs["losses"], kwargs.get("miners") or {}
    named = isinstance(specs, dict)
    keys = list(specs) if named else range(len(specs))
    miners = miners if isinstance(miners, dict) else dict(enumerate(miners))
    losses = [_pml_loss(specs[key], miners.get(key)) for key in keys]
    losses = dict(zip(keys, losses, strict=True)) if named else losses
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
