"""The demo's protocol: data splits, the embedding network, training and retrieval.

Train on some classes; evaluate retrieval (a) among classes held out of training and (b) among
held-out samples of the training classes. Baselines: raw inputs, the untrained network (the
same initial weights as every trained one of that seed), and a softmax classifier trained on
the same classes and batches (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020).
"""

import contextlib
import dataclasses
import time

import keras
import numpy as np

import keras_metric_losses as kml


@contextlib.contextmanager
def small_network_threads():
    """On PyTorch, one CPU thread while the demo runs: its networks are so small that thread
    synchronisation costs more than it saves (about 8x faster per step on 2 cores)."""
    if keras.backend.backend() != "torch":
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclasses.dataclass
class Split:
    """The data of one run: training samples, held-out samples of the training classes and
    samples of the held-out classes. Training labels are class indices `0..K-1`."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray  # held-out samples of the training classes
    y_test: np.ndarray
    x_unseen: np.ndarray  # samples of the classes held out of training
    y_unseen: np.ndarray
    class_names: list  # names of all classes, indexed by the labels above
    train_classes: list
    unseen_classes: list
    # `augment(x, rng) -> x`, applied to every training batch with a NumPy generator drawn
    # from (seed, epoch, batch): the same batches on every backend. `None`: none.
    augment: object = None

    @property
    def num_classes(self):
        return len(self.train_classes)


def split_classes(x, y, class_names, train_classes, test_fraction=0.2, seed=0):
    """A `Split`: `train_classes` (indices into `class_names`) are trained on, minus a
    stratified `test_fraction` of their samples; the other classes are held out."""
    rng = np.random.default_rng(seed)
    train_classes = list(train_classes)
    unseen_classes = [c for c in range(len(class_names)) if c not in train_classes]
    seen = np.isin(y, train_classes)
    test = np.zeros(len(y), bool)
    for c in train_classes:
        members = np.flatnonzero(y == c)
        count = max(1, round(test_fraction * len(members))) if len(members) > 1 else 0
        test[rng.choice(members, count, replace=False)] = True
    train = seen & ~test
    index = {c: i for i, c in enumerate(train_classes)}
    relabel = np.vectorize(index.get, otypes=[np.int32])
    return Split(
        x[train],
        relabel(y[train]),
        x[test],
        relabel(y[test]) if test.any() else y[test].astype("int32"),
        x[~seen],
        y[~seen],
        list(class_names),
        train_classes,
        unseen_classes,
    )


# The built-in task's lighting (`relight`): per image, a contrast factor, a brightness offset,
# a brightness gradient across the image in a random direction (its rise from one side to the
# other) and pixel noise (standard deviation), on digits whose ink is 1 and paper 0.
CONTRAST = (0.5, 1.5)
OFFSET = (0.0, 1.0)
GRADIENT = (0.0, 2.0)
NOISE = 0.1
# The seed of the held-out images' lighting: the same evaluation images for every seed.
HELD_OUT_LIGHTING_SEED = 2027


def relight(images, rng):
    """`images` `[N, H, W]` (ink 1, paper 0) under random lighting, from NumPy's `rng`:
    `contrast * image + offset + gradient * ramp + noise`, clipped below at 0 (a shadow hides
    what it covers). `ramp` rises by 1 across the image in a random direction. The same
    `rng` state gives the same images on every backend."""
    images = np.asarray(images, "float32")
    n, height, width = images.shape
    contrast = rng.uniform(*CONTRAST, n)
    offset = rng.uniform(*OFFSET, n)
    gradient = rng.uniform(*GRADIENT, n)
    angle = rng.uniform(0.0, 2 * np.pi, n)
    rows = (np.arange(height) - (height - 1) / 2) / max(height - 1, 1)
    cols = (np.arange(width) - (width - 1) / 2) / max(width - 1, 1)
    ramp = (
        np.cos(angle)[:, None, None] * rows[None, :, None]
        + np.sin(angle)[:, None, None] * cols[None, None, :]
    )
    lit = (
        contrast[:, None, None] * images
        + offset[:, None, None]
        + gradient[:, None, None] * ramp
        + NOISE * rng.normal(size=images.shape)
    )
    return np.maximum(lit, 0.0).astype("float32")


def load_digits_split():
    """The built-in task: scikit-learn's bundled 8x8 digits (no download) under random
    lighting (`relight`). The even digits are trained on, relit anew in every batch
    (`Split.augment`); the held-out images (a fifth of the even digits' and all the odd
    digits') are relit once, from `HELD_OUT_LIGHTING_SEED`."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype("float32")
    split = split_classes(x, digits.target, [str(d) for d in range(10)], (0, 2, 4, 6, 8))
    rng = np.random.default_rng(HELD_OUT_LIGHTING_SEED)
    split.x_test = relight(split.x_test, rng)
    split.x_unseen = relight(split.x_unseen, rng)
    split.augment = relight
    return split


def mlp_network(input_shape, embedding_dim=64, width=128):
    """The digits' embedding network: `Dense(width, relu) -> Dense(embedding_dim)`."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Flatten(),
            keras.layers.Dense(width, activation="relu"),
            keras.layers.Dense(embedding_dim),
        ],
        name="embedding",
    )


def conv_network(input_shape, embedding_dim=32):
    """A small convolutional network for images (`--data`), pixels in [0, 255]."""
    return keras.Sequential(
        [
            keras.Input(input_shape),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(16, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(32, 3, activation="relu", padding="same"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(64, 3, activation="relu", padding="same"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(embedding_dim),
        ],
        name="embedding",
    )


def embed(network, x, batch_size=512):
    """`[N, D]` NumPy embeddings (eager calls in chunks: no `predict` set-up per network)."""
    if not len(x):
        return np.zeros((0, network.output_shape[-1]), "float32")
    chunks = [
        keras.ops.convert_to_numpy(network(x[i : i + batch_size], training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(chunks).astype("float32")


def retrieval(embeddings, labels):
    """Recall@1 (precision at 1) and MAP@R (cosine) among `embeddings`, each against all the
    others (`kml.retrieval.get_accuracy`; queries alone in their class are left out); `nan`
    where no query has a match."""
    if len(np.unique(labels)) < 2 or len(labels) < 3:
        return {"map@r": float("nan"), "recall@1": float("nan")}
    scores = kml.retrieval.get_accuracy(
        embeddings,
        labels,
        metrics=["mean_average_precision_at_r", "precision_at_1"],
        k="max_bin_count",
        distance="cosine_similarity",
    )
    return {"map@r": scores["mean_average_precision_at_r"], "recall@1": scores["precision_at_1"]}


def evaluate(features, split, unseen=None, test=None):
    """Retrieval of a feature map (a network, or `None` for the raw inputs) on both sets."""

    def features_of(x):
        return x.reshape(len(x), -1).astype("float32") if features is None else embed(features, x)

    unseen = features_of(split.x_unseen) if unseen is None else unseen
    test = features_of(split.x_test) if test is None else test
    return {
        "unseen": retrieval(unseen, split.y_unseen),
        "test": retrieval(test, split.y_test),
        "embeddings": unseen,
    }


# Appended to (seed, epoch, batch) for the augmentation's generator: a stream of its own,
# apart from the sampler's draw of the batch.
AUGMENT_STREAM = 1


class _Batches(keras.utils.PyDataset):
    """Class-balanced batches, augmented (`Split.augment`), with a recipe's transform (pairs,
    labels as inputs)."""

    def __init__(self, sampler, transform, augment=None):
        super().__init__()
        self.sampler, self.transform, self.augment = sampler, transform, augment

    def __len__(self):
        return len(self.sampler)

    def __getitem__(self, index):
        x, y = self.sampler[index]
        if self.augment is not None:
            rng = np.random.default_rng(
                [self.sampler.seed, self.sampler.epoch, index, AUGMENT_STREAM]
            )
            x = self.augment(x, rng)
        return self.transform(x, y)

    def on_epoch_end(self):
        self.sampler.on_epoch_end()


class StepProgress(keras.callbacks.Callback):
    """Advances a shared progress bar by one per training batch."""

    def __init__(self, bar):
        super().__init__()
        self.bar = bar

    def on_train_batch_end(self, batch, logs=None):
        if self.bar is not None:
            self.bar.add(1)


def numpy_init(weights, seed):
    """Glorot-uniform kernels drawn with NumPy from `seed` (other weights kept as built), so
    that a seed gives the same initial network on every backend."""
    rng = np.random.default_rng(seed)
    for variable in weights:
        shape = tuple(variable.shape)
        if len(shape) < 2 or not variable.trainable:
            continue
        receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
        limit = np.sqrt(6.0 / (receptive * (shape[-2] + shape[-1])))
        variable.assign(rng.uniform(-limit, limit, size=shape).astype(variable.dtype))


def build_network(make_network, input_shape, seed):
    """The network of one seed: the same initial weights for every recipe of that seed, on
    every backend."""
    keras.utils.set_random_seed(seed)
    network = make_network(input_shape)
    numpy_init(network.weights, seed)
    return network


def schedule(steps, longest_epoch=50):
    """`(epochs, steps_per_epoch)` for about `steps` steps (exactly, when `steps` divides)."""
    epochs = -(-steps // longest_epoch)
    return epochs, -(-steps // epochs)


def _build_model(recipe, split, make_network, seed):
    """The training model of `recipe` around a fresh network of seed `seed`, compiled."""
    network = build_network(make_network, split.x_train.shape[1:], seed)
    model = recipe.model(network, split.num_classes, recipe)
    own = {id(v) for v in network.weights}
    numpy_init([v for v in model.weights if id(v) not in own], seed + 1000)  # heads
    # A model whose layer adds the loss (cross-batch memory) is compiled without one.
    loss = None if getattr(recipe.model, "adds_loss", False) else recipe.build_loss()
    model.compile(optimizer=keras.optimizers.Adam(recipe.learning_rate), loss=loss)
    model.optimizer.build(model.trainable_variables)
    return model, network


def _restart(compiled, recipe, split, make_network, seed):
    """The compiled model of an earlier seed, set to exactly the state a fresh `_build_model`
    of seed `seed` has (every weight and the optimizer's state), so that its compiled training
    step is reused: compiling costs more than the training steps themselves. `None` if the fresh
    model's weights do not match the compiled one's."""
    fresh, _ = _build_model(recipe, split, make_network, seed)
    state = _state(fresh)
    if len(state) != len(compiled["state"]) or any(
        tuple(a.shape) != tuple(b.shape) or a.dtype != b.dtype
        for a, b in zip(compiled["state"], state, strict=True)
    ):
        return None
    for target, source in zip(compiled["state"], state, strict=True):
        target.assign(source.value)
    return compiled["model"], compiled["network"]


def _state(model):
    """Everything training changes, in a fixed order: the model's variables (weights, layer
    state such as a memory or a seed generator's) and the optimizer's, taken before `fit`
    (which adds its metrics' variables)."""
    return [*model.variables, *model.optimizer.variables]


def train(recipe, split, make_network, seed, progress=None, compiled=None):
    """Trains a network of seed `seed` with `recipe`; returns it and the final loss.

    With a dict `compiled` (one per recipe, shared over its seeds), the model compiled for the
    first seed is kept there and set to the next seed's fresh initial state instead of being
    rebuilt and compiled again (the same training, faster)."""
    model = network = None
    if compiled is not None and compiled.get("recipe") is recipe:
        model, network = _restart(compiled, recipe, split, make_network, seed) or (None, None)
    if model is None:
        model, network = _build_model(recipe, split, make_network, seed)
        if compiled is not None:
            compiled.update(recipe=recipe, model=model, network=network, state=_state(model))
    classes_per_batch = min(recipe.classes_per_batch, split.num_classes)
    epochs, steps_per_epoch = schedule(recipe.steps)
    sampler = kml.data.ClassBalancedSampler(
        split.x_train,
        split.y_train,
        classes_per_batch=classes_per_batch,
        samples_per_class=recipe.samples_per_class,
        steps_per_epoch=steps_per_epoch,
        seed=seed,
    )
    callbacks = [StepProgress(progress)] if progress is not None else []
    # The sampler's batches are already random; `shuffle=False` keeps Keras from reordering
    # them with the global NumPy state (which compiling a model consumes).
    history = model.fit(
        _Batches(sampler, recipe.transform(), split.augment),
        epochs=epochs,
        verbose=0,
        callbacks=callbacks,
        shuffle=False,
    )
    return network, history.history["loss"][-1]


@dataclasses.dataclass
class Result:
    """Retrieval of one feature map over the seeds."""

    title: str
    runs: list  # one `evaluate` dict per seed
    recipe: object = None
    seconds: float = 0.0

    def values(self, which, metric):
        return np.array([run[which][metric] for run in self.runs])

    def mean(self, which, metric):
        return float(np.mean(self.values(which, metric)))

    def std(self, which, metric):
        return float(np.std(self.values(which, metric)))


def run_protocol(split, recipes, seeds, make_network, report=print, progress=None):
    """Baselines and every recipe over `seeds`; returns `{key: Result}` in display order.

    Keys: "pixels", "untrained", "softmax" (if among `recipes`' baselines) and the recipes'.
    """
    results = {"pixels": Result("raw inputs (pixels)", [evaluate(None, split)])}
    untrained = Result("untrained network", [])
    for seed in seeds:
        untrained.runs.append(
            evaluate(build_network(make_network, split.x_train.shape[1:], seed), split)
        )
    results["untrained"] = untrained
    total = len(recipes) * len(seeds)
    done, start = 0, time.perf_counter()
    for key, recipe in recipes.items():
        result = results[key] = Result(recipe.title, [], recipe)
        compiled = {}
        for seed in seeds:
            began = time.perf_counter()
            network, _ = train(recipe, split, make_network, seed, progress, compiled)
            result.runs.append(evaluate(network, split))
            result.seconds += time.perf_counter() - began
            done += 1
            elapsed = time.perf_counter() - start
            left = elapsed / done * (total - done)
            before = untrained.runs[seeds.index(seed)]["unseen"]["map@r"]
            report(
                f"[{done:>2}/{total}] {recipe.title:<20} seed {seed}: held-out-class MAP@R "
                f"{result.runs[-1]['unseen']['map@r']:.3f} (untrained {before:.3f}), "
                f"{time.perf_counter() - began:4.1f} s; about {left:3.0f} s left"
            )
    return results
