"""open_clip 3.3.0's losses (`ClipLoss`, `SigLipLoss`) on `[B, 2, D]` image and text features.

open_clip calls its loss with the features of a batch of (image, text) pairs and the model's
`logit_scale.exp()` (and `logit_bias`). Here `y_pred` is `keras.ops.stack([image, text],
axis=1)`, `y_true` is unused, and the scale and bias are hyperparameters;
`kml.layers.LogitScale` owns them as trainable weights.
"""

from keras_metric_losses.losses.clip import clip, siglip  # noqa: F401 (declare the losses)
