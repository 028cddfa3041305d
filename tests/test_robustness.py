"""Bad inputs and degenerate batches, table-driven over every public loss, and properties.

`TABLE` has one entry per public loss function, loss class and loss layer; each entry states,
for every fault in `FAULTS`, what the loss does: raise an error that names the argument and
what was received (`Raises`), or return a documented finite value with finite gradients
(`Value`). Static (shape, dtype) errors also fire when the loss is traced by the backend's
compiler; value errors (NaN, non-integral or out-of-range labels) only eagerly.
"""

import dataclasses
import inspect
import re

import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nce_reference import reference_logits, reference_losses
from pn_reference import pn_reference
from references import reference_per_anchor
from support import compiled, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses import validation

IDS = np.array([1, 3, 1, 4])  # a valid batch: class ids below NUM_CLASSES for the NCE entries
NUM_CLASSES, NUM_SAMPLED, DIM = 6, 3, 2
RNG = np.random.default_rng(0)
WEIGHTS = RNG.normal(size=(NUM_CLASSES, DIM)).astype("float32")
BIASES = RNG.normal(size=NUM_CLASSES).astype("float32")


@dataclasses.dataclass(frozen=True)
class Raises:
    """The loss raises `error` matching `match`; `traced=False`: only for concrete inputs."""

    error: type
    match: str
    traced: bool = True


@dataclasses.dataclass(frozen=True)
class Value:
    """The loss returns a finite value with finite gradients (the entry's reference if any)."""


@dataclasses.dataclass(frozen=True)
class NotApplicable:
    reason: str


CANDIDATES = keras.ops.convert_to_tensor(np.array([3, 0, 5], "int32"))
CANDIDATE_COUNTS = keras.ops.convert_to_tensor(np.array([0.3, 0.6, 0.1], "float32"))


def _sampled_values(labels):
    """Fixed candidates, as tensors (also inside compiled functions)."""
    true_count = keras.ops.full((np.shape(labels)[0], 1), 0.3, "float32")
    return CANDIDATES, true_count, CANDIDATE_COUNTS


def _nce_function(fn):
    weights, biases = keras.ops.convert_to_tensor(WEIGHTS), keras.ops.convert_to_tensor(BIASES)

    def loss(labels, inputs):
        return fn(weights, biases, labels, inputs, NUM_SAMPLED, NUM_CLASSES,
                  sampled_values=_sampled_values(labels))  # fmt: skip

    return loss


def _nce_function_reference(column):
    def reference(labels, inputs):
        remove = column == 1  # sampled softmax removes accidental hits by default
        logits = reference_logits(WEIGHTS, BIASES, np.reshape(labels, (-1, 1)), inputs,
                                  _sampled_values(labels), remove)  # fmt: skip
        return reference_losses(*logits)[column]

    return reference


def _nce_class_reference(column):
    def reference(labels, logits):
        logits = np.asarray(logits, np.float64)
        num_true = np.shape(labels)[1] if np.ndim(labels) == 2 else 1
        true, noise = logits[:, :num_true], logits[:, num_true:]
        return _mean(reference_losses(true, noise, np.zeros(noise.shape, bool))[column])

    return reference


NCE_LAYER = kml.layers.NCE(NUM_CLASSES, NUM_SAMPLED)
NCE_LAYER.build((None, DIM))
NCE_LAYER.set_weights([WEIGHTS, BIASES])


def _nce_layer_loss(labels, inputs):
    logits = NCE_LAYER.sampled_logits(inputs, labels, sampled_values=_sampled_values(labels))
    return kml.NCELoss()(labels, logits)


def _mean(values):
    return np.mean(values) if len(values) else 0.0


def _one_hot(ids):
    return np.eye(NUM_CLASSES, dtype="float32")[ids]


def _normal(dim):
    """`[batch, dim]` random predictions; `dim=None`: a square `[batch, batch]` matrix."""
    return lambda batch: RNG.normal(size=(batch, dim or batch)).astype("float32")


@dataclasses.dataclass(frozen=True)
class Entry:
    """A public loss and how to call it: `loss(labels(ids), predictions(batch))`."""

    obj: object
    loss: object
    predictions: object
    outcomes: dict
    labels: object = np.asarray
    reference: object = None  # `reference(y_true, y_pred)`: the expected output, float64
    true_name: str = "y_true"
    pred_name: str = "y_pred"


def _shape_errors(true, pred, pred_shape, square=False, multilabel=False):
    """The static-shape outcomes shared by the entries, with their argument names."""
    batch = pred_shape[0]
    cols = f", {NUM_CLASSES}" if multilabel else ""
    rank_what = r"multi-hot" if multilabel else r"\[batch"
    pred_what = r"square" if square else r"\[batch, "
    return {
        "y_true rank + 2": Raises(
            ValueError,
            rf"`{true}`.*{rank_what}.*Received: {true}.shape=\({batch}{cols}, 1, 1\)",
        ),
        "y_pred rank 1": Raises(
            ValueError, rf"`{pred}`.*{pred_what}.*Received: {pred}.shape=\(4,\)"
        ),
        "y_pred rank 3": Raises(
            ValueError,
            rf"`{pred}`.*{pred_what}.*Received: {pred}.shape=" + re.escape(str((*pred_shape, 1))),
        ),
        "batch mismatch": Raises(
            ValueError,
            rf"`{true}` and `{pred}` must have the same batch size. Received: "
            rf"{true}.shape=\({batch - 1}[,)].* and {pred}.shape=" + re.escape(str(pred_shape)),
        ),
        "string labels": Raises(TypeError, rf"`{true}` must hold numbers.*Received: {true}.dtype="),
    }


def _not_finite(name, shape, nan, inf, allowed=""):
    return Raises(
        ValueError,
        rf"`{name}` must be finite{re.escape(allowed)}; it holds {nan} NaN and {inf} inf values "
        rf"\(first at index \(0, 1\)\). Received: {name}.shape=" + re.escape(str(shape)),
        traced=False,
    )


def _not_integral(name, index="(0,)", shape="(4,)", first="1.5"):
    return Raises(
        ValueError,
        rf"`{name}` must hold integer class ids.*1 of its values are not integral "
        rf"\(first: {first} at index {re.escape(index)}\). "
        rf"Received: {name}.shape={re.escape(shape)}",
        traced=False,
    )


NO_RANGE = NotApplicable("any integer is a class id")
NOT_SQUARE = NotApplicable("y_pred is not a similarity matrix")
SIMILARITY_VALUES = {
    "-inf in y_pred": Value(),  # -inf masks a pair
    "empty batch": Value(),  # 0
    "batch of one": Value(),
    "one class": Value(),
    "all labels differ": Value(),
}


def _similarity_outcomes():
    """What both N-pair losses do with their `[B, B]` similarity matrix `y_pred`."""
    return {
        "non-square y_pred": Raises(
            ValueError, r"`y_pred` must be a square.*Received: y_pred.shape=\(4, 3\)"
        ),
        "NaN in y_pred": _not_finite("y_pred", (4, 4), 1, 0, " (-inf is allowed)"),
        "inf in y_pred": _not_finite("y_pred", (4, 4), 0, 1, " (-inf is allowed)"),
        **SIMILARITY_VALUES,
    }


def _npairs_outcomes(true_name="y_true"):
    return {
        **_shape_errors(true_name, "y_pred", (4, 4), square=True),
        "y_true two columns": Raises(
            ValueError, r"`y_true`.*\[batch\].*Received: y_true.shape=\(4, 2\)"
        ),
        "non-integral labels": _not_integral("y_true"),
        "NaN labels": _not_integral("y_true", first="nan"),
        "out-of-range labels": NO_RANGE,
        **_similarity_outcomes(),
    }


def _multilabel_outcomes():
    return {
        **_shape_errors("y_true", "y_pred", (4, 4), square=True, multilabel=True),
        "y_true two columns": Raises(
            ValueError, r"`y_true`.*multi-hot.*Received: y_true.shape=\(4, 6, 2\)"
        ),
        "non-integral labels": Value(),  # documented: non-binary entries weight the targets
        "NaN labels": _not_finite("y_true", (4, 6), 1, 0),
        "out-of-range labels": NO_RANGE,
        **_similarity_outcomes(),
    }


def _pn_outcomes():
    return {
        **_shape_errors("y_true", "y_pred", (4, 3)),
        "y_true two columns": Raises(
            ValueError, r"`y_true`.*\[batch\].*Received: y_true.shape=\(4, 2\)"
        ),
        "non-square y_pred": NOT_SQUARE,
        "non-integral labels": _not_integral("y_true"),
        "NaN labels": _not_integral("y_true", first="nan"),
        "out-of-range labels": NO_RANGE,
        "NaN in y_pred": _not_finite("y_pred", (4, 3), 1, 0),
        "inf in y_pred": _not_finite("y_pred", (4, 3), 0, 1),
        "-inf in y_pred": _not_finite("y_pred", (4, 3), 0, 1),
        "empty batch": Value(),  # [] (function), 0 (class)
        "batch of one": Value(),  # 0: no positive, no negative
        "one class": Value(),  # 0: no negative
        "all labels differ": Value(),  # 0: no positive
    }


def _nce_function_outcomes():
    return {
        **_shape_errors("labels", "inputs", (4, 2)),
        "y_true two columns": Raises(
            ValueError, r"`labels`.*num_true=1. Received: labels.shape=\(4, 2\)"
        ),
        "non-square y_pred": NOT_SQUARE,
        "non-integral labels": _not_integral("labels", "(0, 0)", "(4, 1)"),
        "NaN labels": _not_integral("labels", "(0, 0)", "(4, 1)", "nan"),
        "out-of-range labels": Raises(
            ValueError,
            r"`labels` must be class ids in \[0, num_classes\) with num_classes=6. "
            r"Received: labels with min=-1 and max=6",
            traced=False,
        ),
        "NaN in y_pred": _not_finite("inputs", (4, 2), 1, 0),
        "inf in y_pred": _not_finite("inputs", (4, 2), 0, 1),
        "-inf in y_pred": _not_finite("inputs", (4, 2), 0, 1),
        "empty batch": Value(),  # []
        "batch of one": Value(),
        "one class": Value(),
        "all labels differ": Value(),
    }


def _nce_class_outcomes():
    ignored = Value()  # only the shape of y_true (num_true) is used
    return {
        **_shape_errors("y_true", "y_pred", (4, 4)),
        "y_true rank + 2": Raises(
            ValueError, r"`y_true`.*\[batch, num_true\]. Received: y_true.shape=\(4, 1, 1\)"
        ),
        "y_pred rank 1": Raises(
            ValueError, r"`y_pred` must be the \[batch, num_true \+ num_sampled\].*\(4,\)"
        ),
        "y_pred rank 3": Raises(
            ValueError, r"`y_pred` must be the \[batch, num_true \+ num_sampled\].*\(4, 4, 1\)"
        ),
        "y_true two columns": ignored,  # num_true=2 with 2 sampled columns: a valid input
        "non-square y_pred": NOT_SQUARE,
        "non-integral labels": ignored,
        "NaN labels": ignored,
        "out-of-range labels": ignored,
        "NaN in y_pred": _not_finite("y_pred", (4, 4), 1, 0, " (-inf is allowed)"),
        "inf in y_pred": _not_finite("y_pred", (4, 4), 0, 1, " (-inf is allowed)"),
        **SIMILARITY_VALUES,  # -inf: a removed accidental hit (float16 loss dtype)
    }


def _nce_layer_outcomes():
    outcomes = _nce_function_outcomes()
    outcomes["string labels"] = Raises(TypeError, r"`labels` must hold numbers")
    return outcomes


NPAIRS_REFERENCE = {
    False: lambda y, s: _mean(reference_per_anchor(y, s)),
    True: lambda y, s: _mean(reference_per_anchor(y, s, multilabel=True)),
}
TABLE = [
    Entry(kml.npairs_loss, kml.npairs_loss, _normal(None), _npairs_outcomes(),
          reference=NPAIRS_REFERENCE[False]),
    Entry(kml.NpairsLoss, kml.NpairsLoss(), _normal(None), _npairs_outcomes(),
          reference=NPAIRS_REFERENCE[False]),
    Entry(kml.npairs_multilabel_loss, kml.npairs_multilabel_loss, _normal(None),
          _multilabel_outcomes(), labels=_one_hot, reference=NPAIRS_REFERENCE[True]),
    Entry(kml.NpairsMultilabelLoss, kml.NpairsMultilabelLoss(), _normal(None),
          _multilabel_outcomes(), labels=_one_hot, reference=NPAIRS_REFERENCE[True]),
    Entry(kml.pn_loss, kml.pn_loss, _normal(3), _pn_outcomes(),
          reference=lambda y, e: pn_reference(y, e)[0]),
    Entry(kml.PNLoss, kml.PNLoss(), _normal(3), _pn_outcomes(),
          reference=lambda y, e: _mean(pn_reference(y, e)[0])),
    Entry(kml.nce_loss, _nce_function(kml.nce_loss), _normal(DIM), _nce_function_outcomes(),
          reference=_nce_function_reference(0), true_name="labels", pred_name="inputs"),
    Entry(kml.sampled_softmax_loss, _nce_function(kml.sampled_softmax_loss), _normal(DIM),
          _nce_function_outcomes(), reference=_nce_function_reference(1),
          true_name="labels", pred_name="inputs"),
    Entry(kml.NCELoss, kml.NCELoss(), _normal(1 + NUM_SAMPLED), _nce_class_outcomes(),
          reference=_nce_class_reference(0)),
    Entry(kml.SampledSoftmaxLoss, kml.SampledSoftmaxLoss(), _normal(1 + NUM_SAMPLED),
          _nce_class_outcomes(), reference=_nce_class_reference(1)),
    Entry(kml.layers.NCE, _nce_layer_loss, _normal(DIM), _nce_layer_outcomes(),
          true_name="labels", pred_name="inputs"),
]  # fmt: skip
# Public objects that are not losses: their outputs are checked through the entries above.
NOT_LOSSES = {kml.PairwiseSimilarity: "builds the y_pred of the npairs losses"}


def _valid(entry, ids=IDS):
    return entry.labels(np.asarray(ids)), entry.predictions(len(ids))


def _with(array, value):
    """A float copy of `array` with `value` at its first (or `[0, 1]`) entry."""
    array = np.array(array, "float32")
    array[(0, 1)[: array.ndim]] = value
    return array


FAULTS = {
    "y_true rank + 2": lambda e: (e.labels(IDS)[..., None, None], _valid(e)[1]),
    "y_true two columns": lambda e: (np.stack([e.labels(IDS)] * 2, -1), _valid(e)[1]),
    "y_pred rank 1": lambda e: (e.labels(IDS), _valid(e)[1][:, 0]),
    "y_pred rank 3": lambda e: (e.labels(IDS), _valid(e)[1][..., None]),
    "batch mismatch": lambda e: (e.labels(IDS[:-1]), _valid(e)[1]),
    "non-square y_pred": lambda e: (e.labels(IDS), _valid(e)[1][:, :-1]),
    "string labels": lambda e: (e.labels(IDS).astype(str), _valid(e)[1]),
    "non-integral labels": lambda e: (_with(e.labels(IDS), 1.5), _valid(e)[1]),
    "NaN labels": lambda e: (_with(e.labels(IDS), np.nan), _valid(e)[1]),
    "out-of-range labels": lambda e: (np.array([1, 6, 1, -1]), _valid(e)[1]),
    "NaN in y_pred": lambda e: (e.labels(IDS), _with(_valid(e)[1], np.nan)),
    "inf in y_pred": lambda e: (e.labels(IDS), _with(_valid(e)[1], np.inf)),
    "-inf in y_pred": lambda e: (e.labels(IDS), _with(_valid(e)[1], -np.inf)),
    "empty batch": lambda e: _valid(e, IDS[:0]),
    "batch of one": lambda e: _valid(e, IDS[:1]),
    "one class": lambda e: _valid(e, [4, 4, 4, 4]),
    "all labels differ": lambda e: _valid(e, [0, 5, 2, 3]),
}


def _public_losses():
    objects = [getattr(kml, name) for name in kml.__all__]
    objects += [getattr(kml.layers, name) for name in kml.layers.__all__]
    return {
        obj
        for obj in objects
        if (inspect.isclass(obj) and issubclass(obj, (keras.losses.Loss, keras.layers.Layer)))
        or (inspect.isfunction(obj) and obj.__name__.endswith("_loss"))
    } - set(NOT_LOSSES)


def test_every_public_loss_has_an_entry_for_every_fault():
    assert {entry.obj for entry in TABLE} == _public_losses()
    for entry in TABLE:
        assert set(entry.outcomes) == set(FAULTS), entry.obj.__name__


def _faults(entry, kind):
    return [fault for fault, outcome in entry.outcomes.items() if isinstance(outcome, kind)]


def _check_all(entry, kind, check):
    """Runs `check(outcome, y_true, y_pred)` for every fault of `kind`; reports all failures."""
    failures = []
    for fault in _faults(entry, kind):
        try:
            check(entry.outcomes[fault], *FAULTS[fault](entry))
        except Exception as error:  # every failure is reported below
            failures.append(f"{fault}: {type(error).__name__}: {error}")
    assert not failures, "\n".join(failures)


ENTRIES = [pytest.param(entry, id=entry.obj.__name__) for entry in TABLE]


@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_inputs_raise_clear_errors(entry):
    def check(outcome, y_true, y_pred):
        with pytest.raises(outcome.error, match=outcome.match):
            entry.loss(y_true, y_pred)

    _check_all(entry, Raises, check)


def _compiled_error(error):
    """`torch.compile(fullgraph=True)` reports an error raised while tracing as `Unsupported`,
    with the original error and message; without `fullgraph` it raises the error itself."""
    if keras.backend.backend() != "torch":
        return error
    import torch

    return (error, torch._dynamo.exc.Unsupported)


@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_inputs_when_compiled(entry):
    # Static errors fire at trace time; value checks are skipped (no error, no crash).
    def check(outcome, y_true, y_pred):
        try:
            keras.ops.convert_to_tensor(y_true)
        except (TypeError, ValueError, RuntimeError):
            return  # the backend has no tensors of this dtype (strings)
        loss = compiled(entry.loss, trace_only=True)
        if outcome.traced:
            with pytest.raises(_compiled_error(outcome.error), match=outcome.match) as raised:
                loss(y_true, y_pred)
            assert outcome.error.__name__ in f"{raised.type.__name__} {raised.value}"
        else:
            numpy(loss(y_true, y_pred))

    _check_all(entry, Raises, check)


@pytest.mark.parametrize("entry", ENTRIES)
def test_degenerate_inputs_give_documented_finite_values_and_gradients(entry):
    def check(outcome, y_true, y_pred):
        value = numpy(entry.loss(y_true, y_pred))
        assert np.isfinite(value).all(), value
        if not len(y_pred):
            assert value.sum() == 0.0  # an empty batch: 0, or no values
        elif entry.reference is not None and np.isfinite(y_pred).all():
            expected = entry.reference(y_true, y_pred)
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
        _, grad = value_and_grad(lambda p: keras.ops.sum(entry.loss(y_true, p)), y_pred)
        assert grad.shape == y_pred.shape and np.isfinite(grad).all(), grad

    _check_all(entry, Value, check)


def test_value_checks_run_eagerly_and_are_skipped_when_traced():
    x = np.array([[0.0, np.nan], [np.inf, -np.inf]], "float32")
    assert validation.is_concrete(keras.ops.convert_to_tensor(x))
    with pytest.raises(ValueError, match=r"1 NaN and 2 inf values \(first at index \(0, 1\)\)"):
        validation.finite(keras.ops.convert_to_tensor(x), "x")
    seen = []

    def traced(t):
        seen.append(validation.is_concrete(t))
        validation.finite(t, "x")
        validation.integral_labels(t, "x")
        validation.class_ids_in_range(t, 1, "x")
        return keras.ops.sum(keras.ops.where(keras.ops.isnan(t), 0.0, 1.0))

    assert numpy(compiled(traced)(x)) == 3.0
    assert seen and not any(seen)


def test_minus_infinity_masks_a_pair_exactly():
    labels = np.array([0, 1, 2])
    y_pred = np.array([[1.0, -np.inf, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    expected = np.mean([np.log1p(np.exp(-1.0)), *[np.log1p(2 * np.exp(-1.0))] * 2])
    for fn, y_true in ((kml.npairs_loss, labels), (kml.npairs_multilabel_loss, _one_hot(labels))):
        value, grad = value_and_grad(lambda s, f=fn, y=y_true: f(y, s), y_pred)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        assert np.isfinite(grad).all() and grad[0, 1] == 0.0


def test_integral_float_labels_compare_by_value():
    # Documented: float labels are class ids when integral (3.0); 0.5 raises (eagerly).
    y_pred = RNG.normal(size=(3, 3)).astype("float32")
    as_float = kml.npairs_loss(np.array([3.0, 3.0, 1.0]), y_pred)
    np.testing.assert_allclose(numpy(as_float), numpy(kml.npairs_loss(np.array([3, 3, 1]), y_pred)))


@st.composite
def labelled_similarity(draw):
    batch = draw(st.integers(1, 12))
    labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, 4)))
    scale = draw(st.sampled_from([0.1, 1.0, 30.0]))
    logits = draw(hnp.arrays(np.float32, (batch, batch), elements=st.floats(-1, 1, width=32)))
    permutation = draw(st.permutations(range(batch)))
    return labels, logits * scale, np.asarray(permutation)


def _renamed(labels, offset):
    """An injective renaming of the classes: large offsets (int32 for JAX without x64)."""
    renamed = labels * 7 + offset
    return renamed % 2**31 if keras.backend.backend() == "jax" else renamed


@settings(max_examples=30, deadline=None)
@given(labelled_similarity(), st.integers(0, 2**40))
def test_npairs_properties(case, offset):
    labels, y_pred, permutation = case
    per_anchor = numpy(kml.NpairsLoss(reduction=None)(labels, y_pred))
    expected = reference_per_anchor(labels, y_pred)
    np.testing.assert_allclose(per_anchor, expected, rtol=1e-5, atol=1e-5)
    # Permuting the batch (rows, columns and labels together) permutes the per-anchor losses.
    permuted = numpy(
        kml.NpairsLoss(reduction=None)(labels[permutation], y_pred[permutation][:, permutation])
    )
    np.testing.assert_allclose(permuted, per_anchor[permutation], rtol=1e-5, atol=1e-5)
    renamed = numpy(kml.NpairsLoss(reduction=None)(_renamed(labels, offset), y_pred))
    np.testing.assert_allclose(renamed, per_anchor, rtol=1e-6, atol=1e-6)


PN_DISTANCES = ["cosine", "euclidean", "squared_euclidean", "manhattan", "inner_product"]


@st.composite
def pn_batches(draw):
    batch, dim = draw(st.integers(1, 10)), draw(st.integers(1, 4))
    labels = draw(hnp.arrays(np.int64, batch, elements=st.integers(0, 3)))
    scale = draw(st.sampled_from([0.1, 1.0, 10.0]))
    # Continuous values: no exact distance ties, so mining does not depend on the order.
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    embeddings = (scale * rng.normal(size=(batch, dim))).astype("float32")
    return labels, embeddings, np.asarray(draw(st.permutations(range(batch))))


@settings(max_examples=25, deadline=None)
@given(
    batch=pn_batches(),
    distance=st.sampled_from(PN_DISTANCES),
    positive=st.sampled_from(["hard", "easy"]),
    negative=st.sampled_from(["hard", "semi-hard", "easy"]),
    margin=st.sampled_from([None, 0.5]),
    offset=st.integers(0, 2**40),
)
def test_pn_properties(batch, distance, positive, negative, margin, offset):
    labels, embeddings, permutation = batch
    kwargs = {"distance": distance, "positive_mining_strategy": positive,
              "negative_mining_strategy": negative, "margin": margin}  # fmt: skip
    loss = kml.PNLoss(reduction=None, **kwargs)
    per_anchor = numpy(loss(labels, embeddings))
    expected = pn_reference(labels, embeddings, soft_margin=margin is None, **kwargs)[0]
    np.testing.assert_allclose(per_anchor, expected, rtol=1e-4, atol=1e-4 * _scale(embeddings))
    permuted = numpy(loss(labels[permutation], embeddings[permutation]))
    np.testing.assert_allclose(permuted, per_anchor[permutation], rtol=1e-5, atol=1e-5)
    renamed = numpy(loss(_renamed(labels, offset), embeddings))
    np.testing.assert_array_equal(renamed, per_anchor)


def _scale(embeddings):
    """The size of the largest distance, for an absolute tolerance on differences of them."""
    return 1.0 + float(np.abs(embeddings).sum(axis=1).max()) ** 2


@st.composite
def nce_batches(draw):
    batch, dim = draw(st.integers(0, 6)), draw(st.integers(1, 4))
    num_classes = draw(st.integers(1, 12))
    num_sampled, num_true = draw(st.integers(1, 5)), draw(st.integers(1, 3))
    labels = draw(hnp.arrays(np.int32, (batch, num_true), elements=st.integers(0, num_classes - 1)))
    sampled = draw(hnp.arrays(np.int32, num_sampled, elements=st.integers(0, num_classes - 1)))
    counts = st.floats(0.0625, 1.0, width=32)
    true_ec = draw(hnp.arrays(np.float32, (batch, num_true), elements=counts))
    sampled_ec = draw(hnp.arrays(np.float32, num_sampled, elements=counts))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    scale = draw(st.sampled_from([0.1, 1.0, 5.0]))
    arrays = [scale * rng.normal(size=s) for s in ((num_classes, dim), num_classes, (batch, dim))]
    weights, biases, inputs = (a.astype("float32") for a in arrays)
    permutation = np.asarray(draw(st.permutations(range(batch))), "int64")
    return (weights, biases, labels, inputs, (sampled, true_ec, sampled_ec)), permutation


@settings(max_examples=15, deadline=None)  # every new shape recompiles JAX's eager ops
@given(nce_batches(), st.booleans())
def test_sampled_losses_match_the_numpy_reference_and_permute_with_the_batch(case, remove):
    (weights, biases, labels, inputs, values), permutation = case
    nce, softmax = reference_losses(*reference_logits(weights, biases, labels, inputs, values,
                                                      remove))  # fmt: skip
    num_true, num_sampled, num_classes = labels.shape[1], len(values[0]), len(biases)
    for fn, expected in ((kml.nce_loss, nce), (kml.sampled_softmax_loss, softmax)):

        def loss(labels, inputs, true_ec, fn=fn):
            return numpy(fn(weights, biases, labels, inputs, num_sampled, num_classes, num_true,
                            (values[0], true_ec, values[2]), remove))  # fmt: skip

        per_example = loss(labels, inputs, values[1])
        np.testing.assert_allclose(per_example, expected, rtol=1e-4, atol=1e-4)
        permuted = loss(labels[permutation], inputs[permutation], values[1][permutation])
        np.testing.assert_allclose(permuted, per_example[permutation], rtol=1e-6, atol=1e-6)
