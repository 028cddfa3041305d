"""Softmax contrastive losses on labelled embeddings: NT-Xent, SupCon (single- and
multi-label), Instance, FastAP and NCA, with their shared log-softmax core (`core`)."""

from keras_metric_losses.losses.softmax import (  # noqa: F401 (each module declares its losses)
    fastap,
    instance,
    nca,
    ntxent,
    supcon,
)
