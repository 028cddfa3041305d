"""Retrieval benchmark: `kml.retrieval.get_accuracy` on every backend against
pytorch-metric-learning's `AccuracyCalculator` with faiss-cpu, side by side in one run.

usage: retrieval.py --python jax=PY --python tensorflow=PY --python torch=PY --pml-python PY
                    [--size 50000] [--rounds 2] [--repeats 3]
       retrieval.py --python tensorflow=PY --scale 1000000

The data: `size` unit embeddings of dimension 128 around one random centre per class of 50
(the query set is its own reference, rows shuffled), written once to an .npz file. Each
measurement is a fresh process (one backend per process) that loads it, calls `get_accuracy`
(ours: on the backend's default path, `jit_compile="auto"`; PML: `AccuracyCalculator` with its
default `FaissKNN`) once cold and `repeats` times warm with the five k-NN metrics at
`k="max_bin_count"`, and reports the times and its peak resident memory. `rounds` alternate
the processes (ours on each backend, then PML). `--scale` times one cold call of ours on one
backend at that size (no reference: PML's faiss search of 10^6 queries takes as long again).

Writes benchmarks/retrieval.json and the retrieval section of docs/benchmarks.md (between its
`<!-- retrieval -->` markers; `report.py` keeps the section when it regenerates the page).
"""

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
METRICS = (
    "precision_at_1",
    "r_precision",
    "mean_average_precision_at_r",
    "mean_average_precision",
    "mean_reciprocal_rank",
)
CLASS_SIZE, DIM = 50, 128
MARKERS = ("<!-- retrieval -->", "<!-- /retrieval -->")


def make_data(size, path, seed=0):
    """Unit embeddings around class centres (noise 1.5x a centre's scale), shuffled."""
    rng = np.random.default_rng(seed)
    classes = size // CLASS_SIZE
    centres = rng.normal(size=(classes, DIM)).astype("float32")
    labels = rng.permutation(np.repeat(np.arange(classes), CLASS_SIZE))
    x = centres[labels] + 1.5 * rng.normal(size=(len(labels), DIM)).astype("float32")
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    np.savez(path, x=x, y=labels)


def _peak_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(kind, data, repeats):
    """Runs in a fresh process: prints one JSON record."""
    arrays = np.load(data)
    x, y = arrays["x"], arrays["y"]
    if kind == "pml":
        import torch
        from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

        calculator = AccuracyCalculator(
            include=METRICS, k="max_bin_count", device=torch.device("cpu")
        )
        query, labels = torch.from_numpy(x), torch.from_numpy(y)

        def call():
            return calculator.get_accuracy(query, labels)

        versions = {"torch": torch.__version__}
    else:
        import keras

        from keras_metric_losses import retrieval

        def call():
            return retrieval.get_accuracy(x, y, metrics=list(METRICS), k="max_bin_count")

        versions = {"keras": keras.__version__, "backend": keras.backend.backend()}
    before = _peak_mib()
    times, values = [], None
    for _ in range(1 + repeats):
        start = time.perf_counter()
        values = call()
        times.append(time.perf_counter() - start)
    record = {
        "cold_s": times[0],
        "warm_s": times[1:],
        "peak_mib": _peak_mib(),
        "peak_before_mib": before,
        "values": {k: float(v) for k, v in values.items()},
        "versions": versions,
    }
    print(json.dumps(record))


def _run(python, kind, data, repeats, backend=None):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "3"}
    if backend:
        env["KERAS_BACKEND"] = backend
    command = [python, __file__, "--worker", kind, "--data", data, "--repeats", str(repeats)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if out.returncode:
        raise RuntimeError(f"{kind} {backend}: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--python", action="append", default=[], metavar="BACKEND=PYTHON")
    p.add_argument("--pml-python", help="a python with torch, pytorch-metric-learning, faiss-cpu")
    p.add_argument("--size", type=int, default=50_000)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--scale", type=int, help="time one cold call of ours at this size")
    p.add_argument("--out", default=str(HERE / "retrieval.json"))
    p.add_argument("--docs", default=str(HERE.parent / "docs" / "benchmarks.md"))
    p.add_argument("--worker", choices=["ours", "pml"], help=argparse.SUPPRESS)
    p.add_argument("--data", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        return worker(args.worker, args.data, args.repeats)
    pythons = dict(item.split("=", 1) for item in args.python)
    results = json.loads(Path(args.out).read_text()) if Path(args.out).exists() else {}
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs"
    with tempfile.TemporaryDirectory() as tmp:
        data = str(Path(tmp) / "data.npz")
        size = args.scale or args.size
        make_data(size, data)
        if args.scale:
            (backend, python), *_ = pythons.items()
            record = _run(python, "ours", data, 0, backend)
            print(f"N={size} {backend}: {record['cold_s']:.1f} s, {record['peak_mib']:.0f} MiB")
            results["scale"] = {"size": size, "backend": backend, "date": date, **record}
        else:
            runs = {}
            for round_ in range(args.rounds):
                for backend, python in pythons.items():
                    record = _run(python, "ours", data, args.repeats, backend)
                    runs.setdefault(backend, []).append(record)
                    print(f"round {round_} {backend}: {record['warm_s']}", flush=True)
                if args.pml_python:
                    record = _run(args.pml_python, "pml", data, args.repeats)
                    runs.setdefault("pml", []).append(record)
                    print(f"round {round_} pml: {record['warm_s']}", flush=True)
            results["speed"] = {
                "size": size,
                "date": date,
                "machine": machine,
                "rounds": args.rounds,
                "repeats": args.repeats,
                "runs": runs,
            }
    Path(args.out).write_text(json.dumps(results, indent=1) + "\n")
    write_docs(results, Path(args.docs))


def summary(runs):
    """Median warm and cold seconds, the largest peak and the values of one side's runs."""
    return {
        "warm": statistics.median(t for r in runs for t in r["warm_s"]),
        "cold": statistics.median(r["cold_s"] for r in runs),
        "peak": max(r["peak_mib"] for r in runs),
        "values": runs[0]["values"],
    }


def section(results):
    """The markdown of the retrieval section."""
    out = [MARKERS[0], "## Retrieval evaluation", ""]
    speed = results.get("speed")
    if speed:
        runs = speed["runs"]
        pml = summary(runs["pml"]) if "pml" in runs else None
        out += [
            f"`benchmarks/retrieval.py` ({speed['date']}, {speed['machine']}): "
            f"`get_accuracy` of {speed['size']:,} unit embeddings of dimension {DIM} "
            f"(classes of {CLASS_SIZE}, the query set its own reference), the five k-NN metrics "
            '(P@1, R-precision, MAP@R, MAP, MRR) at `k="max_bin_count"`, against '
            "pytorch-metric-learning 2.9's `AccuracyCalculator` with its default faiss-cpu "
            f"`IndexFlatL2` search. {speed['rounds']} rounds of fresh processes, each one cold "
            f"call and {speed['repeats']} warm; seconds are medians, memory the largest peak "
            "resident set of the process (Python, the framework and the data included). Ours "
            'runs each backend\'s default path (`jit_compile="auto"`).',
            "",
            "| search | warm (s) | cold (s) | / PML (warm) | peak memory (MiB) | MAP@R |",
            "|---|---|---|---|---|---|",
        ]
        for name, records in runs.items():
            s = summary(records)
            ratio = f"{s['warm'] / pml['warm']:.2f}" if pml and name != "pml" else ""
            label = "PML + faiss-cpu" if name == "pml" else f"ours, {name}"
            out.append(
                f"| {label} | {s['warm']:.2f} | {s['cold']:.2f} | {ratio} | {s['peak']:.0f} | "
                f"{s['values']['mean_average_precision_at_r']:.6f} |"
            )
    scale = results.get("scale")
    if scale:
        out += [
            "",
            f"Scale ({scale['date']}): {scale['size']:,} embeddings of dimension {DIM}, one cold "
            f"call on {scale['backend']} (default path): {scale['cold_s']:.0f} s, peak resident "
            f"memory {scale['peak_mib']:.0f} MiB ({scale['peak_mib'] / 1024:.2f} GiB).",
        ]
    return [*out, "", MARKERS[1]]


def write_docs(results, docs):
    """Replaces the section between the markers (or appends it)."""
    text = docs.read_text() if docs.exists() else ""
    block = "\n".join(section(results))
    pattern = re.compile(re.escape(MARKERS[0]) + ".*?" + re.escape(MARKERS[1]), re.S)
    text = pattern.sub(lambda _: block, text) if pattern.search(text) else text + "\n" + block
    docs.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    sys.exit(main())
