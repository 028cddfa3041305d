"""Quick-start: train a small embedding model with `NpairsLoss` on the current Keras backend.

Run with `python -m keras_metric_losses.demo` (pick the backend with `KERAS_BACKEND`).
"""

import argparse

import keras
import numpy as np

import keras_metric_losses as kml


def clustered_pairs(num_classes=10, per_class=64, dim=16, seed=0):
    """Anchor/positive pairs drawn from Gaussian clusters, one cluster per class."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(num_classes, dim))
    labels = rng.permutation(np.repeat(np.arange(num_classes), per_class))

    def draw():
        return (centers[labels] + 0.8 * rng.normal(size=(len(labels), dim))).astype("float32")

    return [draw(), draw()], labels


def pair_model(dim=16, embedding_dim=8):
    """Shared embedding of anchors and positives, scored by their similarity matrix."""
    embed = keras.Sequential(
        [keras.layers.Dense(32, activation="relu"), keras.layers.Dense(embedding_dim)]
    )
    anchors, positives = keras.Input((dim,)), keras.Input((dim,))
    similarity = kml.PairwiseSimilarity()([embed(anchors), embed(positives)])
    return keras.Model([anchors, positives], similarity)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    x, labels = clustered_pairs()
    model = pair_model()
    model.compile(optimizer=keras.optimizers.Adam(1e-2), loss=kml.NpairsLoss())
    before = model.evaluate(x, labels, batch_size=64, verbose=0)
    model.fit(x, labels, batch_size=64, epochs=args.epochs)
    after = model.evaluate(x, labels, batch_size=64, verbose=0)
    print(f"backend {keras.backend.backend()}: npairs loss {before:.4f} -> {after:.4f}")
    return after < before


if __name__ == "__main__":
    raise SystemExit(0 if main() else 1)
