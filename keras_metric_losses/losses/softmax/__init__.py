"""Softmax contrastive losses on labelled embeddings: NT-Xent, SupCon (single- and
multi-label), Instance and FastAP, with their shared log-softmax core (`core`)."""
