"""Kinds of loss inputs: how to build valid inputs, the faults' outcomes and a model recipe.

Most losses share the inputs of one kind (integer labels and embeddings, a similarity matrix,
sampled logits), so a spec names its kind and overrides only what differs.
"""

import dataclasses
from typing import ClassVar

import keras
import numpy as np

import keras_metric_losses as kml
from specs.faults import (
    IDS,
    NO_RANGE,
    NOT_SQUARE,
    NUM_CLASSES,
    Raises,
    Value,
    not_finite,
    not_integral,
    shape_errors,
)

INPUT_DIM, EMBEDDING_DIM, NUISANCE_DIM = 6, 4, 3


@dataclasses.dataclass(frozen=True)
class Entry:
    """A public loss object and how the robustness tests call it:
    `loss(labels(ids), predictions(batch))`."""

    name: str
    obj: object
    loss: object
    labels: object
    predictions: object
    outcomes: dict
    reference: object = None  # `reference(y_true, y_pred)`: the expected output, float64


def mean(values):
    return np.mean(values) if len(values) else 0.0


def normal(dim):
    """`[batch, dim]` random predictions; `dim=None`: a square `[batch, batch]` matrix. Seeded by
    the shape, so a test sees the same values whatever ran before it in its worker."""
    return lambda batch: _normal(batch, dim or batch)


def _normal(*shape):
    return np.random.default_rng(shape).normal(size=shape).astype("float32")


def one_hot(ids):
    return np.eye(NUM_CLASSES, dtype="float32")[ids]


def clustered_inputs(batch=16, num_classes=4, seed=0, scale=1.0, nuisance=0.0):
    """Two views `[B, INPUT_DIM]` of points around one centre per class, and `[B]` labels.

    `nuisance`: the last `NUISANCE_DIM` features of each view are instead noise of that
    standard deviation (each view its own draw), which a random projection mixes into the
    embeddings and training must learn to ignore (the training test's data)."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(num_classes, INPUT_DIM)) * 2.0
    labels = np.arange(batch) % num_classes
    views = [
        ((centres[labels] + rng.normal(size=(batch, INPUT_DIM))) * scale).astype("float32")
        for _ in range(2)
    ]
    return [_with_nuisance(v, nuisance, seed + 1 + i) for i, v in enumerate(views)], labels


def _with_nuisance(inputs, nuisance, seed):
    if not nuisance:
        return inputs
    noise = np.random.default_rng(seed).normal(size=(len(inputs), NUISANCE_DIM)) * nuisance
    return np.concatenate([inputs[:, :-NUISANCE_DIM], noise.astype(inputs.dtype)], axis=1)


def held_out_inputs(per_class=16, num_classes=4, seed=0, nuisance=0.0):
    """New points (fresh noise) around the centres of `clustered_inputs(seed=seed)`, and their
    `[B]` labels: held-out examples of the training classes, for retrieval."""
    centres = np.random.default_rng(seed).normal(size=(num_classes, INPUT_DIM)) * 2.0
    labels = np.arange(per_class * num_classes) % num_classes
    noise = np.random.default_rng(seed + 3).normal(size=(len(labels), INPUT_DIM))
    inputs = (centres[labels] + noise).astype("float32")
    return _with_nuisance(inputs, nuisance, seed + 4), labels


def r_precision(embeddings, relevant):
    """The mean over points of the share of their `R` nearest others (cosine) that are
    `relevant`, `R` the number of relevant others (1.0: every class a tight cluster)."""
    unit = embeddings / np.linalg.norm(embeddings, axis=1, keepdims=True)
    similarity = unit @ unit.T
    np.fill_diagonal(similarity, -np.inf)
    order = np.argsort(-similarity, axis=1)
    relevant = relevant & ~np.eye(len(relevant), dtype=bool)
    shares = [row[order[i, : row.sum()]].mean() for i, row in enumerate(relevant)]
    return float(np.mean(shares))


class Kind:
    """The inputs of a family of losses. Subclasses set `labels`, `predictions`, `outcomes`."""

    name = ""
    predictions = None
    labels = staticmethod(np.asarray)
    # Precision: which function of the model output the loss is Lipschitz in, and the bound on
    # the mean loss error given that function's error (see test_precision.py).
    lipschitz_input = staticmethod(lambda output: np.asarray(output, np.float64))
    # How `model.fit` takes `data()` in the training test.
    fit_options: ClassVar[dict] = {"batch_size": 16}

    def outcomes(self, true_name="y_true", pred_name="y_pred"):
        raise NotImplementedError

    def precision_bound(self, error):
        return 2 * error.max()

    def entries(self, spec):
        """The robustness entries of a spec: its function, then its class."""
        entries = []
        reference = spec.reference
        if spec.function is not None:
            entries.append(
                Entry(
                    spec.function.__name__,
                    spec.function,
                    lambda y, p: spec.function(y, p, **spec.kwargs),
                    self.labels,
                    self.predictions,
                    {**self.outcomes(), **spec.outcomes},
                    reference,
                )
            )
        if spec.cls is not None:
            entries.append(
                Entry(
                    spec.cls.__name__,
                    spec.cls,
                    spec.cls(**spec.kwargs),
                    self.labels,
                    self.predictions,
                    {**self.outcomes(), **spec.outcomes, **spec.class_outcomes},
                    reference and (lambda y, p: mean(reference(y, p))),
                )
            )
        return entries

    def model(self, cross_replica=False):
        """A small model whose output the loss takes; `cross_replica`: its keys are gathered
        from every replica where the model builds them (`PairwiseSimilarity`)."""
        raise NotImplementedError

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        """`(x, y)` for `model()`: clustered inputs and their labels."""
        raise NotImplementedError

    def retrieval(self, model, nuisance=0.0):
        """How well the model retrieves held-out points of the training classes: the mean over
        points of the share of their `R` nearest others (cosine, in the output of the model's
        layer named `"embedding"`) that are relevant, `R` the number of relevant others."""
        inputs, labels = held_out_inputs(nuisance=nuisance)
        embeddings = keras.ops.convert_to_numpy(model.get_layer("embedding")(inputs))
        return r_precision(embeddings, self.relevant(labels))

    def relevant(self, labels):
        """`[N, N]` booleans: which held-out points are relevant to which (the same class)."""
        return labels[:, None] == labels[None, :]


class Similarity(Kind):
    """Integer labels and a `[B, B]` similarity matrix (the N-pair losses)."""

    name = "similarity"
    predictions = staticmethod(normal(None))

    def outcomes(self):
        return {
            **shape_errors("y_true", "y_pred", (4, 4), square=True),
            "y_true two columns": Raises(
                ValueError, r"`y_true`.*\[batch\].*Received: y_true.shape=\(4, 2\)"
            ),
            "non-integral labels": not_integral("y_true"),
            "NaN labels": not_integral("y_true", first="nan"),
            "out-of-range labels": NO_RANGE,
            **similarity_matrix_outcomes(),
        }

    def model(self, cross_replica=False):
        anchors, positives = keras.Input((INPUT_DIM,)), keras.Input((INPUT_DIM,))
        embed = keras.layers.Dense(EMBEDDING_DIM, name="embedding")
        similarity = kml.PairwiseSimilarity(cross_replica=cross_replica)
        similarity = similarity([embed(anchors), embed(positives)])
        return keras.Model([anchors, positives], similarity)

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        return clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)


def similarity_matrix_outcomes():
    """What losses of a `[B, B]` similarity matrix do with it."""
    return {
        "non-square y_pred": Raises(
            ValueError, r"`y_pred` must be a square.*Received: y_pred.shape=\(4, 3\)"
        ),
        "NaN in y_pred": not_finite("y_pred", (4, 4), 1, 0, " (-inf is allowed)"),
        "inf in y_pred": not_finite("y_pred", (4, 4), 0, 1, " (-inf is allowed)"),
        "-inf in y_pred": Value(),  # -inf masks a pair
        "empty batch": Value(),
        "batch of one": Value(),
        "one class": Value(),
        "all labels differ": Value(),
    }


class MultilabelSimilarity(Similarity):
    """Multi-hot `[B, C]` labels and a `[B, B]` similarity matrix."""

    name = "multilabel similarity"
    labels = staticmethod(one_hot)

    def outcomes(self):
        return {
            **shape_errors("y_true", "y_pred", (4, 4), square=True, multilabel=True),
            "y_true two columns": Raises(
                ValueError, r"`y_true`.*multi-hot.*Received: y_true.shape=\(4, 6, 2\)"
            ),
            "non-integral labels": Value(),  # documented: non-binary entries weight the targets
            "NaN labels": not_finite("y_true", (4, 6), 1, 0),
            "out-of-range labels": NO_RANGE,
            **similarity_matrix_outcomes(),
        }

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        x, labels = clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)
        return x, np.eye(4, dtype="float32")[labels]


class Embeddings(Kind):
    """Integer labels and `[B, D]` embeddings (PN, triplet, contrastive, ... losses)."""

    name = "embeddings"
    predictions = staticmethod(normal(3))

    @staticmethod
    def lipschitz_input(output):
        e = np.asarray(output, np.float64)
        return np.maximum(1.0 - e @ e.T, 0.0)  # cosine distances of the unit embeddings

    def outcomes(self):
        return {
            **shape_errors("y_true", "y_pred", (4, 3)),
            "y_true two columns": Raises(
                ValueError, r"`y_true`.*\[batch\].*Received: y_true.shape=\(4, 2\)"
            ),
            "non-square y_pred": NOT_SQUARE,
            "non-integral labels": not_integral("y_true"),
            "NaN labels": not_integral("y_true", first="nan"),
            "out-of-range labels": NO_RANGE,
            "NaN in y_pred": not_finite("y_pred", (4, 3), 1, 0),
            "inf in y_pred": not_finite("y_pred", (4, 3), 0, 1),
            "-inf in y_pred": not_finite("y_pred", (4, 3), 0, 1),
            "empty batch": Value(),  # [] (function), 0 (class)
            "batch of one": Value(),  # 0: no positive, no negative
            "one class": Value(),  # 0: no negative
            "all labels differ": Value(),  # 0: no positive
        }

    def model(self, cross_replica=False):
        inputs = keras.Input((INPUT_DIM,))
        embeddings = keras.layers.Dense(EMBEDDING_DIM, name="embedding")(inputs)
        embeddings = keras.layers.UnitNormalization()(embeddings)
        return keras.Model(inputs, embeddings)

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        (x, _), labels = clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)
        return x, labels


SIMILARITY = Similarity()
MULTILABEL_SIMILARITY = MultilabelSimilarity()
EMBEDDINGS = Embeddings()

__all__ = ["EMBEDDINGS", "IDS", "MULTILABEL_SIMILARITY", "SIMILARITY", "Entry", "Kind"]
