"""How each loss trains the shared embedding network inside `model.compile` / `model.fit`."""

import dataclasses

import keras
import numpy as np

import keras_metric_losses as kml


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A loss and the training model and `fit` inputs it needs around an embedding network."""

    title: str
    build: object  # (embedder, input_dim, num_classes) -> (model, loss); labels < num_classes
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


def _pn_model(embedder, input_dim, num_classes):
    inputs = keras.Input((input_dim,))
    embeddings = keras.layers.UnitNormalization()(embedder(inputs))
    return keras.Model(inputs, embeddings), kml.PNLoss()


def _class_index_data(x, y, rng):
    """The classes renumbered 0..K-1, so the class embeddings and the sampler cover no unused id."""
    index = np.unique(y, return_inverse=True)[1]
    return [x, index], index


def _nce_model(embedder, input_dim, num_classes):
    inputs, labels = keras.Input((input_dim,)), keras.Input((1,), dtype="int32")
    nce = kml.layers.NCE(num_classes, num_sampled=4, remove_accidental_hits=True, seed=0)
    logits = nce([embedder(inputs), labels])
    return keras.Model([inputs, labels], logits), kml.SampledSoftmaxLoss()


RECIPES = {
    "npairs": Recipe("NpairsLoss", _npairs_model, _npairs_data),
    "pn": Recipe("PNLoss (cosine, hard / semi-hard)", _pn_model, lambda x, y, rng: (x, y)),
    "nce": Recipe("SampledSoftmaxLoss (NCE layer)", _nce_model, _class_index_data),
}
