"""Proxy and margin-softmax losses (pytorch-metric-learning 2.9): every example meets a learned
proxy (class weight) of every class.

Each loss has a function of `(labels, embeddings, proxies)` (`[C * K, D]`, PML's `proxies`, or
its `W` / `fc` transposed) and a class of the `[B, C]` logits of
`keras_metric_losses.layers.ClassProxies`, which owns the proxies. Their shared core, the class
logits, is `keras_metric_losses.class_logits`; `common` holds what the losses of this package
share (their inputs, and what a class declares to its layer).
"""

from keras_metric_losses.losses.proxy import (  # noqa: F401 (each module declares its losses)
    anchor,
    arcface,
    cosface,
    manifold,
    nca,
    normalized_softmax,
    p2sgrad,
    soft_triple,
    sphereface,
)
