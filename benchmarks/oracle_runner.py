"""Times the reference implementations in their own venv (TF 2.15 + TF Addons + TF Similarity).

usage: oracle_runner.py JOB.json OUT.json   (the venv from shared/oracle/setup.sh)

Runs the `"oracle"` references of each case, plus the same [B, B] matmul floor written in plain
TF 2.15, on the driver's .npz inputs, eager and under `tf.function(jit_compile=True)`. It never
imports keras_metric_losses (which needs Keras 3).
"""

import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def tf_similarity_floor():
    import tensorflow as tf

    e = "embeddings"
    return lambda x: tf.reduce_sum(tf.matmul(x[e], x[e], transpose_b=True))


def main():
    from runner import run_job, versions

    job = json.loads(Path(sys.argv[1]).read_text())

    def variants_of(case):  # Only the references: the oracle venv does not have our package.
        refs = {n: b for n, (where, b) in case.references.items() if where == "oracle"}
        return {**refs, "floor": tf_similarity_floor} if refs else {}

    records = run_job(job, "tensorflow", variants_of, "oracle")
    libs = ["tensorflow", "tensorflow_addons", "tensorflow_similarity"]
    Path(sys.argv[2]).write_text(json.dumps({"records": records, "versions": versions(libs)}))


if __name__ == "__main__":
    main()
