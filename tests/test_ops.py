"""The numerical helpers of `keras_metric_losses.ops` against float64 NumPy: `masked_logsumexp`
(its value and its written-out gradient) and `shifted_exp`."""

import keras
import numpy as np
import pytest
from support import numpy, value_and_grad

from keras_metric_losses import backend, ops

# Rows: a mixed mask, a full row, an empty row, and logits ~200 apart (float32 `exp` of the
# small ones underflows against the row's maximum).
LOGITS = np.array(
    [
        [0.5, -1.0, 2.0, 0.25, -3.0],
        [1.0, 1.0, -2.0, 0.0, 4.0],
        [3.0, -1.0, 0.0, 2.0, 1.0],
        [0.0, -200.0, -150.0, -90.0, 1.0],
    ]
)
MASK = np.array(
    [
        [True, False, True, True, False],
        [True, True, True, True, True],
        [False, False, False, False, False],
        [True, True, True, True, False],
    ]
)
WEIGHTS = np.array([1.0, -2.0, 0.5, 3.0])  # d loss / d row, so each row's gradient shows
DTYPES = [
    "float32",
    pytest.param(
        "float64",
        marks=pytest.mark.skipif(
            not backend.has_64_bit_types(), reason="JAX computes in float32 without x64"
        ),
    ),
]


def reference(x, mask, add_one):
    """Value `[rows]` and gradient `[rows, cols]` of `sum_i w_i log(a + sum_j m_ij e^x_ij)`."""
    x = np.float64(x)
    shift = np.max(np.where(mask, x, -np.inf), axis=1, initial=0.0 if add_one else -np.inf)
    shift = np.where(mask.any(axis=1) | add_one, shift, 0.0)
    terms = np.where(mask, np.exp(x - shift[:, None]), 0.0)
    total = terms.sum(axis=1) + (np.exp(-shift) if add_one else 0.0)
    value = np.where(total > 0, np.log(np.where(total > 0, total, 1.0)) + shift, 0.0)
    grad = np.divide(terms, total[:, None], out=np.zeros_like(terms), where=total[:, None] > 0)
    return value, WEIGHTS[:, None] * grad


@pytest.mark.parametrize("add_one", [False, True])
@pytest.mark.parametrize("dtype", DTYPES)
def test_masked_logsumexp_value_and_gradient(add_one, dtype):
    expected_value, expected_grad = reference(LOGITS, MASK, add_one)

    def fn(x):
        values = ops.masked_logsumexp(x, MASK, add_one=add_one)
        return keras.ops.sum(values * keras.ops.cast(WEIGHTS, x.dtype))

    values = numpy(ops.masked_logsumexp(LOGITS.astype(dtype), MASK, add_one=add_one))
    _, grad = value_and_grad(fn, LOGITS.astype(dtype))
    tolerance = {"float32": 1e-6, "float64": 1e-14}[dtype]
    assert values.dtype == dtype and grad.dtype == dtype
    np.testing.assert_allclose(values, expected_value, rtol=tolerance, atol=tolerance)
    np.testing.assert_allclose(grad, expected_grad, rtol=tolerance, atol=tolerance)
    assert values[2] == 0 and not grad[2].any()  # the empty row: 0, zero gradient


def test_masked_logsumexp_along_the_first_axis_and_with_a_broadcast_mask():
    """`axis=0` is the transposed problem; a `[1, K]` mask is every row's."""
    columns = numpy(ops.masked_logsumexp(LOGITS.T, MASK.T, axis=0))
    np.testing.assert_allclose(columns, reference(LOGITS, MASK, False)[0], rtol=1e-6)
    row_mask = MASK[3:4]
    broadcast = numpy(ops.masked_logsumexp(LOGITS, row_mask))
    expected = reference(LOGITS, np.repeat(row_mask, len(LOGITS), axis=0), False)[0]
    np.testing.assert_allclose(broadcast, expected, rtol=1e-6)


def test_masked_logsumexp_carries_nan_of_a_kept_entry():
    x = LOGITS.copy()
    x[0, 2] = np.nan  # kept by the mask
    x[1, 0] = np.nan
    values = numpy(ops.masked_logsumexp(x, MASK | np.eye(4, 5, dtype=bool)))
    assert np.isnan(values[0]) and np.isnan(values[1]) and np.isfinite(values[2:]).all()


@pytest.mark.parametrize("dtype", DTYPES)
def test_shifted_exp_is_exp_where_it_counts(dtype):
    """`exp` itself down to `e^-86` (float32); below, no more than the float32 smallest normal
    from it (and from 0), with a zero or exact gradient."""
    x = np.array([0.0, -1.0, -20.0, -80.0, -85.9, -87.5, -100.0, -1e4, -3.4e38], dtype)
    values = numpy(ops.shifted_exp(x)).astype(np.float64)
    exact = np.exp(np.float64(x))
    above = x >= -86.0
    np.testing.assert_allclose(
        values[above], exact[above], rtol=1e-6 if dtype == "float32" else 1e-15
    )
    assert np.all(np.abs(values[~above] - exact[~above]) <= 1.01 * np.exp(-86.0))
    _, grad = value_and_grad(lambda t: keras.ops.sum(ops.shifted_exp(t)), x)
    np.testing.assert_allclose(
        grad[above], exact[above], rtol=1e-6 if dtype == "float32" else 1e-15
    )
    assert np.all(np.abs(grad[~above]) <= 1.01 * np.exp(-86.0))


def _log_softmax(x, axis):
    shifted = x - x.max(axis=axis, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))


@pytest.mark.parametrize("both_directions", [False, True])
def test_diagonal_cross_entropies_read_rows_and_columns_of_one_product(both_directions):
    """`[4, 5]` logits (a fifth column: a hard negative of every row), targets on the
    diagonal: the rows over every column, the columns over the four rows. Logits of ~100 with
    the diagonal the largest: losses of ~1e-3 within a few float32 ulps of 1 (differencing a
    log-sum-exp and a logit of 100 would be off by ~1e-5)."""
    x = 95.0 + LOGITS / 2
    x[:, :4] += 6.0 * np.eye(4)
    rows = -np.diagonal(_log_softmax(x, 1))
    expected = (rows - np.diagonal(_log_softmax(x[:, :4], 0))) / 2 if both_directions else rows
    values = numpy(ops.diagonal_cross_entropies(x.astype("float32"), both_directions))
    np.testing.assert_allclose(values, expected, rtol=1e-6, atol=3e-7)
    weights = keras.ops.convert_to_tensor(WEIGHTS, "float32")
    _, grad = value_and_grad(
        lambda t: keras.ops.sum(ops.diagonal_cross_entropies(t, both_directions) * weights),
        x.astype("float32"),
    )
    probabilities = np.exp(_log_softmax(x, 1)) - np.eye(4, 5)
    expected_grad = probabilities * WEIGHTS[:, None]
    if both_directions:
        columns = np.exp(_log_softmax(x[:, :4], 0)) - np.eye(4)
        expected_grad = expected_grad / 2
        expected_grad[:, :4] += columns * WEIGHTS[None, :] / 2
    np.testing.assert_allclose(grad, expected_grad, rtol=1e-5, atol=1e-7)
