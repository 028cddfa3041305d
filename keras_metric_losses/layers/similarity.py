"""A layer that turns embeddings into the similarity matrix that pairwise losses take."""

import keras

from keras_metric_losses import distributed, validation
from keras_metric_losses.api import StrictConfig, export
from keras_metric_losses.backend import ops
from keras_metric_losses.ops import l2_normalize


@export
class PairwiseSimilarity(StrictConfig, keras.layers.Layer):
    """Similarity matrix `S[i, j] = <a_i, b_j>` between two batches of embeddings.

    Called on `[anchors, positives]` (`[B, D]` each) it returns `anchors @ positives.T`
    (`[B, B]`), the `y_pred` that `NpairsLoss` takes; called on one tensor `x` it returns
    `x @ x.T`. With `normalize=True` both sides are L2-normalised first (cosine similarity).

    With `cross_replica=True` the keys (`positives`, or `x`) of every replica are gathered
    (`kml.distributed.all_gather`) and the layer returns this replica's anchors against the
    global batch, `[b, B]`; use it with a loss built with `cross_replica=True` (which gathers the
    labels of the columns). Outside a replica context (one device, JAX, whose
    `keras.distribution.DataParallel` step already sees the global batch) it changes nothing.
    See the "Distributed training" page.

    Args:
        normalize: L2-normalise the embeddings before the product. Defaults to `False`.
        cross_replica: Gather the keys of all replicas (TensorFlow `tf.distribute`,
            `torch.distributed`). Defaults to `False`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:

    >>> import keras
    >>> import numpy as np
    >>> import keras_metric_losses as kml
    >>> a = np.array([[1.0, 0.0], [3.0, 4.0]])
    >>> keras.ops.convert_to_numpy(kml.PairwiseSimilarity()([a, a])).tolist()
    [[1.0, 3.0], [3.0, 25.0]]
    >>> print(keras.ops.convert_to_numpy(kml.PairwiseSimilarity(normalize=True)(a)).round(2))
    [[1.  0.6]
     [0.6 1. ]]

    In a model:

    ```python
    anchors, positives = keras.Input((32,)), keras.Input((32,))
    similarity = kml.layers.PairwiseSimilarity()([anchors, positives])  # [B, B]
    global_similarity = kml.layers.PairwiseSimilarity(cross_replica=True)([anchors, positives])
    ```
    """

    def __init__(self, normalize=False, cross_replica=False, **kwargs):
        super().__init__(**kwargs)
        self.normalize = validation.boolean(normalize, "normalize")
        self.cross_replica = validation.boolean(cross_replica, "cross_replica")

    def call(self, inputs):
        queries, keys = inputs if isinstance(inputs, (list, tuple)) else (inputs, inputs)
        if self.normalize:
            queries, keys = l2_normalize(queries), l2_normalize(keys)
        if self.cross_replica:
            keys = distributed.all_gather(keys)
        return ops.matmul(queries, ops.transpose(keys))

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            rows, columns = input_shape[0][0], input_shape[1][0]
        else:
            rows = columns = input_shape[0]
        return (rows, None if self.cross_replica else columns)

    def get_config(self):
        return {
            **super().get_config(),
            "normalize": self.normalize,
            "cross_replica": self.cross_replica,
        }
