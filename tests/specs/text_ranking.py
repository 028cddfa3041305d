"""sentence-transformers' ranking losses (MultipleNegativesRankingLoss family, GISTEmbedLoss) on
`[B, C, D]` columns; `from_sentence_transformers` builds ours from the original's arguments."""

import re

import keras
import numpy as np
from support import value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.text import mnrl
from specs import Spec
from specs.faults import NotApplicable, Raises
from specs.ssl import STRING_LABELS, TwoViews

RTOL, ATOL = 1e-5, 1e-6
# ST's arguments that have no meaning for a loss on embeddings (the encoder's side of GradCache).
_ENCODER_SIDE = ("mini_batch_num_tokens", "show_progress_bar")


def from_sentence_transformers(call, kwargs):
    """Our loss for sentence-transformers' `call(model, **kwargs)` (as stored in the golden
    cases): `gather_across_devices` is `cross_replica`, a Cached class's `mini_batch_size` is
    `block_size`, the deprecated symmetric classes' implied settings are their own (ours:
    MultipleNegativesRankingLoss, its symmetric class, their Cached twins, GISTEmbedLoss)."""
    cls, arguments = _arguments(call, kwargs)
    return cls(**arguments)


def _arguments(call, kwargs):
    arguments = {k: v for k, v in kwargs.items() if k not in _ENCODER_SIDE}
    arguments = {k: v for k, v in arguments.items() if not k.startswith("implied_")}
    gather = arguments.pop("gather_across_devices", False)
    if call.startswith("Cached"):
        arguments["block_size"] = arguments.pop("mini_batch_size")
        call = call[len("Cached") :]
    cls = getattr(kml, call)
    if "cross_replica" in cls.declaration.hyperparameters:
        arguments["cross_replica"] = gather
    elif gather:
        raise NotImplementedError(f"{call}(gather_across_devices=True)")
    return cls, arguments


class Columns(TwoViews):
    """Anchor and positive columns `[B, 2, D]` of a text-embedding loss, `y_true` unused."""

    name = "columns"

    def outcomes(self):
        outcomes = super().outcomes()
        for fault, shape in (
            ("y_pred rank 1", (4, 3)),
            ("y_pred rank 3", (4, 2, 3, 1)),
            ("non-square y_pred", (4, 1, 3)),
        ):
            outcomes[fault] = Raises(
                ValueError,
                r"`y_pred` must hold 2 to any number of columns.*Received: y_pred.shape="
                + re.escape(str(shape)),
            )
        return outcomes


def _guide(ids):
    """`[B, 2, 3]` guide embeddings of a batch (fixed by its size)."""
    return np.random.default_rng(len(ids)).normal(size=(len(ids), 2, 3)).astype("float32")


class Guided(Columns):
    """`Columns` with the guide model's `[B, 2, D_guide]` embeddings of them as `y_true` (in
    `fit`, the inputs themselves: an identity guide)."""

    name = "guided columns"
    labels = staticmethod(_guide)

    def outcomes(self):
        def shape(fault, received):
            return Raises(ValueError, rf"`y_true` must hold {fault}.*Received: y_true.shape="
                          + re.escape(str(received)))  # fmt: skip

        columns = "2 to any number of columns"
        return {
            **super().outcomes(),
            "y_true rank + 2": shape(columns, (4, 2, 3, 1, 1)),
            "y_true two columns": shape(columns, (4, 2, 3, 2)),
            "batch mismatch": shape("the guide's embeddings", (3, 2, 3)),
            "string labels": Raises(TypeError, r"`y_true` must hold numbers"),
            # The guide's embeddings are data: NaN gives NaN, as in `y_pred` (value checks on:
            # "`y_true` must be finite"), not the finite value of a label fault.
            "NaN labels": NotApplicable("y_true holds embeddings: NaN in, NaN out"),
            "out-of-range labels": shape(columns, (4,)),
        }

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        views, _ = super().data(batch, seed, scale, nuisance)
        return views, np.stack(views, axis=1)


SPECS = [
    Spec(
        kml.multiple_negatives_ranking_loss,
        kml.MultipleNegativesRankingLoss,
        Columns(scale=20.0),
        "text",
        class_outcomes=STRING_LABELS,
        cross_replica=True,
        precision=False,  # a softmax of 20 * cosine, as SimCLR's (specs/ssl.py)
    ),
    Spec(
        kml.multiple_negatives_symmetric_ranking_loss,
        kml.MultipleNegativesSymmetricRankingLoss,
        Columns(scale=20.0),
        "text",
        class_outcomes=STRING_LABELS,
        cross_replica=True,
        precision=False,
    ),
    Spec(
        kml.gist_embed_loss,
        kml.GISTEmbedLoss,
        Guided(scale=100.0),
        "text",
        precision=False,  # a softmax of 100 * cosine whose masks jump with the guide
    ),
]

# --- golden checks (sentence_transformers.json) -----------------------------------------------


def _stacked(case, key="columns"):
    return np.stack([np.asarray(c, case["dtype"]) for c in case[key]], axis=1)


def _assert_grads(actual, expected, what):
    """Every column's gradient within 1e-5 x its largest element + 1e-6."""
    for column, wanted in enumerate(expected):
        wanted = np.asarray(wanted)
        np.testing.assert_allclose(actual[:, column], wanted, rtol=0,
                                   atol=RTOL * np.abs(wanted).max() + ATOL,
                                   err_msg=f"{what}: column {column}")  # fmt: skip


def _check_values(case, run, cls, function, arguments, y_true, y_pred):
    """The per-example values of the class and the function, their mean, every gradient."""
    for loss in (cls(reduction=None, **arguments), lambda y, p: function(y, p, **arguments)):
        values = run(loss, y_true, y_pred)
        assert tuple(values.shape) == (len(y_pred),)
        assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
        values = keras.ops.convert_to_numpy(values)
        np.testing.assert_allclose(values, case["expected_per_example"], rtol=RTOL, atol=ATOL,
                                   err_msg=case["id"])  # fmt: skip
        np.testing.assert_allclose(np.mean(values), case["expected"], rtol=RTOL, atol=ATOL)
    mean = lambda p: keras.ops.mean(function(y_true, p, **arguments))  # noqa: E731
    value, grad = value_and_grad(mean, y_pred)
    np.testing.assert_allclose(value, case["expected"], rtol=RTOL, atol=ATOL)
    _assert_grads(grad, case["grads"], case["id"])


def check_ranking(case, run):
    """`Class(model, **kwargs)(features, labels)` of sentence-transformers is
    `from_sentence_transformers(call, kwargs)` on `stack(columns, 1)`; distributed cases:
    `check_replicas`."""
    cls, arguments = _arguments(case["call"], case["kwargs"])
    function = cls.declaration.function
    if "world_size" in case:
        return check_replicas(case, run, cls, arguments)
    y_pred = _stacked(case)
    _check_values(case, run, cls, function, arguments, np.zeros(len(y_pred), "float32"), y_pred)


def check_replicas(case, run, cls, arguments):
    """Replica `r`'s loss is `mnrl.ranking_values` (what the `cross_replica` path runs after the
    gather) with its rows `r * b + arange(b)` as queries against the global columns; the global
    loss and gradients are one device's on the whole batch. Replica `r`'s gradient of its own
    loss is the gradient of the sum of every replica's loss (the gather's backward pass sums
    them), on its rows: `W x` the global gradient's."""
    y_pred, local, world = _stacked(case), case["local_batch"], case["world_size"]
    function, every = cls.declaration.function, cls.declaration.hyperparameters
    defaults = {k: h.default for k, h in every.items()}
    settings = function.check_hyperparameters({**defaults, **arguments})
    del settings["cross_replica"]

    def replica(columns, r):
        rows = keras.ops.arange(r * local, (r + 1) * local, dtype="int32")
        values = mnrl.ranking_values(columns[:, 0], [columns[:, c] for c in
                                     range(1, columns.shape[1])], rows, **settings)  # fmt: skip
        return keras.ops.mean(values)

    for r in range(world):
        value = run(lambda p, r=r: replica(p, r), y_pred)
        np.testing.assert_allclose(value, case["expected_per_rank"][r], rtol=RTOL, atol=ATOL)
    total = lambda p: sum(replica(p, r) for r in range(world))  # noqa: E731
    _, grad = value_and_grad(total, y_pred)
    for r in range(world):
        rows = slice(r * local, (r + 1) * local)
        _assert_grads(grad[rows], case["grads_per_rank"][r], f"{case['id']} rank {r}")
    single = {k: v for k, v in arguments.items() if k != "cross_replica"}
    mean = lambda p: keras.ops.mean(function(None, p, **single))  # noqa: E731
    value, grad = value_and_grad(mean, y_pred)
    np.testing.assert_allclose(value, case["expected_global"], rtol=RTOL, atol=ATOL)
    _assert_grads(grad, case["grads_global"], case["id"])


def check_gist(case, run):
    """`GISTEmbedLoss(model, guide, **kwargs)(features, labels)` is `GISTEmbedLoss(**kwargs)` on
    the guide's columns (`y_true`) and the model's (`y_pred`)."""
    cls, arguments = _arguments(case["call"], case["kwargs"])
    y_true, y_pred = _stacked(case, "guide_columns"), _stacked(case)
    _check_values(case, run, cls, cls.declaration.function, arguments, y_true, y_pred)


CALLS = (
    "MultipleNegativesRankingLoss",
    "MultipleNegativesSymmetricRankingLoss",
    "CachedMultipleNegativesRankingLoss",
    "CachedMultipleNegativesSymmetricRankingLoss",
)
GOLDEN = {
    **{("sentence_transformers.json", call): check_ranking for call in CALLS},
    ("sentence_transformers.json", "GISTEmbedLoss"): check_gist,
}
