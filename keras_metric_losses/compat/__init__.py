"""The originals' names, settings and configs, in one executable place per original library:
`pml` (pytorch-metric-learning 2.9), `tfsim` (TensorFlow Similarity 0.17.1), `tfa` (TensorFlow
Addons 0.23) and `tf_nn` (TensorFlow's sampled losses). The tests run them against the
originals' values, and the migration guide's tables are made from them."""

from keras_metric_losses.compat import pml, tf_nn, tfa, tfsim

__all__ = ["pml", "tf_nn", "tfa", "tfsim"]
