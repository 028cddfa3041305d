"""NumPy reference implementations that the tests compare the losses with."""

import numpy as np


def reference_targets(y_true, multilabel):
    """Row-normalised targets of TF Addons' npairs losses, in float64 NumPy."""
    if multilabel:
        weights = np.asarray(y_true, np.float64) @ np.asarray(y_true, np.float64).T
    else:
        labels = np.asarray(y_true).reshape(-1)
        weights = (labels[:, None] == labels[None, :]).astype(np.float64)
    sums = weights.sum(axis=1, keepdims=True)
    return np.divide(weights, sums, out=np.zeros_like(weights), where=sums > 0)


def reference_per_anchor(y_true, y_pred, multilabel=False):
    logits = np.asarray(y_pred, np.float64)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_softmax = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    return -(reference_targets(y_true, multilabel) * log_softmax).sum(axis=1)


def reference_grad(y_true, y_pred, multilabel=False):
    """d mean_i loss_i / d y_pred = (softmax(y_pred) - targets) / B (for rows with a target)."""
    logits = np.asarray(y_pred, np.float64)
    softmax = np.exp(logits - logits.max(axis=1, keepdims=True))
    softmax /= softmax.sum(axis=1, keepdims=True)
    targets = reference_targets(y_true, multilabel)
    has_target = targets.sum(axis=1, keepdims=True) > 0
    return np.where(has_target, softmax - targets, 0.0) / len(logits)
