"""Self-supervised two-view losses of TensorFlow Similarity 0.17.1: SimCLR, Barlow Twins,
VICReg and SimSiam.

The original losses are called `loss(za, zb)` with the two views' embeddings. A Keras model
outputs both views as one tensor, and Keras hands the loss a `y_true` that these losses do not
use, so here:

- `y_pred` is `[B, 2, D]`: `y_pred[:, 0]` is `za` (SimSiam: the projector output),
  `y_pred[:, 1]` is `zb` (SimSiam: the predictor output). In a model:
  `keras.ops.stack([za, zb], axis=1)`.
- `y_true` is ignored: pass any array with one row per example to `fit` (e.g.
  `np.zeros(len(x))`); the functions accept `None`.

Each loss returns one value per example, `[B]`. Barlow Twins is a batch statistic: every example
carries the batch's value, so the batch mean is TensorFlow Similarity's scalar.
"""

from keras_metric_losses.losses.ssl import (  # noqa: F401 (each module declares its losses)
    barlow,
    simclr,
    simsiam,
    vicreg,
)
