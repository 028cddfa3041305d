"""Manifold loss (pytorch-metric-learning's `ManifoldLoss`): a random walk over the batch and
the proxies, scored against each example's meta class."""

import math

import keras

from keras_metric_losses import validation
from keras_metric_losses.backend import ops
from keras_metric_losses.class_logits import Targets, checked_inputs, cosines
from keras_metric_losses.losses import base
from keras_metric_losses.losses.proxy import common
from keras_metric_losses.ops import in_dtype_of, l2_normalize, masked_logsumexp, with_non_finite_of
from keras_metric_losses.sampling import check_seed


def draw_meta_classes(batch, num_proxies, seed=None):
    """`[batch]` int32 meta classes as PML draws them: every class of `[0, num_proxies)` once,
    then `batch - num_proxies` uniform ones, in a random order (`keras.random`, `seed` an int,
    a `keras.random.SeedGenerator` or `None`).

    Raises:
        ValueError: if `batch < num_proxies` (not every class can be drawn).
        TypeError: if `seed` is not an int, a `SeedGenerator` or `None`.
    """
    seed = check_seed(seed)
    if batch < num_proxies:
        raise ValueError(
            "Drawn meta classes need at least one example per proxy: a batch of at least K = "
            f"{num_proxies} embeddings, or `meta_classes`. Received: a batch of {batch}"
        )
    extra = batch - num_proxies
    # One draw for both parts, so that an int seed does not correlate them.
    uniform = keras.random.uniform((extra + batch,), dtype="float32", seed=seed)
    drawn = ops.minimum(
        ops.cast(ops.floor(uniform[:extra] * num_proxies), "int32"), num_proxies - 1
    )
    every = ops.concatenate([ops.arange(num_proxies, dtype="int32"), drawn])
    return ops.take(every, ops.argsort(uniform[extra:]))


def _size(x, name):
    """The static number of rows of `x`."""
    rows = ops.convert_to_tensor(x).shape[0]
    if rows is None:
        raise ValueError(
            f"Drawn meta classes need a known number of rows of `{name}` (or give "
            f"`meta_classes`). Received: {name}.shape={tuple(ops.convert_to_tensor(x).shape)}"
        )
    return rows


def _margin_softplus(values, targets, margin):
    """`[B]`: `log(1 + sum_j exp(v_ij - v_i,own + margin))` over the other columns `j` whose
    term is `>= 0` (PML's `-inf` masks)."""
    own = ops.one_hot(targets.ids, targets.num_classes, dtype="bool")
    gaps = values - ops.expand_dims(targets.take(values), 1) + margin
    paying = ops.logical_and(ops.logical_not(own), gaps >= 0)
    return masked_logsumexp(gaps, paying, add_one=True)


def manifold_elements(meta_classes, embeddings, proxies, *, lambdaC, alpha, margin, seed=None):
    """Manifold loss per example, as pytorch-metric-learning's `ManifoldLoss`.

    The `B` embeddings and the `K` proxies are the nodes of a graph with affinities `A_uv =
    exp(max(cos_uv, 0) / 0.5)` (0 on the diagonal), normalised `A_bar = D^-1/2 A D^-1/2`
    (`D` the row sums); the random walk with restart `F = (1 - alpha) (I - alpha A_bar)^-1`
    spreads similarity along the manifold. Each example `i` of meta class `m_i` is scored
    against the other proxies, on its walk similarities (intrinsic) and on the cosines of its
    row of `F` to the proxies' rows (context, `G`):

    ```
    int_i = log(1 + sum_{k != m_i, g_ik >= 0} exp(g_ik)),   g_ik = F_i,k - F_i,m_i + margin
    ctx_i = the same of G_ik
    loss_i = int_i + lambdaC ctx_i
    ```

    PML returns the mean of the `B` values (the proxies' rows are not scored). It calls the
    loss without labels: `meta_classes` `[B]` in `[0, K)` (PML's `indices_tuple`), or `None`
    to draw them as PML does (`draw_meta_classes`, with `seed`; needs `B >= K`). An id
    outside `[0, K)` gives its row 0 (its node still takes part in the walk).

    Where we differ: `lambdaC=inf` is the context loss alone, as PML documents (PML returns
    inf); the inverse is computed in the compute dtype (PML casts it to float32, whatever the
    input's).

    Example:

    The labels as meta classes (one proxy each):

    >>> loss = kml.manifold_loss(labels, x, proxies)
    >>> print(keras.ops.convert_to_numpy(loss).round(4))
    [0.     0.     0.     0.6938]

    Reference: Aziere and Todorovic, "Ensemble Deep Manifold Similarity Learning using Hard
    Proxies", CVPR 2019.
    """
    if meta_classes is None:
        meta_classes = draw_meta_classes(
            _size(embeddings, "embeddings"), _size(proxies, "proxies"), seed
        )
    labels, x, p, num_proxies = checked_inputs(
        meta_classes, embeddings, proxies, labels_name="meta_classes"
    )
    if x.shape[0] == 0:  # no example; the max of an empty row has no value on TensorFlow
        return in_dtype_of(ops.sum(x, axis=1), embeddings)
    targets = Targets(labels, num_proxies)
    batch = ops.shape(x)[0]
    nodes = l2_normalize(ops.concatenate([x, p], axis=0))
    # TensorFlow's eager inverse raises on NaN: non-finite entries are zeroed here and carried
    # to the values at the end.
    nodes = ops.where(ops.isfinite(nodes), nodes, 0.0)
    size = ops.shape(nodes)[0]
    outside = 1.0 - ops.eye(size, dtype=nodes.dtype)
    affinity = ops.exp(ops.relu(ops.matmul(nodes, ops.transpose(nodes))) / 0.5) * outside
    scale = ops.expand_dims(1.0 / ops.sqrt(ops.sum(affinity, axis=1)), 1)
    walk = ops.inv(
        ops.eye(size, dtype=nodes.dtype) - alpha * (scale * affinity * ops.reshape(scale, (1, -1)))
    )
    walk = (1.0 - alpha) * walk
    rows, proxy_rows = walk[:batch], walk[batch:]
    values = 0.0
    if lambdaC != math.inf:
        values = _margin_softplus(rows[:, batch:], targets, margin)
    if lambdaC:
        context = _margin_softplus(cosines(rows, proxy_rows), targets, margin)
        values = values + (1.0 if lambdaC == math.inf else lambdaC) * context
    values = ops.where(targets.valid, values, 0.0)  # the masks drop NaN: carried
    return in_dtype_of(with_non_finite_of(values, x, p), embeddings)


def _weight(value, name):
    """`lambdaC`: a finite number `>= 0`, or `inf` (the context loss alone)."""
    if isinstance(value, float) and value == math.inf:
        return value
    return validation.real(value, name, low=0.0)


def _share(value, name):
    """`alpha`: in `(0, 1)`."""
    if value == 1.0:  # I - A_bar is singular
        raise ValueError(f"`{name}` must be in (0, 1). Received: {name}={value!r}")
    return validation.real(value, name, low=0.0, high=1.0, low_open=True)


META_CLASSES = base.Inputs(
    ("meta_classes", "embeddings", "proxies"),
    (
        "`[B]` or `[B, 1]` integer meta classes in `[0, K)` (PML's `indices_tuple`), or "
        "`None` to draw them (needs `B >= K`).",
        "`[B, D]` float embeddings.",
        "`[K, D]` proxies (PML's `proxies`).",
    ),
    returns="`[B]` per-example losses in the dtype of `embeddings`.",
    keywords=(
        (
            "seed",
            "The seed of the draw of `meta_classes=None`: an int, a "
            "`keras.random.SeedGenerator` or `None`.",
        ),
    ),
    example=common.EXAMPLE,
)

HYPERPARAMETERS = dict(
    lambdaC=base.Hyperparameter(
        1.0, _weight, "Weight of the context loss, `>= 0` (`inf`: the context loss alone)."
    ),
    alpha=base.Hyperparameter(
        0.8, _share, "Share of similarity the walk passes to neighbours, in `(0, 1)`."
    ),
    margin=base.real(5e-4, "The margin."),
)

manifold_loss, ManifoldLoss = base.declare(
    manifold_elements,
    function="manifold_loss",
    cls="ManifoldLoss",
    inputs=META_CLASSES,
    original="PML `ManifoldLoss`",
    summary="a random walk over the batch and the proxies, each example against its meta class",
    hyperparameters=HYPERPARAMETERS,
    bases=(common.TakesProxies,),
    class_doc="""Manifold loss (`manifold_loss`), computed by `layers.ClassProxies`, which owns
    the `K` proxies: pytorch-metric-learning's `ManifoldLoss(l, K, ...)` is
    `ClassProxies(K, loss=kml.ManifoldLoss(...))` on `l`-dimensional embeddings.

    The layer, called on `[embeddings, meta_classes]`, adds the mean of `manifold_loss(
    meta_classes, embeddings, proxies)` to the model (PML's `loss(embeddings,
    indices_tuple=meta_classes)`); called on the embeddings alone in training (`training=True`,
    as in `fit`), it draws the meta classes as PML does without them (every proxy once, the
    rest uniform, shuffled; needs `B >= K`) from a `keras.random.SeedGenerator` of its own
    (`meta_class_seed`, saved with the model), so that `model.fit(x)` trains without meta
    classes. Without meta classes and not in training it adds nothing. The layer returns its
    `[B, K]` cosines to the proxies. The model is compiled without a loss; the class raises a
    `ValueError` when called on `(y_true, y_pred)` itself.

    Example:

    The labels as meta classes; `loss_values` gives the values the layer reduces:

    >>> layer = kml.layers.ClassProxies(3, loss=kml.ManifoldLoss())
    >>> layer.set_proxies(proxies)
    >>> values = layer.loss_values(x, labels)
    >>> print(keras.ops.convert_to_numpy(values).round(4))
    [0.     0.     0.     0.6938]

    Training without meta classes: the layer draws them.

    >>> features = keras.Input((8,))
    >>> embeddings = keras.layers.Dense(4, name="embedding")(features)
    >>> head = kml.layers.ClassProxies(3, loss=kml.ManifoldLoss(), meta_class_seed=0)
    >>> model = keras.Model(features, head(embeddings))
    >>> model.compile(optimizer="adam")  # the layer adds the loss
    >>> data = np.random.default_rng(0).normal(size=(32, 8)).astype("float32")
    >>> history = model.fit(data, batch_size=8, epochs=2, verbose=0)
    >>> bool(np.isfinite(history.history["loss"]).all())
    True

    Reference: Aziere and Todorovic, "Ensemble Deep Manifold Similarity Learning using Hard
    Proxies", CVPR 2019.
    """,
)
