"""Runs one benchmark job on one Keras backend (set by `KERAS_BACKEND`), in its own process.

usage: runner.py JOB.json OUT.json

A job is `{"task": "time" | "memory", "batch": B, "cases": [...], "inputs_dir": DIR, "steps": N,
"warmup": W, "modes": ["default", "compiled", "eager"]}` (`harness.PATHS`). Timing runs our
loss, the floor and this backend's references alternately on the same inputs; a path that two
modes share (JAX: default = compiled) is timed once and recorded under both. A memory job
(one case, plus `"mode"` and `"variant"`: `"ours"` or `"floor"`) measures one step's peak RSS
growth and is meant for a fresh process. `oracle_runner.py` reuses `run_job` with the reference
venv's variants.
"""

import json
import os
import sys
from pathlib import Path

import numpy as np
from cases import CASES, INPUTS, available
from harness import (
    MODES,
    PATHS,
    log,
    make_step,
    max_rss_mb,
    peak_growth_mb,
    time_alternating,
    to_native,
)


def load_inputs(inputs_dir, case, batch):
    with np.load(Path(inputs_dir) / f"{case.inputs}-B{batch}.npz") as data:
        return {k: data[k] for k in data.files}


def run_job(job, backend, variants_of, tag):
    """Runs `job`; `variants_of(case)` gives `{variant: builder}`, `{}` (nothing to run here) or
    `None` (the case is not importable: reported as skipped)."""
    records, batch = [], job["batch"]
    for name in job["cases"]:
        case = CASES[name]
        variants = variants_of(case)
        base = {"case": name, "backend": tag, "batch": batch}
        if variants is None:
            records.append({**base, "skipped": "keras_metric_losses not importable"})
            continue
        if not variants:  # Nothing of this case runs in this process.
            continue
        inputs = to_native(backend, load_inputs(job["inputs_dir"], case, batch), case.wrt)
        timed_paths = {}  # path -> (mode, its records): a path two modes share is timed once
        for mode in job.get("modes", MODES):
            path = PATHS[backend][mode]
            if path in timed_paths:  # e.g. JAX: default = compiled = jax.jit
                first, done = timed_paths[path]
                log(f"[{tag}] {job['task']} {name} B={batch} {mode}: same step as {first}")
                same = f"same step as {first} ({path}), timed once"
                records += [{**r, "mode": mode, "note": same} for r in done]
                continue
            log(f"[{tag}] {job['task']} {name} B={batch} {mode} ({path})")
            steps, done = {}, []
            for variant, builder in variants.items():
                try:
                    steps[variant] = make_step(backend, builder(), inputs, case.wrt, mode)
                except Exception as e:
                    done.append({**base, "mode": mode, "variant": variant, "error": repr(e)})
            timed = time_alternating(steps, job["steps"], job["warmup"])
            done += [{**base, "mode": mode, "variant": v, **r} for v, r in timed.items()]
            timed_paths[path] = (mode, done)
            records += done
    return records


def run_memory(job, backend):
    """Peak memory of one (case, variant, mode) at one batch size: meant for a fresh process.

    The step first runs on a batch of 8 (loads kernels, thread pools, compilers: not counted);
    then the peak RSS growth is measured over building the full-size step (so compilation is
    included) and running it twice. Allocators that cache memory cannot hide anything, since
    nothing of that size was allocated before.
    """
    case, batch = CASES[job["cases"][0]], job["batch"]
    variant, mode = job["variant"], job["mode"]
    base = {"case": case.name, "backend": backend, "batch": batch, "mode": mode, "variant": variant}
    if not available(case):
        return [{**base, "skipped": "keras_metric_losses not importable"}]
    log(f"[{backend}] memory {case.name} B={batch} {mode} {variant}")
    fn = (case.ours if variant == "ours" else case.floor)()
    small = to_native(backend, INPUTS[case.inputs](8, np.random.default_rng(0)), case.wrt)
    make_step(backend, fn, small, case.wrt, mode)()
    inputs = to_native(backend, load_inputs(job["inputs_dir"], case, batch), case.wrt)

    def work():
        step = make_step(backend, fn, inputs, case.wrt, mode)
        step()
        step()

    try:
        peak = peak_growth_mb(work)
    except Exception as e:
        return [{**base, "error": f"{type(e).__name__}: {str(e)[:300]}"}]
    return [{**base, "step_peak_mb": peak, "process_max_rss_mb": max_rss_mb()}]


def versions(modules):
    """`{module: version}` for the given top-level modules, plus Python's."""
    import importlib

    found = {"python": sys.version.split()[0]}
    for module in modules:
        found[module] = getattr(importlib.import_module(module), "__version__", "?")
    return found


def main():
    job = json.loads(Path(sys.argv[1]).read_text())
    backend = os.environ["KERAS_BACKEND"]

    def variants_of(case):
        if not available(case):
            return None
        refs = {n: b for n, (where, b) in case.references.items() if where == backend}
        if refs and backend == "torch" and not available_module("pytorch_metric_learning"):
            refs = {}
        return {"ours": case.ours, "floor": case.floor, **refs}

    if job["task"] == "memory":
        records = run_memory(job, backend)
    else:
        records = run_job(job, backend, variants_of, backend)
    libs = ["keras", {"tensorflow": "tensorflow", "jax": "jax", "torch": "torch"}[backend]]
    if backend == "torch" and available_module("pytorch_metric_learning"):
        libs.append("pytorch_metric_learning")
    Path(sys.argv[2]).write_text(json.dumps({"records": records, "versions": versions(libs)}))


def available_module(name):
    import importlib.util

    return importlib.util.find_spec(name) is not None


if __name__ == "__main__":
    main()
