"""`--data DIR`: the demo's protocol on your own images (one subfolder per class).

Reads DIR with `keras.utils.image_dataset_from_directory` (or, without TensorFlow, the same
way with Pillow), holds out a share of the classes
(`--held-out`) and a fifth of the images of the others, trains a small convolutional embedding
network with the chosen loss on class-balanced batches (`kml.data.ClassBalancedSampler`), and
reports retrieval among the held-out classes and among the held-out images, against the raw
pixels and the untrained network. Saves the trained embedding network (`model.keras`) and a
PNG: the nearest neighbours of a few held-out queries, and the held-out classes' embedding.
"""

import dataclasses
import importlib.util
import pathlib
import sys
import time

import keras
import numpy as np

from keras_metric_losses.demo import experiment, report
from keras_metric_losses.demo.recipes import RECIPES

IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


def load_images(directory, image_size):
    """`(x [N, H, W, 3] float32 in [0, 255], y [N], class names)` of a folder of class folders.

    Read with `keras.utils.image_dataset_from_directory` (which needs TensorFlow) where
    TensorFlow is installed; elsewhere with the same conventions (class = subfolder, sorted by
    name; images with the extensions it takes; RGB; bilinear resizing) through
    `keras.utils.load_img`, which needs only Pillow.
    """
    directory = pathlib.Path(directory)
    if not directory.is_dir():
        raise SystemExit(f"--data {directory}: not a directory.")
    if importlib.util.find_spec("tensorflow") is not None:
        x, y, names = _with_keras_dataset(directory, image_size)
    else:
        x, y, names = _with_pillow(directory, image_size)
    if not len(y):
        raise SystemExit(f"--data {directory}: no images found in its class subfolders.")
    return x, y, names


def _with_keras_dataset(directory, image_size):
    try:
        dataset = keras.utils.image_dataset_from_directory(
            directory,
            labels="inferred",
            label_mode="int",
            image_size=tuple(image_size),
            batch_size=None,
            shuffle=False,
            verbose=False,
        )
    except ValueError as error:
        if "No images found" not in str(error):
            raise
        return np.zeros((0, *image_size, 3), "float32"), np.zeros(0, "int64"), []
    names = list(dataset.class_names)
    xs, ys = [], []
    for image, label in dataset.as_numpy_iterator():
        xs.append(image)
        ys.append(int(label))
    x = np.stack(xs).astype("float32") if xs else np.zeros((0, *image_size, 3), "float32")
    return x, np.array(ys, dtype="int64"), names


def _with_pillow(directory, image_size):
    names = sorted(p.name for p in directory.iterdir() if p.is_dir())
    xs, ys = [], []
    for label, name in enumerate(names):
        files = sorted(
            f for f in (directory / name).rglob("*") if f.suffix.lower() in IMAGE_EXTENSIONS
        )
        for path in files:
            image = keras.utils.load_img(
                path, color_mode="rgb", target_size=tuple(image_size), interpolation="bilinear"
            )
            xs.append(keras.utils.img_to_array(image, dtype="float32"))
            ys.append(label)
    x = np.stack(xs) if xs else np.zeros((0, *image_size, 3), "float32")
    return x, np.array(ys, dtype="int64"), names


def held_out_classes(num_classes, fraction, seed=0):
    """Indices of the classes trained on; at least two are trained on and two held out."""
    if num_classes < 4:
        raise SystemExit(
            f"--data needs at least 4 class subfolders (2 to train on, 2 to hold out); "
            f"found {num_classes}."
        )
    held = min(max(2, round(fraction * num_classes)), num_classes - 2)
    order = np.random.default_rng(seed).permutation(num_classes)
    return sorted(int(c) for c in order[held:])


def run(args):
    name = (args.loss or ["pn"])[0]
    if args.loss and len(args.loss) > 1:
        raise SystemExit(f"--data trains one loss; received --loss {' '.join(args.loss)}.")
    recipe = RECIPES[name]
    x, y, names = load_images(args.data, args.image_size)
    train_classes = held_out_classes(len(names), args.held_out)
    split = experiment.split_classes(x, y, names, train_classes)
    recipe = dataclasses.replace(
        recipe,
        steps=args.steps or recipe.steps,
        classes_per_batch=min(recipe.classes_per_batch, split.num_classes),
    )
    print(
        f"{args.data}: {len(names)} classes, {len(y)} images of {x.shape[1]}x{x.shape[2]}. "
        f"Training on {split.num_classes} classes ({len(split.y_train)} images), holding out "
        f"{len(split.unseen_classes)} classes ({len(split.y_unseen)} images) and "
        f"{len(split.y_test)} images of the training classes.",
        flush=True,
    )
    print(f"Loss: {recipe.title}; {recipe.settings()}.", flush=True)
    seeds = list(range(args.seeds or 1))
    start = time.perf_counter()
    epochs, per_epoch = experiment.schedule(recipe.steps)
    # A live progress bar on a terminal; elsewhere (logs, pipes) one line per seed.
    bar = keras.utils.Progbar(epochs * per_epoch * len(seeds)) if sys.stdout.isatty() else None
    results = {"pixels": experiment.Result("raw pixels", [experiment.evaluate(None, split)])}
    untrained = experiment.Result("untrained network", [])
    trained = experiment.Result(recipe.title, [], recipe)
    network = None
    for seed in seeds:
        untrained.runs.append(
            experiment.evaluate(
                experiment.build_network(experiment.conv_network, x.shape[1:], seed), split
            )
        )
        began = time.perf_counter()
        network, _ = experiment.train(recipe, split, experiment.conv_network, seed, bar)
        trained.runs.append(experiment.evaluate(network, split))
        if bar is None:
            print(
                f"seed {seed}: trained in {time.perf_counter() - began:.1f} s, held-out-class "
                f"MAP@R {trained.runs[-1]['unseen']['map@r']:.3f} (untrained "
                f"{untrained.runs[-1]['unseen']['map@r']:.3f})",
                flush=True,
            )
    results.update(untrained=untrained, trained=trained)
    print("\nRetrieval by cosine similarity:")
    print(report.format_table(results, seeds))
    print("\n" + report.verdicts(results)[0])
    args.out.mkdir(parents=True, exist_ok=True)
    model_path = args.out / "model.keras"
    network.save(model_path)
    picture = args.out / "neighbours.png"
    queries = _queries(split, network)
    gallery = (split.x_unseen, split.y_unseen, trained.runs[-1]["embeddings"])
    report.plot_neighbours(
        queries,
        gallery,
        split,
        trained.runs[-1]["embeddings"],
        picture,
        f"{recipe.title} on {args.data.name}: nearest held-out images of held-out-class queries",
    )
    print(
        f"\nWrote {model_path} (the embedding network: keras.saving.load_model, then "
        f"model.predict(images) gives the embeddings) and {picture}; "
        f"{time.perf_counter() - start:.0f} s."
    )
    return results


def _queries(split, network, count=4):
    """One held-out image of each of the first `count` held-out classes."""
    picks = []
    for label in np.unique(split.y_unseen)[:count]:
        picks.append(int(np.flatnonzero(split.y_unseen == label)[0]))
    qx = split.x_unseen[picks]
    return qx, split.y_unseen[picks], experiment.embed(network, qx)
