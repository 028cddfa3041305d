"""NumPy reference of TensorFlow's sampled logits, NCE and sampled softmax losses, for the tests."""

import numpy as np


def reference_logits(weights, biases, labels, inputs, sampled_values, remove_accidental_hits):
    """TensorFlow's `_compute_sampled_logits` in float64 NumPy (a removed hit is `None`)."""
    weights = np.concatenate(weights) if isinstance(weights, list) else weights
    weights, biases, inputs = (np.asarray(a, np.float64) for a in (weights, biases, inputs))
    sampled = np.asarray(sampled_values[0])
    true_ec, sampled_ec = (np.asarray(v, np.float64) for v in sampled_values[1:])
    true = np.einsum("bd,bkd->bk", inputs, weights[labels]) + biases[labels]
    noise = inputs @ weights[sampled].T + biases[sampled]
    true, noise = true - np.log(true_ec), noise - np.log(sampled_ec)
    removed = np.zeros(noise.shape, bool)
    if remove_accidental_hits:
        last = {int(c): j for j, c in enumerate(sampled)}  # the last copy of each class
        for b in range(len(labels)):
            for label in labels[b]:
                if int(label) in last:
                    removed[b, last[int(label)]] = True
    return true, noise, removed


def reference_losses(true, noise, removed):
    """`(nce, sampled softmax)` per example, float64."""
    num_true = true.shape[1]
    softplus = np.logaddexp(0.0, true) - true / num_true
    nce = softplus.sum(1) + np.where(removed, 0.0, np.logaddexp(0.0, noise)).sum(1)
    logits = np.concatenate([true, np.where(removed, -np.inf, noise)], 1)
    top = logits.max(1, keepdims=True)
    lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
    return nce, lse - true.sum(1) / num_true
