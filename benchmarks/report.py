"""Turns the merged records into ratios, results.json, docs/benchmarks.md and a PNG plot.

Ratios compare medians from the same mode (default with default, compiled with compiled, eager
with eager) and batch size: ours / floor within one backend process, ours / reference across
processes (every reference is compared with our loss on every backend; all ran on this machine).
A ratio whose two records come from different runs (`run.py --merge`) is marked.
"""

import json
from pathlib import Path

from cases import CASES
from harness import MODES, PATHS
from retrieval import section as retrieval_section

TARGET_BATCH, MEMORY_TARGET_BATCH = 1024, 8192
TARGET_MODES = ("default", "compiled")  # `Case.default_targets`, `Case.targets`
NOTES = Path(__file__).resolve().parent / "notes.md"  # hand-written analysis, if present
RETRIEVAL = Path(__file__).resolve().parent / "retrieval.json"  # written by retrieval.py


def _index(records, date=None):
    return {
        (r["case"], r["backend"], r["mode"], r["batch"], r["variant"]): {"run": date, **r}
        for r in records
        if "median_ms" in r
    }


def _mode_order(mode):
    return MODES.index(mode) if mode in MODES else len(MODES)


def ratio_rows(results):
    """One row per (case, backend, mode, batch) with our time and ours / floor and / references."""
    index, rows = _index(results["time"], results["meta"]["date"]), []
    order = sorted(index.items(), key=lambda kv: (kv[0][0], _mode_order(kv[0][2]), kv[0]))
    for (case, backend, mode, batch, variant), ours in order:
        if variant != "ours":
            continue
        row = {"case": case, "backend": backend, "mode": mode, "batch": batch}
        row["ours_ms"], row["run"] = ours["median_ms"], ours["run"]
        others = {"floor": index.get((case, backend, mode, batch, "floor"))}
        for name, (where, _) in CASES[case].references.items():
            others[name] = index.get((case, where, mode, batch, name))
        for name, other in others.items():
            key = "vs_floor" if name == "floor" else f"vs {name}"
            row[key] = ours["median_ms"] / other["median_ms"] if other else None
            # Ratio of the fastest steps: less sensitive to a loaded machine than the medians.
            row[key + " (min)"] = ours["min_ms"] / other["min_ms"] if other else None
            row[key + " (other run)"] = bool(other) and other["run"] != ours["run"]
        rows.append(row)
    return rows


def _limits(case, mode):
    return CASES[case].default_targets if mode == "default" else CASES[case].targets


def target_rows(results, ratios):
    """The targets at B=1024 on the default path (`Case.default_targets`) and compiled
    (`Case.targets`); references: the TF 2.15 venv's on every backend, a backend's own
    reference on that backend."""
    rows = []
    for r in ratios:
        if r["batch"] != TARGET_BATCH or r["mode"] not in TARGET_MODES:
            continue
        for against, limit in _limits(r["case"], r["mode"]).items():
            where = "floor" if against == "floor" else CASES[r["case"]].references[against][0]
            if where not in ("floor", "oracle", r["backend"]):
                continue
            key = "vs_floor" if against == "floor" else f"vs {against}"
            value = r[key]
            rows.append(
                {
                    "case": r["case"],
                    "backend": r["backend"],
                    "mode": r["mode"],
                    "against": against,
                    "ratio": value,
                    "ratio_of_mins": r[key + " (min)"],
                    "other_run": r[key + " (other run)"],
                    "limit": limit,
                    "met": None if value is None else value <= limit,  # None: not measured
                }
            )
    rows.sort(key=lambda t: (_mode_order(t["mode"]), t["case"], t["backend"], t["against"]))
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


def _runs_text(meta):
    runs = meta.get("runs") or [meta]
    out = []
    for run in runs:
        m = run["machine"]
        parts = [f"**{run['date']}** (`{run['command']}`"]
        if "backends" in run:
            parts.append(f"; backends {', '.join(run['backends'])}")
        if "modes" in run:
            parts.append(f"; modes {', '.join(run['modes'])}")
        if "cases" in run and len(run["cases"]) < len(CASES):
            parts.append(f"; cases {', '.join(run['cases'])}")
        parts.append(
            f"): batch sizes {run['sizes']}, memory at B = {run['memory_sizes']}, median of "
            f"{run['steps']} steps after {run['warmup']} warm-up steps. Machine: {m['cpu']}, "
            f"{m['nproc']} cores, {m['memory_gib']} GiB, {m['platform']}, Python {m['python']}."
        )
        out.append("- " + "".join(parts))
    return out


def _paths_text():
    return [
        f"| {backend} | " + " | ".join(f"`{PATHS[backend][m]}`" for m in MODES) + " |"
        for backend in PATHS
    ]


def markdown(results):
    meta = results["meta"]
    out = [
        "# Benchmarks",
        "",
        "Generated by `benchmarks/report.py` from `benchmarks/results.json`. Regenerate with",
        "`nox -s bench` (full) or `nox -s bench -- --quick`; `benchmarks/run.py --merge` adds a",
        "partial run (some backends, cases, modes) to the existing results. Runs whose records",
        "are in this report:",
        "",
        *_runs_text(meta),
        "",
        "Versions: "
        + "; ".join(
            f"{label}: " + ", ".join(f"{k} {v}" for k, v in (vers or {}).items())
            for label, vers in results["versions"].items()
        ),
        "",
        "Each figure is forward + backward of a scalar loss w.r.t. its inputs, synchronised, in",
        "ms: the median of the run's steps (min-max in the timing tables). In one process the",
        "variants (ours, the floor, that process's references) alternate step by step on the same",
        "inputs; the reference venv (TF 2.15.1, TF Addons, TF Similarity) runs right after the",
        "backends for each batch size on the same .npz inputs. The modes:",
        "",
        "| backend | " + " | ".join(MODES) + " |",
        "|---|" + "---|" * len(MODES),
        *_paths_text(),
        "",
        "*default* is what `model.fit` runs on a machine without an accelerator: JAX's `jax.jit`,",
        "TensorFlow's `tf.function` without XLA (Keras turns `jit_compile='auto'` off on CPU-only",
        "machines), eager PyTorch (Keras compiles torch only when asked); the TF 2.15 reference",
        "venv runs TF's paths. Where two modes run the same step (JAX's default and compiled) it",
        "is timed once and reported under both. *compiled* falls back to `tf.function` where XLA",
        "cannot compile a TF step (noted in the timing tables).",
        "",
        "*Floor*: npairs and PN: `sum(A @ B.T)` with the gradient w.r.t. A only (B = a",
        "`stop_gradient` copy of the same embeddings; the npairs loss is also differentiated",
        "through A only); other losses on embeddings: the bare `[B, B]` matmul `sum(E @ E.T)`;",
        "NCE: the gather + matmul of the sampled logits; proxies: `sum(E @ P.T)`; two views:",
        "`sum(V0 @ V1.T)`; on the same backend and path. Ratios < 1 mean ours is faster. *Met*",
        "judges the ratio of medians; the ratio of the fastest steps is shown because the",
        "references run in another process, so a change in machine load between processes skews",
        "the medians. A ratio marked † divides records of two different runs.",
        "",
        "![Forward + backward time per step against the batch size, per backend and loss]"
        "(benchmarks.png)",
        "",
        f"## Targets (B={TARGET_BATCH}; default path, then compiled)",
        "",
    ]
    out += _table(
        [
            "loss",
            "backend",
            "path",
            "ours / ...",
            "ratio (medians)",
            "ratio (mins)",
            "target",
            "met",
        ],
        [
            (
                t["case"],
                t["backend"],
                t["mode"],
                t["against"],
                _f(t["ratio"]) + (" †" if t.get("other_run") else ""),
                _f(t["ratio_of_mins"]),
                f"<= {t['limit']}",
                {True: "yes", False: "**no**", None: "not measured"}[t["met"]],
            )
            for t in results["targets"]
        ],
    )
    if NOTES.exists():
        out += ["", NOTES.read_text().strip()]
    if RETRIEVAL.exists():
        out += ["", *retrieval_section(json.loads(RETRIEVAL.read_text()))]
    out += _summary_section(results)
    out += _memory_section(results)
    for case in [c for c in CASES if any(r.get("case") == c for r in results["time"])]:
        out += _case_section(results, case)
    return "\n".join(out) + "\n"


def _refs_cell(row, case, key_suffix=""):
    cells = []
    for name in CASES[case].references:
        value = row.get(f"vs {name}{key_suffix}")
        if value is not None:
            mark = " †" if row.get(f"vs {name} (other run)") else ""
            cells.append(f"{name} {value:.2f}{mark}")
    return "; ".join(cells) or "n/a"


def _summary_section(results):
    """Every case, every backend at B = TARGET_BATCH: the default path first, then compiled."""
    out = [
        "",
        f"## Every loss at B = {TARGET_BATCH}: default path, then compiled",
        "",
        "Ours in ms and as ratios (medians) to the floor and to each reference measured on that",
        "path. A loss without a row here was not measured at this batch size in these runs.",
        "",
    ]
    rows = []
    for case in CASES:
        measured = [
            r for r in results["ratios"] if r["case"] == case and r["batch"] == TARGET_BATCH
        ]
        backends = sorted({r["backend"] for r in measured})
        if not backends:
            rows.append((case, "-", "not measured", "", "", "not measured", "", ""))
            continue
        for backend in backends:
            cells = [case, backend]
            for mode in TARGET_MODES:
                r = next(
                    (x for x in measured if (x["backend"], x["mode"]) == (backend, mode)), None
                )
                if r is None:
                    cells += ["not measured", "", ""]
                else:
                    mark = " †" if r.get("vs_floor (other run)") else ""
                    cells += [_f(r["ours_ms"]), _f(r["vs_floor"]) + mark, _refs_cell(r, case)]
            rows.append(tuple(cells))
    out += _table(
        [
            "loss",
            "backend",
            "default ms",
            "default / floor",
            "default / references",
            "compiled ms",
            "compiled / floor",
            "compiled / references",
        ],
        rows,
    )
    return out


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
    timings = sorted(
        (r for r in results["time"] if r.get("case") == case),
        key=lambda r: (r.get("batch", 0), _mode_order(r.get("mode")), r.get("backend", "")),
    )
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
                _f(r["vs_floor"]) + (" †" if r["vs_floor (other run)"] else ""),
                *[_f(r[k]) + (" †" if r[k + " (other run)"] else "") for k in refs],
            )
            for r in sorted(
                ratios, key=lambda r: (r["batch"], _mode_order(r["mode"]), r["backend"])
            )
        ],
    )
    out += ["", "Timings (ms, median and min-max):", ""]
    out += _table(
        ["process", "mode", "B", "variant", "median", "min-max", "run", "note"],
        [
            (
                r["backend"],
                r["mode"],
                r["batch"],
                r["variant"],
                _f(r["median_ms"]),
                f"{_f(r['min_ms'])}-{_f(r['max_ms'])}",
                r.get("run", results["meta"]["date"]),
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
                r.get("run", results["meta"]["date"]),
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
                {"default": "-o", "compiled": ":s"}.get(mode, "--x"),
                label=f"{case}: {variant} ({mode})",
                markersize=3,
            )
        ax.set(xscale="log", yscale="log", xlabel="batch size B", ylabel="ms / step", title=backend)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    runs = results["meta"].get("runs") or [results["meta"]]
    dates = ", ".join(sorted({r["date"][:10] for r in runs}))
    fig.suptitle(f"forward+backward time vs batch size (runs of {dates})")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
