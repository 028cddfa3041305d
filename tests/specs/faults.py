"""Bad inputs and degenerate batches: the faults every loss is checked against, and outcomes.

A spec states, for every fault in `FAULTS`, what its loss does: raise an error that names the
argument and what was received (`Raises`), or return a documented finite value with finite
gradients (`Value`). Static (shape, dtype) errors also fire when the loss is traced by the
backend's compiler; value errors (NaN, non-integral or out-of-range labels) only eagerly and
only with value checks on (`kml.config.enable_value_checks`).
"""

import dataclasses
import re

import numpy as np

IDS = np.array([1, 3, 1, 4])  # a valid batch: class ids below NUM_CLASSES for the NCE entries
NUM_CLASSES = 6


@dataclasses.dataclass(frozen=True)
class Raises:
    """The loss raises `error` matching `match`; `traced=False`: a value check (eager, when on)."""

    error: type
    match: str
    traced: bool = True


@dataclasses.dataclass(frozen=True)
class Value:
    """The loss returns a finite value with finite gradients (the entry's reference if any)."""


@dataclasses.dataclass(frozen=True)
class NotApplicable:
    reason: str


def _with(array, value):
    """A float copy of `array` with `value` at its first (or `[0, 1]`) entry."""
    array = np.array(array, "float32")
    array[(0, 1)[: array.ndim]] = value
    return array


def valid(entry, ids=IDS):
    return entry.labels(np.asarray(ids)), entry.predictions(len(ids))


FAULTS = {
    "y_true rank + 2": lambda e: (e.labels(IDS)[..., None, None], valid(e)[1]),
    "y_true two columns": lambda e: (np.stack([e.labels(IDS)] * 2, -1), valid(e)[1]),
    "y_pred rank 1": lambda e: (e.labels(IDS), valid(e)[1][:, 0]),
    "y_pred rank 3": lambda e: (e.labels(IDS), valid(e)[1][..., None]),
    "batch mismatch": lambda e: (e.labels(IDS[:-1]), valid(e)[1]),
    "non-square y_pred": lambda e: (e.labels(IDS), valid(e)[1][:, :-1]),
    "string labels": lambda e: (e.labels(IDS).astype(str), valid(e)[1]),
    "non-integral labels": lambda e: (_with(e.labels(IDS), 1.5), valid(e)[1]),
    "NaN labels": lambda e: (_with(e.labels(IDS), np.nan), valid(e)[1]),
    "out-of-range labels": lambda e: (np.array([1, 6, 1, -1]), valid(e)[1]),
    "NaN in y_pred": lambda e: (e.labels(IDS), _with(valid(e)[1], np.nan)),
    "inf in y_pred": lambda e: (e.labels(IDS), _with(valid(e)[1], np.inf)),
    "-inf in y_pred": lambda e: (e.labels(IDS), _with(valid(e)[1], -np.inf)),
    "empty batch": lambda e: valid(e, IDS[:0]),
    "batch of one": lambda e: valid(e, IDS[:1]),
    "one class": lambda e: valid(e, [4, 4, 4, 4]),
    "all labels differ": lambda e: valid(e, [0, 5, 2, 3]),
}
DEGENERATE = ("empty batch", "batch of one", "one class", "all labels differ")


def shape_errors(true, pred, pred_shape, square=False, multilabel=False):
    """The static-shape outcomes shared by most losses, with their argument names."""
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


def not_finite(name, shape, nan, inf, allowed=""):
    return Raises(
        ValueError,
        rf"`{name}` must be finite{re.escape(allowed)}; it holds {nan} NaN and {inf} inf values "
        rf"\(first at index \(0, 1\)\). Received: {name}.shape=" + re.escape(str(shape)),
        traced=False,
    )


def not_integral(name, index="(0,)", shape="(4,)", first="1.5"):
    return Raises(
        ValueError,
        rf"`{name}` must hold integer class ids.*1 of its values are not integral "
        rf"\(first: {first} at index {re.escape(index)}\). "
        rf"Received: {name}.shape={re.escape(shape)}",
        traced=False,
    )


NO_RANGE = NotApplicable("any integer is a class id")
NOT_SQUARE = NotApplicable("y_pred is not a similarity matrix")
