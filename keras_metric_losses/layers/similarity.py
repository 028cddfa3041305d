"""A layer that turns embeddings into the similarity matrix that pairwise losses take."""

import keras
from keras import ops

from keras_metric_losses.api import export


@export
class PairwiseSimilarity(keras.layers.Layer):
    """Similarity matrix `S[i, j] = <a_i, b_j>` between two batches of embeddings.

    Called on `[anchors, positives]` (`[B, D]` each) it returns `anchors @ positives.T`
    (`[B, B]`), the `y_pred` that `NpairsLoss` takes; called on one tensor `x` it returns
    `x @ x.T`. With `normalize=True` both sides are L2-normalised first (cosine similarity).

    Args:
        normalize: L2-normalise the embeddings before the product. Defaults to `False`.
        **kwargs: Standard `keras.layers.Layer` arguments (`name`, `dtype`, ...).

    Example:

    ```python
    anchors, positives = keras.Input((32,)), keras.Input((32,))
    similarity = kml.layers.PairwiseSimilarity()([anchors, positives])  # [B, B]
    ```
    """

    def __init__(self, normalize=False, **kwargs):
        super().__init__(**kwargs)
        if not isinstance(normalize, bool):
            raise TypeError(f"`normalize` must be a bool. Received: normalize={normalize!r}")
        self.normalize = normalize

    def call(self, inputs):
        queries, keys = inputs if isinstance(inputs, (list, tuple)) else (inputs, inputs)
        if self.normalize:
            queries, keys = ops.normalize(queries, axis=-1), ops.normalize(keys, axis=-1)
        return ops.matmul(queries, ops.transpose(keys))

    def compute_output_shape(self, input_shape):
        if isinstance(input_shape, (list, tuple)) and isinstance(input_shape[0], (list, tuple)):
            return (input_shape[0][0], input_shape[1][0])
        return (input_shape[0], input_shape[0])

    def get_config(self):
        return {**super().get_config(), "normalize": self.normalize}
