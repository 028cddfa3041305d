"""Benchmark driver: one process per (backend, batch size), plus the reference-venv process.

usage: run.py --python jax=PY --python tensorflow=PY --python torch=PY [--oracle-python PY]
              [--quick] [--cases npairs,pn] [--sizes 256,1024] [--steps N] [--memory-sizes 8192]
              [--modes default,compiled,eager] [--merge]

`nox -s bench [-- --quick]` builds the environments and calls this. It writes the inputs once
per batch size to .npz files, runs for each batch size every backend's runner and then the oracle
(so ours and the references alternate; inside a process the variants alternate step by step),
then one fresh process per (backend, loss, batch size, mode, ours|floor) for peak memory, and
finally writes benchmarks/results.json, docs/benchmarks.md and docs/benchmarks.png (see report.py).

Modes (`harness.PATHS`): *default* is the path `model.fit` runs on a CPU-only machine, *compiled*
each backend's compiler, *eager* no compilation. `--merge` keeps the records of the existing
results file that this run does not measure again (another backend, case, size, mode, variant), so
that a run can be split into parts (one backend at a time on a shared machine); every record
keeps the date of the run that measured it.
"""

import argparse
import datetime
import itertools
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from cases import CASES, INPUTS
from harness import MODES, PATHS
from report import write_reports

HERE = Path(__file__).resolve().parent
FULL = {"sizes": [256, 1024, 4096], "steps": 30, "warmup": 5, "memory_sizes": [4096, 8192]}
QUICK = {"sizes": [256, 1024], "steps": 20, "warmup": 3, "memory_sizes": [8192]}
JOB_TIMEOUT_S = 1800


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", action="append", default=[], metavar="BACKEND=PYTHON")
    p.add_argument("--oracle-python", help="python of the TF 2.15 reference venv")
    p.add_argument("--quick", action="store_true", help="fewer batch sizes, memory at B=8192 only")
    p.add_argument("--cases", default=",".join(CASES))
    p.add_argument("--sizes", help="comma-separated batch sizes to time")
    p.add_argument("--memory-sizes", help="comma-separated batch sizes for peak memory ('' = none)")
    p.add_argument("--steps", type=int)
    p.add_argument("--warmup", type=int)
    p.add_argument("--modes", default=",".join(MODES), help="comma-separated, from " + str(MODES))
    p.add_argument("--merge", action="store_true", help="keep the results not measured again")
    p.add_argument("--out", default=str(HERE / "results.json"))
    p.add_argument("--docs", default=str(HERE.parent / "docs"))
    args = p.parse_args(argv)
    preset = QUICK if args.quick else FULL
    args.sizes = _ints(args.sizes) if args.sizes else preset["sizes"]
    args.memory_sizes = (
        _ints(args.memory_sizes) if args.memory_sizes is not None else preset["memory_sizes"]
    )
    args.steps = args.steps or preset["steps"]
    args.warmup = args.warmup or preset["warmup"]
    args.cases = [c for c in args.cases.split(",") if c]
    args.modes = [m for m in MODES if m in args.modes.split(",")]  # in the report's order
    args.pythons = dict(item.split("=", 1) for item in args.python)
    if not args.pythons:
        p.error("give at least one --python BACKEND=PYTHON")
    return args


def _ints(text):
    return [int(x) for x in text.split(",") if x]


class Progress:
    """Numbered, timed progress lines on stdout."""

    def __init__(self, total):
        self.total, self.done, self.start = total, 0, time.monotonic()

    def __call__(self, message, advance=False):
        self.done += advance
        elapsed = int(time.monotonic() - self.start)
        print(
            f"[{self.done}/{self.total} {elapsed // 60}:{elapsed % 60:02d}] {message}", flush=True
        )


def run_process(python, script, job, env, progress, label):
    """Runs `script JOB OUT` with `python`; passes its `[...]` progress lines through."""
    with tempfile.TemporaryDirectory() as tmp:
        job_file, out_file = Path(tmp, "job.json"), Path(tmp, "out.json")
        job_file.write_text(json.dumps(job))
        cmd = [python, str(HERE / script), str(job_file), str(out_file)]
        proc = subprocess.Popen(
            cmd, cwd=HERE, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        tail = []
        for line in proc.stderr:
            if line.startswith("["):
                progress(f"  {line.strip()}")
            tail = [*tail[-20:], line]
        code = proc.wait(timeout=JOB_TIMEOUT_S)
        if code or not out_file.exists():
            progress(f"  {label} FAILED (exit {code}): {''.join(tail)[-800:]}")
            return {"records": [{**_job_key(job), "backend": label, "error": f"exit {code}"}]}
        return json.loads(out_file.read_text())


def _job_key(job):
    return {"case": ",".join(job["cases"]), "batch": job["batch"], "task": job["task"]}


def process_env(backend=None, memory=False):
    env = dict(os.environ, CUDA_VISIBLE_DEVICES="", TF_CPP_MIN_LOG_LEVEL="2")
    if memory:
        # Large buffers are mmapped and returned on free, so RSS follows live memory. Memory jobs
        # only: fresh mmaps page-fault on every step and would slow the timed runs (2-3x in JAX).
        env["MALLOC_MMAP_THRESHOLD_"] = "131072"
    if backend:
        env["KERAS_BACKEND"] = backend
    return env


def importable_cases(python, backend, names):
    """The cases among `names` whose loss module imports in `python` (one short process)."""
    code = "import sys, cases; print(*[n for n in sys.argv[1:] if cases.available(cases.CASES[n])])"
    out = subprocess.run(
        [python, "-c", code, *names],
        cwd=HERE,
        env=process_env(backend),
        capture_output=True,
        text=True,
        check=False,
    )
    return set(out.stdout.split())


def write_inputs(directory, cases, sizes):
    for kind in {CASES[c].inputs for c in cases}:
        for batch in sizes:
            rng = np.random.default_rng(batch)
            np.savez(Path(directory, f"{kind}-B{batch}.npz"), **INPUTS[kind](batch, rng))


def machine():
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    return {
        "cpu": model,
        "nproc": os.cpu_count(),
        "memory_gib": round(mem_kb / 2**20, 1),
        "platform": platform.platform(),
        "python": platform.python_version(),
    }


def command_line(argv=None):
    """This run's command, without the pythons' paths (`--python jax=...`)."""
    shown, argv = [], sys.argv[1:] if argv is None else argv
    for i, arg in enumerate(argv):
        previous = argv[i - 1] if i else ""
        if arg.startswith("--oracle-python=") or previous == "--oracle-python":
            arg = arg.split("=")[0] + "=..." if arg.startswith("--") else "..."
        elif arg.startswith("--python=") or previous == "--python":
            arg = arg.rsplit("=", 1)[0] + "=..."
        shown.append(arg)
    return " ".join(["benchmarks/run.py", *shown])


def _first_mode_of_path(backend, mode, modes):
    """Whether `mode` is the first of `modes` to run its path on `backend` (JAX's default and
    compiled are both `jax.jit`: measured once)."""
    return next(m for m in modes if PATHS[backend][m] == PATHS[backend][mode]) == mode


def _record_key(r):
    return (r.get("case"), r.get("backend"), r.get("batch"), r.get("mode"), r.get("variant"))


def merge(old, new):
    """`new`, plus the records of `old` for (case, backend, batch, mode, variant) that `new`
    lacks (a reference this run cannot import keeps its earlier timing).

    Old records without a run date get their file's date; the new meta lists every run whose
    records remain (`meta["runs"]`), newest first.
    """
    old_date = old["meta"]["date"]
    merged = {"versions": {**old.get("versions", {}), **new["versions"]}, "meta": new["meta"]}
    for task in ("time", "memory"):
        fresh = {_record_key(r) for r in new[task]}
        kept = [{"run": old_date, **r} for r in old.get(task, []) if _record_key(r) not in fresh]
        merged[task] = kept + new[task]
    previous = old["meta"].get("runs") or [{k: v for k, v in old["meta"].items() if k != "runs"}]
    current = {k: v for k, v in new["meta"].items() if k != "runs"}
    dates = {r["run"] for task in ("time", "memory") for r in merged[task]}
    merged["meta"]["runs"] = [current] + [m for m in previous if m["date"] in dates]
    return merged


def main(argv=None):
    args = parse_args(argv)
    memory_cases = [c for c in args.cases if CASES[c].memory]
    jobs = []  # (label, python, script, job, env)
    with tempfile.TemporaryDirectory(prefix="kml-bench-") as inputs_dir:
        write_inputs(inputs_dir, args.cases, sorted({*args.sizes, *args.memory_sizes}))
        common = {"inputs_dir": inputs_dir, "steps": args.steps, "warmup": args.warmup}
        common["modes"] = args.modes
        for batch in args.sizes:
            job = {"task": "time", "batch": batch, "cases": args.cases, **common}
            for backend, python in args.pythons.items():
                jobs.append((backend, python, "runner.py", job, process_env(backend)))
            if args.oracle_python:
                jobs.append(("oracle", args.oracle_python, "oracle_runner.py", job, process_env()))
        importable = {b: importable_cases(py, b, memory_cases) for b, py in args.pythons.items()}
        for batch in args.memory_sizes:  # A fresh process for each measurement.
            for case, mode, variant in itertools.product(
                memory_cases, args.modes, ("ours", "floor")
            ):
                job = {"task": "memory", "batch": batch, "cases": [case], **common}
                job.update(mode=mode, variant=variant)
                for backend, python in args.pythons.items():
                    if case in importable[backend] and _first_mode_of_path(
                        backend, mode, args.modes
                    ):
                        env = process_env(backend, memory=True)
                        jobs.append((backend, python, "runner.py", job, env))

        progress = Progress(len(jobs))
        date = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        results = {"time": [], "memory": [], "versions": {}}
        for label, python, script, job, env in jobs:
            what = " ".join(str(job[k]) for k in ("mode", "variant") if k in job)
            progress(f"{label}: {job['task']} B={job['batch']} {','.join(job['cases'])} {what}")
            out = run_process(python, script, job, env, progress, label)
            results[job["task"]] += [{**r, "run": date} for r in out["records"]]
            results["versions"].setdefault(label, out.get("versions"))
            progress(f"{label}: done", advance=True)

    results["meta"] = {
        "date": date,
        "quick": args.quick,
        "sizes": args.sizes,
        "memory_sizes": args.memory_sizes,
        "steps": args.steps,
        "warmup": args.warmup,
        "machine": machine(),
        "command": command_line(argv),
        "modes": args.modes,
        "backends": sorted([*args.pythons, *(["oracle"] if args.oracle_python else [])]),
        "cases": args.cases,
    }
    if args.merge and Path(args.out).exists():
        results = merge(json.loads(Path(args.out).read_text()), results)
    write_reports(results, Path(args.out), Path(args.docs))
    print(f"wrote {args.out}, {args.docs}/benchmarks.md, {args.docs}/benchmarks.png")


if __name__ == "__main__":
    sys.exit(main())
