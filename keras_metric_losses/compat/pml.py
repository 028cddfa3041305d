"""pytorch-metric-learning 2.9: each of its losses as a loss of this package.

`loss(name, **kwargs)` builds, from PML's class name and constructor arguments, the loss of this
package whose value with Keras' default reduction is PML's (its scalar, gradient included):

```python
import keras_metric_losses as kml

loss = kml.compat.pml.loss("MultiSimilarityLoss", alpha=2, beta=50, base=0.5)
# kml.MultiSimilarityLoss(distance="cosine", alpha=2.0, beta=50.0, epsilon=None, lmda=0.5,
#                         center=1.0, normalize=True, one_sided=True)
```

A PML distance is given as its class name (`"LpDistance"`, `"CosineSimilarity"`,
`"DotProductSimilarity"`, `"SNRDistance"`) or as a dict `{"class": ..., "p": 2, "power": 1,
"normalize_embeddings": True}`. `ORIGINALS` holds every translation with PML's defaults; the
tests run them against PML's values (`tests/data/pml_*.json`) and the migration guide's table
is made from them.

PML calls `loss(embeddings, labels)`; Keras calls `loss(y_true, y_pred)`: labels first.
"""

import dataclasses

DISTANCES = {
    ("LpDistance", 2, 1): "euclidean",
    ("LpDistance", 2, 2): "squared_euclidean",
    ("LpDistance", 1, 1): "manhattan",
    ("CosineSimilarity", 2, 1): "cosine_similarity",
    ("DotProductSimilarity", 2, 1): "inner_product",
    ("SNRDistance", 2, 1): "snr",
}


def our_distance(spec):
    """`(distance name, normalize_embeddings)` of a PML distance (a class name or a dict).

    Raises:
        ValueError: for a distance this package has no counterpart of.
    """
    spec = {"class": spec} if isinstance(spec, str) else dict(spec)
    key = (spec["class"], spec.get("p", 2), spec.get("power", 1))
    if key not in DISTANCES:
        raise ValueError(
            "`distance` must be one of PML's LpDistance (p=1 or 2, power 1; p=2, power 2), "
            f"CosineSimilarity, DotProductSimilarity or SNRDistance. Received: distance={spec!r}"
        )
    normalize = spec["class"] == "CosineSimilarity" or spec.get("normalize_embeddings", True)
    return DISTANCES[key], bool(normalize)


@dataclasses.dataclass(frozen=True)
class Original:
    """How one PML loss is one of ours.

    Attributes:
        name: PML's class name in `pytorch_metric_learning.losses`.
        ours: The class of this package (a name of `keras_metric_losses`).
        defaults: PML's constructor defaults (the arguments it takes).
        translate: `translate(**pml_arguments) -> our keyword arguments`.
        note: What differs, or what to know when migrating.
    """

    name: str
    ours: str
    defaults: dict
    translate: object
    note: str = ""

    def arguments(self, **kwargs):
        """Our keyword arguments for PML's `kwargs` (PML's defaults filled in)."""
        unknown = sorted(set(kwargs) - set(self.defaults))
        if unknown:
            raise TypeError(
                f"PML's {self.name} takes {sorted(self.defaults)}. Received: "
                + ", ".join(f"{k}={kwargs[k]!r}" for k in unknown)
            )
        return self.translate(**{**self.defaults, **kwargs})


def _renamed(names, **fixed):
    """A `translate` that renames PML's keywords (`{pml: ours}`) and adds `fixed` settings;
    PML's `distance` becomes ours and `normalize` (or `normalize_embeddings`) where mapped."""

    def translate(**kwargs):
        result = dict(fixed)
        for key, value in kwargs.items():
            if key == "distance":
                result["distance"], normalized = our_distance(value)
                result[names.get("normalize", "normalize")] = normalized
            elif names.get(key, key) is not None:
                result[names.get(key, key)] = value
        return result

    return translate


def _cosine_only(spec, loss):
    if our_distance(spec)[0] != "cosine_similarity":
        raise ValueError(
            f"PML's {loss} has a counterpart with CosineSimilarity only; with another distance "
            "normalise the embeddings in the model (`keras.layers.UnitNormalization`) and pass "
            f"that distance to ours. Received: distance={spec!r}"
        )


def _multi_similarity(alpha, beta, base, distance):
    name, normalize = our_distance(distance)
    if name == "cosine_similarity":  # D = 1 - S: s = D + lmda - center = base - S
        shape = {"distance": "cosine", "lmda": base, "center": 1.0}
    elif name in ("euclidean", "squared_euclidean", "manhattan"):  # s = D - base
        shape = {"distance": name, "lmda": 0.0, "center": base}
    else:
        raise ValueError(f"PML's MultiSimilarityLoss with {distance!r} has no counterpart here")
    return dict(shape, alpha=alpha, beta=beta, epsilon=None, normalize=normalize, one_sided=True)


def _snr_contrastive(pos_margin, neg_margin, distance):
    normalize = our_distance(distance)[1]
    return dict(pos_margin=pos_margin, neg_margin=neg_margin, normalize=normalize, reducer="pml")


def _circle(m, gamma, distance):
    _cosine_only(distance, "CircleLoss")
    return dict(margin=m, gamma=gamma, distance="cosine", joint=True, normalize=True,
                reducer="pml")  # fmt: skip


def _threshold_consistent(distance, **margins):
    _cosine_only(distance, "ThresholdConsistentMarginLoss")
    return dict(margins, reducer="pml")


def _pnp(distance, **settings):
    _cosine_only(distance, "PNPLoss")
    return dict(settings, anchor_as_positive=True, reducer="pml")


def _smooth_ap(temperature, distance):
    _cosine_only(distance, "SmoothAPLoss")
    return dict(temperature=temperature)


def _dynamic_soft_margin(distance, **settings):
    name, normalize = our_distance(distance)
    if name not in ("euclidean", "squared_euclidean"):
        raise ValueError(f"PML's DynamicSoftMarginLoss needs LpDistance(p=2): {distance!r}")
    return dict(settings, distance=name, normalize=normalize, histogram_gradient=True,
                reducer="pml")  # fmt: skip


def _tuplet(margin, scale, distance):
    _cosine_only(distance, "TupletMarginLoss")
    return dict(margin=margin, scale=scale, reducer="pml")


def _softmax(name):
    def translate(temperature, distance):
        _cosine_only(distance, name)
        return dict(temperature=temperature, distance="cosine_similarity", reducer="pml")

    return translate


def _fast_ap(num_bins, distance):
    if our_distance(distance)[0] != "squared_euclidean":
        raise ValueError(f"PML's FastAPLoss uses LpDistance(power=2). Received: {distance!r}")
    return dict(num_bins=num_bins, reducer="pml")


def _angular(alpha, distance):
    if our_distance(distance) != ("euclidean", True):
        raise ValueError(
            f"PML's AngularLoss asserts LpDistance(p=2, power=1). Received: {distance!r}"
        )
    return dict(alpha=alpha, normalize_negatives=False, reducer="pml")


def _histogram(n_bins, delta, distance):
    name, normalize = our_distance(distance)
    return dict(n_bins=n_bins, delta=delta, distance=name, normalize=normalize)


def _instance(gamma, distance):
    _cosine_only(distance, "InstanceLoss")
    return dict(gamma=gamma)


_VICREG_NAMES = {
    "invariance_lambda": "lambda_",
    "variance_mu": "mu",
    "covariance_v": "nu",
    "eps": "std_const",
}
_LP = {"class": "LpDistance"}
_COSINE = {"class": "CosineSimilarity"}

ORIGINALS = {
    o.name: o
    for o in (
        Original(
            "ContrastiveLoss",
            "BatchContrastiveLoss",
            {"pos_margin": 0.0, "neg_margin": 1.0, "distance": _LP},
            _renamed({}, reducer="pml"),
            "a distinct name: `kml.ContrastiveLoss` is TF Addons' loss on pair distances",
        ),
        Original(
            "SignalToNoiseRatioContrastiveLoss",
            "SignalToNoiseRatioContrastiveLoss",
            {"pos_margin": 0.0, "neg_margin": 1.0, "distance": {"class": "SNRDistance"}},
            _snr_contrastive,
        ),
        Original(
            "LiftedStructureLoss",
            "LiftedStructureLoss",
            {"neg_margin": 1.0, "pos_margin": 0.0, "distance": _LP},
            _renamed({}, reducer="pml"),
            "TF Addons' `LiftedStructLoss` is the same code",
        ),
        Original(
            "IntraPairVarianceLoss",
            "IntraPairVarianceLoss",
            {"pos_eps": 0.01, "neg_eps": 0.01, "distance": _COSINE},
            _renamed({}, reducer="pml"),
        ),
        Original(
            "NCALoss",
            "NCALoss",
            {"softmax_scale": 1, "distance": {"class": "LpDistance", "power": 2}},
            _renamed({}, reducer="pml"),
            "a batch where no row has a positive gives 0 (PML: NaN)",
        ),
        Original(
            "AngularLoss",
            "AngularLoss",
            {"alpha": 40, "distance": _LP},
            _angular,
            "PML normalises the anchor and the positive but not the negatives "
            "(`normalize_negatives=False`; the paper normalises them)",
        ),
        Original(
            "HistogramLoss",
            "HistogramLoss",
            {"n_bins": None, "delta": None, "distance": _COSINE},
            _histogram,
            "PML fails on a similarity of exactly 1 (two identical rows) and on `LpDistance`",
        ),
        Original(
            "RankedListLoss",
            "RankedListLoss",
            {"margin": 0.4, "Tn": 10, "imbalance": 0.5, "alpha": None, "Tp": 0, "distance": _LP},
            _renamed({}, epsilon=1e-5),
            "PML adds 1e-5 per column of the batch to its denominators (`epsilon=1e-5`); PML "
            "requires `margin` and `Tn` (shown: the paper's values, our defaults)",
        ),
        Original(
            "ThresholdConsistentMarginLoss",
            "ThresholdConsistentMarginLoss",
            {
                "lambda_plus": 1.0,
                "lambda_minus": 1.0,
                "margin_plus": 0.9,
                "margin_minus": 0.5,
                "distance": _COSINE,
            },
            _threshold_consistent,
            "PML reads both ends of a pair in the batch: with `ref_emb` it fails or reads the "
            "wrong rows; ours takes a gallery or a memory",
        ),
        Original(
            "PNPLoss",
            "PNPLoss",
            {"b": 2, "alpha": 1, "anneal": 0.01, "variant": "O", "distance": _COSINE},
            _pnp,
            "PML counts each anchor as its own positive (`anchor_as_positive=True`; ours "
            "defaults to the other examples of its class)",
        ),
        Original(
            "SmoothAPLoss",
            "SmoothAPLoss",
            {"temperature": 0.01, "distance": _COSINE},
            _smooth_ap,
            "PML is right only for contiguous blocks of one class each, as many blocks as "
            "examples per class (other layouts: a wrong value or ValueError); ours reads the "
            "labels, any layout",
        ),
        Original(
            "NPairsLoss",
            "PMLNPairsLoss",
            {"distance": {"class": "DotProductSimilarity"}},
            _renamed({}, reducer="pml"),
            "a `PML` prefix: `kml.NpairsLoss` is TF Addons' loss of a similarity matrix",
        ),
        Original(
            "VICRegLoss",
            "VicReg",
            {"invariance_lambda": 25, "variance_mu": 25, "covariance_v": 1, "eps": 1e-4},
            _renamed(_VICREG_NAMES, unbiased_variance=True),
            "a setting of TF Similarity's `VicReg` (whose variance is the population's); "
            "`y_pred` is `stack([embeddings, ref_emb], axis=1)`",
        ),
        Original(
            "DynamicSoftMarginLoss",
            "DynamicSoftMarginLoss",
            {"min_val": -2.0, "num_bins": 10, "momentum": 0.01, "distance": _LP},
            _dynamic_soft_margin,
            "the running histogram is `kml.layers.DynamicSoftMargin`'s weight (the class "
            "alone: a new object's first batch); out-of-range `d_ap - d_an` is clipped "
            '(PML: RuntimeError); without labels: `negatives="hardest"`, see the docs',
        ),
        Original(
            "GeneralizedLiftedStructureLoss",
            "GeneralizedLiftedStructureLoss",
            {"neg_margin": 1.0, "pos_margin": 0.0, "distance": _LP},
            _renamed({}),
            "per anchor already",
        ),
        Original(
            "MultiSimilarityLoss",
            "MultiSimilarityLoss",
            {"alpha": 2.0, "beta": 50.0, "base": 0.5, "distance": _COSINE},
            _multi_similarity,
            "PML has no pair mining in the loss (`epsilon=None`; its `MultiSimilarityMiner` is TF "
            "Similarity's `epsilon`)",
        ),
        Original(
            "CircleLoss",
            "CircleLoss",
            {"m": 0.4, "gamma": 80.0, "distance": _COSINE},
            _circle,
            "PML detaches the pair weights; here they are differentiated (same value)",
        ),
        Original(
            "TupletMarginLoss",
            "TupletMarginLoss",
            {"margin": 5.73, "scale": 64.0, "distance": _COSINE},
            _tuplet,
        ),
        Original(
            "TripletMarginLoss",
            "TripletMarginLoss",
            {
                "margin": 0.05,
                "swap": False,
                "smooth_loss": False,
                "triplets_per_anchor": "all",
                "distance": _LP,
            },
            _renamed({"normalize": "normalize_embeddings"}, reducer="pml"),
            "a `TripletMarginMiner(margin, type_of_triplets)` is "
            "`type_of_triplets=..., miner_margin=...` (see `miner`)",
        ),
        Original(
            "MarginLoss",
            "MarginLoss",
            {
                "margin": 0.2,
                "nu": 0.0,
                "beta": 1.2,
                "triplets_per_anchor": "all",
                "learn_beta": False,
                "num_classes": None,
                "distance": _LP,
            },
            _renamed({"normalize": "normalize_embeddings", "num_classes": None}, reducer="pml"),
            "a fixed `beta` (a float or one per class); `learn_beta=True` is refused",
        ),
        Original(
            "NTXentLoss",
            "NTXentLoss",
            {"temperature": 0.07, "distance": _COSINE},
            _softmax("NTXentLoss"),
        ),
        Original(
            "SupConLoss",
            "SupConLoss",
            {"temperature": 0.1, "distance": _COSINE},
            _softmax("SupConLoss"),
        ),
        Original(
            "FastAPLoss",
            "FastAPLoss",
            {"num_bins": 10, "distance": {"class": "LpDistance", "power": 2}},
            _fast_ap,
        ),
        Original(
            "InstanceLoss",
            "InstanceLoss",
            {"gamma": 64.0, "distance": _COSINE},
            _instance,
        ),
    )
}


def miner(type_of_triplets="all", margin=0.2):
    """Our `TripletMarginLoss` arguments for PML's `miners.TripletMarginMiner(margin,
    type_of_triplets)` (the miner uses the loss's distance)."""
    return {"type_of_triplets": type_of_triplets, "miner_margin": margin}


def arguments(name, **kwargs):
    """`(our class name, our keyword arguments)` for PML's `losses.<name>(**kwargs)`.

    Raises:
        ValueError: for a loss or a setting with no counterpart here.
        TypeError: for an argument PML's loss does not take.
    """
    if name not in ORIGINALS:
        raise ValueError(f"PML's {name} has no counterpart here. Known: {sorted(ORIGINALS)}")
    original = ORIGINALS[name]
    return original.ours, original.arguments(**kwargs)


def loss(name, **kwargs):
    """The loss of this package that computes PML's `losses.<name>(**kwargs)`: see the module.

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.compat.pml.loss("CircleLoss", m=0.25, gamma=256).get_config()["joint"]
    True
    """
    import keras_metric_losses

    ours, arguments_ = arguments(name, **kwargs)
    return getattr(keras_metric_losses, ours)(**arguments_)


def _call(prefix, name, arguments):
    def show(value):
        if isinstance(value, dict):  # a PML distance
            extra = {k: v for k, v in value.items() if k != "class"}
            return f"{value['class']}({', '.join(f'{k}={v!r}' for k, v in extra.items())})"
        return repr(value).replace("'", '"')

    return f"`{prefix}{name}({', '.join(f'{k}={show(v)}' for k, v in arguments.items())})`"


def markdown_table():
    """The migration guide's table: each loss with PML's defaults, and ours."""
    import inspect

    import keras_metric_losses

    rows = ["| PML 2.9 | keras-metric-losses | notes |", "| --- | --- | --- |"]
    for original in ORIGINALS.values():
        ours, arguments_ = arguments(original.name)
        order = list(inspect.signature(getattr(keras_metric_losses, ours)).parameters)
        arguments_ = dict(sorted(arguments_.items(), key=lambda item: order.index(item[0])))
        rows.append(
            f"| {_call('losses.', original.name, original.defaults)} "
            f"| {_call('kml.', ours, arguments_)} | {original.note} |"
        )
    return "\n".join(rows)


def mining(name, **kwargs):
    """The miner of this package (`kml.miners`) that selects what PML's
    `miners.<name>(**kwargs)` selects, from PML's arguments (`distance` as a PML distance). The
    stochastic miners (`DistanceWeightedMiner`, `UniformHistogramMiner`) also take our `seed`.

    Raises:
        ValueError: for a miner or a distance with no counterpart here.

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.compat.pml.mining("PairMarginMiner", pos_margin=0.1).get_config()["distance"]
    'euclidean'
    """
    import keras_metric_losses

    if name not in keras_metric_losses.miners.__all__:
        raise ValueError(
            f"PML's {name} has no counterpart here. Known: {keras_metric_losses.miners.__all__}"
        )
    if "distance" in kwargs:
        kwargs["distance"], kwargs["normalize"] = our_distance(kwargs.pop("distance"))
    return getattr(keras_metric_losses.miners, name)(**kwargs)


def regularizer(name, **kwargs):
    """The regularizer of this package (`kml.regularizers`) that computes PML's
    `regularizers.<name>(**kwargs)`, from PML's arguments (`distance` as a PML distance). A
    proxy loss's `weight_regularizer=<name>(...)` with `weight_reg_weight=w` is
    `kml.layers.ClassProxies(..., proxies_regularizer=regularizer(name, weight=w, ...))`.

    Raises:
        ValueError: for a regularizer or a distance with no counterpart here.

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.compat.pml.regularizer("LpRegularizer", power=2).get_config()["power"]
    2.0
    """
    import keras_metric_losses

    names = keras_metric_losses.regularizers.__all__
    if name not in names:
        raise ValueError(f"PML's {name} has no counterpart here. Known: {names}")
    distance = kwargs.pop("distance", None)
    if distance is not None:
        ours, normalize = our_distance(distance)
        if name == "CenterInvariantRegularizer":
            kwargs["p"] = {"euclidean": 2, "manhattan": 1}[ours]
        elif name == "RegularFaceRegularizer":
            kwargs["distance"] = "cosine_similarity" if normalize else ours
    return getattr(keras_metric_losses.regularizers, name)(**kwargs)
