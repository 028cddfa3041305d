"""The demo's table, verdicts and pictures."""

import numpy as np

COLUMNS = (
    ("unseen", "map@r", "held-out classes MAP@R"),
    ("unseen", "recall@1", "R@1"),
    ("test", "map@r", "held-out images MAP@R"),
    ("test", "recall@1", "R@1"),
)


def _cell(result, which, metric):
    values = result.values(which, metric)
    if np.isnan(values).all():
        return "n/a"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values):.3f}"


def seeds_phrase(seeds):
    """How the table's cells are made: "seed 0" for one seed, else "mean ± standard deviation
    over seeds 0, 1, 2"."""
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    return f"mean ± standard deviation over seeds {', '.join(map(str, seeds))}"


def format_table(results, seeds):
    """One row per feature map: mean ± standard deviation over the seeds (one seed: its
    value)."""
    header = f"{'':<24}" + "".join(f"{title:>{max(len(title), 15) + 2}}" for *_, title in COLUMNS)
    lines = [header]
    for result in results.values():
        row = f"{result.title:<24}"
        for which, metric, title in COLUMNS:
            row += f"{_cell(result, which, metric):>{max(len(title), 15) + 2}}"
        lines.append(row)
    lines.append(f"({seeds_phrase(seeds)}; raw inputs have no seed)")
    return "\n".join(lines)


# The baselines every loss is compared with, in the results' keys: the raw inputs, the
# untrained network and (in the built-in task) the softmax classifier.
BASELINES = ("pixels", "untrained", "softmax")


def _per_seed(result, runs):
    """Held-out-class MAP@R of `result` for each of `runs` seeds (the raw inputs, which have
    one run and no seed, repeated)."""
    values = result.values("unseen", "map@r")
    return np.repeat(values, runs) if len(values) == 1 else values


_ALL = {1: "the baseline", 2: "both baselines", 3: "all three baselines"}


def verdicts(results):
    """For each loss (and the softmax baseline): does it beat every baseline on held-out-class
    MAP@R? The difference is to the strongest baseline (the highest mean); with several seeds,
    the count is of the seeds where it beats every baseline of that seed. Returns the text and
    the keys of the losses that do not beat every baseline in every seed."""
    lines, failures = [], []
    for key, result in results.items():
        if result.recipe is None:
            continue
        runs = len(result.runs)
        rivals = [results[k] for k in BASELINES if k in results and k != key]
        strongest = max(rivals, key=lambda r: r.mean("unseen", "map@r"))
        gain = result.mean("unseen", "map@r") - strongest.mean("unseen", "map@r")
        best = np.max([_per_seed(r, runs) for r in rivals], axis=0)
        wins = int(np.sum(result.values("unseen", "map@r") > best))
        verdict = "beats" if gain > 0 else "does NOT beat"
        which = "the other baselines" if result.recipe.baseline else _ALL[len(rivals)]
        line = (
            f"{result.title:<24} {verdict} {which} on held-out-class MAP@R: {gain:+.3f} against "
            f"the strongest, the {strongest.title}"
        )
        if runs > 1:
            line += f"; better than {'each' if len(rivals) > 1 else 'it'} in {wins} of {runs} seeds"
        control = results.get(result.recipe.control) if result.recipe.control else None
        if control is not None:
            line += f"\n{'':<24} {_against(result, control)}"
        if result.recipe.note:
            line += f"\n{'':<24} note: {result.recipe.note}"
        line += f"\n{'':<24} settings: {result.recipe.settings()}"
        lines.append(line)
        if wins < runs and not result.recipe.baseline:
            failures.append(key)
    return "\n".join(lines), failures


def _against(result, control):
    """The gains of `result` over its `control` recipe (the same loss without memory)."""
    gains = [
        f"{result.mean(which, 'map@r') - control.mean(which, 'map@r'):+.3f} {title}"
        for which, title in (("unseen", "held-out classes"), ("test", "held-out images"))
    ]
    wins = sum(
        run["unseen"]["map@r"] > base["unseen"]["map@r"]
        for run, base in zip(result.runs, control.runs, strict=True)
    )
    runs = len(result.runs)
    seeds = f" (held-out classes better in {wins} of {runs} seeds)" if runs > 1 else ""
    return (
        f"against {control.title} (the same loss and batches): MAP@R {gains[0]}, {gains[1]}{seeds}"
    )


def _project(embeddings):
    """First two principal axes."""
    centred = embeddings - embeddings.mean(axis=0)
    if len(centred) < 2:
        return np.zeros((len(centred), 2))
    axes = np.linalg.svd(centred, full_matrices=False)[2][:2]
    projected = centred @ axes.T
    return np.pad(projected, ((0, 0), (0, 2 - projected.shape[1])))


def _scatter(ax, embeddings, labels, names, title):
    projected = _project(embeddings)
    for label in np.unique(labels):
        points = projected[labels == label]
        ax.scatter(points[:, 0], points[:, 1], s=6, label=str(names[label]))
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_embeddings(results, split, path, backend, columns=5):
    """Held-out-class embeddings (seed 0), projected on their first two principal axes: the
    raw inputs and the untrained network (the starting point of every trained one), once
    each, then the softmax baseline and each loss. Returns the panels' titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = []
    for result in results.values():
        run = result.runs[0]
        title = f"{'before' if result.recipe is None else 'after'}: {result.title}"
        panels.append((f"{title}\nMAP@R {run['unseen']['map@r']:.3f}", run["embeddings"]))
    rows = -(-len(panels) // columns)
    cols = min(columns, len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.1 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, (title, embeddings) in zip(axes.flat, panels, strict=False):
        ax.axis("on")
        _scatter(ax, embeddings, split.y_unseen, split.class_names, title)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(
        handles, labels, title="held-out class", markerscale=3, fontsize=8, loc="center right"
    )
    fig.suptitle(
        "Held-out classes: the raw inputs, the untrained network every loss starts from, and "
        f"each trained network (seed 0, {backend} backend)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 0.9, 1))
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return [title for title, _ in panels]


def plot_neighbours(queries, gallery, split, result_embeddings, path, title, k=5):
    """For a few queries (rows), the query image and its `k` nearest neighbours in `gallery`
    (green: same class, red: another), then the embedding of the held-out classes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (qx, qy, qe), (gx, gy, ge) = queries, gallery
    unit = ge / np.maximum(np.linalg.norm(ge, axis=1, keepdims=True), 1e-12)
    q_unit = qe / np.maximum(np.linalg.norm(qe, axis=1, keepdims=True), 1e-12)
    similarity = q_unit @ unit.T
    rows = len(qx)
    fig = plt.figure(figsize=(1.6 * (k + 1) + 4.5, max(1.6 * rows, 4.0)))
    grid = fig.add_gridspec(rows, k + 3)
    for r in range(rows):
        order = [j for j in np.argsort(-similarity[r], kind="stable") if not _same(gx[j], qx[r])]
        ax = fig.add_subplot(grid[r, 0])
        _image(ax, qx[r], f"query: {split.class_names[qy[r]]}", "black")
        for c, j in enumerate(order[:k]):
            ax = fig.add_subplot(grid[r, c + 1])
            colour = "green" if gy[j] == qy[r] else "red"
            _image(ax, gx[j], split.class_names[gy[j]], colour)
    ax = fig.add_subplot(grid[:, k + 1 :])
    _scatter(ax, result_embeddings, split.y_unseen, split.class_names, "held-out classes")
    ax.legend(markerscale=3, fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _same(a, b):
    return a.shape == b.shape and np.array_equal(a, b)


def _image(ax, x, title, colour):
    x = np.asarray(x, "float32")
    if x.ndim == 1:
        side = round(float(np.sqrt(x.size)))
        x = x.reshape(side, side) if side * side == x.size else x[None, :]
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    low, high = float(x.min()), float(x.max())
    x = (x - low) / (high - low) if high > low else np.zeros_like(x)
    ax.imshow(x, cmap="gray" if x.ndim == 2 else None)
    ax.set_title(title, fontsize=8, color=colour)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor(colour)
        spine.set_linewidth(2)
