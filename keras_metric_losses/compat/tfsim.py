"""TensorFlow Similarity 0.17.1: each of its losses as a loss of this package, and its configs.

Its losses keep their names and arguments here, so migrating is an import change:
`loss(name, **kwargs)` builds ours from TF Similarity's class name and arguments (a `Distance`
object's config dict becomes its name; `margin=None`, TF Similarity's soft margin of `PNLoss`,
becomes `soft_margin=True`), and `TensorFlowSimilarityConfig` makes our classes load the
configs TF Similarity saves. Its two-view losses take `loss(za, zb)`; ours take
`loss(y_true, keras.ops.stack([za, zb], axis=1))` with `y_true` unused.

```python
import keras_metric_losses as kml

loss = kml.compat.tfsim.loss("PNLoss", margin=None)  # kml.PNLoss(soft_margin=True)
```
"""

# TF Similarity's default arguments of each loss (besides `name` and `reduction`).
ORIGINALS = {
    "PNLoss": {"distance": "cosine", "positive_mining_strategy": "hard",
               "negative_mining_strategy": "semi-hard", "soft_margin": False, "margin": 1.0},
    "TripletLoss": {"distance": "cosine", "positive_mining_strategy": "hard",
                    "negative_mining_strategy": "semi-hard", "margin": None},
    "MultiSimilarityLoss": {"distance": "cosine", "alpha": 2.0, "beta": 40.0, "epsilon": 0.1,
                            "lmda": 0.5, "center": 1.0},
    "CircleLoss": {"distance": "cosine", "gamma": 80.0, "margin": 0.4},
    "SoftNearestNeighborLoss": {"distance": "sql2", "temperature": 1.0},
    "SimCLRLoss": {"temperature": 0.05},
    "Barlow": {"lambda_": 5e-3, "margin": 1e-12},
    "VicReg": {"std_const": 1e-4, "lambda_": 25.0, "mu": 25.0, "nu": 1.0},
    "SimSiamLoss": {"projection_type": "negative_cosine_sim", "margin": 0.001},
}  # fmt: skip


class TensorFlowSimilarityConfig:
    """Mixin (listed before `LossFunctionWrapper`): `from_config` also loads the configs that
    TensorFlow Similarity 0.17 saves: `reduction: "auto"`, a distance as a `Distance` object's
    config dict, and `margin: None` for the soft margin."""

    @classmethod
    def from_config(cls, config):
        return super().from_config(translated(config))


def translated(arguments):
    """TF Similarity's arguments (or config) in this package's terms (see the module)."""
    arguments = dict(arguments)
    if arguments.get("reduction") == "auto":
        arguments["reduction"] = "sum_over_batch_size"
    distance = arguments.get("distance")
    if isinstance(distance, dict):
        arguments["distance"] = distance.get("config", {}).get("name", distance)
    if "margin" in arguments and arguments["margin"] is None:
        arguments.update(soft_margin=True, margin=1.0)
    return arguments


def loss(name, **kwargs):
    """Our loss for TF Similarity's `tensorflow_similarity.losses.<name>(**kwargs)`.

    Raises:
        ValueError: for a loss with no counterpart here.
        TypeError: for an argument TF Similarity's loss does not take.

    Example:

    >>> import keras_metric_losses as kml
    >>> kml.compat.tfsim.loss("PNLoss", margin=None).soft_margin
    True
    """
    import keras_metric_losses

    if name not in ORIGINALS:
        raise ValueError(f"TF Similarity's {name} has no counterpart here: {sorted(ORIGINALS)}")
    unknown = sorted(set(kwargs) - set(ORIGINALS[name]) - {"name", "reduction"})
    if unknown:
        raise TypeError(
            f"TF Similarity's {name} takes {sorted(ORIGINALS[name])}. Received: {unknown}"
        )
    cls = getattr(keras_metric_losses, name)
    if name == "TripletLoss":  # `margin=None` is its own default (the soft margin)
        return cls(**kwargs)
    return cls(**translated(kwargs))


def memory(loss_, memory_size, warmup_steps=0):
    """Our layer for TF Similarity's `XBM(loss, memory_size, warmup_steps)`."""
    import keras_metric_losses

    return keras_metric_losses.layers.CrossBatchMemory(
        loss_, memory_size, mode="tf_similarity", warmup_steps=warmup_steps
    )
