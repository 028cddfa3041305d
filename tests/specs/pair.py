"""The pair-based losses: TF Addons' contrastive and lifted structure losses, TF Similarity's
multi-similarity, circle and soft nearest neighbour losses, and PML's contrastive, SNR
contrastive, (generalized) lifted structure, multi-similarity, circle, tuplet margin, angular,
histogram and ranked list losses.

GOLDEN checks cover only this family's calls of the shared files (`tfa_metric.json` and
`pml_pair.json` also hold the triplet losses, checked by their own family).
"""

import inspect

import keras
import numpy as np
import pml_more_pair_reference as pml_more
import pml_pair_reference as pml
import pml_ranking_reference as ranking
import tf_metric_reference as tf_ref
from support import value_and_grad

import keras_metric_losses as kml
from keras_metric_losses import pairs as pairs_lib
from keras_metric_losses.losses.pair import circle as circle_module
from keras_metric_losses.losses.pair import contrastive as contrastive_module
from keras_metric_losses.losses.pair import generalized_lifted as generalized_lifted_module
from keras_metric_losses.losses.pair import lifted as lifted_module
from keras_metric_losses.losses.pair import multi_similarity as ms_module
from keras_metric_losses.losses.pair import tuplet as tuplet_module
from specs import Spec
from specs.faults import NotApplicable, Raises, Value
from specs.kinds import EMBEDDING_DIM, EMBEDDINGS, INPUT_DIM, Embeddings, Kind, clustered_inputs

# --- kinds ------------------------------------------------------------------------------------


class PairDistances(Kind):
    """Same/different flags `[B]` and one distance per pair `[B]` (TF Addons' contrastive loss).

    The model is a siamese network: both inputs go through one `Dense` + `UnitNormalization`,
    and the output is a quarter of the squared Euclidean distance of the two unit embeddings,
    `[B, 1]` in `[0, 1]`, made of built-in layers only (safe-mode loading). The bound keeps the
    loss-scaled float16 gradients (scale 2**15) finite, so the first mixed-precision step is
    taken on every backend.
    """

    name = "pair distances"
    labels = staticmethod(lambda ids: (np.asarray(ids) % 2 == 1).astype("int32"))
    predictions = staticmethod(
        lambda batch: np.abs(np.random.default_rng(batch).normal(size=batch)).astype("float32")
    )
    MAX_DISTANCE, MARGIN = 1.0, 1.0

    def precision_bound(self, error):
        # |d loss / d d| = 2 d (similar) or 2 (margin - d)_+ (dissimilar): at most 2.
        return 2 * max(self.MAX_DISTANCE, self.MARGIN) * error.max()

    def outcomes(self):
        vector = r"of shape \[batch\] or \[batch, 1\]"
        flags = r"`y_true` must hold pair flags, 1 \(or True\)"
        return {
            "y_true rank + 2": Raises(ValueError, rf"`y_true`.*{vector}.*y_true.shape=\(4, 1, 1\)"),
            "y_true two columns": Raises(ValueError, rf"`y_true`.*{vector}.*y_true.shape=\(4, 2\)"),
            "y_pred rank 1": NotApplicable("y_pred is a [batch] vector already"),
            "y_pred rank 3": Value(),  # [batch, 1]: one distance per pair, as a model outputs it
            "batch mismatch": Raises(
                ValueError,
                r"`y_true` and `y_pred` must have the same batch size. "
                r"Received: y_true.shape=\(3,\) and y_pred.shape=\(4,\)",
            ),
            "non-square y_pred": NotApplicable("y_pred is not a matrix"),
            "string labels": Raises(TypeError, r"`y_true` must hold numbers.*y_true.dtype="),
            "non-integral labels": Raises(
                ValueError,
                rf"{flags}.*1 of its values are neither \(first: 1.5 at index \(0,\)\)",
                traced=False,
            ),
            "NaN labels": _not_finite_vector("y_true", 1, 0),
            "out-of-range labels": Raises(
                ValueError,
                rf"{flags}.*2 of its values are neither \(first: 6 at index \(1,\)\)",
                traced=False,
            ),
            "NaN in y_pred": _not_finite_vector("y_pred", 1, 0),
            "inf in y_pred": _not_finite_vector("y_pred", 0, 1),
            "-inf in y_pred": _not_finite_vector("y_pred", 0, 1),
            "empty batch": Value(),
            "batch of one": Value(),
            "one class": Value(),  # every pair dissimilar
            "all labels differ": Value(),
        }

    def model(self, cross_replica=False):
        first, second = keras.Input((INPUT_DIM,)), keras.Input((INPUT_DIM,))
        embed = keras.Sequential(
            [keras.layers.Dense(EMBEDDING_DIM), keras.layers.UnitNormalization()], name="embedding"
        )
        difference = keras.layers.Subtract()([embed(first), embed(second)])
        squared = keras.layers.Multiply()([difference, difference])
        total = keras.layers.Dense(
            1, use_bias=False, kernel_initializer=keras.initializers.Constant(0.25), trainable=False
        )
        return keras.Model([first, second], total(squared))

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        """Pairs of the two views: even rows with their own other view (same class), odd rows
        with the next row's (another class)."""
        (first, second), labels = clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)
        rows = np.arange(batch)
        partner = np.where(rows % 2 == 0, rows, (rows + 1) % batch)
        same = (labels == labels[partner]).astype("int32")
        return [first, second[partner]], same


def _not_finite_vector(name, nan, inf):
    return Raises(
        ValueError,
        rf"`{name}` must be finite; it holds {nan} NaN and {inf} inf values "
        rf"\(first at index \(0,\)\). Received: {name}.shape=\(4,\)",
        traced=False,
    )


class BoundedEmbeddings(Embeddings):
    """Embedding losses that are `factor`-Lipschitz (in the max norm) in the matrix that
    `matrix(unit embeddings)` builds: the first mixed-precision step is bounded by it."""

    def __init__(self, matrix, factor):
        self.matrix, self.factor = matrix, factor

    def lipschitz_input(self, output):
        return self.matrix(pml.normalize(np.asarray(output, np.float64)))

    def precision_bound(self, error):
        return self.factor * error.max()


def _euclidean(e):
    return np.sqrt(np.maximum(((e[:, None, :] - e[None, :, :]) ** 2).sum(-1), 0.0))


PAIR_DISTANCES = PairDistances()
# An anchor's mean positive term plus its mean negative term: 2-Lipschitz in the distances.
EUCLIDEAN_2 = BoundedEmbeddings(_euclidean, 2.0)
SQUARED_2 = BoundedEmbeddings(lambda e: _euclidean(e) ** 2, 2.0)

# --- references: float64 NumPy oracles, per anchor --------------------------------------------


def contrastive_reference(distance, snr=False):
    """Per-anchor `"anchor"` values of the batch contrastive losses: the mean positive term
    plus the mean negative term, from the oracle's dense matrices."""

    def reference(labels, embeddings):
        fn = pml.signal_to_noise_ratio_contrastive_loss if snr else pml.contrastive_loss
        pairs = pml.pair_masks(embeddings, labels, None, None, None, distance)
        result = fn(embeddings, labels, distance=distance)
        if not result.dense:  # PML's zero loss: no pair at all (a batch of one)
            return np.zeros(len(labels))
        pos, neg = result.dense["pos_loss"], result.dense["neg_loss"]
        return (pos.sum(1) / np.maximum(pairs.pos.sum(1), 1)
                + neg.sum(1) / np.maximum(pairs.neg.sum(1), 1))  # fmt: skip

    return reference


def natural(fn, **kwargs):
    """The oracle's natural per-anchor values (the anchor's own element or mean)."""
    return lambda labels, embeddings: fn(embeddings, labels, **kwargs).natural


def tfsim(call, **kwargs):
    def reference(labels, embeddings):
        with np.errstate(invalid="ignore", divide="ignore"):  # 0 / 0 of a batch of one
            return tf_ref.tfsim_loss(call, labels, embeddings, **kwargs)

    return reference


SPECS = [
    Spec(
        kml.contrastive_loss,
        kml.ContrastiveLoss,
        PAIR_DISTANCES,
        "pair",
        # Flattened: TF Addons would broadcast [B] flags against [B, 1] distances.
        reference=lambda flags, distances: tf_ref.contrastive_loss(
            np.ravel(flags), np.ravel(distances)
        ),
    ),
    Spec(
        kml.batch_contrastive_loss,
        kml.BatchContrastiveLoss,
        EUCLIDEAN_2,
        "pair",
        reference=contrastive_reference(pml.LP),
        cross_replica=True,
    ),
    Spec(
        kml.signal_to_noise_ratio_contrastive_loss,
        kml.SignalToNoiseRatioContrastiveLoss,
        EMBEDDINGS,
        "pair",
        reference=contrastive_reference(pml.Distance("snr"), snr=True),
        cross_replica=True,
        precision=False,  # var(q - k) / var(q): unbounded where an embedding is near constant
    ),
    Spec(
        kml.lifted_structure_loss,
        kml.LiftedStructureLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(pml.lifted_structure_loss),
        cross_replica=True,
        precision=False,  # the squared hinge's slope grows with the loss
    ),
    Spec(
        kml.lifted_struct_loss,
        kml.LiftedStructLoss,
        EMBEDDINGS,
        "pair",
        reference=tf_ref.lifted_struct_per_anchor,
        precision=False,
    ),
    Spec(
        kml.generalized_lifted_structure_loss,
        kml.GeneralizedLiftedStructureLoss,
        EUCLIDEAN_2,
        "pair",
        reference=natural(pml.generalized_lifted_structure_loss),
        cross_replica=True,
    ),
    Spec(
        kml.multi_similarity_loss,
        kml.MultiSimilarityLoss,
        EMBEDDINGS,  # 2-Lipschitz in the cosine distances ...
        "pair",
        reference=tfsim("MultiSimilarityLoss"),
        cross_replica=True,
        precision=False,  # ... but the pair mining jumps
    ),
    Spec(
        kml.circle_loss,
        kml.CircleLoss,
        EMBEDDINGS,
        "pair",
        reference=tfsim("CircleLoss"),
        cross_replica=True,
        precision=False,  # gamma = 80 scales the logits
    ),
    Spec(
        kml.soft_nearest_neighbor_loss,
        kml.SoftNearestNeighborLoss,
        SQUARED_2,
        "pair",
        reference=tfsim("SoftNearestNeighborLoss"),
        cross_replica=True,
    ),
    Spec(
        kml.intra_pair_variance_loss,
        kml.IntraPairVarianceLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(pml.intra_pair_variance_loss),  # a float64 NumPy oracle
        cross_replica=True,
        precision=False,  # the batch means make every pair's term move with the others
    ),
    Spec(
        kml.angular_loss,
        kml.AngularLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(pml_more.angular_loss),  # a float64 NumPy oracle
        cross_replica=True,
    ),
    Spec(
        kml.histogram_loss,
        kml.HistogramLoss,
        EMBEDDINGS,
        "pair",
        reference=lambda labels, embeddings: pml_more.histogram_loss(embeddings, labels).natural,
        precision=False,  # a pair near a node changes bins under rounding
    ),
    Spec(
        kml.ranked_list_loss,
        kml.RankedListLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(pml_more.ranked_list_loss),
        cross_replica=True,
        precision=False,  # the thresholds switch pairs on and off
    ),
    Spec(
        kml.pnp_loss,
        kml.PNPLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(ranking.pnp_loss),  # a float64 NumPy oracle
        precision=False,  # a sigmoid at temperature 0.01: a rounding error moves a rank 25x
    ),
    Spec(
        kml.smooth_ap_loss,
        kml.SmoothAPLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(ranking.smooth_ap_loss),  # a float64 NumPy oracle
        precision=False,  # a sigmoid at temperature 0.01: a rounding error moves a rank 25x
    ),
    Spec(
        kml.threshold_consistent_margin_loss,
        kml.ThresholdConsistentMarginLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(pml.threshold_consistent_margin_loss),  # a float64 NumPy oracle
        precision=False,  # the hinges switch pairs on and off
    ),
    Spec(
        kml.tuplet_margin_loss,
        kml.TupletMarginLoss,
        EMBEDDINGS,
        "pair",
        reference=natural(pml.tuplet_margin_loss),
        cross_replica=True,
        precision=False,  # scale = 64
    ),
]

# --- golden checks ----------------------------------------------------------------------------

RTOL, ATOL = 1e-5, 1e-6


def _close(actual, expected, what, rtol=RTOL, atol=ATOL):
    np.testing.assert_allclose(
        np.asarray(actual, np.float64), np.asarray(expected, np.float64), rtol, atol, err_msg=what
    )


def _values(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor), np.float64)


def check_tfa_contrastive(case, run):
    """Per pair, the function's values and the class's mean."""
    flags = np.asarray(case["y_true"])
    distances = np.asarray(case["y_pred"], case["dtype"])
    kwargs = case["kwargs"]
    values = run(lambda y, d: kml.contrastive_loss(y, d, **kwargs), flags, distances)
    assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
    _close(_values(values), case["expected_per_example"], case["id"])
    mean = run(lambda y, d: kml.ContrastiveLoss(**kwargs)(y, d), flags, distances)
    expected = case.get("expected", np.mean(case["expected_per_example"]))
    _close(_values(mean), expected, f"{case['id']}: class")


def check_tfa_lifted(case, run):
    """The mean of the shares is TF Addons' scalar, the shares are the oracle's split, and the
    class with the default reduction returns the scalar."""
    labels = np.asarray(case["y_true"])
    embeddings = np.asarray(case["y_pred"], case["dtype"])
    kwargs = case["kwargs"]
    shares = run(lambda y, e: kml.lifted_struct_loss(y, e, **kwargs), labels, embeddings)
    assert tuple(shares.shape) == (len(labels),)
    shares = _values(shares)
    _close(shares.mean(), case["expected"], f"{case['id']}: mean of the shares")
    oracle = tf_ref.lifted_struct_per_anchor(labels, embeddings.astype(np.float64), **kwargs)
    _close(shares, oracle, f"{case['id']}: shares", atol=1e-5)
    value = run(lambda y, e: kml.LiftedStructLoss(**kwargs)(y, e), labels, embeddings)
    _close(_values(value), case["expected"], f"{case['id']}: class")


TFSIM_CLASSES = {
    "MultiSimilarityLoss": kml.MultiSimilarityLoss,
    "CircleLoss": kml.CircleLoss,
    "SoftNearestNeighborLoss": kml.SoftNearestNeighborLoss,
}


def check_tfsim(case, run):
    """`Class(**kwargs)` (TF Similarity's arguments): the batch value, and per anchor (with
    `reduction=None`) the stored values if any and the oracle's."""
    cls = TFSIM_CLASSES[case["call"]]
    labels = np.asarray(case["y_true"])
    embeddings = np.asarray(case["y_pred"], case["dtype"])
    kwargs = case["kwargs"]
    value = run(lambda y, e: cls(**kwargs)(y, e), labels, embeddings)
    _close(_values(value), case["expected"], f"{case['id']}: class")
    per_anchor = _values(run(lambda y, e: cls(reduction=None, **kwargs)(y, e), labels, embeddings))
    if "expected_per_example" in case:
        _close(per_anchor, case["expected_per_example"], f"{case['id']}: per anchor")
    oracle = tf_ref.tfsim_loss(case["call"], labels, embeddings.astype(np.float64), **kwargs)
    _close(per_anchor, oracle, f"{case['id']}: oracle", atol=1e-5)


# PML distance records -> our (distance, normalize).
# PML's unreduced elements of each loss: the function that computes them from the `Pairs`.
_PML_ELEMENTS = {
    "ContrastiveLoss": contrastive_module.contrastive_elements,
    "SignalToNoiseRatioContrastiveLoss": contrastive_module.contrastive_elements,
    "LiftedStructureLoss": lifted_module.lifted_structure_elements,
    "GeneralizedLiftedStructureLoss": (
        generalized_lifted_module.generalized_lifted_structure_elements
    ),
    "MultiSimilarityLoss": ms_module.multi_similarity_elements,
    "CircleLoss": circle_module.circle_elements,
    "TupletMarginLoss": tuplet_module.tuplet_margin_elements,
}


def pml_settings(case):
    """`(function, settings, element function, element kwargs)`: ours with the settings of
    `kml.compat.pml` for `losses.<call>(**kwargs)` (its one place), and PML's unreduced
    elements of the same loss with the settings they take."""
    ours, settings = kml.compat.pml.arguments(case["call"], **case["kwargs"])
    elements_fn = _PML_ELEMENTS[case["call"]]
    taken = inspect.signature(elements_fn).parameters
    element_kwargs = {k: v for k, v in settings.items() if k in taken}
    if case["call"] == "SignalToNoiseRatioContrastiveLoss":
        element_kwargs["distance"] = "snr"
    return getattr(kml, ours).declaration.function, settings, elements_fn, element_kwargs


def _element_outputs(elements_fn, element_kwargs, normalize):
    """`(labels, embeddings) -> flat tuple` of the dense elements (anchor losses `[b]`, or
    `values, mask` per sub-loss), for `run`."""

    def outputs(labels, embeddings):
        pairs = pairs_lib.build(labels, embeddings, normalize=normalize)
        result = elements_fn(pairs, **element_kwargs)
        if isinstance(result, dict):
            return tuple(t for name in sorted(result) for t in result[name])
        return (result,)

    return outputs


def check_pml(case, run):
    """PML's scalar (reducer "pml", the class's mean), its per-example values where it has
    them, and every stored unreduced sub-loss from our dense element matrices, in PML's order
    (row-major over the masks: `torch.where`'s order)."""
    fn, settings, elements_fn, element_kwargs = pml_settings(case)
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    context = case["id"]
    values = run(lambda y, e: fn(y, e, **settings), labels, embeddings)
    assert tuple(values.shape) == (len(labels),)
    _close(_values(values).mean(), case["expected"], f"{context}: PML's scalar")
    if "expected_per_example" in case:
        natural_settings = {k: v for k, v in settings.items() if k != "reducer"}
        per_example = run(lambda y, e: fn(y, e, **natural_settings), labels, embeddings)
        _close(_values(per_example), case["expected_per_example"], f"{context}: per example")
    normalize = settings.get("normalize", True)  # the tuplet loss always normalises
    outputs = run(_element_outputs(elements_fn, element_kwargs, normalize), labels, embeddings)
    outputs = [np.asarray(keras.ops.convert_to_numpy(t)) for t in outputs]
    expected_elements = case["expected_elements"]
    if len(outputs) == 1:  # one loss per anchor: PML's elements are indexed by every row
        (name,) = expected_elements
        expected = expected_elements[name]
        assert expected["indexed_by"] == "anchor", (context, expected["indexed_by"])
        np.testing.assert_array_equal(expected["indices"], np.arange(len(labels)))
        _close(outputs[0], expected["losses"], f"{context}: {name}")
        return
    names = sorted(expected_elements)
    for index, name in enumerate(names):
        element_values, mask = outputs[2 * index], outputs[2 * index + 1].astype(bool)
        expected = expected_elements[name]
        where = f"{context}: {name}"
        if expected["indexed_by"] == "zero_loss":
            assert not mask.any(), f"{where}: PML found no pair, we have {mask.sum()}"
            continue
        assert mask.sum() == expected["count"], (where, mask.sum(), expected["count"])
        if expected.get("omitted"):
            continue
        rows, columns = np.nonzero(mask)
        np.testing.assert_array_equal(np.stack([rows, columns]), expected["indices"], where)
        _close(element_values[rows, columns], expected["losses"], where)


_PML_CALLS = (
    "ContrastiveLoss",
    "SignalToNoiseRatioContrastiveLoss",
    "LiftedStructureLoss",
    "GeneralizedLiftedStructureLoss",
    "MultiSimilarityLoss",
    "CircleLoss",
    "TupletMarginLoss",
)


def check_pml_more(case, run):
    """PML's scalar, through `kml.compat.pml` (the function's values with `reducer="pml"`,
    against a gallery where the case has one), and its gradient (eager tier)."""
    ours, arguments = kml.compat.pml.arguments(case["call"], **case["kwargs"])
    declaration = getattr(kml, ours).declaration
    function = declaration.function
    if "miner" in case:  # PML's `loss(embeddings, labels, miner(embeddings, labels))`
        arguments["miner"] = kml.compat.pml.mining(case["miner"]["call"], **case["miner"]["kwargs"])
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    if "ref_emb" in case:
        arguments.update(ref_embeddings=np.asarray(case["ref_emb"], case["dtype"]),
                         ref_labels=np.asarray(case["ref_labels"]))  # fmt: skip
    values = run(lambda y, e: function(y, e, **arguments), labels, embeddings)
    if case.get("expected_is_nan"):  # PML averages no element: ours is 0 (documented)
        np.testing.assert_array_equal(_values(values), 0.0)
        return
    _close(_values(values).mean(), case["expected"], f"{case['id']}: PML's scalar")
    if not getattr(run, "compiled", False):
        mean = lambda e: keras.ops.mean(function(labels, e, **arguments))  # noqa: E731
        _close(value_and_grad(mean, embeddings)[1], case["expected_grad"], f"{case['id']}: grad")


def check_smooth_ap(case, run):
    """The label-based Smooth-AP on every case (where PML is right, its value: it agrees with
    `numpy_label_based`), per example and in the mean, and its gradient (eager tier)."""
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    arguments = kml.compat.pml.arguments(case["call"], **case["kwargs"])[1]
    values = _values(run(lambda y, e: kml.smooth_ap_loss(y, e, **arguments), labels, embeddings))
    _close(values, case["expected_per_example"], f"{case['id']}: per example")
    _close(values.mean(), case.get("numpy_label_based", case["expected"]), f"{case['id']}: mean")
    if not getattr(run, "compiled", False):
        mean = lambda e: keras.ops.mean(kml.smooth_ap_loss(labels, e, **arguments))  # noqa: E731
        _close(value_and_grad(mean, embeddings)[1], case["expected_grad"], f"{case['id']}: grad")


GOLDEN = {
    ("pml_more.json", "IntraPairVarianceLoss"): check_pml_more,
    ("pml_more.json", "PNPLoss"): check_pml_more,
    ("pml_more.json", "SmoothAPLoss"): check_smooth_ap,
    ("pml_more.json", "ThresholdConsistentMarginLoss"): check_pml_more,
    ("pml_more.json", "NCALoss"): check_pml_more,
    ("pml_more.json", "AngularLoss"): check_pml_more,
    ("pml_more.json", "HistogramLoss"): check_pml_more,
    ("pml_more.json", "RankedListLoss"): check_pml_more,
    ("tfa_metric.json", "contrastive_loss"): check_tfa_contrastive,
    ("tfa_metric.json", "lifted_struct_loss"): check_tfa_lifted,
    **{("tfsim_metric.json", call): check_tfsim for call in TFSIM_CLASSES},
    **{("pml_pair.json", call): check_pml for call in _PML_CALLS},
}
