"""Demo: metric learning on handwritten digits, with retrieval on digits held out of training.

Trains one small embedding network per loss with `model.compile(loss=...)` on the current
`KERAS_BACKEND`, on the even digits of scikit-learn's bundled `load_digits` (no download), then
retrieves among the odd digits, held out of training, and prints Recall@1 and MAP@R before and
after training.
Writes a PNG of the held-out embeddings (2-D PCA), one panel per loss.

    python -m keras_metric_losses.demo [--loss npairs pn nce] [--epochs 20] [--out demo_out]
"""

import argparse
import pathlib

import keras
import numpy as np

from keras_metric_losses.demo.recipes import RECIPES
from keras_metric_losses.demo.retrieval import map_at_r, recall_at_1

TRAIN_DIGITS = (0, 2, 4, 6, 8)


def load_split():
    """Even digits for training, odd digits held out; pixel values scaled to [0, 1]."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    x, y = (digits.data / 16.0).astype("float32"), digits.target
    train = np.isin(y, TRAIN_DIGITS)
    return (x[train], y[train]), (x[~train], y[~train])


def embedder(input_dim, embedding_dim=8):
    return keras.Sequential(
        [
            keras.Input((input_dim,)),
            keras.layers.Dense(128, activation="relu"),
            keras.layers.Dense(embedding_dim),
        ]
    )


def retrieval(network, x, y):
    embeddings = keras.ops.convert_to_numpy(network.predict(x, verbose=0))
    return {"recall@1": recall_at_1(embeddings, y), "map@r": map_at_r(embeddings, y)}, embeddings


def train_and_evaluate(
    name, epochs, train, held_out, learning_rate=1e-3, batch_size=32, verbose=1, seed=0
):
    """Trains the embedder with one loss; returns retrieval before/after and the embeddings."""
    keras.utils.set_random_seed(seed)
    (x, y), (x_test, y_test) = train, held_out
    network = embedder(x.shape[1])
    before, _ = retrieval(network, x_test, y_test)
    recipe = RECIPES[name]
    model, loss = recipe.build(network, x.shape[1], len(np.unique(y)))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=loss)
    inputs, targets = recipe.fit_data(x, y, np.random.default_rng(seed))
    model.fit(inputs, targets, batch_size=batch_size, epochs=epochs, shuffle=True, verbose=verbose)
    after, embeddings = retrieval(network, x_test, y_test)
    return {"before": before, "after": after, "embeddings": embeddings}


def format_table(results):
    lines = [
        f"{'loss':<36} {'Recall@1 before':>15} {'after':>7} {'MAP@R before':>13} {'after':>7}",
    ]
    for name, result in results.items():
        b, a = result["before"], result["after"]
        lines.append(
            f"{RECIPES[name].title:<36} {b['recall@1']:>15.3f} {a['recall@1']:>7.3f} "
            f"{b['map@r']:>13.3f} {a['map@r']:>7.3f}"
        )
    return "\n".join(lines)


def plot(results, labels, path):
    """One panel per loss: held-out embeddings projected on their first two principal axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(4.5 * len(results), 4.2), squeeze=False)
    for ax, (name, result) in zip(axes[0], results.items(), strict=True):
        centred = result["embeddings"] - result["embeddings"].mean(axis=0)
        projected = centred @ np.linalg.svd(centred, full_matrices=False)[2][:2].T
        for digit in np.unique(labels):
            points = projected[labels == digit]
            ax.scatter(points[:, 0], points[:, 1], s=6, label=str(digit))
        ax.set_title(f"{RECIPES[name].title}\nMAP@R {result['after']['map@r']:.3f}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0][-1].legend(title="held-out digit", markerscale=3, fontsize=8)
    fig.suptitle(f"Held-out digits, {keras.backend.backend()} backend")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loss", nargs="+", choices=sorted(RECIPES), default=list(RECIPES))
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("demo_out"))
    args = parser.parse_args(argv)
    train, held_out = load_split()
    results = {}
    for name in args.loss:
        print(f"\n== {RECIPES[name].title} ({keras.backend.backend()} backend)")
        results[name] = train_and_evaluate(name, args.epochs, train, held_out)
    print("\nRetrieval among the held-out odd digits (cosine similarity):")
    print(format_table(results))
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / "embeddings.png"
    plot(results, held_out[1], path)
    print(f"\nWrote {path}")
    return results


if __name__ == "__main__":
    main()
