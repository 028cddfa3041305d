"""The proxy and margin-softmax losses (pytorch-metric-learning 2.9) and `layers.ClassProxies`.

Each loss has a function of `(labels, embeddings, proxies)` and a class of the layer's `[B, C]`
logits. The robustness table calls the function with fixed proxies, a proxy class on random
logits and a margin-softmax class through the layer that computes it (`ClassProxies(C,
loss=...)`, fixed proxies), and the layer with the Proxy Anchor loss once. Golden cases of
`pml_proxy.json` run through the functions, with PML's weights, through the layer given the
class (`ClassProxies(C, loss=...)`: every loss; ArcFace also in a training step) and, for the
proxy losses, through the class compiled on the layer's logits.

The shared tests that compile `spec.loss()` on `kind.model()` (fit, precision, saved models)
get a margin-softmax class as restored from a config of release 0.1.0 (`MarginSpec`): the only
way such a class is compiled on logits, the pairing 0.1.0's saved models keep. The layer-bound
pattern is trained, saved and reloaded by tests/test_proxy.py.
"""

import dataclasses
import warnings

import keras
import numpy as np
import pml_more_proxy_reference as more_oracle
import pml_proxy_reference as oracle
from support import compile_frozen, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.layers.adds_loss import reduce
from keras_metric_losses.losses.proxy import manifold
from specs import Spec
from specs.faults import NOT_SQUARE, NUM_CLASSES, Raises, Value, not_finite, not_integral
from specs.kinds import INPUT_DIM, Entry, Kind, clustered_inputs, mean, normal, shape_errors

DIM, SUB_CENTERS, LAYER_CLASSES = 3, 2, 4
RNG = np.random.default_rng(1)
# `[C * K, D]` proxies of the functions: one per class, or SUB_CENTERS per class.
PROXIES = {k: RNG.normal(size=(NUM_CLASSES * k, DIM)).astype("float32") for k in (1, SUB_CENTERS)}


def _out_of_range(name):
    return Raises(
        ValueError,
        rf"`{name}` must be class ids in \[0, num_classes\) with num_classes={NUM_CLASSES}. "
        rf"Received: {name} with min=-1 and max=6",
        traced=False,
    )


def _degenerate():
    return {fault: Value() for fault in ("empty batch", "batch of one", "one class",
                                         "all labels differ")}  # fmt: skip


def function_outcomes():
    """The faults of a loss function `fn(labels, embeddings, proxies)`."""
    return {
        **shape_errors("labels", "embeddings", (4, DIM)),
        "y_true two columns": Raises(
            ValueError, r"`labels`.*\[batch\].*Received: labels.shape=\(4, 2\)"
        ),
        "non-square y_pred": Raises(
            ValueError,
            r"`embeddings` and `proxies` must have the same number of features. Received: "
            rf"embeddings.shape=\(4, {DIM - 1}\) and proxies.shape=\(",
        ),
        "non-integral labels": not_integral("labels"),
        "NaN labels": not_integral("labels", first="nan"),
        "out-of-range labels": _out_of_range("labels"),
        "NaN in y_pred": not_finite("embeddings", (4, DIM), 1, 0),
        "inf in y_pred": not_finite("embeddings", (4, DIM), 0, 1),
        "-inf in y_pred": not_finite("embeddings", (4, DIM), 0, 1),
        **_degenerate(),
    }


def class_outcomes():
    """The faults of a loss class on `[B, C]` logits."""
    return {
        **shape_errors("y_true", "y_pred", (4, NUM_CLASSES)),
        "y_true two columns": Raises(
            ValueError, r"`y_true`.*\[batch\].*Received: y_true.shape=\(4, 2\)"
        ),
        "non-square y_pred": NOT_SQUARE,  # fewer columns: fewer classes
        "non-integral labels": not_integral("y_true"),
        "NaN labels": not_integral("y_true", first="nan"),
        "out-of-range labels": _out_of_range("y_true"),
        "NaN in y_pred": not_finite("y_pred", (4, NUM_CLASSES), 1, 0),
        "inf in y_pred": not_finite("y_pred", (4, NUM_CLASSES), 0, 1),
        "-inf in y_pred": not_finite("y_pred", (4, NUM_CLASSES), 0, 1),
        **_degenerate(),
    }


# --- NumPy references on the classes' logits (float64) ---------------------------------------


def cross_entropy(logits, labels):
    logits = np.asarray(logits, np.float64)
    return oracle.cross_entropy(logits, np.asarray(labels, np.int64).reshape(-1))


def proxy_anchor_of_similarities(similarity, labels, margin=0.1, alpha=32.0):
    """The per-anchor shares of `pml_proxy_reference.proxy_anchor_loss`, from a `[B, C]`
    similarity matrix instead of embeddings and proxies."""
    s = np.asarray(similarity, np.float64)
    labels = np.asarray(labels, np.int64).reshape(-1)
    batch, num_classes = s.shape
    mask = labels[:, None] == np.arange(num_classes)[None, :]

    def log1p_sum_exp(x, m):
        x = np.where(m, x, -np.inf)
        with_zero = np.concatenate([x, np.zeros((1, num_classes))], axis=0)
        return np.where(m.any(axis=0), oracle.logsumexp(with_zero, axis=0), 0.0)

    pos = log1p_sum_exp(alpha * (margin - s), mask)
    neg = log1p_sum_exp(alpha * (s + margin), ~mask)
    counts = mask.sum(axis=0)
    present = np.count_nonzero(counts)
    values = np.zeros(batch)
    if present:
        values += batch / present * (mask @ np.where(counts > 0, pos / np.maximum(counts, 1), 0))
    others = batch - counts
    negative_share = np.where(others > 0, neg / np.maximum(others, 1), 0)
    return values + batch / num_classes * ((~mask) @ negative_share)


def subcenter_arcface_oracle(
    embeddings,
    labels,
    W,
    num_classes,
    embedding_size=None,
    margin=28.6,
    scale=64,
    sub_centers=3,
    distance=None,
):
    """PML 2.9's `SubCenterArcFaceLoss` in float64 (the oracle module has none): the ArcFace of
    `pml_proxy_reference` on each class's largest sub-centre cosine (`W` `[D, C * K]`)."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    cos, _ = oracle.distance_matrix(oracle.DEFAULT_DISTANCES["cosine"], embeddings, np.asarray(W).T)
    cos = cos.reshape(len(labels), num_classes, sub_centers).max(axis=2)
    rows = np.arange(len(labels))
    logits = cos.copy()
    logits[rows, labels] = oracle.arcface_target(cos[rows, labels], margin)
    return oracle._rows_result(oracle.cross_entropy(scale * logits, labels), cos, scale * logits)


# --- the kind: labels, embeddings and proxies (function), logits (class) ----------------------


class Proxies(Kind):
    """A proxy loss. The function takes labels, `[B, D]` embeddings and `PROXIES`; the class
    takes the `[B, C]` logits of `layers.ClassProxies(**layer_kwargs)`.

    Attributes:
        oracle_fn: `pml_proxy_reference` function of the loss, called with PML's weight layout.
        weight: the oracle's weight name (`"proxies"` `[C, D]`, `"W"` `[D, C]`, `"fc"`).
        function_kwargs: hyperparameters of the function (and the oracle).
        class_reference: `(logits, labels) -> [B]` NumPy values of the class.
        layer_kwargs: arguments of the model's `ClassProxies`.
        lipschitz: the class's loss moves by at most `lipschitz * max |d logits|`.
        embedding_dim: the size of the model's embeddings.
    """

    name = "proxies"
    predictions = staticmethod(normal(DIM))

    def __init__(self, oracle_fn, weight, function_kwargs, class_reference, layer_kwargs,
                 lipschitz, sub_centers=1, with_layer=False, embedding_dim=DIM):  # fmt: skip
        self.with_layer, self.embedding_dim = with_layer, embedding_dim
        self.oracle_fn, self.weight = oracle_fn, weight
        self.function_kwargs, self.class_reference = function_kwargs, class_reference
        self.layer_kwargs, self.lipschitz, self.sub_centers = layer_kwargs, lipschitz, sub_centers

    @property
    def needs_labels(self):
        return self.layer_kwargs.get("margin_type") is not None

    def oracle_weights(self, proxies):
        return proxies if self.weight == "proxies" else np.asarray(proxies).T

    def reference(self, labels, embeddings, proxies, **kwargs):
        """The oracle's per-anchor values for `[C * K, D]` proxies."""
        num_classes = len(proxies) // self.sub_centers
        result = self.oracle_fn(np.asarray(embeddings, np.float64), np.reshape(labels, -1),
                                self.oracle_weights(np.asarray(proxies, np.float64)),
                                num_classes, **{**self.function_kwargs, **kwargs})  # fmt: skip
        return result.per_anchor

    def outcomes(self):
        return function_outcomes()

    def precision_bound(self, error):
        return self.lipschitz * error.max()

    def entries(self, spec):
        proxies = PROXIES[self.sub_centers]
        tensor = keras.ops.convert_to_tensor(proxies)  # compiled functions close over tensors

        def function(labels, embeddings):
            return spec.function(labels, embeddings, tensor, **self.function_kwargs)

        def function_reference(labels, embeddings):
            return self.reference(labels, embeddings, proxies)

        loss = spec.cls(**spec.kwargs)
        entries = [
            Entry(spec.function.__name__, spec.function, function, np.asarray, self.predictions,
                  function_outcomes(), function_reference),
        ]  # fmt: skip
        if spec.cls.margin_type is not None:  # computed by the layer
            entries.append(self.layer_entry(spec.cls.__name__, spec.cls, loss))
        else:

            def class_reference(labels, logits):
                return mean(self.class_reference(logits, labels, **loss.hyperparameters))

            entries.append(Entry(spec.cls.__name__, spec.cls, loss, np.asarray,
                                 normal(NUM_CLASSES), class_outcomes(),
                                 class_reference))  # fmt: skip
        if self.with_layer:
            entries.append(self.layer_entry("ClassProxies", kml.layers.ClassProxies, loss))
        return entries

    def layer_entry(self, name, obj, loss):
        """`layers.ClassProxies(C, loss=loss)` with fixed proxies, on labels and embeddings:
        the scalar it adds in training (the layer's own checks name `labels` and
        `embeddings`)."""
        proxies = PROXIES[self.sub_centers]
        layer = kml.layers.ClassProxies(NUM_CLASSES, loss=loss)
        layer.set_proxies(proxies)

        def value(labels, embeddings):
            return reduce(loss, layer.loss_values(embeddings, labels))

        def reference(labels, embeddings):
            return mean(self.reference(labels, embeddings, proxies, **loss.hyperparameters))

        outcomes = function_outcomes()
        outcomes["non-square y_pred"] = Raises(
            ValueError,
            r"`embeddings` and `proxies` must have the same number of features. Received: "
            rf"embeddings.shape=\(4, {DIM - 1}\) and proxies.shape=\({len(proxies)}, {DIM}\)",
        )
        return Entry(name, obj, value, np.asarray, normal(DIM), outcomes, reference)

    def model(self, cross_replica=False):
        features = keras.Input((INPUT_DIM,))
        embeddings = keras.layers.Dense(self.embedding_dim, name="embedding")(features)
        layer = kml.layers.ClassProxies(LAYER_CLASSES, **self.layer_kwargs)
        if not self.needs_labels:
            return keras.Model(features, layer(embeddings))
        labels = keras.Input((), dtype="int32")
        return keras.Model([features, labels], layer([embeddings, labels]))

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        (x, _), labels = clustered_inputs(batch, num_classes=LAYER_CLASSES, seed=seed,
                                          scale=scale, nuisance=nuisance)  # fmt: skip
        return ([x, labels] if self.needs_labels else x), labels


def _scaled_ce(logits, labels, scale=1.0):
    return cross_entropy(scale * np.asarray(logits, np.float64), labels)


def _tempered_ce(logits, labels, temperature=0.05, **layer):
    return cross_entropy(np.asarray(logits, np.float64) / temperature, labels)


def _nca_ce(logits, labels, softmax_scale=1.0, reducer="anchor"):
    return cross_entropy(2 * softmax_scale * np.asarray(logits, np.float64), labels)


def _soft_triple_ce(logits, labels, la=20.0, margin=0.01, **layer):
    s = np.asarray(logits, np.float64).copy()
    labels = np.asarray(labels, np.int64).reshape(-1)
    s[np.arange(len(labels)), labels] -= margin
    return cross_entropy(la * s, labels)


def _proxy_anchor_ref(logits, labels, margin=0.1, alpha=32.0):
    return proxy_anchor_of_similarities(logits, labels, margin, alpha)


def _p2sgrad_ref(logits, labels):
    labels = np.asarray(labels, np.int64).reshape(-1)
    one_hot = np.eye(np.shape(logits)[1])[labels]
    return np.mean((np.clip(np.asarray(logits, np.float64), -1, 1) - one_hot) ** 2, axis=1)


@dataclasses.dataclass(frozen=True)
class MarginSpec(Spec):
    """A margin-softmax loss: `loss()`, for the shared tests that compile it on `kind.model()`
    (the layer with its own `margin_type`), is the class as restored from a 0.1.0 config."""

    def loss(self, **kwargs):
        config = self.cls(**{**self.kwargs, **kwargs}).get_config()
        for key in self.cls.LOGITS_FROM.values():
            config.pop(key)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return self.cls.from_config(config)


ANGULAR = {"margin_type": "additive_angular"}
# The classes' scales in the shared tests: small ones. At initialisation PML's defaults (scale
# 64, alpha 32, ...) give weight gradients of 10-35 in the kinds' model; Keras' initial float16
# loss scale (2**15) makes any above 2 overflow float16 (65504), and the first mixed_float16
# step, which test_precision compares with float32, is then skipped. The defaults are checked by
# the golden cases and tests/test_proxy.py.
SPECS = [
    Spec(kml.proxy_anchor_loss, kml.ProxyAnchorLoss,
         Proxies(oracle.proxy_anchor_loss, "proxies", {}, _proxy_anchor_ref, {}, 2 * 2.0,
                 with_layer=True), "proxy", kwargs={"alpha": 2.0}),
    Spec(kml.proxy_nca_loss, kml.ProxyNCALoss,
         Proxies(oracle.proxy_nca_loss, "proxies", {}, _nca_ce, {}, 4.0), "proxy"),
    Spec(kml.normalized_softmax_loss, kml.NormalizedSoftmaxLoss,
         Proxies(oracle.normalized_softmax_loss, "W", {}, _tempered_ce, {}, 2 / 0.5), "proxy",
         kwargs={"temperature": 0.5}),
    # P2SGrad's targets (cosine 0 to every other class) need a dimension per class.
    Spec(kml.p2sgrad_loss, kml.P2SGradLoss,
         Proxies(more_oracle.p2sgrad_loss, "weight", {}, _p2sgrad_ref, {}, 4.0,
                 embedding_dim=LAYER_CLASSES), "proxy"),
    MarginSpec(kml.arcface_loss, kml.ArcFaceLoss,
         Proxies(oracle.arcface_loss, "W", {}, _scaled_ce, ANGULAR, 2 * 2.0),
         "margin", kwargs={"scale": 2.0}),
    MarginSpec(kml.subcenter_arcface_loss, kml.SubCenterArcFaceLoss,
         Proxies(subcenter_arcface_oracle, "W", {"sub_centers": SUB_CENTERS}, _scaled_ce,
                 {**ANGULAR, "sub_centers": SUB_CENTERS}, 2 * 2.0, SUB_CENTERS), "margin",
         kwargs={"scale": 2.0, "sub_centers": SUB_CENTERS}),
    MarginSpec(kml.cosface_loss, kml.CosFaceLoss,
         Proxies(oracle.cosface_loss, "W", {}, _scaled_ce, {"margin_type": "additive_cosine"},
                 2 * 2.0), "margin", kwargs={"scale": 2.0}),
    MarginSpec(kml.sphereface_loss, kml.SphereFaceLoss,
         Proxies(oracle.sphereface_loss, "W", {}, _scaled_ce,
                 {"normalize_embeddings": False, "margin_type": "multiplicative_angular"}, 0.5),
         "margin", kwargs={"scale": 0.25}),
    MarginSpec(kml.large_margin_softmax_loss, kml.LargeMarginSoftmaxLoss,
         Proxies(oracle.large_margin_softmax_loss, "W", {}, _scaled_ce,
                 {"normalize_embeddings": False, "normalize_proxies": False,
                  "margin_type": "multiplicative_angular"}, 0.5), "margin",
         kwargs={"scale": 0.25}),
    Spec(kml.soft_triple_loss, kml.SoftTripleLoss,
         Proxies(oracle.soft_triple_loss, "fc", {"centers_per_class": SUB_CENTERS}, _soft_triple_ce,
                 {"sub_centers": SUB_CENTERS, "sub_center_pooling": "softmax"}, 2 * 2.5,
                 SUB_CENTERS), "proxy", kwargs={"la": 2.5, "centers_per_class": SUB_CENTERS}),
]  # fmt: skip


# --- golden cases: pml_proxy.json ------------------------------------------------------------

RTOL, ATOL = 1e-5, 1e-6
FUNCTIONS = {spec.cls.__name__: spec for spec in SPECS}


def case_proxies(case):
    """The case's weights as `[C * K, D]` proxies (PML's `proxies`, `W.T`, `fc.T` or
    `weight.T`)."""
    if "proxies" in case:
        return np.asarray(case["proxies"], case["dtype"])
    (weights,) = (case[name] for name in ("W", "fc", "weight") if name in case)
    return np.ascontiguousarray(np.asarray(weights, case["dtype"]).T)


def translated(case):
    """`(function kwargs, layer kwargs, class kwargs)` of a case: PML's constructor arguments
    in this package's names (the distance object becomes `distance` / `normalize_embeddings`).
    The class kwargs are every hyperparameter of the class (those that declare the layer's
    logits too); the layer kwargs are those of a layer whose logits a proxy class is compiled
    on (`ClassProxies(**layer)`)."""
    kwargs = dict(case["kwargs"])
    distance = kwargs.pop("distance", {"class": "CosineSimilarity"})  # P2SGrad has none
    num_classes = kwargs.pop("num_classes")
    for size in ("embedding_size", "descriptors_dim"):
        kwargs.pop(size, None)
    call, normalize = case["call"], distance.get("normalize_embeddings", True)
    layer = {"num_classes": num_classes}
    classes = dict(kwargs)
    if call == "ProxyNCALoss":
        power = distance.get("power", 1)
        assert distance["class"] == "LpDistance" and distance.get("p", 2) == 2, distance
        kwargs.update(normalize_embeddings=normalize, reducer="pml",
                      distance="squared_euclidean" if power == 2 else "euclidean")  # fmt: skip
        assert power in (1, 2), distance
        classes["reducer"] = "pml"
    elif call == "NormalizedSoftmaxLoss":
        assert distance["class"] == "DotProductSimilarity", distance
        kwargs["normalize_embeddings"] = classes["normalize_embeddings"] = normalize
        layer["normalize_embeddings"] = normalize
    else:
        assert distance["class"] == "CosineSimilarity", distance
    if call == "SoftTripleLoss":
        layer.update(sub_centers=kwargs["centers_per_class"], gamma=kwargs["gamma"],
                     sub_center_pooling="softmax")  # fmt: skip
    return kwargs, layer, classes


def check_case(case, run):
    """The function with PML's weights, the class computed by the layer that owns the same
    weights (`ClassProxies(C, loss=...)`) and, for the proxy losses, the class compiled on the
    layer's logits give PML's per-example values (and, through `reducer="pml"` where PML's
    reducer keeps only some rows, its scalar) to 1e-5 relative + 1e-6. ArcFace also trains:
    a training step of a model around the layer (learning rate 0) returns PML's loss."""
    spec = FUNCTIONS[case["call"]]
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    proxies = case_proxies(case)
    kwargs, layer_kwargs, class_kwargs = translated(case)
    tensor = keras.ops.convert_to_tensor(proxies)

    def function(labels, embeddings):
        return spec.function(labels, embeddings, tensor, **kwargs)

    values = keras.ops.convert_to_numpy(run(function, labels, embeddings))
    assert values.shape == labels.shape and values.dtype == np.float32
    expected = case["expected"]
    np.testing.assert_allclose(values.mean(), expected, rtol=RTOL, atol=ATOL)
    # Every row's value: PML's own where it has one per row, else the float64 oracle's
    # per-anchor decomposition (ProxyAnchor; checked against PML's per-proxy elements by
    # test_proxy_ssl_reference.py).
    if "expected_per_example" in case and case["call"] != "ProxyNCALoss":
        per_example = case["expected_per_example"]
    else:
        per_example = spec.kind.reference(labels, embeddings, proxies, **_oracle_kwargs(case))
    if case["call"] == "ProxyNCALoss":  # "pml": shares of the kept rows; elements: kept rows
        element = case["expected_elements"]["loss"]
        anchor = keras.ops.convert_to_numpy(
            run(lambda y, e: spec.function(y, e, tensor, **{**kwargs, "reducer": "anchor"}),
                labels, embeddings))  # fmt: skip
        np.testing.assert_allclose(anchor[element["indices"]], element["losses"], rtol=RTOL,
                                   atol=ATOL)  # fmt: skip
    else:
        np.testing.assert_allclose(values, per_example, rtol=RTOL, atol=ATOL)
    if "distance" in kwargs and kwargs["distance"] != "squared_euclidean":
        return  # the class takes cosines: ProxyNCA with another distance is the function's
    loss = spec.cls(reduction=None, **class_kwargs)
    bound = kml.layers.ClassProxies(layer_kwargs["num_classes"], loss=loss)
    bound.set_proxies(proxies)
    bound_values = run(lambda y, e: bound.loss_values(e, y), labels, embeddings)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(bound_values), values, rtol=RTOL,
                               atol=ATOL)  # fmt: skip
    if case["call"] == "ArcFaceLoss":
        trained = _training_step(spec.cls(**class_kwargs), proxies, labels, embeddings, run)
        np.testing.assert_allclose(trained, expected, rtol=RTOL, atol=ATOL)
    if spec.cls.margin_type is not None:
        return  # a margin-softmax class called on logits raises (tests/test_proxy.py)
    layer = kml.layers.ClassProxies(**layer_kwargs)
    layer.set_proxies(proxies)

    def through_layer(labels, embeddings):
        return loss(labels, layer.logits(embeddings, labels))

    class_values = keras.ops.convert_to_numpy(run(through_layer, labels, embeddings))
    np.testing.assert_allclose(class_values, values, rtol=RTOL, atol=ATOL)


def _training_step(loss, proxies, labels, embeddings, run):
    """The loss that `train_on_batch` reports for a model `[embeddings, labels] ->
    ClassProxies(C, loss=loss)` (compiled where `run` compiles, learning rate 0)."""
    layer = kml.layers.ClassProxies(len(proxies), loss=loss)
    inputs = [keras.Input(embeddings.shape[1:]), keras.Input((), dtype="int32")]
    model = keras.Model(inputs, layer(inputs))
    layer.set_proxies(proxies)
    compile_frozen(model, run)
    return float(model.train_on_batch([embeddings, labels.astype("int32")]))


def _oracle_kwargs(case):
    sizes = ("num_classes", "embedding_size", "descriptors_dim")
    kwargs = {k: v for k, v in case["kwargs"].items() if k not in sizes}
    if case["call"] == "SoftTripleLoss":
        kwargs.pop("centers_per_class")
    if case["call"] == "SubCenterArcFaceLoss":
        kwargs.pop("sub_centers")
    return kwargs


def check_more_case(case, run):
    """A proxy case of pml_more.json: `check_case`, and in the eager tier PML's gradients of
    the mean for the embeddings and the weights (`expected_grad_weights`, in PML's layout).

    P2SGradLoss writes its weight's columns back rescaled to unit norm, then differentiates the
    product with them as they are: its weight gradient has a radial part that the next call's
    rescaling removes. Ours normalises inside the loss and writes nothing, so its gradient is
    the tangent part of PML's, divided by the proxy's norm (the values are PML's)."""
    check_case(case, run)
    if getattr(run, "compiled", False):
        return
    spec = FUNCTIONS[case["call"]]
    kwargs = translated(case)[0]
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    proxies = case_proxies(case)
    batch = len(embeddings)

    def mean(both):  # embeddings and proxies stacked: one array to differentiate
        return keras.ops.mean(spec.function(labels, both[:batch], both[batch:], **kwargs))

    _, grad = value_and_grad(mean, np.concatenate([embeddings, proxies]))
    np.testing.assert_allclose(grad[:batch], case["expected_grad"], RTOL, ATOL)
    ((_, weight_grad),) = case["expected_grad_weights"].items()
    expected = np.asarray(weight_grad, np.float64).T  # [C * K, D], as `proxies`
    if case["call"] == "P2SGradLoss":
        norm = np.linalg.norm(proxies.astype(np.float64), axis=1, keepdims=True)
        unit = proxies / norm
        expected = (expected - unit * np.sum(unit * expected, axis=1, keepdims=True)) / norm
    # The proxies' gradient sums terms as large as its largest element (38 in the one-class
    # case at scale 64), which float32 rounds: PML's and ours each lie 1.5-2.2e-7 x that element
    # from the float64 gradient (an entry of 0.07 is 2e-5 off, either way, by CPU kernel).
    rounding = 16 * np.finfo(np.float32).eps * np.abs(expected).max()
    np.testing.assert_allclose(grad[batch:], expected, RTOL, ATOL + rounding)


def check_manifold(case, run):
    """ManifoldLoss: PML's scalar from the case's meta classes (the stochastic case: those PML
    drew, `meta_classes_drawn`), the float64 oracle's per-example values, the same through the
    layer that owns PML's proxies (`ClassProxies(K, loss=kml.ManifoldLoss(...))`) and, in the
    eager tier, PML's gradients for the embeddings and the proxies. The stochastic case checks
    the structure of our own draw: every meta class once at least, and the loss of the draw."""
    kwargs = {name: case["kwargs"][name] for name in ("lambdaC", "alpha", "margin")}
    meta_classes = np.asarray(
        case["meta_classes_drawn" if case.get("stochastic") else "meta_classes"]
    )
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    proxies = np.asarray(case["proxies"], case["dtype"])
    tensor = keras.ops.convert_to_tensor(proxies)

    def function(meta_classes, embeddings):
        return kml.manifold_loss(meta_classes, embeddings, tensor, **kwargs)

    values = keras.ops.convert_to_numpy(run(function, meta_classes, embeddings))
    assert values.shape == meta_classes.shape and values.dtype == np.float32
    np.testing.assert_allclose(values.mean(), case["expected"], rtol=RTOL, atol=ATOL)
    oracle_values = more_oracle.manifold_loss(embeddings, meta_classes, proxies, **kwargs)
    np.testing.assert_allclose(values, oracle_values.per_anchor, rtol=RTOL, atol=ATOL)
    layer = kml.layers.ClassProxies(len(proxies), loss=kml.ManifoldLoss(**kwargs))
    layer.set_proxies(proxies)
    of_layer = run(lambda m, e: layer.loss_values(e, m), meta_classes, embeddings)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(of_layer), values, RTOL, ATOL)
    if case.get("stochastic"):
        seed = case["torch_seed"]
        drawn = keras.ops.convert_to_numpy(
            manifold.draw_meta_classes(len(embeddings), len(proxies), seed)
        )
        assert drawn.shape == meta_classes.shape and drawn.dtype == np.int32
        assert set(drawn) == set(range(len(proxies))), drawn
        of_draw = run(lambda e: kml.manifold_loss(None, e, tensor, seed=seed, **kwargs), embeddings)
        np.testing.assert_allclose(
            keras.ops.convert_to_numpy(of_draw),
            keras.ops.convert_to_numpy(function(drawn, embeddings)),
            rtol=RTOL,
            atol=ATOL,
        )
    if getattr(run, "compiled", False):
        return
    batch = len(embeddings)

    def mean(both):  # embeddings and proxies stacked: one array to differentiate
        return keras.ops.mean(kml.manifold_loss(meta_classes, both[:batch], both[batch:], **kwargs))

    _, grad = value_and_grad(mean, np.concatenate([embeddings, proxies]))
    np.testing.assert_allclose(grad[:batch], case["expected_grad"], RTOL, ATOL)
    np.testing.assert_allclose(grad[batch:], case["expected_grad_weights"]["proxies"], RTOL, ATOL)


GOLDEN = {
    **{("pml_proxy.json", spec.cls.__name__): check_case for spec in SPECS},
    ("pml_more.json", "ManifoldLoss"): check_manifold,
    ("pml_more.json", "P2SGradLoss"): check_more_case,
    ("pml_more.json", "SubCenterArcFaceLoss"): check_more_case,
}
