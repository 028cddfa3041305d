"""SimCLR (TensorFlow Similarity's `SimCLRLoss`): NT-Xent of two views, on the softmax core."""

from keras_metric_losses import distributed, pairs
from keras_metric_losses.backend import ops
from keras_metric_losses.compat.tfsim import TensorFlowSimilarityConfig
from keras_metric_losses.losses import base
from keras_metric_losses.losses.softmax import core
from keras_metric_losses.losses.ssl.common import TWO_VIEWS, views
from keras_metric_losses.ops import in_dtype_of


def example_ids(batch, cross_replica):
    """`[b]` int32 ids of this replica's examples, distinct across replicas."""
    ids = ops.arange(batch, dtype="int32")
    if not cross_replica:
        return ids
    replica_id, num_replicas = distributed.replica_context()
    if num_replicas == 1:
        return ids
    sizes = distributed.all_gather(ops.reshape(ops.cast(batch, "int32"), (1,)))
    before = ops.less(ops.arange(num_replicas, dtype="int32"), ops.cast(replica_id, "int32"))
    return ids + ops.sum(ops.where(before, sizes, ops.zeros_like(sizes)))


def simclr_elements(y_true, y_pred, *, temperature, cross_replica):
    """SimCLR loss of two views, one value per example, as TensorFlow Similarity's
    `SimCLRLoss`.

    With `a`, `b` the L2-normalised views and `x(u, v) = u . v / temperature`, each view of
    example `i` classifies its other view among the `2B - 1` other embeddings of the batch:

    ```
    l_a[i] = -log( exp(x(a_i, b_i)) / (sum_j exp(x(a_i, b_j)) + sum_{j != i} exp(x(a_i, a_j))) )
    loss_i = l_a[i] + l_b[i]           (l_b: the same with a and b swapped)
    ```

    The sum of both directions is TensorFlow Similarity's per-example value; on the same views
    it is twice `ntxent_loss` (SimCLR form, `reducer="anchor"`), whose per-example value is the
    mean over the views. A batch of one gives 0.

    With `cross_replica=True` (`tf.distribute`, `torch.distributed`) the views of every replica
    are the keys, as TensorFlow Similarity does under a `tf.distribute` strategy: the loss and
    gradients are those of one device on the global batch.

    Differences from TensorFlow Similarity: the anchor's own similarity is left out of the
    softmax instead of lowered by `1e9` (the same value); the views are normalised by
    `max(|z|, 1e-12)` (`kml.ops.l2_normalize`) rather than `max(|z|, 1e-6)`, which differs only
    for views shorter than 1e-6; float16/bfloat16 views are computed in float32.

    Raises:
        ValueError: if `y_pred` is not `[B, 2, D]` or `temperature <= 0`. With value checks on,
            also non-finite views.
        TypeError: if `cross_replica` is not a bool.

    Example:

    ...                   [[-1.0, 0.2], [-0.8, -0.1]]])  # [3 examples, 2 views, 2]
    >>> losses = kml.simclr_loss(None, views, temperature=0.5)
    >>> print(keras.ops.convert_to_numpy(losses).round(4))
    [0.9481 1.2148 0.5494]

    Reference: Chen et al., "A Simple Framework for Contrastive Learning of Visual
    Representations", ICML 2020.
    """
    flat = views(y_pred)  # concat(za, zb)
    ids = example_ids(ops.shape(flat)[0] // 2, cross_replica)
    keys = pairs.keys_of(cross_replica=cross_replica)
    batch = pairs.build(ops.concatenate([ids, ids], axis=0), flat, keys, normalize=True)
    terms = core.dense_terms(batch, distance="inner_product", temperature=temperature,
                             pairwise=False)  # fmt: skip
    losses = ops.sum(ops.reshape(terms.anchor_mean, (2, -1)), axis=0)
    return in_dtype_of(losses, y_pred)


simclr_loss, SimCLRLoss = base.declare(
    simclr_elements,
    function="simclr_loss",
    cls="SimCLRLoss",
    original="TF Similarity `SimCLRLoss`",
    summary="each view classifies its other view among the batch's views (both directions)",
    positional=("temperature",),
    inputs=TWO_VIEWS,
    options=(base.CROSS_REPLICA,),
    bases=(TensorFlowSimilarityConfig,),
    hyperparameters=dict(temperature=base.positive_real(0.05, "Softmax temperature, `> 0`.")),
    class_doc="""SimCLR loss of two views (`simclr_loss`), one value per example; `y_true` is
    unused.

    With the default reduction the value is TensorFlow Similarity's `SimCLRLoss()(za, zb)`
    for `y_pred = keras.ops.stack([za, zb], axis=1)`.

    Example:

    >>> round(float(kml.SimCLRLoss(temperature=0.5)(np.zeros(3), views)), 4)
    0.9041

    Reference: Chen et al., ICML 2020.
    """,
)
