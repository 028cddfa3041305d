"""The pair-based losses beyond the shared spec tests: how each original maps to our settings,
the query/key path a cross-batch memory uses, properties against the NumPy oracles, and the
degenerate inputs where the originals give NaN."""

import json

import hypothesis.extra.numpy as hnp
import keras
import numpy as np
import pml_pair_reference as pml
import pytest
import tf_metric_reference as tf_ref
from hypothesis import given, settings
from hypothesis import strategies as st
from specs.pair import SPECS
from support import examples, numpy, value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.pair import contrastive as contrastive_module
from keras_metric_losses.losses.pair import generalized_lifted as generalized_lifted_module
from keras_metric_losses.losses.pair import lifted as lifted_module
from keras_metric_losses.losses.pair import tuplet as tuplet_module
from keras_metric_losses.pairs import Keys, build

RNG = np.random.default_rng(0)


def batch(size=12, dim=5, classes=4, seed=0, unit=False):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size)
    embeddings = rng.normal(size=(size, dim))
    if unit:
        embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return labels, embeddings.astype("float32")


def close(actual, expected, rtol=1e-5, atol=1e-5):
    np.testing.assert_allclose(numpy(actual), expected, rtol=rtol, atol=atol)


# --- one public name per loss -----------------------------------------------------------------


def test_names_of_the_clashing_originals_are_distinct_objects():
    # TF Addons' ContrastiveLoss takes pair distances; PML's takes a batch of embeddings.
    assert kml.ContrastiveLoss is not kml.BatchContrastiveLoss
    assert kml.contrastive_loss is not kml.batch_contrastive_loss
    flags, distances = np.array([1, 0]), np.array([0.5, 0.25], "float32")
    close(kml.ContrastiveLoss(reduction=None)(flags, distances), [0.25, 0.5625])
    names = [name for name in kml.__all__ if not name.islower()]
    assert len(names) == len(set(names))
    for name in ("MultiSimilarityLoss", "CircleLoss", "LiftedStructLoss", "LiftedStructureLoss"):
        assert keras.saving.get_registered_object(f"keras_metric_losses>{name}") is getattr(
            kml, name
        )


# --- TF Addons --------------------------------------------------------------------------------


def test_contrastive_matches_pairs_of_a_column_without_broadcasting():
    flags = np.array([1, 0, 1, 0])
    distances = np.array([[0.5], [0.2], [1.5], [2.0]], "float32")  # a [B, 1] model output
    expected = tf_ref.contrastive_loss(flags, distances[:, 0])
    close(kml.contrastive_loss(flags, distances), expected)
    close(kml.contrastive_loss(flags[:, None], distances[:, 0]), expected)
    close(kml.ContrastiveLoss()(flags, distances), expected.mean())
    with pytest.raises(ValueError, match=r"`y_pred` must hold one distance per pair.*\(4, 2\)"):
        kml.contrastive_loss(flags, np.ones((4, 2), "float32"))
    assert keras.backend.standardize_dtype(
        kml.contrastive_loss(flags, np.ones(4, "int32")).dtype
    ) == ("float32")
    with kml.config.value_checks(), pytest.raises(ValueError, match=r"pair flags.*first: 0.5"):
        kml.contrastive_loss(np.array([1.0, 0.5]), np.ones(2, "float32"))


def test_contrastive_gradient_at_zero_distance_is_finite():
    flags = np.array([1, 0, 1])
    _, grad = value_and_grad(
        lambda d: keras.ops.sum(kml.contrastive_loss(flags, d)), np.zeros(3, "float32")
    )
    np.testing.assert_array_equal(grad, [0.0, -2.0, 0.0])


def test_lifted_struct_is_lifted_structure_with_tf_addons_settings():
    labels, embeddings = batch(16, 6, 4)
    for margin in (1.0, 0.3):
        tfa = kml.LiftedStructLoss(margin=margin, reduction=None)(labels, embeddings)
        pml_form = kml.LiftedStructureLoss(
            neg_margin=margin, pos_margin=0.0, normalize=False, reducer="pml", reduction=None
        )
        close(tfa, numpy(pml_form(labels, embeddings)), rtol=1e-6, atol=1e-6)
        close(keras.ops.mean(tfa), tf_ref.lifted_struct_loss(labels, embeddings, margin))


@pytest.mark.parametrize("labels", [[0, 1, 2, 3], [5, 5, 5, 5]], ids=["distinct", "one class"])
def test_lifted_struct_gives_zero_where_tf_addons_gives_nan(labels):
    labels, embeddings = np.array(labels), RNG.normal(size=(4, 3)).astype("float32")
    assert np.isnan(tf_ref.lifted_struct_loss(labels, embeddings))
    value, grad = value_and_grad(
        lambda e: keras.ops.mean(kml.lifted_struct_loss(labels, e)), embeddings
    )
    assert value == 0.0 and np.all(grad == 0.0)


# --- TF Similarity and Keras ------------------------------------------------------------------


def test_circle_joint_is_keras_circle():
    labels, embeddings = batch(16, 8, 5, unit=True)
    close(
        kml.circle_loss(labels, embeddings, joint=True),
        numpy(keras.losses.circle(labels, embeddings)),
        rtol=1e-5,
    )
    for gamma, margin in ((80.0, 0.4), (32.0, 0.25)):
        ours = kml.CircleLoss(gamma=gamma, margin=margin, joint=True, reducer="pml")
        theirs = keras.losses.Circle(gamma=gamma, margin=margin)
        close(ours(labels, embeddings), numpy(theirs(labels, embeddings)), rtol=1e-5)
    # With keys (Keras' `ref_labels` / `ref_embeddings`, no diagonal removed).
    keys_labels, keys = batch(10, 8, 5, seed=1, unit=True)
    close(
        kml.circle_loss(
            labels, embeddings, joint=True, ref_embeddings=keys, ref_labels=keys_labels
        ),
        numpy(
            keras.losses.circle(
                labels,
                embeddings,
                ref_labels=keys_labels,
                ref_embeddings=keys,
                remove_diagonal=False,
            )
        ),
        rtol=1e-5,
    )


def test_circle_forms_differ_and_tf_similarity_bounds_the_paper():
    labels, embeddings = batch(16, 8, 5, unit=True)
    tfsim = numpy(kml.circle_loss(labels, embeddings))
    paper = numpy(kml.circle_loss(labels, embeddings, joint=True))
    assert np.all(tfsim >= paper - 1e-4) and np.any(tfsim > paper + 1e-2)


def pml_ms_settings(base=0.5, alpha=2.0, beta=50.0, distance="cosine"):
    shape = {"lmda": base, "center": 1.0} if distance == "cosine" else {"lmda": 0.0, "center": base}
    return dict(
        shape,
        distance=distance,
        alpha=alpha,
        beta=beta,
        epsilon=None,
        one_sided=True,
        normalize=True,
    )


@pytest.mark.parametrize(
    "labels", [None, [0, 1, 2, 3, 4, 5], [1] * 6], ids=["random", "distinct", "one class"]
)
@pytest.mark.parametrize("distance", ["cosine", "euclidean"])
def test_multi_similarity_with_pml_settings_is_pml(labels, distance):
    y, embeddings = batch(6, 4, 2, seed=3)
    y = y if labels is None else np.array(labels)
    record = {"class": "CosineSimilarity" if distance == "cosine" else "LpDistance"}
    expected = pml.multi_similarity_loss(
        embeddings, y, alpha=2.0, beta=50.0, base=0.4, distance=pml.Distance.from_spec(record)
    ).natural
    close(
        kml.multi_similarity_loss(y, embeddings, **pml_ms_settings(0.4, distance=distance)),
        expected,
    )


def test_multi_similarity_without_mining_is_pml_on_well_posed_batches():
    """The golden README: TF Similarity with beta 50 and a huge epsilon is PML."""
    labels = np.arange(12) % 3
    embeddings = batch(12, 6, 3, seed=4, unit=True)[1]
    expected = pml.multi_similarity_loss(embeddings, labels).natural
    close(
        kml.MultiSimilarityLoss(beta=50.0, epsilon=1e6, reduction=None)(labels, embeddings),
        expected,
    )


def test_soft_nearest_neighbor_is_finite_where_tf_similarity_underflows():
    labels = np.array([0, 0, 1, 1])
    embeddings = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0], [20.0, 20.0]], "float32")
    # TF Similarity's float32 weights exp(-D / T) of squared distances >= 400 are all 0: 0 / 0.
    assert np.exp(-np.float32(400.0)) == 0.0
    value, grad = value_and_grad(
        lambda e: keras.ops.mean(kml.soft_nearest_neighbor_loss(labels, e)), embeddings
    )
    # Every anchor's nearest neighbours (400 away) are a positive and a negative: log 2 each,
    # as the float64 oracle says. In float32 the two log-sum-exps of logits near -400 carry
    # rounding errors of a few ulp(400) = 3e-5 each.
    expected = tf_ref.tfsim_soft_nn_loss(labels, embeddings, labels, embeddings)
    np.testing.assert_allclose(expected, np.log(2.0), rtol=1e-8)
    np.testing.assert_allclose(value, np.log(2.0), atol=1e-4)
    assert np.isfinite(grad).all()


def test_tensorflow_similarity_configs_load():
    config = {
        "name": "MultiSimilarityLoss",
        "reduction": "auto",
        "distance": {"class_name": "CosineDistance", "config": {"name": "cosine"}},
        "alpha": 2.0,
        "beta": 40.0,
        "epsilon": 0.1,
        "lmda": 0.5,
        "center": 1.0,
    }
    loss = kml.MultiSimilarityLoss.from_config(config)
    assert loss.distance == "cosine" and loss.reduction == "sum_over_batch_size"
    circle = kml.CircleLoss.from_config(
        {"name": "c", "reduction": "auto", "distance": "cosine", "gamma": 80.0, "margin": 0.4}
    )
    assert circle.get_config()["joint"] is False
    json.dumps(kml.MultiSimilarityLoss(epsilon=None).get_config())


# --- the query/key path (a cross-batch memory, a gallery) -------------------------------------


def memory_batch(seed=0):
    """A batch `[B]` and keys `concat(batch, memory)` with `self_columns = arange(B)` (TF
    Similarity's XBM layout)."""
    labels, embeddings = batch(8, 5, 3, seed=seed, unit=True)
    memory_labels, memory = batch(10, 5, 3, seed=seed + 1, unit=True)
    key_labels = np.concatenate([labels, memory_labels])
    keys = np.concatenate([embeddings, memory])
    return labels, embeddings, key_labels, keys


def keyed_pairs(labels, embeddings, key_labels, keys, self_columns=None):
    """`Pairs` of a batch against keys; `self_columns=None`: none of the keys is the query."""
    if self_columns is None:
        self_columns = np.full(len(labels), -1, "int32")
    return build(labels, embeddings, Keys.memory(keys, key_labels, None, self_columns))


@pytest.mark.parametrize(
    "loss, call",
    [
        (kml.MultiSimilarityLoss(), "MultiSimilarityLoss"),
        (kml.CircleLoss(), "CircleLoss"),
        (kml.SoftNearestNeighborLoss(), "SoftNearestNeighborLoss"),
    ],
    ids=lambda x: x if isinstance(x, str) else "",
)
def test_tf_similarity_losses_over_a_memory(loss, call):
    labels, embeddings, key_labels, keys = memory_batch()
    memory = Keys.memory(keys, key_labels, None, np.arange(len(labels), dtype="int32"))
    expected = tf_ref.TFSIM_LOSSES[call](labels, embeddings, key_labels, keys)
    close(loss.per_example(labels, embeddings, memory), expected)


PML_KEYED = [
    (
        pml.contrastive_loss,
        lambda p: contrastive_module.contrastive_per_anchor(
            p, distance="euclidean", pos_margin=0.0, neg_margin=1.0, reducer="pml"
        ),
    ),
    (
        pml.lifted_structure_loss,
        lambda p: lifted_module.lifted_structure_per_anchor(
            p, distance="euclidean", neg_margin=1.0, pos_margin=0.0, reducer="pml"
        ),
    ),
    (
        pml.generalized_lifted_structure_loss,
        lambda p: generalized_lifted_module.generalized_lifted_structure_elements(
            p, distance="euclidean", neg_margin=1.0, pos_margin=0.0
        ),
    ),
    (
        pml.tuplet_margin_loss,
        lambda p: tuplet_module.tuplet_margin_per_anchor(p, margin=5.73, scale=64.0, reducer="pml"),
    ),
]


@pytest.mark.parametrize("oracle, ours", PML_KEYED, ids=lambda x: getattr(x, "__name__", ""))
@pytest.mark.parametrize("with_self", [True, False], ids=["memory", "gallery"])
def test_pml_losses_over_keys(oracle, ours, with_self):
    labels, embeddings, key_labels, keys = memory_batch(seed=2)
    self_index = np.arange(len(labels))
    if not with_self:  # a gallery of other examples (an exact copy of a query would make S = 1
        # rounded in float32, where the tuplet loss's cos(acos(S) - m) is ill-conditioned)
        key_labels, keys, self_index = key_labels[len(labels) :], keys[len(labels) :], None
    expected = oracle(embeddings, labels, keys, key_labels, self_index).per_anchor
    pairs = keyed_pairs(labels, embeddings, key_labels, keys, self_index).normalized()
    close(ours(pairs), expected)


def test_ref_embeddings_of_the_public_functions():
    labels, embeddings, key_labels, keys = memory_batch(seed=5)
    key_labels, keys = key_labels[len(labels) :], keys[len(labels) :]  # a gallery: other examples
    keyed = {"ref_embeddings": keys, "ref_labels": key_labels}
    close(
        kml.multi_similarity_loss(labels, embeddings, **keyed),
        tf_ref.tfsim_multisimilarity_loss(
            labels, embeddings, key_labels, keys, remove_diagonal=False
        ),
    )
    close(
        kml.lifted_structure_loss(labels, embeddings, reducer="pml", **keyed),
        pml.lifted_structure_loss(embeddings, labels, keys, key_labels).per_anchor,
    )


# --- properties against the oracles -----------------------------------------------------------


@st.composite
def labelled_batches(draw):
    size, dim = draw(st.integers(1, 10)), draw(st.integers(2, 5))
    labels = draw(hnp.arrays(np.int64, size, elements=st.integers(0, 3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    embeddings = rng.normal(size=(size, dim))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    return labels, embeddings.astype("float32"), np.asarray(draw(st.permutations(range(size))))


EMBEDDING_SPECS = [spec for spec in SPECS if spec.kind.name == "embeddings"]


@settings(max_examples=examples(20), deadline=None)
@given(batch=labelled_batches(), index=st.integers(0, len(EMBEDDING_SPECS) - 1))
def test_per_anchor_values_match_the_oracles_and_permute_with_the_batch(batch, index):
    spec = EMBEDDING_SPECS[index]
    labels, embeddings, permutation = batch
    values = numpy(spec.function(labels, embeddings))
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = spec.reference(labels, embeddings.astype(np.float64))
    np.testing.assert_allclose(values, expected, rtol=1e-4, atol=1e-4, err_msg=spec.name)
    permuted = numpy(spec.function(labels[permutation], embeddings[permutation]))
    np.testing.assert_allclose(permuted, values[permutation], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spec", EMBEDDING_SPECS, ids=lambda s: s.name)
def test_half_precision_is_computed_in_float32(spec):
    labels, embeddings = batch(8, 4, 3, unit=True)
    half = keras.ops.convert_to_tensor(embeddings, "float16")
    values = spec.function(labels, half)
    assert keras.backend.standardize_dtype(values.dtype) == "float16"
    exact = numpy(spec.function(labels, numpy(keras.ops.cast(half, "float32"))))
    np.testing.assert_allclose(
        numpy(keras.ops.cast(values, "float32")), exact, rtol=2e-3, atol=2e-3
    )


def test_tuplet_gradient_of_a_duplicate_positive_is_finite():
    labels = np.array([0, 0, 1, 1])
    embeddings = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.6, 0.8]], "float32")
    value, grad = value_and_grad(
        lambda e: keras.ops.mean(kml.tuplet_margin_loss(labels, e)), embeddings
    )
    assert np.isfinite(value) and np.isfinite(grad).all()


@pytest.mark.parametrize(
    "cls, kwargs, match",
    [
        (kml.MultiSimilarityLoss, {"epsilon": -0.1}, r"`epsilon`.*>= 0.*Received: epsilon=-0.1"),
        (kml.MultiSimilarityLoss, {"alpha": 0.0}, r"`alpha`.*> 0.*Received: alpha=0.0"),
        (kml.CircleLoss, {"gamma": -1.0}, r"Received: gamma=-1.0"),
        (kml.CircleLoss, {"reducer": "mean"}, r"`reducer`.*Received: reducer='mean'"),
        (kml.SoftNearestNeighborLoss, {"temperature": 0.0}, r"Received: temperature=0.0"),
        (kml.TupletMarginLoss, {"scale": 0}, r"Received: scale=0"),
        (kml.BatchContrastiveLoss, {"distance": "cosine-ish"}, r"Received: distance='cosine-ish'"),
        (kml.LiftedStructLoss, {"margin": float("nan")}, r"Received: margin=nan"),
    ],
)
def test_bad_hyperparameters_name_the_argument(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def test_snr_contrastive_leaves_out_an_embedding_without_variance():
    """A constant embedding (here the zero vector that float16 `UnitNormalization` returns when
    its sum of squares overflows) has no SNR: its pairs are left out, finite gradients."""
    labels = np.array([0, 0, 1, 1])
    embeddings = np.array([[0.0, 0.0, 0.0], [1.0, 0.2, 0.0], [0.0, 0.0, 1.0], [0.1, 0.0, 1.0]],
                          "float32")  # fmt: skip
    value, grad = value_and_grad(
        lambda e: keras.ops.sum(kml.signal_to_noise_ratio_contrastive_loss(labels, e)), embeddings
    )
    # (As a key the zero vector still moves the others' losses, through the normalisation
    # x / max(|x|, 1e-12), whose slope at 0 is 1e12: large, but finite, as in PML.)
    assert np.isfinite(value) and np.isfinite(grad).all()
    values = numpy(kml.signal_to_noise_ratio_contrastive_loss(labels, embeddings))
    assert values[0] == 0.0 and np.all(values[1:] > 0.0)
