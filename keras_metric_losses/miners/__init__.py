"""Miners: which pairs or triplets of a batch a loss uses, as masks of static shape.

pytorch-metric-learning 2.9's miners on every Keras backend. A miner is called on labels and
embeddings (and optional keys) and returns a `Mined`: `[b, K]` masks of the selected positive and
negative pairs, and for the triplet miners the `[b, K, K]` mask of the selected triplets. The
selections are masked reductions and comparisons, so they run under `jax.jit`, XLA and
`torch.compile`; labels may be multi-hot.
"""

from keras_metric_losses.api import public_names
from keras_metric_losses.miners.base import Mined, Miner  # noqa: F401 (the result and the base)
from keras_metric_losses.miners.pair_miners import (  # noqa: F401 (registered: see __all__)
    HDCMiner,
    MultiSimilarityMiner,
    PairMarginMiner,
)
from keras_metric_losses.miners.stochastic_miners import (  # noqa: F401
    DistanceWeightedMiner,
    UniformHistogramMiner,
)
from keras_metric_losses.miners.triplet_miners import (  # noqa: F401
    AngularMiner,
    BatchEasyHardMiner,
    BatchHardMiner,
    EmbeddingsAlreadyPackagedAsTriplets,
    TripletMarginMiner,
)

__all__ = public_names(__name__)
