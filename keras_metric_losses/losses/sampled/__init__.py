"""Sampled losses over many classes: noise-contrastive estimation and sampled softmax.

`nce_loss` and `sampled_softmax_loss` reproduce `tf.nn.nce_loss` and `tf.nn.sampled_softmax_loss`
on every backend, with their signatures (class weights and inputs, not `(y_true, y_pred)`);
`NCELoss` and `SampledSoftmaxLoss` compute the same values from the sampled logits that the
`keras_metric_losses.layers.NCE` layer returns, for `model.compile`. The sampled logits
themselves are `keras_metric_losses.sampled_logits`, below this package and the layer.

- `common`: the per-example rules and the two ways to reach them (class weights, sampled logits);
- `docstring_parts`: the docstring parts the four objects share;
- `nce`, `sampled_softmax`: each loss's function and class.
"""

from keras_metric_losses.losses.sampled import (  # noqa: F401 (each module declares its losses)
    nce,
    sampled_softmax,
)
