"""N-pair losses: TF Addons' softmax cross-entropy over a similarity matrix with targets from
the labels, and PML's on labelled embeddings (one pair per label)."""

from keras_metric_losses.losses.npairs import (  # noqa: F401 (each module declares its losses)
    npairs,
    pml_npairs,
)
