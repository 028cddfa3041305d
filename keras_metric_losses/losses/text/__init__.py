"""Text-embedding losses of sentence-transformers 6.2.0, on embeddings.

sentence-transformers calls a loss with the features of several text columns (anchor, positive,
negatives...) and runs the model inside the loss. Here the model runs first, as Keras does, and
the loss takes its output:

- `y_pred` is `[B, C, D]`: column `c` of every example is `y_pred[:, c]` (anchor, positive,
  then the hard negatives). In a model: `keras.ops.stack([anchor, positive, ...], axis=1)`.
- `y_true` holds the labels of the losses that read any (CoSENT, AnglE); the others ignore it.
"""

from keras_metric_losses.losses.text import (
    angle,  # noqa: F401 (declares AnglELoss)
    cosent,  # noqa: F401 (declares CoSENTLoss)
    gist,  # noqa: F401 (declares GISTEmbedLoss)
    mnrl,  # noqa: F401 (declares the MultipleNegativesRankingLoss family)
)
