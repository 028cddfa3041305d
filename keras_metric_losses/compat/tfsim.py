"""TensorFlow Similarity 0.17.1: its losses' names and settings here, and its saved configs."""


class TensorFlowSimilarityConfig:
    """Mixin (listed before `LossFunctionWrapper`): `from_config` also loads the configs that
    TensorFlow Similarity 0.17 saves: `reduction: "auto"`, a distance as a `Distance` object's
    config dict, and `margin: None` for the soft margin."""

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if config.get("reduction") == "auto":
            config["reduction"] = "sum_over_batch_size"
        distance = config.get("distance")
        if isinstance(distance, dict):
            config["distance"] = distance.get("config", {}).get("name", distance)
        if "margin" in config and config["margin"] is None:
            config.update(soft_margin=True, margin=1.0)
        return super().from_config(config)
