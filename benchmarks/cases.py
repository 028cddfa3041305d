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
PROXY_CLASSES = 1000  # proxy and margin-softmax losses: C = 1000 classes


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


def proxy_inputs(batch, rng):
    """`[B, D]` embeddings (not normalised), `[B]` int32 labels in `[0, 1000)`, and the class
    weights as `[C * K, D]` proxies for K = 1, 3 (Sub-center ArcFace) and 10 (SoftTriple)."""
    weights = {
        f"proxies{k}": rng.standard_normal((PROXY_CLASSES * k, EMBEDDING_DIM)).astype("float32")
        for k in (1, 3, 10)
    }
    return {
        "embeddings": rng.standard_normal((batch, EMBEDDING_DIM)).astype("float32"),
        "labels": rng.integers(0, PROXY_CLASSES, batch).astype("int32"),
        **weights,
    }


INPUTS = {"embeddings": embedding_inputs, "nce": nce_inputs, "proxy": proxy_inputs}


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

# --- proxy and margin-softmax losses (C = 1000) ---------------------------------------------


def class_logits_floor(key="proxies1"):
    """sum(E @ P.T): the `[B, C * K]` class-logits matmul forward and backward, nothing else."""

    def build():
        from keras import ops

        return lambda x: ops.sum(ops.matmul(x["embeddings"], ops.transpose(x[key])))

    return build


def _proxy_ours(name, key="proxies1", **kwargs):
    """`mean(kml.<name>(labels, embeddings, proxies))`: the function with the weights."""

    def build():
        from keras import ops

        import keras_metric_losses

        fn = getattr(keras_metric_losses, name)
        return lambda x: ops.mean(fn(x["labels"], x["embeddings"], x[key], **kwargs))

    return build


def _proxy_pml(name, weight, key="proxies1", **kwargs):
    """PML's loss object, its trainable weight (`proxies` `[C, D]`, or `W` / `fc` `[D, C * K]`)
    replaced by the benchmark's input so that the step differentiates it as ours does."""

    def build():
        import torch
        from pytorch_metric_learning import losses

        loss = getattr(losses, name)(
            num_classes=PROXY_CLASSES, embedding_size=EMBEDDING_DIM, **kwargs
        )
        del loss._parameters[weight]  # a plain attribute from now on
        loss.cast_types = lambda dtype, device: None  # the input has the right dtype already

        def fn(x):
            value = x[key] if weight == "proxies" else x[key].t()
            setattr(loss, weight, value)
            return loss(x["embeddings"], x["labels"].to(torch.int64))

        return fn

    return build


def _proxy_case(name, fn, pml, weight, module, key="proxies1", note="", **kwargs):
    return Case(
        name,
        f"keras_metric_losses.losses.{module}",
        inputs="proxy",
        wrt=("embeddings", key),
        ours=_proxy_ours(fn, key, **kwargs),
        floor=class_logits_floor(key),
        references={f"pml.{pml}": ("torch", _proxy_pml(pml, weight, key, **kwargs))},
        targets={f"pml.{pml}": 0.7},
        note=f"C = {PROXY_CLASSES} classes, PML's defaults; gradients w.r.t. the embeddings and"
        f" the weights.{note}",
    )


_SUB = {"sub_centers": 3}
_TRIPLE = {"centers_per_class": 10}
PROXY_CASES = [
    _proxy_case("proxy_anchor", "proxy_anchor_loss", "ProxyAnchorLoss", "proxies", "proxy",
                note=" Ours returns per-anchor shares; their mean is PML's scalar."),
    _proxy_case("proxy_nca", "proxy_nca_loss", "ProxyNCALoss", "proxies", "proxy"),
    _proxy_case("normalized_softmax", "normalized_softmax_loss", "NormalizedSoftmaxLoss", "W",
                "margin_softmax"),
    _proxy_case("soft_triple", "soft_triple_loss", "SoftTripleLoss", "fc", "proxy",
                key="proxies10", note=" K = 10 centres per class.", **_TRIPLE),
    _proxy_case("arcface", "arcface_loss", "ArcFaceLoss", "W", "margin_softmax"),
    _proxy_case("subcenter_arcface", "subcenter_arcface_loss", "SubCenterArcFaceLoss", "W",
                "margin_softmax", key="proxies3", note=" K = 3 sub-centres.", **_SUB),
    _proxy_case("cosface", "cosface_loss", "CosFaceLoss", "W", "margin_softmax"),
    _proxy_case("sphereface", "sphereface_loss", "SphereFaceLoss", "W", "margin_softmax"),
    _proxy_case("large_margin_softmax", "large_margin_softmax_loss", "LargeMarginSoftmaxLoss",
                "W", "margin_softmax"),
]  # fmt: skip

# --- the registry ---------------------------------------------------------------------------

_EMBED = {"inputs": "embeddings", "wrt": ("embeddings",), "floor": similarity_floor}
_NCE = {"inputs": "nce", "wrt": ("weights", "inputs"), "floor": sampled_logits_floor}

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
        *PROXY_CASES,
    ]
}
