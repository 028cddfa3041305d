"""The manifold loss (pytorch-metric-learning's `ManifoldLoss`): `kml.manifold_loss` of meta
classes, embeddings and proxies, and `kml.ManifoldLoss`, which `layers.ClassProxies(K, loss=...)`
computes on its proxies.

The shared tests that train `kind.model()` compile it without a loss (`compiled=False`): the
layer adds the loss of the labels as meta classes. Its faults, golden cases (`specs.proxy`) and
the layer's draws and saved seed state are tested in tests/test_manifold.py; the robustness
table lists neither object (`NOT_LOSSES`).
"""

import keras

import keras_metric_losses as kml
from specs import Spec
from specs.kinds import EMBEDDING_DIM, INPUT_DIM, Kind, clustered_inputs

NUM_PROXIES = 4  # K: one proxy per class of the kinds' data


class Manifold(Kind):
    """Meta classes (the data's labels), `[B, D]` embeddings and the `K` proxies of the
    model's `ClassProxies(K, loss=kml.ManifoldLoss())`."""

    name = "manifold"

    def entries(self, spec):
        return []  # tests/test_manifold.py (`NOT_LOSSES` of tests/test_robustness.py)

    def model(self, cross_replica=False):
        features, meta_classes = keras.Input((INPUT_DIM,)), keras.Input((), dtype="int32")
        embeddings = keras.layers.Dense(EMBEDDING_DIM, name="embedding")(features)
        # A margin of 0.1: with PML's 5e-4 the loss of a short fit goes up and down (see
        # tests/test_manifold.py, `test_fit_lowers_the_loss`).
        loss = kml.ManifoldLoss(margin=0.1)
        layer = kml.layers.ClassProxies(NUM_PROXIES, loss=loss, name="proxies")
        return keras.Model([features, meta_classes], layer([embeddings, meta_classes]))

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        (x, _), labels = clustered_inputs(batch, num_classes=NUM_PROXIES, seed=seed,
                                          scale=scale, nuisance=nuisance)  # fmt: skip
        return [x, labels], labels


SPECS = [
    Spec(kml.manifold_loss, kml.ManifoldLoss, Manifold(), "proxy", precision=False,
         compiled=False),
]  # fmt: skip
GOLDEN = {}
