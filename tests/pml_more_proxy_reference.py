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


def _margin_softplus(values, meta_classes, margin):
    """Per row: `log(1 + sum exp(g))` over the other columns with `g = v_ik - v_i,own +
    margin >= 0` (PML sets the rest to `-inf`)."""
    rows = np.arange(len(meta_classes))
    gaps = values - values[rows, meta_classes][:, None] + margin
    gaps[rows, meta_classes] = -np.inf
    gaps[gaps < 0] = -np.inf
    return np.log1p(np.sum(np.exp(gaps), axis=1))


def manifold_loss(embeddings, meta_classes, proxies, lambdaC=1.0, alpha=0.8, margin=5e-4):
    """ManifoldLoss with `meta_classes` (PML's `indices_tuple`): over the nodes `[embeddings;
    proxies]`, `A = exp(max(cos, 0) / 0.5)` with a zero diagonal, `A_bar = D^-1/2 A D^-1/2`,
    `F = (1 - alpha) inv(I - alpha A_bar)`; `loss_i = int_i + lambdaC ctx_i`, the margin
    softplus of row `i` of `F[:B, B:]` (intrinsic) and of the cosines of `F`'s row `i` to its
    proxy rows (context); PML's scalar is their mean (`lambdaC = inf` is the context alone
    here; PML returns inf)."""
    meta_classes = np.asarray(meta_classes, np.int64).reshape(-1)
    batch = len(meta_classes)
    nodes = proxy.normalize(np.concatenate([embeddings, proxies]))
    affinity = np.exp(np.maximum(nodes @ nodes.T, 0.0) / 0.5)
    np.fill_diagonal(affinity, 0.0)
    scale = 1.0 / np.sqrt(affinity.sum(axis=1))
    normalized = scale[:, None] * affinity * scale[None, :]
    walk = (1.0 - alpha) * np.linalg.inv(np.eye(len(nodes)) - alpha * normalized)
    context = _margin_softplus(
        proxy.normalize(walk[:batch]) @ proxy.normalize(walk[batch:]).T, meta_classes, margin
    )
    if lambdaC == np.inf:
        losses = context
    else:
        losses = _margin_softplus(walk[:batch, batch:], meta_classes, margin) + lambdaC * context
    return proxy.ProxyLossResult(float(np.mean(losses)), {}, losses, walk[:batch, batch:])
