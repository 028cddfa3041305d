"""Bad inputs and degenerate batches over every public loss (from `specs.SPECS`), and properties.

Each spec's kind states, for every fault in `specs.faults.FAULTS`, what the loss does: raise an
error that names the argument and what was received (`Raises`), or return a documented finite
value with finite gradients (`Value`). Static (shape, dtype) errors also fire when the loss is
traced by the backend's compiler; value errors (NaN, non-integral or out-of-range labels) only
eagerly, with value checks on (`kml.config.enable_value_checks`).
"""

import inspect

import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nce_reference import reference_logits, reference_losses
from pn_reference import distance_matrix, pn_reference
from references import reference_per_anchor
from specs import SPECS
from specs.faults import FAULTS, Raises, Value, valid
from support import compiled, examples, first_of_each, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses import backend, validation

RNG = np.random.default_rng(0)
_ENTRIES_OF_SPECS = [spec.kind.entries(spec) for spec in SPECS]  # [function, class] each
TABLE = [entry for entries in _ENTRIES_OF_SPECS for entry in entries]
# Public objects that are not losses: their outputs are checked through the entries above.
NOT_LOSSES = {
    kml.PairwiseSimilarity: "builds the y_pred of the npairs losses",
    kml.layers.CrossBatchMemory: "adds the loss it wraps (tests/test_memory.py)",
    kml.layers.DynamicSoftMargin: "adds the loss it wraps (tests/test_dynamic_soft_margin.py)",
    kml.layers.LogitScale: "adds the loss it is given (tests/test_clip.py)",
    # Losses made of other losses: the faults reach the losses they hold (whose entries are
    # above); their own errors and NaN are tested in tests/test_loss_wrappers.py.
    kml.MultipleLosses: "sums the losses it holds",
    kml.manifold_loss: "takes meta classes and proxies: its faults are in tests/test_manifold.py",
    kml.ManifoldLoss: (
        "computed by ClassProxies on the embeddings and proxies: its faults are in "
        "tests/test_manifold.py"
    ),
    kml.SelfSupervisedLoss: "labels the views for the loss it holds",
    kml.MatryoshkaLoss: "truncates the embeddings for the loss it holds",
}


def _one_hot(ids):
    return np.eye(6, dtype="float32")[ids]


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


def _entries(every_one_on=None):
    """The fast tier checks each loss once, through its class where it has one (which calls
    its function), and the slow tier through the other entry too (see `first_of_each`)."""
    return first_of_each(
        ((i, pytest.param(entry, id=entry.name))
         for i, entries in enumerate(_ENTRIES_OF_SPECS)
         for entry in reversed(entries)),
        every_one_on,
    )  # fmt: skip


ENTRIES = _entries()


@pytest.mark.parametrize("entry", ENTRIES)
def test_bad_inputs_raise_clear_errors(entry):
    def check(outcome, y_true, y_pred):
        with pytest.raises(outcome.error, match=outcome.match):
            entry.loss(y_true, y_pred)

    with kml.config.value_checks():
        _check_all(entry, Raises, check)


@pytest.mark.parametrize("entry", ENTRIES)
def test_value_faults_do_not_raise_with_value_checks_off(entry):
    """By default no tensor value is read: value faults pass through without an error (NaN or
    inf inputs give a non-finite value, see below; ids out of range the documented finite
    value)."""

    def check(outcome, y_true, y_pred):
        if outcome.traced:
            return
        result = numpy(entry.loss(y_true, y_pred))
        if not np.isnan(np.asarray(y_pred, "float32")).any() and not np.isinf(y_pred).any():
            assert np.isfinite(result).all(), result

    assert not kml.config.value_checks_enabled()
    _check_all(entry, Raises, check)


NON_FINITE = ("NaN in y_pred", "inf in y_pred", "-inf in y_pred")


def _non_finite_faults(entry):
    """The faults that put a NaN or an infinity in `y_pred` and that the loss does not take
    as data (N-pair losses take `-inf` as a masked pair)."""
    return [f for f in NON_FINITE if isinstance(entry.outcomes[f], Raises)]


def _assert_non_finite_outputs(entry, loss):
    for fault in _non_finite_faults(entry):
        y_true, y_pred = FAULTS[fault](entry)
        result = numpy(loss(y_true, y_pred))
        assert not np.isfinite(result).all(), (fault, result)


@pytest.mark.parametrize("entry", ENTRIES)
def test_non_finite_predictions_give_a_non_finite_loss(entry):
    """With value checks off (no host read), a NaN or inf in `y_pred` gives a non-finite loss,
    so that Keras' `TerminateOnNaN` stops the training (masks select with `where`, which would
    drop it)."""
    assert not kml.config.value_checks_enabled()
    _assert_non_finite_outputs(entry, entry.loss)


def _compiled_error(error):
    """`torch.compile(fullgraph=True)` reports an error raised while tracing as `Unsupported`,
    with the original error and message; without `fullgraph` it raises the error itself."""
    if keras.backend.backend() != "torch":
        return error
    import torch

    return (error, torch._dynamo.exc.Unsupported)


def _class_entries(also=lambda spec: False):
    """The classes (which call their functions) of the first loss of each family and kind, and
    of every loss for which `also(spec)`: compiling takes seconds per loss on torch, and the
    compiled golden tier compiles every loss."""
    seen = set()
    for spec in SPECS:
        for entry in spec.kind.entries(spec):
            if entry.obj is spec.cls and (also(spec) or (spec.family, spec.kind.name) not in seen):
                seen.add((spec.family, spec.kind.name))
                yield pytest.param(entry, id=entry.name)


def _adds_traced_checks(spec):
    """The loss adds static checks of its own (beyond the shared front end's)."""
    own = {**spec.outcomes, **spec.class_outcomes}
    return any(isinstance(o, Raises) and o.traced for o in own.values())


NON_FINITE_COMPILED = list(_class_entries())


@pytest.mark.slow
@pytest.mark.parametrize("entry", NON_FINITE_COMPILED)
def test_non_finite_predictions_give_a_non_finite_loss_when_compiled(entry):
    """The same compiled (`0 * sum` survives the compilers: no fast math), for the first loss
    of each family and kind (`torch.compile` takes seconds a loss; every loss carries its
    non-finite inputs eagerly, above). On torch the first goes through Inductor's code
    generation, and the others through Dynamo and AOTAutograd only (their graphs, run
    eagerly): the carry is shared code, and Inductor took 4 s a loss on an empty cache."""
    first = entry is NON_FINITE_COMPILED[0].values[0]
    _assert_non_finite_outputs(entry, compiled(entry.loss, generate_code=first))


@pytest.mark.slow
@pytest.mark.parametrize("entry", list(_class_entries(_adds_traced_checks)))
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

    with kml.config.value_checks():
        _check_all(entry, Raises, check)


# Both entries of every loss on torch (4 s there), the class elsewhere: on JAX each new shape
# compiles every op of the gradient again (65 s for both entries on an empty cache).
@pytest.mark.parametrize("entry", _entries(every_one_on="torch"))
def test_degenerate_inputs_give_documented_finite_values_and_gradients(entry):
    def check(outcome, y_true, y_pred):
        value = numpy(entry.loss(y_true, y_pred))
        assert np.isfinite(value).all(), value
        if not len(y_pred):  # an empty batch: no values (per-example values), or 0 (a scalar)
            reduced = numpy(entry.loss(*valid(entry))).ndim == 0
            assert value.shape == (() if reduced else (0,))
            assert value.sum() == 0.0
        elif entry.reference is not None and np.isfinite(y_pred).all():
            expected = entry.reference(y_true, y_pred)
            np.testing.assert_allclose(value, expected, rtol=1e-5, atol=1e-6)
        loss = lambda p: keras.ops.sum(entry.loss(y_true, p))  # noqa: E731
        _, grad = value_and_grad(loss, y_pred, traced=False)  # op by op: see value_and_grad
        assert grad.shape == y_pred.shape and np.isfinite(grad).all(), grad

    _check_all(entry, Value, check)


@pytest.mark.skipif(
    keras.backend.backend() != "tensorflow",
    reason="only TensorFlow traces `fit` with an unknown batch size (datasets, generators)",
)
# The last entry of each loss: its class, which calls its function with the same symbolic
# tensors (both entries took 42 s on an empty cache, each tracing a `tf.function`).
@pytest.mark.parametrize(
    "entry",
    [pytest.param(entries[-1], id=entries[-1].name) for entries in _ENTRIES_OF_SPECS if entries],
)
def test_traces_with_an_unknown_batch_size(entry):
    import tensorflow as tf

    # In float64 (a loss class: its float64 twin; a layer keeps its own dtype): float32 rounds
    # a logit of 64 (ArcFace's scale) to 8e-6, so the graph's reordered sums differ from eager
    # by up to 1e-5 on some CPUs, which is not what this test is about.
    y_true, y_pred = (np.asarray(a) for a in valid(entry))
    if np.issubdtype(y_pred.dtype, np.floating):
        y_pred = y_pred.astype("float64")
    loss = entry.loss
    if isinstance(loss, keras.losses.Loss):
        loss = type(loss).from_config({**loss.get_config(), "dtype": "float64"})
    signature = [
        tf.TensorSpec((None, *a.shape[1:]), tf.as_dtype(a.dtype)) for a in (y_true, y_pred)
    ]
    traced = tf.function(lambda y, p: loss(y, p), input_signature=signature)
    np.testing.assert_allclose(
        numpy(traced(y_true, y_pred)), numpy(loss(y_true, y_pred)), rtol=1e-5, atol=1e-7
    )


def test_value_checks_run_eagerly_when_on_and_are_skipped_when_traced():
    x = np.array([[0.0, np.nan], [np.inf, -np.inf]], "float32")
    assert backend.is_concrete(keras.ops.convert_to_tensor(x))
    validation.finite(keras.ops.convert_to_tensor(x), "x")  # off by default: no read
    with kml.config.value_checks(), pytest.raises(ValueError, match=r"1 NaN and 2 inf values"):
        validation.finite(keras.ops.convert_to_tensor(x), "x")
    seen = []

    def traced(t):
        seen.append(backend.is_concrete(t))
        validation.finite(t, "x")
        validation.integral_labels(t, "x")
        validation.class_ids_in_range(t, 1, "x")
        return keras.ops.sum(keras.ops.where(keras.ops.isnan(t), 0.0, 1.0))

    with kml.config.value_checks():
        assert numpy(compiled(traced, trace_only=True)(x)) == 3.0
    assert seen and not any(seen)


def test_minus_infinity_masks_a_pair_exactly():
    labels = np.array([0, 1, 2])
    y_pred = np.array([[1.0, -np.inf, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]], "float32")
    expected = np.mean([np.log1p(np.exp(-1.0)), *[np.log1p(2 * np.exp(-1.0))] * 2])
    for fn, y_true in ((kml.npairs_loss, labels), (kml.npairs_multilabel_loss, _one_hot(labels))):
        value, grad = value_and_grad(lambda s, f=fn, y=y_true: keras.ops.mean(f(y, s)), y_pred)
        np.testing.assert_allclose(value, expected, rtol=1e-6)
        assert np.isfinite(grad).all() and grad[0, 1] == 0.0


def test_integral_float_labels_compare_by_value():
    # Documented: float labels are class ids when integral (3.0); 0.5 raises (value checks on).
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


@settings(max_examples=examples(30), deadline=None)
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


@settings(max_examples=examples(25), deadline=None)
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
              "negative_mining_strategy": negative, "soft_margin": margin is None,
              "margin": margin or 1.0}  # fmt: skip
    loss = kml.PNLoss(reduction=None, **kwargs)
    per_anchor = numpy(loss(labels, embeddings))
    expected = pn_reference(labels, embeddings, **kwargs)[0]
    np.testing.assert_allclose(per_anchor, expected, rtol=1e-4, atol=1e-4 * _scale(embeddings))
    if not _has_ties(distance_matrix(distance, embeddings)):  # ties go to the first index
        permuted = numpy(loss(labels[permutation], embeddings[permutation]))
        np.testing.assert_allclose(permuted, per_anchor[permutation], rtol=1e-5, atol=1e-5)
    renamed = numpy(loss(_renamed(labels, offset), embeddings))
    np.testing.assert_array_equal(renamed, per_anchor)


def _has_ties(distances):
    """Whether a row holds two equal distances (the cosine clamp at 0 makes exact ties)."""
    rows = np.sort(distances, axis=1)
    return bool((np.diff(rows, axis=1) == 0).any())


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


@settings(max_examples=examples(15), deadline=None)  # every new shape recompiles JAX's eager ops
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


FUNCTION_ENTRIES = [param for param in ENTRIES if inspect.isfunction(param.values[0].obj)]


@pytest.mark.skipif(
    not kml.backend.has_64_bit_types(), reason="JAX computes in float32 without jax_enable_x64"
)
@pytest.mark.parametrize("entry", FUNCTION_ENTRIES)
def test_float64_predictions_are_computed_in_float64(entry):
    """A float64 `y_pred` gives float64 values computed in float64 (an epsilon or a constant of
    another dtype turns a torch float64 tensor into float32): against the float64 reference."""
    y_true, y_pred = valid(entry)
    if not np.issubdtype(np.asarray(y_pred).dtype, np.floating):
        pytest.skip("integer predictions")
    y_pred = np.asarray(y_pred, "float64")
    value = entry.loss(y_true, y_pred)
    assert keras.backend.standardize_dtype(value.dtype) == "float64", value.dtype
    if entry.reference is not None:
        expected = entry.reference(y_true, y_pred)
        np.testing.assert_allclose(numpy(value), expected, rtol=1e-9, atol=1e-12)


X64 = np.array([1 / 3, 2 / 3, 0.1, 2.0**30 + 0.5])  # not float32 numbers (float32: 1e-8 off)
SEGMENTS = np.array([0, 0, 1, 1])
FLOAT64_OPS = {
    "arctan2": (lambda o, x: o.arctan2(x, 1.0 - x), np.arctan2(X64, 1.0 - X64)),
    "ceil": (lambda o, x: o.ceil(x), np.ceil(X64)),
    "clip": (lambda o, x: o.clip(x, 0.2, 0.5), np.clip(X64, 0.2, 0.5)),
    "cumsum": (lambda o, x: o.cumsum(x), np.cumsum(X64)),
    "cumsum axis": (lambda o, x: o.cumsum(x[None], axis=1), np.cumsum(X64)[None]),
    "divide_no_nan": (lambda o, x: o.divide_no_nan(x, 3.0), X64 / 3.0),
    "floor": (lambda o, x: o.floor(x), np.floor(X64)),
    "logaddexp": (lambda o, x: o.logaddexp(x[:3], 0.5), np.logaddexp(X64[:3], 0.5)),
    "matmul": (lambda o, x: o.matmul(x[None], x[:, None]), X64[None] @ X64[:, None]),
    "maximum": (lambda o, x: o.maximum(x, 0.2), np.maximum(X64, 0.2)),
    "mean": (lambda o, x: o.mean(x[:3]), np.mean(X64[:3])),
    "minimum": (lambda o, x: o.minimum(x, 0.2), np.minimum(X64, 0.2)),
    "segment_max": (lambda o, x: o.segment_max(x, SEGMENTS, 2), X64[1::2]),
    "segment_sum": (lambda o, x: o.segment_sum(x, SEGMENTS, 2), [1.0, X64[2] + X64[3]]),
    "var": (lambda o, x: o.var(x[:3]), np.var(X64[:3])),
}


@pytest.mark.skipif(
    not kml.backend.has_64_bit_types(), reason="JAX computes in float32 without jax_enable_x64"
)
@pytest.mark.parametrize("name", FLOAT64_OPS)
def test_the_package_ops_compute_float64_in_float64(name):
    """`kml.backend.ops`, which the losses call, keeps float64 in float64 on torch too, where
    `keras.ops` rounds some ops through float32 (`ops.cumsum` did: HistogramLoss's histogram)."""
    call, expected = FLOAT64_OPS[name]
    value = call(backend.ops, keras.ops.convert_to_tensor(X64))
    assert keras.backend.standardize_dtype(value.dtype) == "float64", value.dtype
    np.testing.assert_allclose(numpy(value), expected, rtol=1e-15, atol=0)
