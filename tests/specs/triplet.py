"""The triplet losses: TF Addons' semi-hard and hard, TF Similarity's TripletLoss,
pytorch-metric-learning's TripletMarginLoss (with its TripletMarginMiner) and MarginLoss."""

import keras
import numpy as np
import pml_npairs_vicreg_dsm_reference as pml_more
import pml_pair_reference as pml
import tf_metric_reference as tfm
from support import value_and_grad

import keras_metric_losses as kml
from keras_metric_losses import pairs
from keras_metric_losses.losses.triplet import dynamic_soft_margin, margin, triplet_margin
from specs import Spec
from specs.kinds import EMBEDDINGS

RTOL = 1e-5
# The README's bar for PML (float64 recomputations agree with its float32 values to 1e-6).
PML_TOLERANCE = {"rtol": 1e-5, "atol": 1e-6}


def has_positive_and_negative(labels, key_labels=None):
    """`(has_positive, has_negative)` `[B]` of a batch (keys = the batch by default)."""
    labels = np.asarray(labels).reshape(-1)
    keys = labels if key_labels is None else np.asarray(key_labels).reshape(-1)
    same = labels[:, None] == keys[None, :]
    if key_labels is None:
        np.fill_diagonal(same, False)
        return same.any(axis=1), (labels[:, None] != keys[None, :]).any(axis=1)
    return same.any(axis=1), (~same).any(axis=1)


# --- Our semantics, from the oracles: the original's values, 0 for anchors without a triplet --


def semihard_reference(y_true, y_pred, **kwargs):
    """TF Addons' per-anchor shares; 0 for every anchor of a batch without negatives."""
    _, has_negative = has_positive_and_negative(y_true)
    return np.where(has_negative, tfm.triplet_semihard_per_anchor(y_true, y_pred, **kwargs), 0.0)


def hard_reference(y_true, y_pred, **kwargs):
    has_positive, has_negative = has_positive_and_negative(y_true)
    values = tfm.triplet_hard_per_anchor(y_true, y_pred, **kwargs)
    return np.where(has_positive & has_negative, values, 0.0)


def tfsim_triplet_reference(y_true, y_pred, **kwargs):
    has_positive, has_negative = has_positive_and_negative(y_true)
    values = tfm.tfsim_loss("TripletLoss", y_true, y_pred, **kwargs)
    return np.where(has_positive & has_negative, values, 0.0)


# PML's distance objects (class, p, power) as our distance names (with L2 normalisation as
# `normalize_embeddings`; PML's LpDistance(p=1) normalises by the L1 norm: not offered).
PML_DISTANCES = {
    ("LpDistance", 2, 1): "euclidean",
    ("LpDistance", 2, 2): "squared_euclidean",
    ("CosineSimilarity", 2, 1): "cosine_similarity",
    ("DotProductSimilarity", 2, 1): "inner_product",
    ("SNRDistance", 2, 1): "snr",
}
ORACLE_DISTANCES = {
    "euclidean": pml.Distance("lp"),
    "squared_euclidean": pml.Distance("lp", power=2),
    "cosine_similarity": pml.Distance("cosine"),
    "inner_product": pml.Distance("dot"),
    "snr": pml.Distance("snr"),
}


def oracle_kwargs(kwargs):
    """The PML oracle's arguments for our `kwargs` (distance name + normalize_embeddings)."""
    kwargs = dict(kwargs)
    for ours in ("reducer", "type_of_triplets", "miner_margin", "cross_replica"):
        kwargs.pop(ours, None)
    name = kwargs.pop("distance", "euclidean")
    normalize = kwargs.pop("normalize_embeddings", True)
    distance = ORACLE_DISTANCES[name]
    kwargs["distance"] = pml.Distance(
        distance.kind, normalize or distance.kind == "cosine", distance.p, distance.power
    )
    return kwargs


def pml_reference(name, y_true, y_pred, **kwargs):
    """The per-anchor values of our PML loss `name` (reducer "anchor" or "pml")."""
    reducer = kwargs.get("reducer", "anchor")
    indices = None
    if kwargs.get("type_of_triplets") is not None:
        miner_kwargs = {
            "margin": kwargs.get("miner_margin", 0.2),
            "type_of_triplets": kwargs["type_of_triplets"],
            "distance": oracle_kwargs(kwargs)["distance"],
        }
        _, indices = pml.triplet_margin_miner(np.asarray(y_pred), y_true, **miner_kwargs)
    result = pml.LOSSES[name](
        np.asarray(y_pred, np.float64), y_true, indices_tuple=indices, **oracle_kwargs(kwargs)
    )
    return result.per_anchor if reducer == "pml" else result.natural


def pml_kwargs(kwargs):
    """Our arguments for the `kwargs` of a PML golden case: its names, the distance object
    as a name plus `normalize_embeddings`."""
    kwargs = dict(kwargs)
    spec = kwargs.pop("distance")
    kwargs["distance"] = PML_DISTANCES[(spec["class"], spec.get("p", 2), spec.get("power", 1))]
    kwargs["normalize_embeddings"] = bool(spec.get("normalize_embeddings", True))
    if kwargs.pop("num_classes", None) is not None:
        raise NotImplementedError("a per-class beta of PML is a trainable parameter")
    return kwargs


SPECS = [
    Spec(
        kml.triplet_semihard_loss,
        kml.TripletSemiHardLoss,
        EMBEDDINGS,
        "triplet",
        reference=semihard_reference,
        cross_replica=True,
        precision=False,  # semi-hard mining jumps under rounding
    ),
    Spec(
        kml.triplet_hard_loss,
        kml.TripletHardLoss,
        EMBEDDINGS,
        "triplet",
        # On the unit embeddings of the tests, angular = cosine: 2-Lipschitz in the cosine
        # distances (the precision bound); "L2" is sqrt(2 cos), steep near 0.
        kwargs={"distance_metric": "angular"},
        reference=lambda y, e: hard_reference(y, e, distance_metric="angular"),
        cross_replica=True,
    ),
    Spec(
        kml.triplet_loss,
        kml.TripletLoss,
        EMBEDDINGS,
        "triplet",
        kwargs={"negative_mining_strategy": "hard"},  # semi-hard mining jumps under rounding
        reference=lambda y, e: tfsim_triplet_reference(y, e, negative_mining_strategy="hard"),
        cross_replica=True,
    ),
    Spec(
        kml.triplet_margin_loss,
        kml.TripletMarginLoss,
        EMBEDDINGS,
        "triplet",
        reference=lambda y, e: pml_reference("TripletMarginLoss", y, e),
        cross_replica=True,
        precision=False,  # Euclidean distances of unit vectors: sqrt(2 cos), steep near 0
    ),
    Spec(
        kml.margin_loss,
        kml.MarginLoss,
        EMBEDDINGS,
        "triplet",
        reference=lambda y, e: pml_reference("MarginLoss", y, e),
        cross_replica=True,
        precision=False,
    ),
    Spec(
        kml.dynamic_soft_margin_loss,
        kml.DynamicSoftMarginLoss,
        EMBEDDINGS,
        "triplet",
        reference=pml_more.dynamic_soft_margin_loss,
        precision=False,  # a triplet's weight jumps with its bin
    ),
]


# --- Golden checks -------------------------------------------------------------------------


def _inputs(case, labels="y_true", embeddings="y_pred"):
    return np.asarray(case[labels]), np.asarray(case[embeddings], dtype=case["dtype"])


def _check_per_anchor(values, y_true, expected, reference, scale):
    """Per-anchor values against the oracle's, and their mean against the original's scalar.

    Each value is the difference of distances (a hinge or softplus of `d_pos - d_neg`), so its
    float32 rounding error is that of the distances: values are compared to 1e-5 of the larger
    of the value and `scale` (an anchor's distance magnitudes). With squared-L2 distances of
    ~30, float32 values of ~0.03 carry errors of ~2e-6 (1e-5 of the distances, 6e-5 of the
    value), whatever the implementation; the batch mean still matches to 1e-7.
    """
    values = keras.ops.convert_to_numpy(values)
    assert values.shape == (len(y_true),)
    assert values.dtype == np.float32
    bound = RTOL * np.maximum(np.abs(reference), scale)
    assert np.all(np.abs(values - reference) <= bound), (values, reference, bound)
    np.testing.assert_allclose(values.astype(np.float64).mean(), expected, rtol=RTOL)


def tfa_scale(y_true, y_pred, distance_metric="L2", **_):
    """Per anchor, `B / #P * sum_p (D[a, p] + max_j D[a, j])`: a bound on the distances that a
    semi-hard share is made of (and, for one triplet per anchor, `2 max_j D[a, j]`)."""
    d = tfm.tfa_distances(y_pred, distance_metric)
    positive, _ = tfm._masks(y_true, y_true)
    shares = len(d) * (np.where(positive, d, 0).sum(1) + positive.sum(1) * d.max(1))
    return np.maximum(shares / max(positive.sum(), 1), 2 * d.max(1))


TFA_CLASSES = {
    "triplet_semihard_loss": (kml.TripletSemiHardLoss, semihard_reference),
    "triplet_hard_loss": (kml.TripletHardLoss, hard_reference),
}


def check_tfa(case, run):
    """Function and class (`reduction=None`) give per-anchor values whose mean is TF Addons'
    scalar, equal to the oracle's decomposition; the class's default reduction is the scalar."""
    y_true, y_pred = _inputs(case)
    fn, (cls, reference) = getattr(kml, case["call"]), TFA_CLASSES[case["call"]]
    expected_values = reference(y_true, y_pred.astype(np.float64), **case["kwargs"])
    scale = tfa_scale(y_true, y_pred.astype(np.float64), **case["kwargs"])
    for loss in (lambda y, e: fn(y, e, **case["kwargs"]), cls(reduction=None, **case["kwargs"])):
        values = run(loss, y_true, y_pred)
        _check_per_anchor(values, y_true, case["expected"], expected_values, scale)
    scalar = run(cls(**case["kwargs"]), y_true, y_pred)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(scalar), case["expected"], rtol=RTOL)


def check_tfsim(case, run):
    """`TripletLoss(**tfsim_kwargs)` with `reduction=None` and `triplet_loss`: TF Similarity's
    per-anchor values (the oracle's) and its mean."""
    y_true, y_pred = _inputs(case)
    kwargs = case["kwargs"]
    expected_values = tfsim_triplet_reference(y_true, y_pred.astype(np.float64), **kwargs)
    d = tfm.tfsim_distances(kwargs.get("distance", "cosine"), y_pred, y_pred)
    scale = 2 * np.abs(d).max(axis=1)
    losses = (
        kml.TripletLoss(reduction=None, **kwargs),
        lambda y, e: kml.triplet_loss(y, e, **kwargs),
    )
    for loss in losses:
        values = run(loss, y_true, y_pred)
        _check_per_anchor(values, y_true, case["expected"], expected_values, scale)


def _pml_inputs(case):
    return _inputs(case, labels="labels", embeddings="embeddings")


def _check_elements(expected, losses, indices):
    """Our elements (values at `indices`, in PML's order) against an `expected_elements`
    entry; a `zero_loss` entry means no element at all."""
    if expected["indexed_by"] == "zero_loss":
        assert len(indices[0]) == 0
        return
    assert expected["count"] == len(indices[0])
    if not expected.get("omitted"):
        np.testing.assert_array_equal(np.stack(indices), np.asarray(expected["indices"]))
        np.testing.assert_allclose(losses, expected["losses"], **PML_TOLERANCE)


def check_pml_triplet_margin(case, run):
    """`TripletMarginLoss(reducer="pml")`: PML's scalar as the batch mean; its unreduced triplet
    losses in PML's order (lexicographic, or the miner's); for mined cases, our miner mask
    selects exactly the stored `indices_tuple`."""
    labels, embeddings = _pml_inputs(case)
    kwargs = pml_kwargs(case["kwargs"])
    kwargs.update(reducer="pml")
    if "miner" in case:
        miner = pml_kwargs(case["miner"]["kwargs"])
        assert miner["distance"] == kwargs["distance"]
        assert miner["normalize_embeddings"] == kwargs["normalize_embeddings"]
        kwargs.update(type_of_triplets=miner["type_of_triplets"], miner_margin=miner["margin"])
    loss = kml.TripletMarginLoss(reduction=None, **kwargs)
    for fn in (loss, lambda y, e: kml.triplet_margin_loss(y, e, **kwargs)):
        values = keras.ops.convert_to_numpy(run(fn, labels, embeddings))
        assert values.shape == (len(labels),) and values.dtype == np.float32
        np.testing.assert_allclose(
            values.astype(np.float64).mean(), case["expected"], **PML_TOLERANCE
        )
        reference = pml_reference("TripletMarginLoss", labels, embeddings, **kwargs)
        np.testing.assert_allclose(values, reference, **PML_TOLERANCE)

    def elements(y, e):
        pairs_ = pairs.build(y, e, normalize=kwargs["normalize_embeddings"])
        return triplet_margin.triplet_margin_elements(
            pairs_,
            kwargs["distance"],
            kwargs["margin"],
            kwargs["swap"],
            kwargs["smooth_loss"],
            kwargs.get("type_of_triplets"),
            kwargs.get("miner_margin", 0.2),
        )

    losses, mask = (keras.ops.convert_to_numpy(x) for x in run(elements, labels, embeddings))
    indices = np.nonzero(mask)
    if "indices_tuple" in case:
        np.testing.assert_array_equal(np.stack(indices), np.asarray(case["indices_tuple"]))
    _check_elements(case["expected_elements"]["loss"], losses[indices], indices)


def check_pml_margin(case, run):
    """`MarginLoss(reducer="pml")`: PML's scalar as the batch mean, its triplet losses in
    lexicographic order and its divisor, from our `[B, K]` pair terms."""
    labels, embeddings = _pml_inputs(case)
    kwargs = pml_kwargs(case["kwargs"])
    kwargs.update(reducer="pml")
    loss = kml.MarginLoss(reduction=None, **kwargs)
    for fn in (loss, lambda y, e: kml.margin_loss(y, e, **kwargs)):
        values = keras.ops.convert_to_numpy(run(fn, labels, embeddings))
        assert values.shape == (len(labels),) and values.dtype == np.float32
        np.testing.assert_allclose(
            values.astype(np.float64).mean(), case["expected"], **PML_TOLERANCE
        )
        reference = pml_reference("MarginLoss", labels, embeddings, **kwargs)
        np.testing.assert_allclose(values, reference, **PML_TOLERANCE)

    def parts(y, e):
        pairs_ = pairs.build(y, e, normalize=kwargs["normalize_embeddings"])
        positive_part, negative_part = margin.margin_parts(
            pairs_, kwargs["distance"], kwargs["margin"], kwargs["beta"]
        )
        return positive_part, negative_part, pairs_.positive, pairs_.negative

    positive_part, negative_part, positive, negative = (
        keras.ops.convert_to_numpy(x) for x in run(parts, labels, embeddings)
    )
    valid = positive[:, :, None] & negative[:, None, :]
    indices = np.nonzero(valid)
    a, p, n = indices
    expected = case["expected_elements"]
    _check_elements(expected["margin_loss"], positive_part[a, p] + negative_part[a, n], indices)
    if expected["margin_loss"].get("divisor") is not None:
        divisor = np.sum(positive_part[a, p] > 0) + np.sum(negative_part[a, n] > 0)
        assert divisor == expected["margin_loss"]["divisor"]
    assert expected["beta_reg_loss"]["indexed_by"] == "zero_loss"


def check_pml_dynamic_soft_margin(case, run):
    """PML's scalar, its `hist_` after the call and its two gradients (through the histogram,
    `histogram_gradient=True`; and with it held, `False`), step by step for `steps` (the
    histogram carried from one step to the next, as `kml.layers.DynamicSoftMargin` does).
    Without labels, PML's `loss(embeddings, ref_emb=ref)` is ours on `arange` labels with
    `negatives="hardest"` and PML's padding (`unpaired_zeros=True`)."""
    _, arguments = kml.compat.pml.arguments(case["call"], **case["kwargs"])
    histogram = np.zeros(arguments["num_bins"], "float32")
    for step in case.get("steps", [case]):
        settings = dict(arguments)
        embeddings = np.asarray(step["embeddings"], case["dtype"])
        labels = step["labels"]
        if labels is None:
            reference = np.asarray(case["ref_emb"], case["dtype"])
            labels = np.arange(len(embeddings))
            settings.update(ref_embeddings=reference, ref_labels=np.arange(len(reference)),
                            negatives="hardest", unpaired_zeros=True)  # fmt: skip
        histogram = _check_dynamic_soft_margin_step(
            case, step, np.asarray(labels), embeddings, histogram, settings, run
        )


def _check_dynamic_soft_margin_step(case, step, labels, embeddings, histogram, settings, run):
    """One call of `check_pml_dynamic_soft_margin`; returns the histogram after it."""

    def loss(y, e, h, **changes):
        return kml.dynamic_soft_margin_loss(y, e, histogram=h, **{**settings, **changes})

    values = run(loss, labels, embeddings, histogram)
    _close(np.mean(keras.ops.convert_to_numpy(values)), step["expected"], case["id"])
    after = run(lambda y, e, h: dynamic_soft_margin.running_histogram(y, e, h, **settings),
                labels, embeddings, histogram)  # fmt: skip
    after = keras.ops.convert_to_numpy(after)
    _close(after, step["hist_after"], f"{case['id']}: hist_")
    if getattr(run, "compiled", False):
        return after
    for key, through in (("expected_grad", True), ("expected_grad_hist_detached", False)):
        mean = lambda e, through=through: keras.ops.mean(  # noqa: E731
            loss(labels, e, histogram, histogram_gradient=through)
        )
        expected = step.get(key, step["expected_grad"])  # no triplet: zeros
        _close(value_and_grad(mean, embeddings)[1], expected, f"{case['id']}: {key}")
    if "expected_grad_ref" in case:
        mean = lambda r: keras.ops.mean(loss(labels, embeddings, histogram, ref_embeddings=r))  # noqa: E731
        _close(value_and_grad(mean, settings["ref_embeddings"])[1], case["expected_grad_ref"],
               f"{case['id']}: grad ref")  # fmt: skip
    return after


def _close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual, np.float64), np.asarray(expected, np.float64),
                               rtol=1e-5, atol=1e-6, err_msg=what)  # fmt: skip


GOLDEN = {
    ("pml_more.json", "DynamicSoftMarginLoss"): check_pml_dynamic_soft_margin,
    ("tfa_metric.json", "triplet_semihard_loss"): check_tfa,
    ("tfa_metric.json", "triplet_hard_loss"): check_tfa,
    ("tfsim_metric.json", "TripletLoss"): check_tfsim,
    ("pml_pair.json", "TripletMarginLoss"): check_pml_triplet_margin,
    ("pml_pair.json", "MarginLoss"): check_pml_margin,
}
