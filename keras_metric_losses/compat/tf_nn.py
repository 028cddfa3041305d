"""TensorFlow's `tf.nn` / `tf.random` sampled losses: the same names and arguments here.

`ORIGINALS` maps each name to TensorFlow's arguments in order; ours take them in the same
order, with a Keras `seed` before `name` (the sampler has no `name`: `NOT_OURS`), and return the
`[B]` per-example losses as TensorFlow's do. In a model, `kml.layers.NCE` owns the class weights and
`kml.NCELoss` / `kml.SampledSoftmaxLoss` take its sampled logits.
"""

ORIGINALS = {
    "nce_loss": ("weights", "biases", "labels", "inputs", "num_sampled", "num_classes",
                 "num_true", "sampled_values", "remove_accidental_hits", "name"),
    "sampled_softmax_loss": ("weights", "biases", "labels", "inputs", "num_sampled",
                             "num_classes", "num_true", "sampled_values",
                             "remove_accidental_hits", "name"),
    "log_uniform_candidate_sampler": ("true_classes", "num_true", "num_sampled", "unique",
                                      "range_max", "seed", "name"),
}  # fmt: skip
NOT_OURS = {"log_uniform_candidate_sampler": ("name",)}
