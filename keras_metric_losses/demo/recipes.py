"""How each loss trains the demo's embedding network: one `Recipe` per loss.

A recipe names the loss and its tuned settings, and how the training model is built around the
shared embedding network (`network: inputs -> [B, D] embeddings`):

- `embeddings_model` (default): the loss takes `(labels, embeddings)`, as every loss on labels
  and embeddings (PN, triplet, contrastive, multi-similarity, SupCon, ...); with
  `normalize=True` the embeddings are unit-normalised first;
- `pairs_model`: anchors and positives through the network, their `[B, B]` similarity matrix
  (`kml.PairwiseSimilarity`) to the loss (N-pair losses); batches become `[anchors,
  positives]` (`pairs_batch`);
- `class_layer_model(layer)`: a layer that owns class weights turns the embeddings (and the
  labels, for a sampled layer such as `kml.layers.NCE`) into logits for the loss (NCE, sampled
  softmax, proxy losses); with `adds_loss=True` the layer is given the loss, computes it from
  the labels (a second input) and adds it, and the model is compiled without a loss
  (`kml.layers.ClassProxies(num_classes, loss=...)`: the margin-softmax losses, whose margin
  the layer applies);
- `memory_model(memory_size)`: `kml.layers.CrossBatchMemory` wraps the loss and adds it to the
  model (the model is compiled without a loss).

Adding a loss to the demo is one entry in `RECIPES`, for example

    "lifted": Recipe(
        "LiftedStructLoss", family="lifted structure", loss=kml.LiftedStructLoss,
        normalize=True,
    ),

then `python -m keras_metric_losses.demo --loss lifted` and, if it does not beat the untrained
network on held-out-class MAP@R, tune `loss_args`, `learning_rate`, `steps`,
`classes_per_batch` x `samples_per_class` (or explain why in `note`). The labels the recipes
see are class indices `0..K-1` of the training classes.
"""

import dataclasses

import keras
import numpy as np

import keras_metric_losses as kml

# --- model builders: (network, num_classes, recipe) -> (training model, batch transform) -----


def embeddings_model(network, num_classes, recipe):
    """The network's embeddings (unit-normalised if `recipe.normalize`) go to the loss."""
    inputs = keras.Input(network.input_shape[1:])
    embeddings = network(inputs)
    if recipe.normalize:
        embeddings = keras.layers.UnitNormalization()(embeddings)
    return keras.Model(inputs, embeddings)


def pairs_model(network, num_classes, recipe):
    """`[anchors, positives]` -> their `[B, B]` similarity matrix (N-pair losses)."""
    anchors = keras.Input(network.input_shape[1:])
    positives = keras.Input(network.input_shape[1:])
    similarity = kml.PairwiseSimilarity(normalize=recipe.normalize)(
        [network(anchors), network(positives)]
    )
    return keras.Model([anchors, positives], similarity)


def pairs_batch(x, y):
    """A class-balanced batch (an even number of samples per class) as anchor/positive pairs:
    `([anchors, positives], labels)`, one pair per two samples of a class."""
    order = np.argsort(y, kind="stable")
    x, y = x[order], y[order]
    return (x[0::2], x[1::2]), y[0::2]


pairs_model.batch = pairs_batch
pairs_model.description = "on PairwiseSimilarity(anchors, positives)"


def class_layer_model(layer, takes_labels=False, description=None, adds_loss=False):
    """A builder for a layer that owns class weights: `layer(num_classes)` maps the embeddings
    (and, with `takes_labels`, the `[B, 1]` labels, fed as a second input) to logits;
    `description` (the layer and its arguments) is shown with the settings. With `adds_loss`,
    `layer(num_classes, loss)` is given the recipe's loss, which it computes from the labels (a
    second input) and adds to the model: the model is compiled without a loss
    (`build.adds_loss`)."""
    takes_labels = takes_labels or adds_loss

    def build(network, num_classes, recipe):
        inputs = keras.Input(network.input_shape[1:])
        embeddings = network(inputs)
        if recipe.normalize:
            embeddings = keras.layers.UnitNormalization()(embeddings)
        head = layer(num_classes, recipe.build_loss()) if adds_loss else layer(num_classes)
        if takes_labels:
            labels = keras.Input((1,), dtype="int32")
            inputs, logits = [inputs, labels], head([embeddings, labels])
        else:
            logits = head(embeddings)
        return keras.Model(inputs, logits)

    build.batch = labels_as_input_batch if takes_labels else None
    build.adds_loss = adds_loss
    build.description = description
    return build


def labels_as_input_batch(x, y):
    """`((x, labels), labels)`: the model also takes the labels (sampled class layers, margins,
    cross-batch memory)."""
    return (x, y[:, None].astype("int32")), y


def memory_model(memory_size):
    """A builder for cross-batch memory: `kml.layers.CrossBatchMemory(loss, memory_size)` on the
    (unit-normalised if `recipe.normalize`) embeddings and the labels (a second input) adds the
    recipe's loss of the batch against the memory to the model (`add_loss`): the model is
    compiled without a loss (`build.adds_loss`)."""

    def build(network, num_classes, recipe):
        inputs = keras.Input(network.input_shape[1:])
        labels = keras.Input((1,), dtype="int32")
        embeddings = network(inputs)
        if recipe.normalize:
            embeddings = keras.layers.UnitNormalization()(embeddings)
        memory = kml.layers.CrossBatchMemory(recipe.build_loss(), memory_size=memory_size)
        return keras.Model([inputs, labels], memory([embeddings, labels]))

    build.batch = labels_as_input_batch
    build.adds_loss = True
    build.description = f"in CrossBatchMemory(memory_size={memory_size})"
    return build


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A loss and the tuned settings it trains the demo's network with.

    Attributes:
        title: The name shown in the table and the plot.
        family: The loss family (one recipe per family in the default run).
        loss: The loss class (or any callable returning a `keras.losses.Loss`).
        loss_args: Its keyword arguments (shown with the results).
        model: A builder `(network, num_classes, recipe) -> keras.Model` (see above).
        batch: `(x, y) -> (inputs, targets)` applied to each class-balanced batch; `None`:
            the builder's own (`build.batch`) or `(x, y)` as is.
        normalize: Unit-normalise the embeddings before the loss (or its layer).
        learning_rate: Adam's learning rate.
        steps: Number of training steps.
        classes_per_batch: Classes per batch (at most the number of training classes).
        samples_per_class: Samples of each class per batch.
        note: Shown with the results: a reason if the loss cannot beat the baselines.
        control: The key of another recipe this one is compared with in the results (the same
            loss and batches without cross-batch memory); it is trained along with this one.
        baseline: A baseline rather than a loss of the package (not required to beat the
            baselines).
    """

    title: str
    family: str
    loss: object
    loss_args: dict = dataclasses.field(default_factory=dict)
    model: object = embeddings_model
    batch: object = None
    normalize: bool = False
    learning_rate: float = 3e-4
    steps: int = 300
    classes_per_batch: int = 5
    samples_per_class: int = 8
    note: str = ""
    control: str = ""
    baseline: bool = False

    def build_loss(self):
        return self.loss(**self.loss_args)

    def transform(self):
        return self.batch or getattr(self.model, "batch", None) or (lambda x, y: (x, y))

    def settings(self):
        """The settings as shown with the results."""
        args = ", ".join(f"{k}={v!r}" for k, v in self.loss_args.items())
        parts = [
            f"{getattr(self.loss, '__name__', 'loss')}({args})",
            f"Adam lr={self.learning_rate:g}",
            f"{self.steps} steps",
            f"batches {self.classes_per_batch} classes x {self.samples_per_class}",
        ]
        if self.normalize:
            parts.append("unit-normalised embeddings")
        description = getattr(self.model, "description", None)
        if description:
            parts.insert(1, description)
        return ", ".join(parts)


def _softmax_head(num_classes):
    return keras.layers.Dense(num_classes, name="classifier")


def _nce_head(num_classes):
    return kml.layers.NCE(num_classes, num_sampled=2, remove_accidental_hits=True, seed=0)


def _proxies(num_classes):
    return kml.layers.ClassProxies(num_classes, learning_rate_multiplier=100.0, name="proxies")


def _arcface_head(num_classes, loss):
    return kml.layers.ClassProxies(num_classes, loss=loss, name="proxies")


# The softmax classifier on the same classes: the baseline metric learning must beat
# (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020). Its embedding is the
# network's output, below the classification layer.
SOFTMAX_BASELINE = Recipe(
    "softmax classifier",
    family="baseline",
    loss=keras.losses.SparseCategoricalCrossentropy,
    loss_args={"from_logits": True},
    model=class_layer_model(_softmax_head, description="on a Dense(num_classes) layer"),
    # Its best among the learning rates 3e-4, 1e-3, 3e-3 and 1e-2 (and 300, 600, 1000 steps)
    # on the held-out classes: the baseline at its strongest.
    learning_rate=3e-3,
    baseline=True,
)

RECIPES = {
    "npairs": Recipe(
        "NpairsLoss",
        family="N-pair",
        loss=kml.NpairsLoss,
        model=pairs_model,
    ),
    "pn": Recipe(
        "PNLoss",
        family="triplet (TF Similarity PN)",
        loss=kml.PNLoss,
        loss_args={"distance": "cosine", "margin": 0.2},
        normalize=True,
    ),
    "nce": Recipe(
        "SampledSoftmaxLoss",
        family="sampled softmax (NCE layer)",
        loss=kml.SampledSoftmaxLoss,
        model=class_layer_model(
            _nce_head,
            takes_labels=True,
            description="on layers.NCE(num_sampled=2, remove_accidental_hits=True)",
        ),
        normalize=True,
    ),
    "triplet": Recipe(
        "TripletSemiHardLoss",
        family="triplet (TF Addons semi-hard)",
        loss=kml.TripletSemiHardLoss,
        loss_args={"margin": 0.2},
        normalize=True,
    ),
    "ms": Recipe(
        "MultiSimilarityLoss",
        family="pair weighting",
        loss=kml.MultiSimilarityLoss,
        normalize=True,
    ),
    "proxy": Recipe(
        "ProxyAnchorLoss",
        family="proxy (ClassProxies layer)",
        loss=kml.ProxyAnchorLoss,
        loss_args={"alpha": 16.0},
        model=class_layer_model(
            _proxies,
            description="on layers.ClassProxies(learning_rate_multiplier=100.0)",
        ),
    ),
    "arcface": Recipe(
        "ArcFaceLoss",
        family="margin softmax (ClassProxies layer)",
        loss=kml.ArcFaceLoss,
        loss_args={"scale": 16.0},
        model=class_layer_model(
            _arcface_head,
            adds_loss=True,
            description="computed by layers.ClassProxies(loss=...) (margin 28.6 degrees)",
        ),
    ),
    "supcon": Recipe(
        "SupConLoss",
        family="supervised contrastive (softmax over the batch)",
        loss=kml.SupConLoss,
        loss_args={"temperature": 0.1},
        normalize=True,
    ),
    "small-batch": Recipe(
        "MS 2x4, no memory",
        family="cross-batch memory: its control",
        loss=kml.MultiSimilarityLoss,
        normalize=True,
        classes_per_batch=2,
        samples_per_class=4,
    ),
    "memory": Recipe(
        "MS 2x4 + memory (XBM)",
        family="cross-batch memory",
        loss=kml.MultiSimilarityLoss,
        model=memory_model(128),
        normalize=True,
        classes_per_batch=2,
        samples_per_class=4,
        control="small-batch",
    ),
}
