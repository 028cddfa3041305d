"""How each loss trains the shared embedding network inside `model.compile` / `model.fit`."""

import dataclasses

import keras
import numpy as np

import keras_metric_losses as kml


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A loss and the training model and `fit` inputs it needs around an embedding network."""

    title: str
    build: object  # (embedder, input_dim, num_classes) -> (model, loss)
    fit_data: object  # (x, y, rng) -> (inputs, targets)


def _npairs_model(embedder, input_dim, num_classes):
    anchors, positives = keras.Input((input_dim,)), keras.Input((input_dim,))
    similarity = kml.PairwiseSimilarity()([embedder(anchors), embedder(positives)])
    return keras.Model([anchors, positives], similarity), kml.NpairsLoss()


def _npairs_data(x, y, rng):
    """Each sample is an anchor paired with a random other sample of its class."""
    positives = np.empty(len(y), dtype=int)
    for label in np.unique(y):
        members = np.flatnonzero(y == label)
        positives[members] = rng.permutation(members)
    return [x, x[positives]], y


RECIPES = {
    "npairs": Recipe("NpairsLoss", _npairs_model, _npairs_data),
}
