"""The benchmark registry: one `Case` per loss.

A case names its inputs (numpy, generated once per batch size by the driver and shared by every
process through an .npz file), the inputs it differentiates, our loss, the floor (the bare
matmul the loss cannot beat) and the references. Every function is a zero-argument builder
returning `fn(x) -> scalar`, with `x` a dict of native tensors; builders import lazily, so this
module imports only numpy and loads in the driver, the backend runners and the oracle venv alike.

A reference runs on one Keras backend's process (`"tensorflow"`, `"torch"`, ...) or on
`"oracle"`: the separate TF 2.15 + TF Addons + TF Similarity venv (`oracle_runner.py`).
To add a loss, add a `Case` to `CASES`; a case whose `module` is not importable is skipped.
"""

import importlib.util
import inspect
from dataclasses import dataclass, field

import numpy as np

EMBEDDING_DIM = 128
NCE_CLASSES, NCE_SAMPLED = 100_000, 64
EXAMPLES_PER_CLASS = 4


@dataclass(frozen=True)
class Case:
    name: str
    module: str  # Must be importable for the case to run (guards losses not merged yet).
    inputs: str  # Key of `INPUTS`.
    wrt: tuple  # Inputs the step differentiates.
    ours: object
    floor: object
    references: dict = field(default_factory=dict)  # name -> (backend or "oracle", builder)
    memory: bool = False  # Part of the large-batch peak-memory check.
    targets: dict = field(default_factory=dict)  # "floor" or reference -> max ratio (B=1024)
    note: str = ""


def available(case):
    """Whether `case.module` can be imported here (the loss may not be merged yet)."""
    try:
        return importlib.util.find_spec(case.module) is not None
    except ImportError:
        return False


# --- inputs ---------------------------------------------------------------------------------


def embedding_inputs(batch, rng):
    """Unit-norm `[B, D]` embeddings, `[B]` int32 labels with 4 examples per class (shuffled)."""
    e = rng.standard_normal((batch, EMBEDDING_DIM)).astype("float32")
    e /= np.linalg.norm(e, axis=1, keepdims=True)
    labels = rng.permutation(np.arange(batch) // EXAMPLES_PER_CLASS).astype("int32")
    return {"embeddings": e, "labels": labels}


def nce_inputs(batch, rng):
    """A `[C, D]` output layer (C = 100,000), `[B, 1]` int64 labels, `[B, D]` inputs, plus the
    fixed `[num_sampled]` ids the floor gathers."""
    return {
        "weights": (0.05 * rng.standard_normal((NCE_CLASSES, EMBEDDING_DIM))).astype("float32"),
        "biases": np.zeros(NCE_CLASSES, "float32"),
        "labels": rng.integers(0, NCE_CLASSES, (batch, 1)).astype("int64"),
        "inputs": rng.standard_normal((batch, EMBEDDING_DIM)).astype("float32"),
        "sampled": rng.integers(0, NCE_CLASSES, NCE_SAMPLED).astype("int64"),
    }


def view_inputs(batch, rng):
    """Two views `[B, 2, D]` of `B` examples: a shared point plus noise (unnormalised)."""
    base = rng.standard_normal((batch, 1, EMBEDDING_DIM))
    noise = 0.3 * rng.standard_normal((batch, 2, EMBEDDING_DIM))
    return {"views": (base + noise).astype("float32")}


INPUTS = {"embeddings": embedding_inputs, "nce": nce_inputs, "views": view_inputs}


# --- floors (keras.ops, so they run on every backend) ---------------------------------------


def similarity_floor():
    """sum(E @ E.T): the [B, B] similarity matmul forward and backward, nothing else."""
    from keras import ops

    return lambda x: ops.sum(ops.matmul(x["embeddings"], ops.transpose(x["embeddings"])))


def sampled_logits_floor():
    """Gather the true and `num_sampled` rows of the output layer and take their logits."""
    from keras import ops

    def fn(x):
        sampled = ops.take(x["weights"], x["sampled"], axis=0)
        true = ops.take(x["weights"], ops.reshape(x["labels"], (-1,)), axis=0)
        logits = ops.matmul(x["inputs"], ops.transpose(sampled))
        return ops.sum(logits) + ops.sum(x["inputs"] * true)

    return fn


def views_floor():
    """sum(A @ B.T) of the two views: one [B, B] matmul forward and backward."""
    from keras import ops

    return lambda x: ops.sum(ops.matmul(x["views"][:, 0], ops.transpose(x["views"][:, 1])))


# --- npairs ---------------------------------------------------------------------------------


def npairs_ours():
    from keras import ops

    from keras_metric_losses import npairs_loss

    e = "embeddings"
    return lambda x: ops.mean(npairs_loss(x["labels"], ops.matmul(x[e], ops.transpose(x[e]))))


def npairs_tfa():
    import tensorflow as tf
    import tensorflow_addons as tfa

    e = "embeddings"
    return lambda x: tfa.losses.npairs_loss(x["labels"], tf.matmul(x[e], x[e], transpose_b=True))


def npairs_pml():
    import torch
    from pytorch_metric_learning import losses

    loss = losses.NPairsLoss()
    return lambda x: loss(x["embeddings"], x["labels"].to(torch.int64))


# --- PN (cosine distance, hard positives, semi-hard negatives) -------------------------------

PN_ARGS = {
    "distance": "cosine",
    "positive_mining_strategy": "hard",
    "negative_mining_strategy": "semi-hard",
    "soft_margin": False,
    "margin": 1.0,
}


def pn_ours():
    from keras import ops

    from keras_metric_losses.losses.pn import pn_loss

    return lambda x: ops.mean(pn_loss(x["labels"], x["embeddings"], **PN_ARGS))


def pn_tfsim():
    from tensorflow_similarity.losses import PNLoss

    # TF Similarity has no `soft_margin`: `margin=None` means a soft margin.
    loss = PNLoss(**{k: v for k, v in PN_ARGS.items() if k != "soft_margin"})
    return lambda x: loss(x["labels"], x["embeddings"])


def triplet_pml():
    """The closest pytorch-metric-learning analogue: cosine triplet margin loss on triplets from a
    hardest-positive / semi-hard-negative batch miner (no P-N pair term)."""
    import torch
    from pytorch_metric_learning import distances, losses, miners

    cosine = distances.CosineSimilarity()
    miner = miners.BatchEasyHardMiner(pos_strategy="hard", neg_strategy="semihard", distance=cosine)
    loss = losses.TripletMarginLoss(margin=1.0, distance=cosine)

    def fn(x):
        labels = x["labels"].to(torch.int64)
        return loss(x["embeddings"], labels, miner(x["embeddings"], labels))

    return fn


# --- NCE / sampled softmax (C = 100,000, 64 samples) ----------------------------------------


def _sampled(name, module):
    def ours():
        from keras import ops

        fn = getattr(importlib.import_module(module), name)
        return lambda x: ops.mean(fn(*_nce_args(x), seed=NCE_SEED))

    def tf_reference():
        import tensorflow as tf

        fn = getattr(tf.nn, name)
        # TF 2's `tf.nn.nce_loss` has no `seed` argument (`sampled_softmax_loss` has).
        seeded = "seed" in inspect.signature(fn).parameters
        kwargs = {"seed": NCE_SEED} if seeded else {}
        return lambda x: tf.reduce_mean(fn(*_nce_args(x), **kwargs))

    return ours, tf_reference


def _nce_args(x):
    return x["weights"], x["biases"], x["labels"], x["inputs"], NCE_SAMPLED, NCE_CLASSES


NCE_SEED = 7  # A fixed seed: `jax.jit` refuses unseeded random ops (Keras's JAX RNG rule).


_nce_ours, _nce_tf = _sampled("nce_loss", "keras_metric_losses.losses.nce")
_ssm_ours, _ssm_tf = _sampled("sampled_softmax_loss", "keras_metric_losses.losses.nce")

# --- softmax-contrastive (PML) and self-supervised (TF Similarity) ----------------------------


def _pml_embedding_case(ours_name, module, pml_name, pml_kwargs=None, ours_kwargs=None):
    """`(ours, pml)` builders: our function's mean (with PML's reducer where it has one) and
    PML's loss class on the same labelled embeddings."""

    def ours():
        from keras import ops

        fn = getattr(importlib.import_module(module), ours_name)
        kwargs = ours_kwargs or {}
        return lambda x: ops.mean(fn(x["labels"], x["embeddings"], **kwargs))

    def pml():
        import torch
        from pytorch_metric_learning import losses

        loss = getattr(losses, pml_name)(**(pml_kwargs or {}))
        return lambda x: loss(x["embeddings"], x["labels"].to(torch.int64))

    return ours, pml


_INFONCE = "keras_metric_losses.losses.infonce"
_ntxent_ours, _ntxent_pml_unguarded = _pml_embedding_case(
    "ntxent_loss", _INFONCE, "NTXentLoss", ours_kwargs={"reducer": "pml"}
)
# PML's NTXentLoss builds a [positive pairs, negative pairs] matrix (and several copies for exp
# and autograd): 3,072 x 1,044,480 float32 at B=1024 with 4 per class, 12.8 GB a copy (the
# process is OOM-killed on a 24 GB machine). Larger products are refused, as a recorded error.
PML_NTXENT_MAX_ELEMENTS = 2.5e8


def _ntxent_pml():
    import numpy as np

    loss = _ntxent_pml_unguarded()

    def fn(x):
        labels = np.asarray(x["labels"].detach().cpu())
        counts = np.unique(labels, return_counts=True)[1]
        positive_pairs = float(np.sum(counts * (counts - 1)))
        negative_pairs = float(len(labels) ** 2 - np.sum(counts**2))
        if positive_pairs * negative_pairs > PML_NTXENT_MAX_ELEMENTS:
            raise MemoryError(
                f"PML's NTXentLoss would build a [{positive_pairs:.0f}, {negative_pairs:.0f}] "
                "matrix; refused"
            )
        return loss(x)

    return fn


_supcon_ours, _supcon_pml = _pml_embedding_case(
    "supcon_loss", _INFONCE, "SupConLoss", ours_kwargs={"reducer": "pml"}
)
_instance_ours, _instance_pml = _pml_embedding_case(
    "instance_loss", "keras_metric_losses.losses.instance", "InstanceLoss"
)
_fast_ap_ours, _fast_ap_pml = _pml_embedding_case(
    "fast_ap_loss",
    "keras_metric_losses.losses.fastap",
    "FastAPLoss",
    ours_kwargs={"reducer": "pml"},
)


def supcon_multilabel_ours():
    """Multi-hot labels from the class ids (one label each, plus the next class for every
    other example), built inside the step: a [B, C] one-hot is cheap next to [B, B]."""
    from keras import ops

    from keras_metric_losses.losses.infonce import supcon_multilabel_loss

    def fn(x):
        labels = x["labels"]
        classes = ops.shape(x["embeddings"])[0] // EXAMPLES_PER_CLASS + 1
        multi_hot = (
            ops.one_hot(labels, classes)
            + ops.one_hot((labels + 1) % classes, classes)
            * (ops.cast(labels % 2, "float32")[:, None])
        )
        return ops.mean(supcon_multilabel_loss(multi_hot, x["embeddings"]))

    return fn


def _ssl_case(ours_name, tfsim_name):
    def ours():
        from keras import ops

        fn = getattr(importlib.import_module("keras_metric_losses.losses.ssl"), ours_name)
        return lambda x: ops.mean(fn(None, x["views"]))

    def tfsim():
        import tensorflow as tf
        from tensorflow_similarity import losses

        loss = getattr(losses, tfsim_name)()
        return lambda x: tf.reduce_mean(loss(x["views"][:, 0], x["views"][:, 1]))

    return ours, tfsim


_SSL = {name: _ssl_case(f"{name}_loss", tfsim) for name, tfsim in [
    ("simclr", "SimCLRLoss"), ("barlow", "Barlow"), ("vicreg", "VicReg"), ("simsiam", "SimSiamLoss")
]}  # fmt: skip

# --- the registry ---------------------------------------------------------------------------

_EMBED = {"inputs": "embeddings", "wrt": ("embeddings",), "floor": similarity_floor}
_NCE = {"inputs": "nce", "wrt": ("weights", "inputs"), "floor": sampled_logits_floor}
_VIEWS = {"inputs": "views", "wrt": ("views",), "floor": views_floor}

CASES = {
    case.name: case
    for case in [
        Case(
            "npairs",
            "keras_metric_losses.losses.npairs",
            ours=npairs_ours,
            references={
                "tfa.npairs_loss": ("oracle", npairs_tfa),
                "pml.NPairsLoss": ("torch", npairs_pml),
            },
            memory=True,
            targets={"floor": 1.3, "tfa.npairs_loss": 0.8},
            note="npairs_loss(labels, E @ E.T); PML's NPairsLoss keeps one pair per label.",
            **_EMBED,
        ),
        Case(
            "pn",
            "keras_metric_losses.losses.pn",
            ours=pn_ours,
            references={
                "tfsim.PNLoss": ("oracle", pn_tfsim),
                "pml.TripletMarginLoss+miner": ("torch", triplet_pml),
            },
            memory=True,
            targets={"floor": 2.5, "tfsim.PNLoss": 0.5},
            note="cosine, hard positives, semi-hard negatives, margin 1. PML has no PN loss: its"
            " reference is a cosine triplet margin loss on BatchEasyHardMiner(hard, semihard).",
            **_EMBED,
        ),
        Case(
            "nce",
            "keras_metric_losses.losses.nce",
            ours=_nce_ours,
            references={"tf.nn.nce_loss": ("tensorflow", _nce_tf)},
            targets={"tf.nn.nce_loss": 1.0},
            note="C = 100,000 classes, 64 sampled; gradients w.r.t. weights and inputs.",
            **_NCE,
        ),
        Case(
            "sampled_softmax",
            "keras_metric_losses.losses.nce",
            ours=_ssm_ours,
            references={"tf.nn.sampled_softmax_loss": ("tensorflow", _ssm_tf)},
            note="C = 100,000 classes, 64 sampled; gradients w.r.t. weights and inputs.",
            **_NCE,
        ),
        Case(
            "ntxent",
            _INFONCE,
            ours=_ntxent_ours,
            references={"pml.NTXentLoss": ("torch", _ntxent_pml)},
            memory=True,
            targets={"pml.NTXentLoss": 0.7},
            note="temperature 0.07, cosine; ours with reducer='pml' (PML's scalar). PML builds a"
            " [positive pairs, negative pairs] matrix: refused above 2.5e8 elements (B > ~360).",
            **_EMBED,
        ),
        Case(
            "supcon",
            _INFONCE,
            ours=_supcon_ours,
            references={"pml.SupConLoss": ("torch", _supcon_pml)},
            memory=True,
            targets={"pml.SupConLoss": 0.7},
            note="temperature 0.1, cosine; ours with reducer='pml' (PML's scalar).",
            **_EMBED,
        ),
        Case(
            "supcon_multilabel",
            _INFONCE,
            ours=supcon_multilabel_ours,
            note="multi-hot labels (one or two classes) built in the step; no library has it.",
            **_EMBED,
        ),
        Case(
            "instance",
            "keras_metric_losses.losses.instance",
            ours=_instance_ours,
            references={"pml.InstanceLoss": ("torch", _instance_pml)},
            targets={"pml.InstanceLoss": 0.7},
            note="gamma 64.",
            **_EMBED,
        ),
        Case(
            "fast_ap",
            "keras_metric_losses.losses.fastap",
            ours=_fast_ap_ours,
            references={"pml.FastAPLoss": ("torch", _fast_ap_pml)},
            targets={"pml.FastAPLoss": 0.7},
            note="10 bins: a [B, B, 11] histogram tensor; ours with reducer='pml'.",
            **_EMBED,
        ),
        *[
            Case(
                name,
                "keras_metric_losses.losses.ssl",
                ours=_SSL[name][0],
                references={f"tfsim.{tfsim}": ("oracle", _SSL[name][1])},
                note=f"two views [B, 2, {EMBEDDING_DIM}]; TF Similarity's {tfsim}(za, zb).",
                **_VIEWS,
            )
            for name, tfsim in [
                ("simclr", "SimCLRLoss"),
                ("barlow", "Barlow"),
                ("vicreg", "VicReg"),
                ("simsiam", "SimSiamLoss"),
            ]
        ],
    ]
}
