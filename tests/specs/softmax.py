"""The softmax-contrastive losses on embeddings (pytorch-metric-learning's NTXent, SupCon,
Instance, FastAP) and multi-label SupCon, with a NumPy reference for the latter."""

import keras
import numpy as np
import pml_pair_reference as pml

import keras_metric_losses as kml
from keras_metric_losses import pairs
from keras_metric_losses.losses.softmax import core
from specs import Spec
from specs.faults import NO_RANGE, NOT_SQUARE, Raises, Value, not_finite, shape_errors
from specs.kinds import EMBEDDINGS, Embeddings, clustered_inputs, one_hot

# --- kinds ---------------------------------------------------------------------------------


class ScaledEmbeddings(Embeddings):
    """Labels and `[B, D]` embeddings for a loss of `scale * similarity` logits (`1 /
    temperature`, `gamma`): a softmax cross-entropy moves by at most twice the largest change of
    a logit, so the first mixed-precision step is bounded by `2 * scale * error`.
    `multiview`: `[B, V, D]` is an input too, but not `[B, V, 1]` (the fault's rank-3 `y_pred`:
    a rank mistake, refused). `instances`: the labels are instance ids in batch order (the
    training test fits batches of one example of each class, in order, so that each row's
    target column is itself)."""

    def __init__(self, scale, multiview=True, instances=False):
        self.scale, self.multiview = scale, multiview
        if instances:
            self.fit_options = {"batch_size": 4, "shuffle": False}

    def precision_bound(self, error):
        return 2 * self.scale * error.max()

    def outcomes(self):
        outcomes = super().outcomes()
        if self.multiview:
            outcomes["y_pred rank 3"] = VIEWS_OF_ONE
        return outcomes


# `[B, V=3, D=1]`: taken for `emb[:, :, None]`, a rank mistake, not three one-dimensional views.
VIEWS_OF_ONE = Raises(
    ValueError, r"trailing axis of size 1 is taken for a mistake.*y_pred.shape=\(4, 3, 1\)"
)


class MultilabelEmbeddings(ScaledEmbeddings):
    """Multi-hot `[B, C]` labels and `[B, D]` embeddings."""

    name = "multilabel embeddings"
    labels = staticmethod(one_hot)

    def outcomes(self):
        return {
            **shape_errors("y_true", "y_pred", (4, 3), multilabel=True),
            "y_true two columns": Raises(
                ValueError, r"`y_true`.*multi-hot.*Received: y_true.shape=\(4, 6, 2\)"
            ),
            "y_pred rank 3": VIEWS_OF_ONE,
            "non-square y_pred": NOT_SQUARE,
            "non-integral labels": Value(),  # documented: non-binary entries weight positives
            "NaN labels": not_finite("y_true", (4, 6), 1, 0),
            "out-of-range labels": NO_RANGE,
            "NaN in y_pred": not_finite("y_pred", (4, 3), 1, 0),
            "inf in y_pred": not_finite("y_pred", (4, 3), 0, 1),
            "-inf in y_pred": not_finite("y_pred", (4, 3), 0, 1),
            "empty batch": Value(),
            "batch of one": Value(),
            "one class": Value(),
            "all labels differ": Value(),
        }

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        (x, _), labels = clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)
        return x, _multi_hot(labels)

    def relevant(self, labels):
        """Points that share a label."""
        multi_hot = _multi_hot(labels)
        return multi_hot @ multi_hot.T > 0


def _multi_hot(labels):
    """Four classes; examples of class `c` also carry label `c + 1` every third row."""
    multi_hot = np.eye(5, dtype="float32")[labels]
    multi_hot[::3, 1:] += np.eye(5, dtype="float32")[labels[::3]][:, :-1]
    return multi_hot


# --- references ----------------------------------------------------------------------------


def multiview(reference):
    """A reference of `[B, D]` embeddings extended to `[B, V, D]` views: the views are
    flattened view by view, labels repeated, and each example's values averaged over its
    views."""

    def wrapped(labels, embeddings, **kwargs):
        embeddings = np.asarray(embeddings, np.float64)
        if embeddings.ndim == 2:
            return reference(labels, embeddings, **kwargs)
        batch, views, dim = embeddings.shape
        flat = embeddings.transpose(1, 0, 2).reshape(-1, dim)
        tiled = np.concatenate([np.asarray(labels)] * views, axis=0)
        return reference(tiled, flat, **kwargs).reshape(views, batch).mean(axis=0)

    return wrapped


def _valid(labels, embeddings):
    pairs = pml.pair_masks(embeddings, labels, None, None, None, pml.COSINE)
    return pairs.pos.any(axis=1) & pairs.neg.any(axis=1)


def ntxent_reference(labels, embeddings, temperature=0.07, reducer="anchor"):
    result = pml.ntxent_loss(embeddings, labels, temperature=temperature)
    return result.per_anchor if reducer == "pml" else result.natural


def supcon_reference(labels, embeddings, temperature=0.1, reducer="anchor"):
    result = pml.supcon_loss(embeddings, labels, temperature=temperature)
    if reducer == "pml":
        return result.per_anchor
    return np.where(_valid(labels, embeddings), result.natural, 0.0)


def supcon_multilabel_reference(multi_hot, embeddings, temperature=0.1, reducer="anchor"):
    """Float64 multi-label SupCon, written from its definition: `w[i, j] = Y_i . Y_j` for
    `j != i`, denominator every `j != i`, `l_i = sum_j w (lse_i - x_ij) / sum_j w`; "anchor": 0
    for anchors without a positive or a zero-overlap key; "pml": `B * l_i / #{l > 0}` when the
    batch has a positive and a negative pair (and not at most one of each)."""
    y = np.asarray(multi_hot, np.float64)
    e = pml.normalize(embeddings)
    batch = len(e)
    x = e @ e.T / temperature
    others = ~np.eye(batch, dtype=bool)
    weights = np.where(others, y @ y.T, 0.0)
    negative = others & (y @ y.T == 0)
    lse = pml.pml_logsumexp(x, others, False)
    total = weights.sum(axis=1)
    losses = np.divide((weights * (lse[:, None] - x)).sum(axis=1), total,
                       out=np.zeros(batch), where=total > 0)  # fmt: skip
    if reducer == "anchor":
        return np.where((total > 0) & negative.any(axis=1), losses, 0.0)
    positives, negatives = (weights > 0).sum(), negative.sum()
    if positives == 0 or negatives == 0 or (positives <= 1 and negatives <= 1):
        return np.zeros(batch)
    count = (losses > 0).sum()
    return batch * losses / count if count else np.zeros(batch)


def fast_ap_reference(labels, embeddings, num_bins=10):
    natural = pml.fast_ap_loss(embeddings, labels, num_bins=num_bins).natural
    return np.where(_valid(labels, embeddings), natural, 0.0)


def instance_reference(labels, embeddings, gamma=64.0):
    return pml.instance_loss(embeddings, labels, gamma=gamma).natural


# Mixed precision (tests/test_precision.py): gradients of a softmax of `similarity /
# temperature` scale with 1 / temperature. Under `mixed_float16` the loss-scale optimizer starts
# at 2**15, so gradients above ~2 overflow float16 and it skips the first step (observed on
# PyTorch for NTXent and multi-label SupCon: weights unchanged, scale halved): the first-step
# comparison is then meaningless, and these specs only check that training stays finite. That
# half-precision inputs are computed in float32 is checked in test_infonce.py.
SOFTMAX_PRECISION = "first float16 step skipped by the loss scale"

SPECS = [
    Spec(
        kml.ntxent_loss,
        kml.NTXentLoss,
        ScaledEmbeddings(1 / 0.07),
        "softmax",
        kwargs={"reducer": "pml"},  # the batch aggregate, also across replicas
        reference=multiview(lambda y, e: ntxent_reference(y, e, reducer="pml")),
        cross_replica=True,
        precision=False,  # see SOFTMAX_PRECISION
    ),
    Spec(
        kml.supcon_loss,
        kml.SupConLoss,
        ScaledEmbeddings(1 / 0.1),
        "softmax",
        reference=multiview(supcon_reference),
        cross_replica=True,
    ),
    Spec(
        kml.supcon_multilabel_loss,
        kml.SupConMultilabelLoss,
        MultilabelEmbeddings(1 / 0.1),
        "softmax",
        reference=multiview(supcon_multilabel_reference),
        cross_replica=True,
        precision=False,  # see SOFTMAX_PRECISION
    ),
    Spec(
        kml.instance_loss,
        kml.InstanceLoss,
        ScaledEmbeddings(64.0, multiview=False, instances=True),
        "softmax",
        reference=instance_reference,
        # The gradient is a softmax of 64 * cosine: float16 rounding of the embeddings (5e-4)
        # moves it by ~64 times that, beyond the shared rounding-count tolerance. The value
        # bound holds; test_infonce checks that half precision is computed in float32.
        precision=False,
    ),
    Spec(
        kml.fast_ap_loss,
        kml.FastAPLoss,
        ScaledEmbeddings(1.0, multiview=False),
        "softmax",
        reference=fast_ap_reference,
        precision=False,  # a soft histogram: pairs near a bin centre change bins under rounding
    ),
    Spec(
        kml.nca_loss,
        kml.NCALoss,
        EMBEDDINGS,
        "softmax",
        reference=lambda labels, embeddings: pml.nca_loss(embeddings, labels).natural,
        cross_replica=True,
    ),
]

# --- golden checks (pml_pair.json) ------------------------------------------------------------

RTOL, ATOL = 1e-5, 1e-6


def _torch_normalize(x, p=2):
    """PML's `torch.nn.functional.normalize(x, p)`: `x / max(|x|_p, 1e-12)`."""
    x = np.asarray(x, np.float64)
    norms = np.sum(np.abs(x) ** p, axis=1, keepdims=True) ** (1.0 / p)
    return (x / np.maximum(norms, 1e-12)).astype("float32")


def _powered(base, power):
    """`distance ** power` as a callable distance (PML's `power` on any distance)."""

    def distance(query, key):
        return keras.ops.power(kml.distances.get(base)(query, key), power)

    distance.larger_is_closer = kml.distances.larger_is_closer(base)
    return distance


def pml_distance(spec, embeddings):
    """`(distance, embeddings)` for our loss from a golden PML distance: PML normalises inside
    its distances; here the embeddings are normalised first (as a model's
    `UnitNormalization` would), then compared with our distance of the same formula."""
    name = spec["class"]
    p, power = spec.get("p", 2), spec.get("power", 1)
    if name == "CosineSimilarity" and power == 1:
        return "cosine_similarity", embeddings
    if spec.get("normalize_embeddings", True) or name == "CosineSimilarity":
        embeddings = _torch_normalize(embeddings, p)
    base = {
        "CosineSimilarity": "inner_product",
        "DotProductSimilarity": "inner_product",
        "SNRDistance": "snr",
        "LpDistance": {1: "manhattan", 2: "euclidean"}.get(p),
    }.get(name)
    if base is None:
        raise NotImplementedError(f"no distance for {spec}")
    if power == 1:
        return base, embeddings
    if (base, power) == ("euclidean", 2):
        return "squared_euclidean", embeddings
    return _powered(base, power), embeddings


def _arrays(case):
    return np.asarray(case["labels"]), np.asarray(case["embeddings"], case["dtype"])


def _numpy(x):
    return np.asarray(keras.ops.convert_to_numpy(keras.ops.cast(x, "float32")), np.float64)


def _assert_scalar(values, case):
    np.testing.assert_allclose(_numpy(values).mean(), case["expected"], rtol=RTOL, atol=ATOL)


def _assert_anchor_elements(values, case):
    """PML's per-anchor elements (its rows), and `expected_per_example`, against `values`; rows
    PML leaves out are 0 here. A zero-loss case: every value is 0."""
    values = _numpy(values)
    element = case["expected_elements"]["loss"]
    if element["indexed_by"] == "zero_loss":
        np.testing.assert_allclose(values, 0.0, atol=ATOL)
        return
    assert element["indexed_by"] == "anchor", element["indexed_by"]
    if "expected_per_example" in case:
        np.testing.assert_allclose(values, case["expected_per_example"], rtol=RTOL, atol=ATOL)
    if element.get("omitted"):
        return
    rows = np.asarray(element["indices"], int)
    np.testing.assert_allclose(values[rows], element["losses"], rtol=RTOL, atol=ATOL)
    left_out = np.setdiff1d(np.arange(len(values)), rows)
    np.testing.assert_allclose(values[left_out], 0.0, atol=ATOL)


def check_ntxent(case, run):
    """PML's scalar (`reducer="pml"`), its positive-pair elements in `torch.where` order, and
    the SimCLR form as `[N, 2, D]` views."""
    labels, embeddings = _arrays(case)
    distance, embeddings = pml_distance(case["kwargs"]["distance"], embeddings)
    kwargs = {"temperature": case["kwargs"]["temperature"], "distance": distance}
    values = run(lambda y, e: kml.ntxent_loss(y, e, reducer="pml", **kwargs), labels, embeddings)
    assert tuple(values.shape) == labels.shape
    assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
    _assert_scalar(values, case)
    element = case["expected_elements"]["loss"]
    if element["indexed_by"] == "zero_loss":
        np.testing.assert_allclose(_numpy(values), 0.0, atol=ATOL)
    elif not element.get("omitted"):
        assert element["indexed_by"] == "pos_pair", element["indexed_by"]
        terms, positive = run(
            lambda y, e: core.ntxent_pair_terms(pairs.build(y, e), **kwargs), labels, embeddings
        )
        rows, columns = np.nonzero(keras.ops.convert_to_numpy(positive))
        np.testing.assert_array_equal([rows, columns], element["indices"])
        np.testing.assert_allclose(_numpy(terms)[rows, columns], element["losses"], rtol=RTOL,
                                   atol=ATOL)  # fmt: skip
    if "simclr_views" in case:
        half = len(labels) // 2
        views = np.stack([embeddings[:half], embeddings[half:]], axis=1)
        # The default reducer: the same as PML's for SimCLR batches (one positive per anchor).
        per_example = run(lambda y, e: kml.ntxent_loss(y, e, **kwargs), np.arange(half), views)
        assert tuple(per_example.shape) == (half,)
        _assert_scalar(per_example, case)


def _anchor_check(fn, hyperparameters):
    def check(case, run):
        """PML's scalar with `reducer="pml"` where the loss has one; its per-anchor elements
        from the per-example values."""
        labels, embeddings = _arrays(case)
        kwargs = {name: case["kwargs"][name] for name in hyperparameters}
        if "distance" in case["kwargs"] and fn in (kml.supcon_loss,):
            kwargs["distance"], embeddings = pml_distance(case["kwargs"]["distance"], embeddings)
        reducers = ("pml", "anchor") if fn is not kml.instance_loss else (None,)
        for reducer in reducers:
            extra = {} if reducer is None else {"reducer": reducer}
            values = run(lambda y, e, x=extra: fn(y, e, **kwargs, **x), labels, embeddings)
            assert tuple(values.shape) == labels.shape
            assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
            if reducer in ("pml", None):
                _assert_scalar(values, case)
            if reducer in ("anchor", None):
                _assert_anchor_elements(values, case)

    return check


GOLDEN = {
    ("pml_pair.json", "NTXentLoss"): check_ntxent,
    ("pml_pair.json", "SupConLoss"): _anchor_check(kml.supcon_loss, ["temperature"]),
    ("pml_pair.json", "FastAPLoss"): _anchor_check(kml.fast_ap_loss, ["num_bins"]),
    ("pml_pair.json", "InstanceLoss"): _anchor_check(kml.instance_loss, ["gamma"]),
}
