"""sentence-transformers' pair-ranking losses (CoSENT, AnglE) on `[B, C, D]` columns and float
labels, and the golden checks of those and of `MatryoshkaLoss` (sentence_transformers.json)."""

import importlib
import re

import keras
import numpy as np
from support import value_and_grad

import keras_metric_losses as kml
from specs import Spec
from specs.faults import Raises, Value
from specs.kinds import clustered_inputs
from specs.ssl import TwoViews


def _columns_error(shape, wanted="2"):
    return Raises(
        ValueError,
        rf"`y_pred` must hold {wanted} columns of each example as \[batch, columns, dim\].*"
        r"Received: y_pred.shape=" + re.escape(str(shape)),
    )


def _labels_error(shape):
    return Raises(
        ValueError,
        r"`y_true` must hold one float label per example, of shape \[batch\] or \[batch, 1\]. "
        r"Received: y_true.shape=" + re.escape(str(shape)),
    )


class LabelledPairs(TwoViews):
    """Float labels `[B]` and the two columns `[B, 2, D]` of each pair (the model and
    predictions of `TwoViews`); AnglE also takes more columns. The training data pairs every
    even example with the second view of another example of its class (label 1) and every odd
    one with the next example's (another class, label 0)."""

    name = "labelled pairs"
    labels = staticmethod(lambda ids: np.asarray(ids, "float32"))

    def __init__(self, scale, wanted="2"):
        super().__init__(scale=scale)
        self.wanted = wanted

    def outcomes(self):
        return {
            "y_true rank + 2": _labels_error((4, 1, 1)),
            "y_true two columns": _labels_error((4, 2)),
            "y_pred rank 1": _columns_error((4, 3), self.wanted),
            "y_pred rank 3": _columns_error((4, 2, 3, 1), self.wanted),
            "batch mismatch": Raises(
                ValueError,
                r"`y_true` and `y_pred` must have the same batch size. Received: "
                r"y_true.shape=\(3,\) and y_pred.shape=\(4, 2, 3\)",
            ),
            "non-square y_pred": _columns_error((4, 1, 3), self.wanted),  # one column
            "string labels": Raises(TypeError, r"`y_true` must hold numbers"),
            "non-integral labels": Value(),  # float labels: only their order matters
            "NaN labels": Raises(
                ValueError,
                r"`y_true` must be finite; it holds 1 NaN and 0 inf values \(first at index "
                r"\(0,\)\). Received: y_true.shape=\(4,\)",
                traced=False,
            ),
            "out-of-range labels": Value(),
            "NaN in y_pred": _not_finite(3, 0),
            "inf in y_pred": _not_finite(0, 3),
            "-inf in y_pred": _not_finite(0, 3),
            "empty batch": Value(),
            "batch of one": Value(),  # 0: no other pair
            "one class": Value(),  # 0: every label equal
            "all labels differ": Value(),
        }

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        (first, second), labels = clustered_inputs(batch, seed=seed, scale=scale,
                                                   nuisance=nuisance)  # fmt: skip
        shift = np.where(np.arange(batch) % 2 == 1, 1, 4)[:, None]  # 4: the same class
        partner = (np.arange(batch)[:, None] + shift)[:, 0] % batch
        return [first, second[partner]], (labels == labels[partner]).astype("float32")


def _not_finite(nan, inf):
    """`_with` writes into `y_pred[0, 1]`: the whole second column of example 0 (3 values)."""
    return Raises(
        ValueError,
        rf"`y_pred` must be finite; it holds {nan} NaN and {inf} inf values "
        r"\(first at index \(0, 1, 0\)\). Received: y_pred.shape=\(4, 2, 3\)",
        traced=False,
    )


def _unit(x):
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def _similarity(u, v, name):
    if name == "pairwise_dot_score":
        return np.sum(u * v, axis=-1)
    u, v = _unit(u), _unit(v)
    if name == "pairwise_cos_sim":
        return np.sum(u * v, axis=-1)
    if u.shape[-1] % 2:
        u, v = (np.pad(x, ((0, 0), (0, 1))) for x in (u, v))
    a, b = np.split(u, 2, axis=-1)
    c, d = np.split(v, 2, axis=-1)
    return np.abs(np.sum(a * c + b * d + b * c - a * d, axis=-1))


def ranking_reference(y_true, y_pred, scale=20.0, similarity_fct="pairwise_cos_sim"):
    """sentence-transformers' scalar (AnglE's n-tuples included), for every example, float64."""
    y_pred = np.asarray(y_pred, np.float64)
    if not len(y_pred):
        return np.zeros(0)
    count = y_pred.shape[1] - 1
    labels = np.ones(len(y_pred)) if y_true is None else np.asarray(y_true, np.float64).ravel()
    labels = np.concatenate([labels] + [1 - labels] * (count - 1))
    anchors = np.concatenate([y_pred[:, 0]] * count)
    others = np.concatenate([y_pred[:, c] for c in range(1, count + 1)])
    scores = scale * _similarity(anchors, others, similarity_fct)
    terms = (scores[:, None] - scores[None, :])[labels[:, None] < labels[None, :]]
    top = max(terms.max(initial=0.0), 0.0)
    loss = top + np.log(np.exp(-top) + np.sum(np.exp(terms - top)))
    return np.full(len(y_pred), loss)


def angle_reference(y_true, y_pred, scale=20.0):
    return ranking_reference(y_true, y_pred, scale, "pairwise_angle_sim")


SPECS = [
    Spec(
        kml.cosent_loss,
        kml.CoSENTLoss,
        LabelledPairs(scale=20.0),
        "text",
        reference=ranking_reference,
        precision=False,  # a batch statistic with scale 20: as InstanceLoss (specs/softmax.py)
    ),
    Spec(
        kml.angle_loss,
        kml.AnglELoss,
        LabelledPairs(scale=40.0, wanted="2 to any number of"),
        "text",
        reference=angle_reference,
        precision=False,  # as CoSENT
    ),
]

# --- golden checks (sentence_transformers.json) ---------------------------------------------

RTOL, ATOL = 1e-5, 1e-6
OURS = {"CoSENTLoss": kml.CoSENTLoss, "AnglELoss": kml.AnglELoss}


def inner_loss(spec):
    """Our loss for sentence-transformers' `{call, kwargs}`: CoSENT and AnglE here, the
    MultipleNegativesRankingLoss family through `specs.text_ranking` (imported when needed:
    it must exist, a missing module fails the case)."""
    if spec["call"] in OURS:
        return OURS[spec["call"]](**spec["kwargs"])
    ranking = importlib.import_module("specs.text_ranking")
    return ranking.from_sentence_transformers(spec["call"], spec["kwargs"])


def _inputs(case):
    y_pred = np.stack([np.asarray(c, case["dtype"]) for c in case["columns"]], axis=1)
    labels = case.get("labels")
    return (None if labels is None else np.asarray(labels, "float32")), y_pred


def _check(case, run, loss):
    """The loss's per-example values (their mean is `expected`; `run` compiles them in the slow
    tier) and the gradient of the mean with respect to every column (eagerly)."""
    labels, y_pred = _inputs(case)
    arrays = (y_pred,) if labels is None else (labels, y_pred)  # None: not an array to trace
    unlabelled = lambda p: loss(None, p)  # noqa: E731
    values = keras.ops.convert_to_numpy(run(loss if labels is not None else unlabelled, *arrays))
    assert values.shape == (len(y_pred),)
    np.testing.assert_allclose(values.mean(), case["expected"], rtol=RTOL, atol=ATOL,
                               err_msg=case["id"])  # fmt: skip
    if "expected_per_example" in case:
        np.testing.assert_allclose(values, case["expected_per_example"], rtol=RTOL, atol=ATOL)
    grad = value_and_grad(lambda p: keras.ops.mean(loss(labels, p)), y_pred)[1]
    for column, expected in enumerate(case["grads"]):
        expected = np.asarray(expected, np.float64)
        atol = RTOL * np.abs(expected).max() + ATOL
        np.testing.assert_allclose(grad[:, column], expected, rtol=0, atol=atol,
                                   err_msg=f"{case['id']}: grad of column {column}")  # fmt: skip


def check_ranking(case, run):
    """`Class(model, **kwargs)(features, labels)` of sentence-transformers is the mean of
    `Class(**kwargs)(labels, stack(columns, 1))`; the function gives the same values."""
    cls = OURS[case["call"]]
    _check(case, run, cls(reduction=None, **case["kwargs"]))
    function = cls.declaration.function
    _check(case, run, lambda y, p: function(y, p, **case["kwargs"]))


def check_matryoshka(case, run):
    """`MatryoshkaLoss(model, inner, dims, weights, n)`: ours around our inner loss."""
    kwargs = dict(case["kwargs"])
    inner = inner_loss(kwargs.pop("loss"))
    _check(case, run, kml.MatryoshkaLoss(inner, reduction=None, **kwargs))


GOLDEN = {
    ("sentence_transformers.json", "CoSENTLoss"): check_ranking,
    ("sentence_transformers.json", "AnglELoss"): check_ranking,
    ("sentence_transformers.json", "MatryoshkaLoss"): check_matryoshka,
}
