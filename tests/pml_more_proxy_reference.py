"""NumPy (float64) references for the proxy losses of pytorch-metric-learning 2.9.0 that
`tests/data/pml_more.json` covers: `P2SGradLoss` and `ManifoldLoss`.

As in `pml_proxy_reference` (whose `ProxyLossResult` they return), each takes `embeddings`
`[B, D]`, the labels, the trainable weight under PML's own name and layout (`weight` `[D, C]`,
`proxies` `[K, l]`) and PML's constructor arguments with PML's defaults.
"""

import numpy as np
import pml_proxy_reference as proxy


def p2sgrad_loss(embeddings, labels, weight, num_classes, descriptors_dim=None):
    """P2SGradLoss: `loss_i = mean_c (clip(cos_ic, -1, 1) - [c = y_i])^2`, `cos_ic` the cosine
    of `x_i` and column `c` of `weight` (PML rescales the columns to unit norm first); PML's
    scalar (the mean over `B x C`) is the mean of the rows."""
    labels = np.asarray(labels, np.int64).reshape(-1)
    cos = proxy.normalize(embeddings) @ proxy.normalize(weight, axis=0)
    one_hot = np.eye(num_classes)[labels]
    losses = np.mean((np.clip(cos, -1.0, 1.0) - one_hot) ** 2, axis=1)
    return proxy._rows_result(losses, cos, cos)
