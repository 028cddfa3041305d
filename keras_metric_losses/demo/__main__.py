"""Metric learning on held-out classes, against the baselines that matter.

Trains the same embedding network with each loss (one per family) on some classes and
retrieves among classes that training never saw, and among held-out images of the training
classes. Baselines: the raw pixels, the untrained network and a softmax classifier trained on
the same classes (Musgrave et al., "A Metric Learning Reality Check", ECCV 2020). Mean and
spread over 3 seeds; a PNG shows the held-out classes' embeddings: the raw pixels, the
untrained network, then each trained one.

Without --data: scikit-learn's bundled 8x8 digits (no download) under random lighting
(contrast, brightness offset and gradient, noise; drawn with NumPy from fixed seeds, the same
on every backend), even digits trained on (relit anew in every batch), odd digits held out.
With --data DIR: your own images (one subfolder per class).

Keras' backend comes from KERAS_BACKEND; when it is unset and Keras' configured backend is not
installed, an installed one is chosen (jax, then torch, then tensorflow) and named.
"""

import argparse
import dataclasses
import os
import pathlib
import sys
import time

import keras

from keras_metric_losses import _backend
from keras_metric_losses.demo import experiment, report
from keras_metric_losses.demo.recipes import RECIPES, SOFTMAX_BASELINE

DEFAULT_DATA_LOSS = "pn"


def backend_line():
    """Which backend runs, and why."""
    backend = keras.backend.backend()
    if _backend.CHOSEN["backend"]:
        installed = ", ".join(_backend.installed_backends())
        return (
            f"Backend: {backend}. KERAS_BACKEND is unset and Keras' configured backend "
            f"({_backend.CHOSEN['configured']}) is not installed, so the demo chose {backend} "
            f"(installed: {installed}). Set KERAS_BACKEND=jax|torch|tensorflow to choose."
        )
    if os.environ.get("KERAS_BACKEND"):
        return f"Backend: {backend} (from KERAS_BACKEND)."
    return (
        f"Backend: {backend} (Keras' configured backend; set KERAS_BACKEND=jax|torch|tensorflow "
        "to choose)."
    )


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text}")
    return value


def _fraction(text):
    value = float(text)
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1, not {text}")
    return value


def parser():
    doc = __doc__ or "Metric learning on held-out classes.\n\n"  # None under python -OO
    p = argparse.ArgumentParser(
        prog="python -m keras_metric_losses.demo",
        description=doc.split("\n\n")[0],
        epilog=doc.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--loss",
        nargs="+",
        choices=sorted(RECIPES),
        default=None,
        metavar="NAME",
        help=(
            f"losses to train, among {', '.join(sorted(RECIPES))} (default: all on the digits; "
            f"{DEFAULT_DATA_LOSS} with --data, which takes one)"
        ),
    )
    p.add_argument(
        "--seeds",
        type=_positive_int,
        default=None,
        metavar="N",
        help="number of seeds (network initialisation and batches) (default: 3; 1 with --data)",
    )
    p.add_argument(
        "--steps",
        type=_positive_int,
        default=None,
        metavar="N",
        help="training steps of every loss and baseline (default: each recipe's tuned count)",
    )
    p.add_argument(
        "--out",
        type=pathlib.Path,
        default=pathlib.Path("demo_out"),
        metavar="DIR",
        help="where the PNG (and, with --data, the model) are written (default: demo_out)",
    )
    p.add_argument(
        "--data",
        type=pathlib.Path,
        default=None,
        metavar="DIR",
        help=(
            "your own images: DIR holds one subfolder of images per class (read with "
            "keras.utils.image_dataset_from_directory); trains on some classes, reports "
            "retrieval on the held-out classes and images, saves the model and a PNG"
        ),
    )
    p.add_argument(
        "--image-size",
        type=_positive_int,
        nargs=2,
        default=(64, 64),
        metavar=("HEIGHT", "WIDTH"),
        help="with --data: images are resized to this size (default: 64 64)",
    )
    p.add_argument(
        "--held-out",
        type=_fraction,
        default=0.5,
        metavar="FRACTION",
        help="with --data: share of the classes held out of training (default: 0.5)",
    )
    return p


def with_controls(names):
    """The recipes `names`, each preceded by its control (`Recipe.control`), once each."""
    selected = []
    for name in names:
        selected += [n for n in (RECIPES[name].control, name) if n and n not in selected]
    return selected


def _with_steps(recipe, steps):
    return recipe if steps is None else dataclasses.replace(recipe, steps=steps)


def main(argv=None):
    args = parser().parse_args(argv)
    print(backend_line(), flush=True)
    with experiment.small_network_threads():
        return _run(args)


def _run(args):
    if args.data is not None:
        from keras_metric_losses.demo import own_data

        return own_data.run(args)
    names = with_controls(args.loss or list(RECIPES))
    seeds = list(range(3 if args.seeds is None else args.seeds))
    recipes = {"softmax": _with_steps(SOFTMAX_BASELINE, args.steps)}
    recipes.update({name: _with_steps(RECIPES[name], args.steps) for name in names})
    split = experiment.load_digits_split()
    trained_on = ", ".join(split.class_names[c] for c in split.train_classes)
    held_out = ", ".join(split.class_names[c] for c in split.unseen_classes)
    print(
        f"Digits under random lighting (contrast, brightness offset and gradient, noise). "
        f"Training on the digits {trained_on}: {len(split.y_train)} images, relit in every "
        f"batch. Retrieval among the held-out digits {held_out} ({len(split.y_unseen)} images) "
        f"and among {len(split.y_test)} held-out images of the training digits, each relit "
        f"once. {len(recipes)} trainings x {len(seeds)} seeds:",
        flush=True,
    )
    start = time.perf_counter()
    results = experiment.run_protocol(
        split, recipes, seeds, experiment.mlp_network, report=lambda s: print(s, flush=True)
    )
    print("\nRetrieval by cosine similarity (MAP@R: Musgrave et al., 2020):")
    print(report.format_table(results, seeds))
    text, failures = report.verdicts(results)
    print("\n" + text)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "embeddings.png"
    report.plot_embeddings(results, split, path, keras.backend.backend())
    print(f"\nWrote {path}; {time.perf_counter() - start:.0f} s in all.")
    if failures:
        print(f"Not above every baseline in every seed: {', '.join(failures)} (see above).")
    return results


def entry_point():
    """The `kml-demo` console script."""
    sys.exit(0 if main() is not None else 1)


if __name__ == "__main__":
    main()
