"""The benchmark registry: one `Case` per loss.

A case names its inputs (numpy, generated once per batch size by the driver and shared by every
process through an .npz file), the inputs it differentiates, our loss, the floor (the bare
matmul the loss cannot beat) and the references. Every function is a zero-argument builder
returning `fn(x) -> scalar`, with `x` a dict of native tensors; builders import lazily, so this
module imports only numpy and loads in the driver, the backend runners and the oracle venv alike.

A reference runs on one Keras backend's process (`"tensorflow"`, `"torch"`, ...) or on
`"oracle"`: the separate TF 2.15 + TF Addons + TF Similarity venv (`oracle_runner.py`).
To add a loss, add a `Case` to `CASES` naming it (`tests/test_registry.py` checks that every
loss has one).
"""

import importlib.util
import inspect
from dataclasses import dataclass, field

import numpy as np

EMBEDDING_DIM = 128
NCE_CLASSES, NCE_SAMPLED = 100_000, 64
EXAMPLES_PER_CLASS = 4
PROXY_CLASSES = 1000  # proxy and margin-softmax losses: C = 1000 classes
MANIFOLD_PROXIES = 50  # ManifoldLoss: K = 50 proxies (PML's default)


@dataclass(frozen=True)
class Case:
    name: str
    loss: str  # The public name (of `keras_metric_losses`) the case measures.
    inputs: str  # Key of `INPUTS`.
    wrt: tuple  # Inputs the step differentiates.
    ours: object
    floor: object
    references: dict = field(default_factory=dict)  # name -> (backend or "oracle", builder)
    memory: bool = False  # Part of the large-batch peak-memory check.
    targets: dict = field(default_factory=dict)  # "floor" or reference -> max ratio (B=1024)
    # The same on the path `model.fit` runs by default (`harness.PATHS`); `targets` is compiled.
    default_targets: dict = field(default_factory=dict)
    note: str = ""


def available(case):
    """Whether `case.loss` can run here: the package is importable (it is not in the
    references' own environments)."""
    return importlib.util.find_spec("keras_metric_losses") is not None


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


def manifold_inputs(batch, rng):
    """`[B, D]` embeddings (not normalised), `[B]` int32 meta classes in `[0, K)` and `[K, D]`
    proxies, K = 50 (PML's `ManifoldLoss` default)."""
    return {
        "embeddings": rng.standard_normal((batch, EMBEDDING_DIM)).astype("float32"),
        "meta_classes": rng.integers(0, MANIFOLD_PROXIES, batch).astype("int32"),
        "proxies": rng.standard_normal((MANIFOLD_PROXIES, EMBEDDING_DIM)).astype("float32"),
    }


def view_inputs(batch, rng):
    """Two views `[B, 2, D]` of `B` examples: a shared point plus noise (unnormalised)."""
    base = rng.standard_normal((batch, 1, EMBEDDING_DIM))
    noise = 0.3 * rng.standard_normal((batch, 2, EMBEDDING_DIM))
    return {"views": (base + noise).astype("float32")}


INPUTS = {
    "embeddings": embedding_inputs,
    "nce": nce_inputs,
    "proxy": proxy_inputs,
    "manifold": manifold_inputs,
    "views": view_inputs,
}


# --- floors (keras.ops, so they run on every backend) ---------------------------------------


def similarity_floor():
    """sum(E @ E.T): the [B, B] similarity matmul forward and backward, nothing else."""
    from keras import ops

    return lambda x: ops.sum(ops.matmul(x["embeddings"], ops.transpose(x["embeddings"])))


def one_sided_similarity_floor():
    """sum(A @ B.T), differentiated w.r.t. A only (B = stop_gradient(A)): one [B, B] matmul
    forward and one [B, D] matmul backward. The floor of issue 17's npairs and PN targets."""
    from keras import ops

    e = "embeddings"
    return lambda x: ops.sum(ops.matmul(x[e], ops.transpose(ops.stop_gradient(x[e]))))


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
    """npairs_loss(labels, A @ B.T), B = stop_gradient(A): the gradient w.r.t. A only, as
    `one_sided_similarity_floor` (anchors against a constant copy of the batch)."""
    from keras import ops

    from keras_metric_losses import npairs_loss

    e = "embeddings"

    def fn(x):
        similarity = ops.matmul(x[e], ops.transpose(ops.stop_gradient(x[e])))
        return ops.mean(npairs_loss(x["labels"], similarity))

    return fn


def npairs_tfa():
    import tensorflow as tf
    import tensorflow_addons as tfa

    e = "embeddings"

    def fn(x):
        similarity = tf.matmul(x[e], tf.stop_gradient(x[e]), transpose_b=True)
        return tfa.losses.npairs_loss(x["labels"], similarity)

    return fn


def _multi_hot(ops, labels, classes=8):
    """Two labels per example, `label % 8` and `(label + 1) % 8`: `[B, 8]` multi-hot."""
    labels = ops.cast(labels, "int32")
    return ops.one_hot(labels % classes, classes) + ops.one_hot((labels + 1) % classes, classes)


def npairs_multilabel_ours():
    from keras import ops

    from keras_metric_losses import npairs_multilabel_loss

    def fn(x):
        similarity = ops.matmul(x["embeddings"], ops.transpose(x["embeddings"]))
        return ops.mean(npairs_multilabel_loss(_multi_hot(ops, x["labels"]), similarity))

    return fn


def npairs_multilabel_tfa():
    import tensorflow as tf
    import tensorflow_addons as tfa

    def fn(x):
        similarity = tf.matmul(x["embeddings"], x["embeddings"], transpose_b=True)
        return tfa.losses.npairs_multilabel_loss(_multi_hot(tf, x["labels"]),
                                                 similarity)  # fmt: skip

    return fn


def npairs_pml():
    import torch
    from pytorch_metric_learning import losses

    loss = losses.NPairsLoss()
    return lambda x: loss(x["embeddings"], x["labels"].to(torch.int64))


def dynamic_soft_margin_pml():
    """A new `DynamicSoftMarginLoss` per call: one object's second `backward()` fails (its
    `hist_` keeps the previous graph)."""
    import torch
    from pytorch_metric_learning import losses

    return lambda x: losses.DynamicSoftMarginLoss()(x["embeddings"], x["labels"].to(torch.int64))


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

    from keras_metric_losses.losses.triplet.pn import pn_loss

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


# --- triplet losses (TF Addons, TF Similarity, PML) -----------------------------------------

# TripletMarginLoss enumerates every triplet as dense [B, B, B] tensors: 0.5 GiB per float32
# tensor at B = 512, 4 GiB at 1024, 256 GiB at 4096. Larger batches are reported as errors.
DENSE_TRIPLETS_MAX_BATCH = 512


def _ours(name, max_batch=None, **kwargs):
    """`mean(kml.<name>(labels, embeddings, **kwargs))`; refuses batches above `max_batch`."""

    def build():
        from keras import ops

        import keras_metric_losses as kml

        fn = getattr(kml, name)

        def step(x):
            batch = x["embeddings"].shape[0]
            if max_batch is not None and batch > max_batch:
                gib = batch**3 * 4 / 2**30
                raise ValueError(
                    f"not run: dense [B, B, B] triplets take {gib:.0f} GiB at B={batch}"
                )
            return ops.mean(fn(x["labels"], x["embeddings"], **kwargs))

        return step

    return build


def _tfa(name, **kwargs):
    def build():
        import tensorflow_addons as tfa

        fn = getattr(tfa.losses, name)
        return lambda x: fn(x["labels"], x["embeddings"], **kwargs)

    return build


def triplet_tfsim():
    from tensorflow_similarity.losses import TripletLoss

    loss = TripletLoss()  # cosine, hard positives, semi-hard negatives, soft margin
    return lambda x: loss(x["labels"], x["embeddings"])


def _pml(loss_name, miner_name=None, **kwargs):
    def build():
        import torch
        from pytorch_metric_learning import losses, miners

        loss = getattr(losses, loss_name)(**kwargs)
        miner = getattr(miners, miner_name)() if miner_name else None

        def fn(x):
            labels = x["labels"].to(torch.int64)
            tuples = miner(x["embeddings"], labels) if miner else None
            return loss(x["embeddings"], labels, tuples)

        return fn

    return build


# --- NCE / sampled softmax (C = 100,000, 64 samples) ----------------------------------------


def _sampled(name):
    def ours():
        from keras import ops

        import keras_metric_losses as kml

        fn = getattr(kml, name)
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


_nce_ours, _nce_tf = _sampled("nce_loss")
_ssm_ours, _ssm_tf = _sampled("sampled_softmax_loss")

# --- pair-based losses -----------------------------------------------------------------------


def _pair_problem(ops, x):
    """`(same, distances)`: each row paired with the next one (flags and Euclidean distances)."""
    e, labels = x["embeddings"], x["labels"]
    other, other_labels = ops.roll(e, 1, axis=0), ops.roll(labels, 1, axis=0)
    same = ops.cast(ops.equal(labels, other_labels), "int32")
    return same, ops.sqrt(ops.sum(ops.square(e - other), axis=1) + 1e-12)


def pair_distance_floor():
    """The pair distances the contrastive loss takes, and their sum: an O(B D) floor."""
    from keras import ops

    return lambda x: ops.sum(_pair_problem(ops, x)[1])


def contrastive_ours():
    from keras import ops

    from keras_metric_losses import contrastive_loss

    return lambda x: ops.mean(contrastive_loss(*_pair_problem(ops, x)))


def contrastive_tfa():
    import tensorflow as tf
    import tensorflow_addons as tfa

    class TFOps:  # the two ops `_pair_problem` needs, in TF 2.15
        roll = staticmethod(lambda t, shift, axis: tf.roll(t, shift, axis))
        cast, equal, sqrt = staticmethod(tf.cast), staticmethod(tf.equal), staticmethod(tf.sqrt)
        sum = staticmethod(lambda t, axis: tf.reduce_sum(t, axis=axis))
        square = staticmethod(tf.square)

    return lambda x: tf.reduce_mean(tfa.losses.contrastive_loss(*_pair_problem(TFOps, x)))


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


def _tfsim(name):
    def build():
        from tensorflow_similarity import losses

        loss = getattr(losses, name)()
        return lambda x: loss(x["labels"], x["embeddings"])

    return build


def _proxy_pml(name, weight, key="proxies1", size="embedding_size", **kwargs):
    """PML's loss object, its trainable weight (`proxies` `[C, D]`, or `W` / `fc` / `weight`
    `[D, C * K]`) replaced by the benchmark's input so that the step differentiates it as ours
    does; `size` is the name of PML's argument for the embedding size."""

    def build():
        import torch
        from pytorch_metric_learning import losses

        loss = getattr(losses, name)(num_classes=PROXY_CLASSES, **{size: EMBEDDING_DIM}, **kwargs)
        del loss._parameters[weight]  # a plain attribute from now on
        loss.cast_types = lambda dtype, device: None  # the input has the right dtype already

        def fn(x):
            value = x[key] if weight == "proxies" else x[key].t()
            setattr(loss, weight, value)
            return loss(x["embeddings"], x["labels"].to(torch.int64))

        return fn

    return build


def lifted_tfa():
    import tensorflow_addons as tfa

    return lambda x: tfa.losses.lifted_struct_loss(x["labels"], x["embeddings"])


def circle_keras():
    import keras

    loss = keras.losses.Circle()
    return lambda x: loss(x["labels"], x["embeddings"])


def _pair_case(name, loss, ours, references, targets, note):
    """A case on unit embeddings `[B, D]` with 4 examples per class, floor the `[B, B]` matmul."""
    return Case(
        name,
        loss,
        inputs="embeddings",
        wrt=("embeddings",),
        ours=ours,
        floor=similarity_floor,
        references=references,
        targets=targets,
        note=note,
    )


def _ranking_case(name, loss, pml, ours_kwargs, note):
    """A ranking loss (a soft rank per anchor, key and key: O(B^3) time) against PML's, which
    it must not trail on the default path nor compiled; no floor target (the [B, B] matmul is
    not its cost)."""
    return Case(
        name,
        loss,
        inputs="embeddings",
        wrt=("embeddings",),
        ours=_ours(loss, **ours_kwargs),
        floor=similarity_floor,
        references={f"pml.{pml}": ("torch", _pml(pml))},
        targets={f"pml.{pml}": 1.0},
        default_targets={f"pml.{pml}": 1.0},
        note=f"{note} Ours by [rows, B, B] tiles of about 2^24 elements, recomputed in the "
        "backward pass; PML holds several [B, B, B] tensors (4 GiB each at B = 1024).",
    )


PAIR_CASES = [
    Case(
        "contrastive",
        "contrastive_loss",
        inputs="embeddings",
        wrt=("embeddings",),
        ours=contrastive_ours,
        floor=pair_distance_floor,
        references={"tfa.contrastive_loss": ("oracle", contrastive_tfa)},
        targets={"tfa.contrastive_loss": 0.5},
        note="TF Addons' loss on B pair distances (each row with the next); O(B D). The oracle's"
        " floor is the [B, B] matmul, ours the pair distances.",
    ),
    _pair_case(
        "lifted_struct",
        "lifted_struct_loss",
        _ours("lifted_struct_loss"),
        {
            "tfa.lifted_struct_loss": ("oracle", lifted_tfa),
            "pml.LiftedStructureLoss": ("torch", _pml("LiftedStructureLoss")),
        },
        {"floor": 2.5, "tfa.lifted_struct_loss": 0.5},
        "TF Addons' settings (margin 1, no normalisation); PML normalises (unit inputs here).",
    ),
    _pair_case(
        "lifted_structure",
        "lifted_structure_loss",
        _ours("lifted_structure_loss", reducer="pml"),
        {"pml.LiftedStructureLoss": ("torch", _pml("LiftedStructureLoss"))},
        {"floor": 2.5, "pml.LiftedStructureLoss": 0.7},
        "PML's settings and reducer.",
    ),
    _pair_case(
        "generalized_lifted_structure",
        "generalized_lifted_structure_loss",
        _ours("generalized_lifted_structure_loss"),
        {"pml.GeneralizedLiftedStructureLoss": ("torch", _pml("GeneralizedLiftedStructureLoss"))},
        {"floor": 2.5, "pml.GeneralizedLiftedStructureLoss": 0.7},
        "PML's settings.",
    ),
    _pair_case(
        "batch_contrastive",
        "batch_contrastive_loss",
        _ours("batch_contrastive_loss", reducer="pml"),
        {"pml.ContrastiveLoss": ("torch", _pml("ContrastiveLoss"))},
        {"floor": 2.5, "pml.ContrastiveLoss": 0.7},
        "PML's ContrastiveLoss (Euclidean on normalised embeddings, AvgNonZero per kind).",
    ),
    _pair_case(
        "snr_contrastive",
        "signal_to_noise_ratio_contrastive_loss",
        _ours("signal_to_noise_ratio_contrastive_loss", reducer="pml"),
        {
            "pml.SignalToNoiseRatioContrastiveLoss": (
                "torch",
                _pml("SignalToNoiseRatioContrastiveLoss"),
            )
        },
        {"floor": 2.5, "pml.SignalToNoiseRatioContrastiveLoss": 0.7},
        "PML's SNR contrastive loss.",
    ),
    _pair_case(
        "multi_similarity",
        "multi_similarity_loss",
        _ours("multi_similarity_loss"),
        {
            "tfsim.MultiSimilarityLoss": ("oracle", _tfsim("MultiSimilarityLoss")),
            "pml.MultiSimilarityLoss": ("torch", _pml("MultiSimilarityLoss")),
        },
        {"floor": 2.5, "tfsim.MultiSimilarityLoss": 0.5, "pml.MultiSimilarityLoss": 0.7},
        "TF Similarity's defaults (pair mining, beta 40); PML's defaults differ (no mining,"
        " beta 50).",
    ),
    _pair_case(
        "circle",
        "circle_loss",
        _ours("circle_loss"),
        {
            "tfsim.CircleLoss": ("oracle", _tfsim("CircleLoss")),
            "pml.CircleLoss": ("torch", _pml("CircleLoss")),
            "keras.losses.Circle": ("tensorflow", circle_keras),
        },
        {"floor": 2.5, "tfsim.CircleLoss": 0.5, "pml.CircleLoss": 0.7},
        "TF Similarity's form; PML and Keras compute the paper's (joint=True), same cost.",
    ),
    _pair_case(
        "soft_nearest_neighbor",
        "soft_nearest_neighbor_loss",
        _ours("soft_nearest_neighbor_loss"),
        {"tfsim.SoftNearestNeighborLoss": ("oracle", _tfsim("SoftNearestNeighborLoss"))},
        {"floor": 2.5, "tfsim.SoftNearestNeighborLoss": 0.5},
        "squared Euclidean, temperature 1.",
    ),
    _pair_case(
        "intra_pair_variance",
        "intra_pair_variance_loss",
        _ours("intra_pair_variance_loss", reducer="pml"),
        {"pml.IntraPairVarianceLoss": ("torch", _pml("IntraPairVarianceLoss"))},
        {"floor": 2.5, "pml.IntraPairVarianceLoss": 0.7},
        "PML's settings (cosine similarity, a MeanReducer per kind of pair).",
    ),
    _pair_case(
        "nca",
        "nca_loss",
        _ours("nca_loss", reducer="pml"),
        {"pml.NCALoss": ("torch", _pml("NCALoss"))},
        {"floor": 2.5, "pml.NCALoss": 0.7},
        "PML's settings (squared Euclidean distance of unit embeddings, scale 1).",
    ),
    _pair_case(
        "angular",
        "angular_loss",
        _ours("angular_loss", normalize_negatives=False, reducer="pml"),
        {"pml.AngularLoss": ("torch", _pml("AngularLoss"))},
        {"floor": 2.5, "pml.AngularLoss": 0.7},
        "PML's settings (alpha 40 degrees, negatives not normalised, the mean over positive "
        "pairs); ours sums over the negatives by one [B, B] matrix product.",
    ),
    _pair_case(
        "histogram",
        "histogram_loss",
        _ours("histogram_loss"),
        {"pml.HistogramLoss": ("torch", _pml("HistogramLoss"))},
        {"floor": 2.5, "pml.HistogramLoss": 0.7},
        "PML's settings (cosine similarity, 100 bins).",
    ),
    _pair_case(
        "ranked_list",
        "ranked_list_loss",
        _ours("ranked_list_loss", epsilon=1e-5),
        {"pml.RankedListLoss": ("torch", _pml("RankedListLoss", margin=0.4, Tn=10))},
        {"floor": 2.5, "pml.RankedListLoss": 0.7},
        "PML's settings with the paper's margin 0.4 and Tn 10 (Euclidean distance, epsilon 1e-5).",
    ),
    _pair_case(
        "pml_npairs",
        "pml_npairs_loss",
        _ours("pml_npairs_loss", reducer="pml"),
        {"pml.NPairsLoss": ("torch", _pml("NPairsLoss"))},
        {"floor": 2.5, "pml.NPairsLoss": 0.7},
        "PML's settings (inner product of unit embeddings, one pair per label).",
    ),
    _pair_case(
        "threshold_consistent_margin",
        "threshold_consistent_margin_loss",
        _ours("threshold_consistent_margin_loss", reducer="pml"),
        {"pml.ThresholdConsistentMarginLoss": ("torch", _pml("ThresholdConsistentMarginLoss"))},
        {"floor": 2.5, "pml.ThresholdConsistentMarginLoss": 0.7},
        "PML's settings (cosine similarity, margins 0.9 and 0.5).",
    ),
    _ranking_case(
        "pnp",
        "pnp_loss",
        "PNPLoss",
        {"anchor_as_positive": True, "reducer": "pml"},
        "PML's settings (variant O, anneal 0.01, the anchor as its own positive).",
    ),
    _ranking_case(
        "smooth_ap",
        "smooth_ap_loss",
        "SmoothAPLoss",
        {},
        "Temperature 0.01. The labels are shuffled, so PML's value is wrong (it is right for "
        "contiguous class blocks only); the work is the same.",
    ),
    _pair_case(
        "tuplet_margin",
        "tuplet_margin_loss",
        _ours("tuplet_margin_loss", reducer="pml"),
        {"pml.TupletMarginLoss": ("torch", _pml("TupletMarginLoss"))},
        {"floor": 2.5, "pml.TupletMarginLoss": 0.7},
        "PML's settings (margin 5.73 degrees, scale 64).",
    ),
]


def _proxy_case(name, fn, pml, weight, key="proxies1", note="", size="embedding_size",
                **kwargs):  # fmt: skip
    return Case(
        name,
        fn,
        inputs="proxy",
        wrt=("embeddings", key),
        ours=_proxy_ours(fn, key, **kwargs),
        floor=class_logits_floor(key),
        references={f"pml.{pml}": ("torch", _proxy_pml(pml, weight, key, size, **kwargs))},
        targets={f"pml.{pml}": 0.7},
        note=f"C = {PROXY_CLASSES} classes, PML's defaults; gradients w.r.t. the embeddings and"
        f" the weights.{note}",
    )


_SUB = {"sub_centers": 3}
_TRIPLE = {"centers_per_class": 10}
PROXY_CASES = [
    _proxy_case("proxy_anchor", "proxy_anchor_loss", "ProxyAnchorLoss", "proxies",
                note=" Ours returns per-anchor shares; their mean is PML's scalar."),
    _proxy_case("proxy_nca", "proxy_nca_loss", "ProxyNCALoss", "proxies"),
    _proxy_case("normalized_softmax", "normalized_softmax_loss", "NormalizedSoftmaxLoss", "W"),
    _proxy_case("soft_triple", "soft_triple_loss", "SoftTripleLoss", "fc", key="proxies10",
                note=" K = 10 centres per class.", **_TRIPLE),
    _proxy_case("p2sgrad", "p2sgrad_loss", "P2SGradLoss", "weight", size="descriptors_dim",
                note=" PML rescales its weight's columns in place on every call."),
    _proxy_case("arcface", "arcface_loss", "ArcFaceLoss", "W"),
    _proxy_case("subcenter_arcface", "subcenter_arcface_loss", "SubCenterArcFaceLoss", "W",
                key="proxies3", note=" K = 3 sub-centres.", **_SUB),
    _proxy_case("cosface", "cosface_loss", "CosFaceLoss", "W"),
    _proxy_case("sphereface", "sphereface_loss", "SphereFaceLoss", "W"),
    _proxy_case("large_margin_softmax", "large_margin_softmax_loss", "LargeMarginSoftmaxLoss",
                "W"),
]  # fmt: skip


def _manifold_ours():
    def build():
        from keras import ops

        import keras_metric_losses as kml

        return lambda x: ops.mean(
            kml.manifold_loss(x["meta_classes"], x["embeddings"], x["proxies"])
        )

    return build


def _manifold_floor():
    """sum(inv(I + N N.T / n)): the Gram matrix of the `B + K` nodes and its inverse."""

    def build():
        from keras import ops

        def floor(x):
            nodes = ops.concatenate([x["embeddings"], x["proxies"]], axis=0)
            size = ops.shape(nodes)[0]
            gram = ops.matmul(nodes, ops.transpose(nodes)) / size
            return ops.sum(ops.inv(ops.eye(size) + gram))

        return floor

    return build


def _manifold_pml():
    """PML's `ManifoldLoss` with its proxies replaced by the input and the meta classes given
    (`indices_tuple`)."""

    def build():
        import torch
        from pytorch_metric_learning import losses

        loss = losses.ManifoldLoss(l=EMBEDDING_DIM, K=MANIFOLD_PROXIES)
        del loss._parameters["proxies"]  # a plain attribute from now on

        def fn(x):
            loss.proxies = x["proxies"]
            meta_classes = x["meta_classes"].to(torch.int64)
            return loss(x["embeddings"], indices_tuple=meta_classes)

        return fn

    return build


MANIFOLD_CASE = Case(
    "manifold",
    "manifold_loss",
    inputs="manifold",
    wrt=("embeddings", "proxies"),
    ours=_manifold_ours(),
    floor=_manifold_floor(),
    references={"pml.ManifoldLoss": ("torch", _manifold_pml())},
    targets={"floor": 2.5, "pml.ManifoldLoss": 0.7},
    note="K = 50 proxies, PML's defaults, meta classes given; gradients w.r.t. the embeddings "
    "and the proxies. Not measured yet.",
)
# --- softmax-contrastive (PML) and self-supervised (TF Similarity) ----------------------------


def _pml_embedding_case(ours_name, pml_name, pml_kwargs=None, ours_kwargs=None):
    """`(ours, pml)` builders: our function's mean (with PML's reducer where it has one) and
    PML's loss class on the same labelled embeddings."""

    def ours():
        from keras import ops

        import keras_metric_losses as kml

        fn = getattr(kml, ours_name)
        kwargs = ours_kwargs or {}
        return lambda x: ops.mean(fn(x["labels"], x["embeddings"], **kwargs))

    def pml():
        import torch
        from pytorch_metric_learning import losses

        loss = getattr(losses, pml_name)(**(pml_kwargs or {}))
        return lambda x: loss(x["embeddings"], x["labels"].to(torch.int64))

    return ours, pml


_ntxent_ours, _ntxent_pml_unguarded = _pml_embedding_case(
    "ntxent_loss", "NTXentLoss", ours_kwargs={"reducer": "pml"}
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
    "supcon_loss", "SupConLoss", ours_kwargs={"reducer": "pml"}
)
_instance_ours, _instance_pml = _pml_embedding_case("instance_loss", "InstanceLoss")
_fast_ap_ours, _fast_ap_pml = _pml_embedding_case(
    "fast_ap_loss", "FastAPLoss", ours_kwargs={"reducer": "pml"}
)


def supcon_multilabel_ours():
    """Multi-hot labels from the class ids (one label each, plus the next class for every
    other example), built inside the step: a [B, C] one-hot is cheap next to [B, B]."""
    from keras import ops

    from keras_metric_losses.losses.softmax.supcon import supcon_multilabel_loss

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

        import keras_metric_losses as kml

        fn = getattr(kml, ours_name)
        return lambda x: ops.mean(fn(None, x["views"]))

    def tfsim():
        import tensorflow as tf
        from tensorflow_similarity import losses

        loss = getattr(losses, tfsim_name)()
        return lambda x: tf.reduce_mean(loss(x["views"][:, 0], x["views"][:, 1]))

    return ours, tfsim


_SSL = {
    "simclr": _ssl_case("simclr_loss", "SimCLRLoss"),
    "barlow": _ssl_case("barlow_loss", "Barlow"),
    "vicreg": _ssl_case("vicreg_loss", "VicReg"),
    "simsiam": _ssl_case("simsiam_loss", "SimSiamLoss"),
}


# open_clip's initial multiplier (and bias): CLIP's `1 / 0.07`, open_clip_train's SigLIP 10, -10.
OPEN_CLIP_INITIAL = {"ClipLoss": (1 / 0.07,), "SigLipLoss": (10.0, -10.0)}


def open_clip_loss(name):
    """`fn(image, text)`: open_clip 3.3.0's `ClipLoss` / `SigLipLoss` at its initial scale (and
    bias). Its `loss.py` is loaded by path (the package's `__init__` needs torchvision, whose
    index wheel is a CUDA build) and registered in `sys.modules`, where `torch.compile` looks
    the module up by name."""
    import importlib.util
    import pathlib
    import sys

    import torch

    package = importlib.util.find_spec("open_clip").submodule_search_locations[0]
    spec = importlib.util.spec_from_file_location(
        "open_clip_loss", pathlib.Path(package) / "loss.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    loss = getattr(module, name)()
    values = [torch.tensor(a, dtype=torch.float32) for a in OPEN_CLIP_INITIAL[name]]
    return lambda image, text: loss(image, text, *values)


def _open_clip(name):
    """open_clip's loss on the two views as image and text features."""

    def build():
        loss = open_clip_loss(name)
        return lambda x: loss(x["views"][:, 0], x["views"][:, 1])

    return build


def _sentence_transformers(name, labels=False):
    """sentence-transformers 6.2's loss on the two views as (anchor, positive) columns, through
    a stand-in model that returns its input as the sentence embedding; with `labels`, the first
    feature of each first column (as `_ranked_pairs_ours`)."""

    def build():
        import torch
        from sentence_transformers.sentence_transformer import losses

        class StandIn(torch.nn.Module):
            def forward(self, features):
                return {"sentence_embedding": features["embedding"]}

        loss = getattr(losses, name)(StandIn())

        def fn(x):
            columns = [{"embedding": x["views"][:, c]} for c in range(2)]
            return loss(columns, x["views"][:, 0, 0].detach() if labels else None)

        return fn

    return build


def _text_ours(ours_name, guided=False, **kwargs):
    """sentence-transformers' losses on the views as (anchor, positive) columns; GIST's guide
    is the views themselves (sentence-transformers is not in the references' environments)."""

    def ours():
        from keras import ops

        import keras_metric_losses as kml

        fn = getattr(kml, ours_name)
        return lambda x: ops.mean(fn(x["views"] if guided else None, x["views"], **kwargs))

    return ours


def _ranked_pairs_ours(name):
    """`mean(kml.<name>(labels, views))`: the views as the two columns of each pair, the first
    feature of each first column as its float label (only the order of labels counts)."""

    def build():
        from keras import ops

        import keras_metric_losses as kml

        fn = getattr(kml, name)
        return lambda x: ops.mean(fn(ops.stop_gradient(x["views"][:, 0, 0]), x["views"]))

    return build


# --- cross-batch memory (memory_size 8192, contrastive loss) --------------------------------

XBM_MEMORY_SIZE = 8192


def xbm_ours():
    """One training step of `layers.CrossBatchMemory`: the write into the ring buffer and the
    contrastive loss of the batch against the filled slots. The layer is built once; its
    memory keeps filling from step to step (full after 8192 / B steps), as in training."""

    import keras_metric_losses as kml

    memory = kml.layers.CrossBatchMemory(kml.BatchContrastiveLoss(reducer="pml"), XBM_MEMORY_SIZE)
    memory.build([(None, EMBEDDING_DIM), (None,)])

    def step(x):
        memory([x["embeddings"], x["labels"]], training=True)
        return memory.losses[-1]

    return step


def xbm_pml():
    import torch
    from pytorch_metric_learning import losses

    memory = losses.CrossBatchMemory(
        losses.ContrastiveLoss(), EMBEDDING_DIM, memory_size=XBM_MEMORY_SIZE
    )
    return lambda x: memory(x["embeddings"], x["labels"].to(torch.int64))


# --- the registry ---------------------------------------------------------------------------

_EMBED = {"inputs": "embeddings", "wrt": ("embeddings",), "floor": similarity_floor}
_NCE = {"inputs": "nce", "wrt": ("weights", "inputs"), "floor": sampled_logits_floor}
_VIEWS = {"inputs": "views", "wrt": ("views",), "floor": views_floor}

CASES = {
    case.name: case
    for case in [
        Case(
            "npairs",
            "npairs_loss",
            ours=npairs_ours,
            references={
                "tfa.npairs_loss": ("oracle", npairs_tfa),
                "pml.NPairsLoss": ("torch", npairs_pml),
            },
            memory=True,
            targets={"floor": 1.2, "tfa.npairs_loss": 0.8},
            default_targets={"floor": 1.8},
            note="npairs_loss(labels, E @ stop_gradient(E).T), gradient w.r.t. E through the"
            " rows only; floor sum(E @ stop_gradient(E).T). PML's NPairsLoss keeps one pair per"
            " label (its gradient flows through both sides).",
            **{**_EMBED, "floor": one_sided_similarity_floor},
        ),
        Case(
            "xbm",
            "CrossBatchMemory",
            ours=xbm_ours,
            references={"pml.CrossBatchMemory": ("torch", xbm_pml)},
            note=f"CrossBatchMemory(ContrastiveLoss, memory_size={XBM_MEMORY_SIZE}): write and"
            " loss per step, the memory built once and filling over the steps (PML likewise);"
            " gradient w.r.t. the batch embeddings.",
            **_EMBED,
        ),
        Case(
            "npairs_multilabel",
            "npairs_multilabel_loss",
            ours=npairs_multilabel_ours,
            references={"tfa.npairs_multilabel_loss": ("oracle", npairs_multilabel_tfa)},
            targets={"floor": 1.3, "tfa.npairs_multilabel_loss": 0.8},
            note="npairs_multilabel_loss(two labels of 8 per example, E @ E.T).",
            **_EMBED,
        ),
        Case(
            "pn",
            "pn_loss",
            ours=pn_ours,
            references={
                "tfsim.PNLoss": ("oracle", pn_tfsim),
                "pml.TripletMarginLoss+miner": ("torch", triplet_pml),
            },
            memory=True,
            targets={"floor": 2.0, "tfsim.PNLoss": 0.5},
            default_targets={"floor": 3.0},
            note="cosine, hard positives, semi-hard negatives, margin 1; gradient w.r.t. the"
            " embeddings; floor sum(E @ stop_gradient(E).T). PML has no PN loss: its reference"
            " is a cosine triplet margin loss on BatchEasyHardMiner(hard, semihard).",
            **{**_EMBED, "floor": one_sided_similarity_floor},
        ),
        Case(
            "triplet_semihard",
            "triplet_semihard_loss",
            ours=_ours("triplet_semihard_loss"),
            references={"tfa.triplet_semihard_loss": ("oracle", _tfa("triplet_semihard_loss"))},
            memory=True,
            targets={"floor": 2.5, "tfa.triplet_semihard_loss": 0.5},
            note="L2, margin 1; mean of the per-anchor shares = TF Addons' scalar. TF Addons"
            " builds a [B^2, B] tensor; ours sorts each row and binary-searches per pair.",
            **_EMBED,
        ),
        Case(
            "triplet_hard",
            "triplet_hard_loss",
            ours=_ours("triplet_hard_loss"),
            references={
                "tfa.triplet_hard_loss": ("oracle", _tfa("triplet_hard_loss")),
                "pml.TripletMarginLoss+BatchHardMiner": (
                    "torch",
                    _pml("TripletMarginLoss", "BatchHardMiner", margin=1.0),
                ),
            },
            memory=True,
            targets={"floor": 2.5, "tfa.triplet_hard_loss": 0.5},
            note="L2, margin 1, hinge. PML: BatchHardMiner (hardest positive and negative per"
            " anchor, on the normalised = unit inputs) + TripletMarginLoss(margin=1).",
            **_EMBED,
        ),
        Case(
            "triplet_tfsim",
            "triplet_loss",
            ours=_ours("triplet_loss"),
            references={"tfsim.TripletLoss": ("oracle", triplet_tfsim)},
            memory=True,
            targets={"floor": 2.5, "tfsim.TripletLoss": 0.5},
            note="TF Similarity's defaults: cosine, hard positives, semi-hard negatives, soft"
            " margin.",
            **_EMBED,
        ),
        Case(
            "triplet_margin",
            "triplet_margin_loss",
            ours=_ours("triplet_margin_loss", DENSE_TRIPLETS_MAX_BATCH, reducer="pml"),
            references={"pml.TripletMarginLoss": ("torch", _pml("TripletMarginLoss"))},
            targets={"pml.TripletMarginLoss": 0.7},
            note="All triplets, margin 0.05, PML's AvgNonZeroReducer. Ours is dense [B, B, B]"
            f" (not run above B = {DENSE_TRIPLETS_MAX_BATCH}); PML lists the ~3 B^2 valid"
            " triplets (4 examples per class).",
            **_EMBED,
        ),
        Case(
            "dynamic_soft_margin",
            "dynamic_soft_margin_loss",
            ours=_ours(
                "dynamic_soft_margin_loss",
                DENSE_TRIPLETS_MAX_BATCH,
                reducer="pml",
                histogram_gradient=True,
            ),
            references={"pml.DynamicSoftMarginLoss": ("torch", dynamic_soft_margin_pml)},
            targets={"pml.DynamicSoftMarginLoss": 0.7},
            note="All triplets, a new histogram per call (PML: a new object, whose first batch"
            f" it is). Ours is dense [B, B, B] (not run above B = {DENSE_TRIPLETS_MAX_BATCH}).",
            **_EMBED,
        ),
        Case(
            "margin",
            "margin_loss",
            ours=_ours("margin_loss", reducer="pml"),
            references={"pml.MarginLoss": ("torch", _pml("MarginLoss"))},
            memory=True,
            targets={"floor": 2.5, "pml.MarginLoss": 0.7},
            note="All triplets, beta 1.2, margin 0.2, PML's DivisorReducer; ours sums the"
            " triplets from [B, B] pair terms.",
            **_EMBED,
        ),
        Case(
            "nce",
            "nce_loss",
            ours=_nce_ours,
            references={"tf.nn.nce_loss": ("tensorflow", _nce_tf)},
            targets={"tf.nn.nce_loss": 1.0},
            note="C = 100,000 classes, 64 sampled; gradients w.r.t. weights and inputs.",
            **_NCE,
        ),
        Case(
            "sampled_softmax",
            "sampled_softmax_loss",
            ours=_ssm_ours,
            references={"tf.nn.sampled_softmax_loss": ("tensorflow", _ssm_tf)},
            note="C = 100,000 classes, 64 sampled; gradients w.r.t. weights and inputs.",
            **_NCE,
        ),
        *PAIR_CASES,
        *PROXY_CASES,
        MANIFOLD_CASE,
        Case(
            "ntxent",
            "ntxent_loss",
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
            "supcon_loss",
            ours=_supcon_ours,
            references={"pml.SupConLoss": ("torch", _supcon_pml)},
            memory=True,
            targets={"pml.SupConLoss": 0.7},
            note="temperature 0.1, cosine; ours with reducer='pml' (PML's scalar).",
            **_EMBED,
        ),
        Case(
            "supcon_multilabel",
            "supcon_multilabel_loss",
            ours=supcon_multilabel_ours,
            note="multi-hot labels (one or two classes) built in the step; no library has it.",
            **_EMBED,
        ),
        Case(
            "instance",
            "instance_loss",
            ours=_instance_ours,
            references={"pml.InstanceLoss": ("torch", _instance_pml)},
            targets={"pml.InstanceLoss": 0.7},
            note="gamma 64.",
            **_EMBED,
        ),
        Case(
            "fast_ap",
            "fast_ap_loss",
            ours=_fast_ap_ours,
            references={"pml.FastAPLoss": ("torch", _fast_ap_pml)},
            targets={"pml.FastAPLoss": 0.7},
            note="10 bins: a [B, B, 11] histogram tensor; ours with reducer='pml'.",
            **_EMBED,
        ),
        *[
            Case(
                name,
                f"{name}_loss",
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
        *[
            Case(
                name,
                f"{name}_loss",
                ours=_ranked_pairs_ours(f"{name}_loss"),
                references={f"st.{st}": ("torch", _sentence_transformers(st, labels=True))},
                targets={f"st.{st}": 1.0},
                default_targets={f"st.{st}": 1.0},
                **_VIEWS,
                note="pairs [B, 2, D]: the [B, B] ranking of their labels.",
            )
            for name, st in (("cosent", "CoSENTLoss"), ("angle", "AnglELoss"))
        ],
        *[
            Case(
                name,
                f"{name}_loss",
                ours=_ssl_case(f"{name}_loss", None)[0],
                references={f"open_clip.{original}": ("torch", _open_clip(original))},
                targets={f"open_clip.{original}": 1.0, "floor": 2.0},
                default_targets={f"open_clip.{original}": 1.0, "floor": 2.0},
                note=f"image and text features [B, 2, {EMBEDDING_DIM}]; open_clip's {original}"
                " at its initial scale (and bias).",
                **_VIEWS,
            )
            for name, original in [("clip", "ClipLoss"), ("siglip", "SigLipLoss")]
        ],
        *[
            Case(
                f"{name}_tiled",
                f"{name}_loss",
                ours=_text_ours(f"{name}_loss", block_size=1024),
                note="by tiles of 1024 keys (issue 25: <= 1.5x the dense loss at B = 4096).",
                **_VIEWS,
            )
            for name in ("clip", "siglip")
        ],
        *[
            Case(
                name,
                loss,
                ours=_text_ours(loss, **kwargs),
                references={f"st.{st}": ("torch", _sentence_transformers(st))} if st else {},
                targets={f"st.{st}": 1.0, "floor": 2.0} if st else {},
                default_targets={f"st.{st}": 1.0, "floor": 2.0} if st else {},
                note=note,
                **_VIEWS,
            )
            for name, loss, kwargs, st, note in [
                (
                    "mnrl",
                    "multiple_negatives_ranking_loss",
                    {},
                    "MultipleNegativesRankingLoss",
                    "anchor, positive columns.",
                ),
                (
                    "mnrl_tiled",
                    "multiple_negatives_ranking_loss",
                    {"block_size": 256},
                    None,
                    "tiles.",
                ),
                (
                    "mnsrl",
                    "multiple_negatives_symmetric_ranking_loss",
                    {},
                    "MultipleNegativesSymmetricRankingLoss",
                    "both directions.",
                ),
                ("gist", "gist_embed_loss", {"guided": True}, None, "the views as the guide."),
            ]
        ],
    ]
}
