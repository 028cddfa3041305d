import keras
import numpy as np
import pytest
from references import reference_grad, reference_per_anchor
from support import compiled, finite_difference_grad, golden_cases, numpy, value_and_grad

import keras_metric_losses as kml

NPAIRS = golden_cases("npairs")
MULTILABEL = golden_cases("npairs_multilabel")
RTOL = {"float32": 1e-5, "float16": 1e-2}


def case_inputs(case):
    return np.asarray(case["y_true"]), np.asarray(case["y_pred"], dtype=case["dtype"])


def mean_of(fn):
    """TF Addons' scalar: the mean of the per-anchor values of `fn`."""
    return lambda y_true, y_pred: keras.ops.mean(fn(y_true, y_pred))


def test_golden_values_agree_with_numpy_reference():
    # Guards the NumPy reference used by the gradient and weighting tests below.
    for case in NPAIRS + MULTILABEL:
        if case["dtype"] == "float32":
            per_anchor = reference_per_anchor(
                case["y_true"], case["y_pred"], case["call"] == "npairs_multilabel_loss"
            )
            np.testing.assert_allclose(per_anchor.mean(), case["expected"], rtol=1e-5)


LOSSES = [
    (kml.NpairsLoss, NPAIRS, False),
    (kml.NpairsMultilabelLoss, MULTILABEL, True),
]


@pytest.mark.parametrize("loss_cls, cases, multilabel", LOSSES)
def test_class_reductions_and_sample_weight(loss_cls, cases, multilabel):
    for case in cases:
        if case["dtype"] != "float32":
            continue
        y_true, y_pred = case_inputs(case)
        per_anchor = reference_per_anchor(y_true, y_pred, multilabel)
        batch = len(per_anchor)
        np.testing.assert_allclose(numpy(loss_cls()(y_true, y_pred)), case["expected"], rtol=1e-5)
        np.testing.assert_allclose(
            numpy(loss_cls(reduction=None)(y_true, y_pred)), per_anchor, rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            numpy(loss_cls(reduction="sum")(y_true, y_pred)), per_anchor.sum(), rtol=1e-5
        )
        weights = np.linspace(0.0, 2.0, batch).astype("float32")
        np.testing.assert_allclose(
            numpy(loss_cls()(y_true, y_pred, sample_weight=weights)),
            (weights * per_anchor).sum() / batch,
            rtol=1e-5,
        )
        np.testing.assert_allclose(
            numpy(loss_cls(reduction="mean_with_sample_weight")(y_true, y_pred, weights)),
            (weights * per_anchor).sum() / weights.sum(),
            rtol=1e-5,
        )


@pytest.mark.parametrize(
    "fn, cases, multilabel",
    [(kml.npairs_loss, NPAIRS, False), (kml.npairs_multilabel_loss, MULTILABEL, True)],
)
def test_gradients_match_numpy_and_finite_differences(fn, cases, multilabel):
    fn = mean_of(fn)
    for case in cases[2:6]:
        y_true, y_pred = case_inputs(case)
        value, grad = value_and_grad(lambda s, y=y_true: fn(y, s), y_pred)
        assert np.isfinite(grad).all()
        np.testing.assert_allclose(value, case["expected"], rtol=1e-5)
        np.testing.assert_allclose(grad, reference_grad(y_true, y_pred, multilabel), atol=1e-6)
    small_true, small_pred = case_inputs(cases[3])
    numeric = finite_difference_grad(
        lambda s: numpy(fn(small_true, s.astype("float32"))), small_pred, eps=1e-2
    )
    np.testing.assert_allclose(grad_of(fn, small_true, small_pred), numeric, atol=2e-4)


def grad_of(fn, y_true, y_pred):
    return value_and_grad(lambda s: fn(y_true, s), y_pred)[1]


@pytest.mark.slow
def test_compiled_class_keeps_large_labels_distinct():
    case = NPAIRS[4]
    _, y_pred = case_inputs(case)
    labels = np.asarray(case["y_true"]) + 2**24  # ids 16777216 + k: merged if cast to float32
    loss = kml.NpairsLoss(reduction=None)
    values = compiled(lambda y, s: loss(y, s))(labels, y_pred)
    np.testing.assert_allclose(
        numpy(values), reference_per_anchor(case["y_true"], y_pred), rtol=1e-5, atol=1e-6
    )


def test_large_integer_labels_stay_distinct():
    y_pred = np.asarray(NPAIRS[4]["y_pred"], "float32")[:4, :4]
    big = np.array([16777216, 16777217, 16777218, 16777219])
    small = np.array([0, 1, 2, 3])
    expected = reference_per_anchor(small, y_pred).mean()
    np.testing.assert_allclose(numpy(kml.npairs_loss(big, y_pred)).mean(), expected, rtol=1e-5)
    np.testing.assert_allclose(numpy(kml.NpairsLoss()(big, y_pred)), expected, rtol=1e-5)
    # The float32 cast that keras.losses.Loss applies would merge ids 0 and 1:
    merged = reference_per_anchor(big.astype("float32"), y_pred).mean()
    assert abs(merged - expected) > 1e-2


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_is_computed_in_float32(dtype):
    case = NPAIRS[0]  # logits up to 79: exp overflows float16 without the up-cast
    y_pred = keras.ops.cast(np.asarray(case["y_pred"], "float32"), dtype)
    value = kml.npairs_loss(case["y_true"], y_pred)
    assert keras.backend.standardize_dtype(value.dtype) == dtype
    value = numpy(keras.ops.cast(value, "float32")).mean()
    np.testing.assert_allclose(value, case["expected"], rtol=1e-2)
    loss = kml.NpairsLoss(dtype=dtype)
    value = loss(case["y_true"], y_pred)
    assert keras.backend.standardize_dtype(value.dtype) == dtype
    np.testing.assert_allclose(numpy(keras.ops.cast(value, "float32")), case["expected"], rtol=1e-2)


def test_multilabel_row_without_labels_is_zero_and_finite():
    case = MULTILABEL[2]
    y_true, y_pred = case_inputs(case)
    y_true = y_true.copy()
    y_true[3] = 0
    per_anchor = numpy(kml.NpairsMultilabelLoss(reduction=None)(y_true, y_pred))
    assert per_anchor[3] == 0.0
    np.testing.assert_allclose(per_anchor, reference_per_anchor(y_true, y_pred, True), atol=1e-5)
    value, grad = value_and_grad(lambda s: mean_of(kml.npairs_multilabel_loss)(y_true, s), y_pred)
    assert np.isfinite(value) and np.isfinite(grad).all()
    assert not grad[3].any()
    np.testing.assert_allclose(grad, reference_grad(y_true, y_pred, True), atol=1e-6)


BAD_INPUTS = [
    (kml.npairs_loss, np.zeros(3), np.zeros((3, 4)), r"y_pred.*square.*\(3, 4\)"),
    (kml.npairs_loss, np.zeros(3), np.zeros((3, 3, 1)), r"y_pred.*square.*\(3, 3, 1\)"),
    (kml.npairs_loss, np.zeros(4), np.zeros((3, 3)), r"same batch size.*\(4,\).*\(3, 3\)"),
    (kml.npairs_loss, np.zeros((3, 2)), np.zeros((3, 3)), r"y_true.*\[batch\].*\(3, 2\)"),
    (kml.npairs_multilabel_loss, np.zeros(3), np.zeros((3, 3)), r"y_true.*multi-hot.*\(3,\)"),
    (kml.npairs_multilabel_loss, np.ones((3, 2)), np.zeros((2, 3)), r"y_pred.*square"),
    (kml.npairs_multilabel_loss, np.ones((2, 2)), np.zeros((3, 3)), r"same batch size"),
]


@pytest.mark.parametrize("fn, y_true, y_pred, message", BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(fn, y_true, y_pred, message):
    with pytest.raises(ValueError, match=message):
        fn(y_true, y_pred.astype("float32"))
    loss_cls = kml.NpairsLoss if fn is kml.npairs_loss else kml.NpairsMultilabelLoss
    with pytest.raises(ValueError, match=message):
        loss_cls()(y_true, y_pred.astype("float32"))


def test_sparse_labels_are_densified_where_the_backend_has_sparse_tensors():
    """TF Addons accepts a `tf.SparseTensor` for `y_true`; so do we, on TensorFlow (and JAX's
    BCOO on JAX); elsewhere a sparse input is refused with a `TypeError`."""
    case = MULTILABEL[2]
    y_true, y_pred = case_inputs(case)
    expected = numpy(kml.npairs_multilabel_loss(y_true, y_pred))
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        sparse = tf.sparse.from_dense(y_true)
    elif backend == "jax":
        from jax.experimental import sparse as jax_sparse

        sparse = jax_sparse.BCOO.fromdense(y_true)
    else:
        import scipy.sparse

        with pytest.raises(TypeError, match=r"`y_true`.*sparse"):
            kml.npairs_multilabel_loss(scipy.sparse.csr_matrix(y_true), y_pred)
        return
    np.testing.assert_allclose(numpy(kml.npairs_multilabel_loss(sparse, y_pred)), expected)
    np.testing.assert_allclose(
        numpy(kml.NpairsMultilabelLoss(reduction=None)(sparse, y_pred)), expected
    )


def test_bad_constructor_arguments():
    with pytest.raises(ValueError, match="reduction"):
        kml.NpairsLoss(reduction="median")
    with pytest.raises(TypeError, match="margin"):
        kml.NpairsLoss(margin=1.0)
