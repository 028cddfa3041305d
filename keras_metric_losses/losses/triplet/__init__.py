"""Triplet losses on labels and embeddings, as TF Addons, TensorFlow Similarity and
pytorch-metric-learning define them.

| module | loss | original | an anchor's triplets | its value |
| --- | --- | --- | --- | --- |
| `semihard` | `triplet_semihard_loss` | TF Addons 0.23 | positives, semi-hard negatives | share |
| `hard` | `triplet_hard_loss` | TF Addons 0.23 | hardest positive and negative | own loss |
| `tfsim_triplet` | `triplet_loss` | TF Similarity 0.17 | mined positive and negative | own loss |
| `pn` | `pn_loss` | TF Similarity 0.17 | mined triplet + PN step | own loss |
| `triplet_margin` | `triplet_margin_loss` | PML 2.9 | all (or a miner's) triplets | `reducer` |
| `margin` | `margin_loss` | PML 2.9 | all triplets, from `[B, K]` pair terms | `reducer` |
| `dynamic_soft_margin` | `dynamic_soft_margin_loss` | PML 2.9 | all (or hardest) | `reducer` |

The TF Addons and TF Similarity losses mine from the `[B, K]` distance matrix (`O(B K)` memory,
`O(B K log K)` time for the semi-hard search); `mined` is the core of those with one mined
triplet per anchor (`triplet_hard_loss`, `triplet_loss`, `pn_loss`). `triplet_margin_loss`
enumerates every triplet as a dense `[B, K, K]` tensor (`O(B K^2)`, see `kml.mining`).
`common` holds the hyperparameters that several losses share.
"""

from keras_metric_losses.losses.triplet import (  # noqa: F401 (each module declares its losses)
    dynamic_soft_margin,
    hard,
    margin,
    pn,
    semihard,
    tfsim_triplet,
    triplet_margin,
)
