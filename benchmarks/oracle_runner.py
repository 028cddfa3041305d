"""Times the reference implementations in their own venv (TF 2.15 + TF Addons + TF Similarity).

usage: oracle_runner.py JOB.json OUT.json   (the venv from shared/oracle/setup.sh)

Runs the `"oracle"` references of each case, plus the same [B, B] matmul floor written in plain
TF 2.15 (one-sided where the case's floor is), on the driver's .npz inputs, on TF's paths of
`harness.PATHS`: `tf.function` (the default path), `tf.function(jit_compile=True)` and eager.
It never imports keras_metric_losses (which needs Keras 3).
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


def tf_one_sided_floor():
    """`cases.one_sided_similarity_floor` in TF 2.15: the gradient w.r.t. A only."""
    import tensorflow as tf

    e = "embeddings"
    return lambda x: tf.reduce_sum(tf.matmul(x[e], tf.stop_gradient(x[e]), transpose_b=True))


def main():
    from cases import one_sided_similarity_floor
    from runner import run_job, versions

    job = json.loads(Path(sys.argv[1]).read_text())

    def variants_of(case):  # Only the references: the oracle venv does not have our package.
        refs = {n: b for n, (where, b) in case.references.items() if where == "oracle"}
        one_sided = case.floor is one_sided_similarity_floor
        floor = tf_one_sided_floor if one_sided else tf_similarity_floor
        return {**refs, "floor": floor} if refs else {}

    records = run_job(job, "tensorflow", variants_of, "oracle")
    libs = ["tensorflow", "tensorflow_addons", "tensorflow_similarity"]
    Path(sys.argv[2]).write_text(json.dumps({"records": records, "versions": versions(libs)}))


if __name__ == "__main__":
    main()
