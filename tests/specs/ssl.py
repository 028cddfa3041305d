"""TensorFlow Similarity's self-supervised losses (SimCLR, Barlow Twins, VICReg, SimSiam) on
two views `[B, 2, D]`; `y_true` is not used."""

import re

import keras
import numpy as np
import ssl_reference
from support import value_and_grad

import keras_metric_losses as kml
from specs import Spec
from specs.faults import Raises, Value
from specs.kinds import INPUT_DIM, Kind, clustered_inputs, normal

EMBEDDING_DIM = 4


def _wrong_shape(shape):
    return Raises(
        ValueError,
        r"`y_pred` must hold the 2 views of each example as \[batch, 2, dim\].*"
        r"Received: y_pred.shape=" + re.escape(str(shape)),
    )


def _not_finite(nan, inf):
    """`_with` writes into `y_pred[0, 1]`: the whole second view of example 0 (3 values)."""
    return Raises(
        ValueError,
        rf"`y_pred` must be finite; it holds {nan} NaN and {inf} inf values "
        r"\(first at index \(0, 1, 0\)\). Received: y_pred.shape=\(4, 2, 3\)",
        traced=False,
    )


class TwoViews(Kind):
    """Two views `[B, 2, D]` of each example and an unused `y_true`.

    `scale`: the loss is a function of the L2-normalised views through terms `scale * cosine`
    (SimCLR: two softmax cross-entropies, each moving by at most twice the largest change of a
    logit; SimSiam: one term), so its first mixed-precision step moves by at most
    `4 * scale * (the largest change of a cosine)`, and a cosine of unit vectors moves by at
    most `2 * sqrt(D)` times the largest change of one of their entries. Barlow and VICReg
    (batch statistics) assert no bound.

    `predictor`: the model gives the projector output of the first view, its gradient stopped,
    and a predictor's output on the second view's (SimSiam's recipe; without it SimSiam
    collapses).
    """

    name = "two views"
    predictions = staticmethod(lambda batch: normal(3)(2 * batch).reshape(batch, 2, 3))

    def __init__(self, scale=None, predictor=False):
        self.scale, self.predictor = scale, predictor

    @staticmethod
    def lipschitz_input(output):
        views = np.asarray(output, np.float64)
        return views / np.linalg.norm(views, axis=-1, keepdims=True)

    def precision_bound(self, error):
        return 4 * self.scale * 2 * np.sqrt(EMBEDDING_DIM) * error.max()

    def outcomes(self):
        ignored = Value()  # y_true is not used
        return {
            "y_true rank + 2": ignored,
            "y_true two columns": ignored,
            "y_pred rank 1": _wrong_shape((4, 3)),
            "y_pred rank 3": _wrong_shape((4, 2, 3, 1)),
            "batch mismatch": ignored,
            "non-square y_pred": _wrong_shape((4, 1, 3)),  # one view
            "string labels": ignored,
            "non-integral labels": ignored,
            "NaN labels": ignored,
            "out-of-range labels": ignored,
            "NaN in y_pred": _not_finite(3, 0),
            "inf in y_pred": _not_finite(0, 3),
            "-inf in y_pred": _not_finite(0, 3),
            "empty batch": Value(),
            "batch of one": Value(),
            "one class": Value(),
            "all labels differ": Value(),
        }

    def model(self, cross_replica=False):
        """One encoder on two (augmented) views; the loss gathers across replicas itself."""
        view_a, view_b = keras.Input((INPUT_DIM,)), keras.Input((INPUT_DIM,))
        encoder = keras.layers.Dense(EMBEDDING_DIM, name="embedding")
        first, second = encoder(view_a), encoder(view_b)
        if self.predictor:
            first = keras.ops.stop_gradient(first)
            predictor = keras.layers.Dense(EMBEDDING_DIM, kernel_initializer="identity")
            second = predictor(second)  # near the identity at first, or a linear model collapses
        return keras.Model([view_a, view_b], keras.ops.stack([first, second], axis=1))

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        views, _ = clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)
        return views, np.zeros(batch, "float32")


# The class's `y_true` must still be numbers (Keras' `Loss` converts it).
STRING_LABELS = {"string labels": Raises(TypeError, r"`y_true` must hold numbers")}


def _split(y_pred):
    y_pred = np.asarray(y_pred, np.float64)
    return y_pred[:, 0], y_pred[:, 1]


def simclr_reference(y_true, y_pred, temperature=0.05):
    if not len(y_pred):
        return np.zeros(0)
    return ssl_reference.simclr_loss(*_split(y_pred), temperature=temperature)[1]


def barlow_reference(y_true, y_pred, **kwargs):
    """TensorFlow Similarity's scalar for every example."""
    if not len(y_pred):
        return np.zeros(0)
    return np.full(len(y_pred), ssl_reference.barlow_loss(*_split(y_pred), **kwargs)[0])


def vicreg_reference(y_true, y_pred, std_const=1e-4, lambda_=25, mu=25, nu=1):
    """A batch of one has no covariance: its covariance terms are 0 here (TF Sim: NaN)."""
    if not len(y_pred):
        return np.zeros(0)
    za, zb = _split(y_pred)
    if len(y_pred) == 1:  # variance 0 in every column
        return lambda_ * np.mean((za - zb) ** 2, axis=1) + mu * max(0.0, 1 - np.sqrt(std_const))
    return ssl_reference.vicreg_loss(za, zb, std_const, lambda_, mu, nu)[1]


def simsiam_reference(y_true, y_pred, **kwargs):
    if not len(y_pred):
        return np.zeros(0)
    return ssl_reference.simsiam_loss(*_split(y_pred), **kwargs)[1]


SPECS = [
    Spec(
        kml.simclr_loss,
        kml.SimCLRLoss,
        TwoViews(scale=1 / 0.05),
        "ssl",
        reference=simclr_reference,
        class_outcomes=STRING_LABELS,
        cross_replica=True,
        precision=False,  # a softmax of cosine / 0.05: as InstanceLoss (specs/softmax.py)
    ),
    Spec(
        kml.barlow_loss,
        kml.Barlow,
        TwoViews(),
        "ssl",
        reference=barlow_reference,
        class_outcomes=STRING_LABELS,
        precision=False,  # standardised columns: errors grow as 1 / (column std)
    ),
    Spec(
        kml.vicreg_loss,
        kml.VicReg,
        TwoViews(),
        "ssl",
        reference=vicreg_reference,
        class_outcomes=STRING_LABELS,
        precision=False,  # quadratic in the raw outputs, weights 25: no useful bound
    ),
    Spec(
        kml.simsiam_loss,
        kml.SimSiamLoss,
        TwoViews(scale=0.5, predictor=True),
        "ssl",
        reference=simsiam_reference,
        class_outcomes=STRING_LABELS,
    ),
]

# --- golden checks (tfsim_ssl.json, not its XBM cases) ----------------------------------------

RTOL, ATOL = 1e-5, 1e-6
CLASSES = {
    "SimCLRLoss": (kml.SimCLRLoss, kml.simclr_loss),
    "Barlow": (kml.Barlow, kml.barlow_loss),
    "VicReg": (kml.VicReg, kml.vicreg_loss),
    "SimSiamLoss": (kml.SimSiamLoss, kml.simsiam_loss),
}


def check_case(case, run):
    """`Class(**kwargs)(za, zb)` of TF Similarity is `Class(**kwargs)(y, stack([za, zb], 1))`:
    the per-example values (`reduction=None`; Barlow: its scalar for every example) of the class
    and the function; their mean is the value of the default reduction."""
    cls, fn = CLASSES[case["call"]]
    views = np.stack([np.asarray(case[k], case["dtype"]) for k in ("za", "zb")], axis=1)
    dummy = np.zeros(len(views), "float32")
    expected = case.get("expected_per_example", np.full(len(views), case["expected"]))
    for loss in (cls(reduction=None, **case["kwargs"]), lambda y, p: fn(y, p, **case["kwargs"])):
        values = run(loss, dummy, views)
        assert tuple(values.shape) == (len(views),)
        assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
        np.testing.assert_allclose(keras.ops.convert_to_numpy(values), expected, rtol=RTOL,
                                   atol=ATOL)  # fmt: skip
        np.testing.assert_allclose(np.mean(keras.ops.convert_to_numpy(values)), case["expected"],
                                   rtol=RTOL, atol=ATOL)  # fmt: skip


def check_pml_vicreg(case, run):
    """PML's `VICRegLoss(**kwargs)(embeddings, ref_emb=ref_emb)` is the mean of
    `VicReg(unbiased_variance=True)` on `stack([embeddings, ref_emb], 1)`, through
    `kml.compat.pml`; the gradient (eager tier) with respect to both views."""
    ours, arguments = kml.compat.pml.arguments(case["call"], **case["kwargs"])
    function = getattr(kml, ours).declaration.function
    views = np.stack([np.asarray(case[k], case["dtype"]) for k in ("embeddings", "ref_emb")], 1)
    values = run(lambda y, p: function(y, p, **arguments), np.zeros(len(views)), views)
    assert tuple(values.shape) == (len(views),)
    np.testing.assert_allclose(np.mean(keras.ops.convert_to_numpy(values)), case["expected"],
                               rtol=RTOL, atol=ATOL, err_msg=case["id"])  # fmt: skip
    if not getattr(run, "compiled", False):
        mean = lambda p: keras.ops.mean(function(None, p, **arguments))  # noqa: E731
        grad = value_and_grad(mean, views)[1]
        for view, key in enumerate(("expected_grad", "expected_grad_ref")):
            np.testing.assert_allclose(grad[:, view], case[key], rtol=RTOL, atol=ATOL,
                                       err_msg=f"{case['id']}: {key}")  # fmt: skip


GOLDEN = {
    **{("tfsim_ssl.json", call): check_case for call in CLASSES},
    ("pml_more.json", "VICRegLoss"): check_pml_vicreg,
}
