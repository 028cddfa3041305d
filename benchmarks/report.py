"""Turns the merged records into ratios, results.json, docs/benchmarks.md and a PNG plot.

Ratios compare medians from the same mode (eager with eager, compiled with compiled) and batch
size: ours / floor within one backend process, ours / reference across processes (every
reference is compared with our loss on every backend; all ran on this machine in the same run).
"""

import json

from cases import CASES

TARGET_BATCH, TARGET_MODE, MEMORY_TARGET_BATCH = 1024, "compiled", 8192


def _index(records):
    return {
        (r["case"], r["backend"], r["mode"], r["batch"], r["variant"]): r
        for r in records
        if "median_ms" in r
    }


def ratio_rows(results):
    """One row per (case, backend, mode, batch) with our time and ours / floor and / references."""
    index, rows = _index(results["time"]), []
    for (case, backend, mode, batch, variant), ours in sorted(index.items()):
        if variant != "ours":
            continue
        row = {"case": case, "backend": backend, "mode": mode, "batch": batch}
        row["ours_ms"] = ours["median_ms"]
        others = {"floor": index.get((case, backend, mode, batch, "floor"))}
        for name, (where, _) in CASES[case].references.items():
            others[name] = index.get((case, where, mode, batch, name))
        for name, other in others.items():
            key = "vs_floor" if name == "floor" else f"vs {name}"
            row[key] = ours["median_ms"] / other["median_ms"] if other else None
            # Ratio of the fastest steps: less sensitive to a loaded machine than the medians.
            row[key + " (min)"] = ours["min_ms"] / other["min_ms"] if other else None
        rows.append(row)
    return rows


def target_rows(results, ratios):
    """The issue's targets at B=1024 compiled (references: TF Addons / TF Similarity on every
    backend, a backend's own reference on that backend), and the large-batch memory multiple."""
    rows = []
    for r in ratios:
        if (r["batch"], r["mode"]) != (TARGET_BATCH, TARGET_MODE):
            continue
        for against, limit in CASES[r["case"]].targets.items():
            where = "floor" if against == "floor" else CASES[r["case"]].references[against][0]
            if where not in ("floor", "oracle", r["backend"]):
                continue
            key = "vs_floor" if against == "floor" else f"vs {against}"
            value = r[key]
            rows.append(
                {
                    "case": r["case"],
                    "backend": r["backend"],
                    "against": against,
                    "ratio": value,
                    "ratio_of_mins": r[key + " (min)"],
                    "limit": limit,
                    "met": value is not None and value <= limit,
                }
            )
    return rows


def memory_rows(results):
    rows = []
    for r in results["memory"]:
        if "step_peak_mb" not in r:
            continue
        matrix_mb = r["batch"] ** 2 * 4 / 2**20
        rows.append({**r, "bb_matrix_mb": matrix_mb, "multiple": r["step_peak_mb"] / matrix_mb})
    return rows


def write_reports(results, out_json, docs):
    results["ratios"] = ratio_rows(results)
    results["targets"] = target_rows(results, results["ratios"])
    results["memory_summary"] = memory_rows(results)
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(results, indent=1))
    docs.mkdir(parents=True, exist_ok=True)
    (docs / "benchmarks.md").write_text(markdown(results))
    plot(results, docs / "benchmarks.png")


def _f(x, digits=2):
    return "n/a" if x is None else f"{x:.{digits}f}"


def _table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]


def markdown(results):
    meta, m = results["meta"], results["meta"]["machine"]
    kind = "QUICK run (fewer sizes)" if meta["quick"] else "Full run"
    out = [
        "# Benchmarks",
        "",
        f"**{kind}**, {meta['date']}, `{meta['command']}`. Machine: {m['cpu']}, {m['nproc']} "
        f"cores, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}. Batch sizes "
        f"{meta['sizes']}, D = 128; memory at B = {meta['memory_sizes']}. Regenerate with "
        "`nox -s bench` (full) or `nox -s bench -- --quick`.",
        "",
        "Versions: "
        + "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in (vers or {}).items())
            for label, vers in results["versions"].items()
        ),
        "",
        "Each figure is forward + backward of a scalar loss w.r.t. its inputs, synchronised, in",
        f"ms: median of {meta['steps']} steps after {meta['warmup']} warm-up steps (min-max in the",
        "timing tables). In one process the variants (ours, the floor, that process's references)",
        "alternate step by step on the same inputs; the reference venv (TF 2.15.1, TF Addons, TF",
        "Similarity) runs right after the backends for each batch size on the same .npz inputs.",
        "*Compiled* is `jax.jit`, `tf.function(jit_compile=True)` or `torch.compile`. *Floor*: the",
        "bare `[B, B]` matmul `sum(E @ E.T)` (npairs, PN; D = 128) or the gather + matmul of the",
        "sampled logits (NCE), on the same backend. Ratios < 1 mean ours is faster. *Met* judges",
        "the ratio of medians; the ratio of the fastest steps is shown because the references run",
        "in another process, so a change in machine load between processes skews the medians.",
        "",
        "![Forward + backward time per step against the batch size, per backend and loss]"
        "(benchmarks.png)",
        "",
        f"## Targets (B={TARGET_BATCH}, {TARGET_MODE})",
        "",
    ]
    out += _table(
        ["loss", "backend", "ours / ...", "ratio (medians)", "ratio (mins)", "target", "met"],
        [
            (
                t["case"],
                t["backend"],
                t["against"],
                _f(t["ratio"]),
                _f(t["ratio_of_mins"]),
                f"<= {t['limit']}",
                "yes" if t["met"] else "**no**",
            )
            for t in results["targets"]
        ],
    )
    out += _memory_section(results)
    for case in [c for c in CASES if any(r.get("case") == c for r in results["time"])]:
        out += _case_section(results, case)
    return "\n".join(out) + "\n"


def _memory_section(results):
    rows = results["memory_summary"]
    out = [
        "",
        "## Peak memory",
        "",
        "A fresh process per (backend, loss, B, mode, ours or floor). After imports, inputs and",
        "one step at B = 8 (runtime start-up, not counted), the RSS high-water mark is reset",
        "(`/proc/self/clear_refs`); then the full-size step is built (compilation included) and",
        "run twice; the step peak is the growth of `VmHWM` over the RSS just before (glibc is told",
        "to mmap large buffers, so freed memory leaves RSS). *Multiple* is that peak over one",
        "float32 `[B, B]` matrix (B*B*4 bytes). *Process* is the process's whole `ru_maxrss`.",
        "",
    ]
    if not rows:
        return [*out, "No memory measurements in this run."]
    worst = max((r["multiple"] for r in rows if r["variant"] == "ours"), default=None)
    out += _table(
        ["loss", "backend", "mode", "B", "variant", "step peak MiB", "multiple", "process MiB"],
        [
            (
                r["case"],
                r["backend"],
                r["mode"],
                r["batch"],
                r["variant"],
                _f(r["step_peak_mb"], 0),
                _f(r["multiple"]),
                _f(r["process_max_rss_mb"], 0),
            )
            for r in rows
        ],
    )
    return [*out, "", f"Largest multiple for our losses: {_f(worst)} x one [B, B] float32 matrix."]


def _case_section(results, case):
    ratios = [r for r in results["ratios"] if r["case"] == case]
    timings = [r for r in results["time"] if r.get("case") == case]
    out = ["", f"## {case}", "", CASES[case].note, ""]
    skipped = {r["skipped"] for r in timings if "skipped" in r}
    if not ratios:
        return [*out, f"Not measured: {', '.join(skipped) or 'no results'}."]
    refs = [f"vs {name}" for name in CASES[case].references]
    out += _table(
        ["backend", "mode", "B", "ours ms", "ours / floor", *[f"ours / {r[3:]}" for r in refs]],
        [
            (
                r["backend"],
                r["mode"],
                r["batch"],
                _f(r["ours_ms"]),
                _f(r["vs_floor"]),
                *[_f(r[k]) for k in refs],
            )
            for r in ratios
        ],
    )
    out += ["", "Timings (ms, median and min-max):", ""]
    out += _table(
        ["process", "mode", "B", "variant", "median", "min-max", "note"],
        [
            (
                r["backend"],
                r["mode"],
                r["batch"],
                r["variant"],
                _f(r["median_ms"]),
                f"{_f(r['min_ms'])}-{_f(r['max_ms'])}",
                r.get("note", ""),
            )
            if "median_ms" in r
            else (
                r["backend"],
                r.get("mode", ""),
                r["batch"],
                r.get("variant", ""),
                "error",
                "",
                r["error"].splitlines()[0][:120],
            )
            for r in timings
            if "skipped" not in r
        ],
    )
    return out


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = _index(results["time"])
    panels = sorted({k[1] for k in index})
    cols = 2
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(6.5 * cols, 4.5 * rows), squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.set_visible(False)
    for ax, backend in zip(axes.flat, panels, strict=False):
        series = sorted({(k[0], k[4], k[2]) for k in index if k[1] == backend})
        for case, variant, mode in series:
            points = sorted(
                (k[3], r["median_ms"])
                for k, r in index.items()
                if k[:3] == (case, backend, mode) and k[4] == variant
            )
            ax.plot(
                *zip(*points, strict=True),
                "-o" if mode == "compiled" else "--x",
                label=f"{case}: {variant} ({mode})",
                markersize=3,
            )
        ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="ms / step", title=backend)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    kind = "quick run" if results["meta"]["quick"] else "full run"
    fig.suptitle(f"forward+backward time vs batch size ({kind}, {results['meta']['date']})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
