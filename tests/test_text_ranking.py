"""MultipleNegativesRankingLoss by tiles (`block_size`, sentence-transformers' Cached variants)
equals the dense loss in values and gradients; the checks of its settings."""

import keras
import numpy as np
import pytest
from specs.text_ranking import from_sentence_transformers
from support import compiled, numpy, value_and_grad

import keras_metric_losses as kml

SETTINGS = [
    {},
    {"directions": ("query_to_doc", "query_to_query")},
    {"directions": ("query_to_doc", "doc_to_query")},
    {"directions": ("query_to_doc", "query_to_query", "doc_to_query")},
    {"directions": ("query_to_doc", "doc_to_query"), "partition_mode": "per_direction"},
    {"similarity_fct": "dot_score", "scale": 1.0},
]


def _columns(batch, count, seed=0):
    return np.random.default_rng(seed).normal(size=(batch, count, 5)).astype("float32")


def _assert_tiled_equals_dense(y_pred, block_size, run=lambda fn, x: fn(x), **kwargs):
    def mean(block):
        fn = kml.multiple_negatives_ranking_loss
        return lambda x: keras.ops.mean(fn(None, x, block_size=block, **kwargs))

    dense_value, dense_grad = value_and_grad(mean(None), y_pred)
    tiled_value = numpy(run(mean(block_size), y_pred))
    _, tiled_grad = value_and_grad(mean(block_size), y_pred)
    np.testing.assert_allclose(tiled_value, dense_value, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(tiled_grad, dense_grad, rtol=0,
                               atol=1e-5 * np.abs(dense_grad).max() + 1e-6)  # fmt: skip


@pytest.mark.parametrize("kwargs", SETTINGS)
@pytest.mark.parametrize(("batch", "count", "block_size"), [(7, 2, 3), (6, 3, 4), (3, 2, 8)])
def test_tiled_equals_dense(kwargs, batch, count, block_size):
    """B not a multiple of block_size (padded rows and columns), hard negatives, a block larger
    than the batch."""
    _assert_tiled_equals_dense(_columns(batch, count), block_size, **kwargs)


def test_tiled_compiled_equals_dense():
    """2 x 3 tiles, a padded row block and key block, a hard-negative column, both directions.
    `torch.compile` unrolls the tile loops (its time grows with the tiles), and captures them
    here without Inductor's code generation, as test_clip does (see there)."""
    run = lambda fn, x: compiled(fn, generate_code=False)(x)  # noqa: E731
    _assert_tiled_equals_dense(
        _columns(5, 2), 4, run=run, directions=("query_to_doc", "doc_to_query")
    )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"block_size": 4, "directions": ("query_to_doc", "doc_to_doc")}, "block_size"),
        ({"block_size": 4, "hardness_mode": "hard_negatives"}, "block_size"),
        (
            {"directions": ("query_to_doc", "query_to_query"), "partition_mode": "per_direction"},
            "partition_mode",
        ),
        ({"directions": ("doc_to_query",)}, "directions"),
        ({"directions": "query_to_doc"}, "directions"),
        ({"hardness_mode": "hardest"}, "hardness_mode"),
        ({"hardness_strength": -1.0}, "hardness_strength"),
        ({"similarity_fct": "cosine"}, "similarity_fct"),
    ],
)
def test_settings_are_checked(kwargs, match):
    with pytest.raises(ValueError, match=match):
        kml.MultipleNegativesRankingLoss(**kwargs)


def test_from_sentence_transformers_maps_the_originals_arguments():
    loss = from_sentence_transformers(
        "CachedMultipleNegativesSymmetricRankingLoss",
        {
            "scale": 10.0,
            "similarity_fct": "cos_sim",
            "mini_batch_size": 4,
            "mini_batch_num_tokens": None,
            "gather_across_devices": True,
            "show_progress_bar": False,
            "implied_directions": ["query_to_doc", "doc_to_query"],
        },
    )
    assert isinstance(loss, kml.MultipleNegativesSymmetricRankingLoss)
    assert (loss.scale, loss.block_size, loss.cross_replica) == (10.0, 4, True)
    y_pred = _columns(5, 2)
    expected = kml.MultipleNegativesRankingLoss(
        10.0, directions=("query_to_doc", "doc_to_query"), partition_mode="per_direction"
    )(None, y_pred)
    np.testing.assert_allclose(numpy(loss(None, y_pred)), numpy(expected), rtol=1e-5)


def test_columns_given_apart_must_have_one_shape():
    """Hard negatives of another dimension (or batch) raise, naming the columns' shapes."""
    rng = np.random.default_rng(4)
    anchor, positive = rng.normal(size=(2, 4, 8)).astype("float32")
    negative = rng.normal(size=(4, 6)).astype("float32")
    loss = kml.MultipleNegativesRankingLoss()
    np.testing.assert_allclose(
        float(loss(None, [anchor, positive])),
        float(loss(None, np.stack([anchor, positive], axis=1))),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match=r"a list of shapes \[\(4, 8\), \(4, 8\), \(4, 6\)\]"):
        loss(None, [anchor, positive, negative])
