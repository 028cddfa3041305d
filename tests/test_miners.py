"""`kml.miners` and the `miner=` argument (PML's values: specs/miners.py and the golden cases of
the losses with a miner)."""

import json

import keras
import numpy as np
import pytest
from support import numpy

import keras_metric_losses as kml

RNG = np.random.default_rng(3)
LABELS = np.array([0, 0, 1, 1, 2, 2, 0, 1])
EMBEDDINGS = RNG.normal(size=(8, 5)).astype("float32")
MINERS = [getattr(kml.miners, name) for name in kml.miners.__all__]


@pytest.mark.parametrize("cls", MINERS, ids=lambda c: c.__name__)
def test_miner_configs_round_trip(cls):
    miner = cls(distance="cosine_similarity", normalize=False)
    serialized = keras.saving.serialize_keras_object(miner)
    restored = keras.saving.deserialize_keras_object(json.loads(json.dumps(serialized)))
    assert type(restored) is cls and restored.get_config() == miner.get_config()
    with pytest.raises(TypeError, match=r"Unknown key\(s\) \['margn'\]"):
        cls.from_config({**miner.get_config(), "margn": 1.0})


def test_miner_arguments_are_checked():
    with pytest.raises(ValueError, match="Received: type_of_triplets='medium'"):
        kml.miners.TripletMarginMiner(type_of_triplets="medium")
    with pytest.raises(ValueError, match="Received: filter_percentage=0"):
        kml.miners.HDCMiner(filter_percentage=0)
    with pytest.raises(ValueError, match="cannot be both strategies"):
        kml.miners.BatchEasyHardMiner("semihard", "semihard")
    with pytest.raises(ValueError, match=r"Received: allowed_pos_range=\(1,\)"):
        kml.miners.BatchHardMiner(allowed_pos_range=(1,))
    with pytest.raises(TypeError, match="Received: miner='hard'"):
        kml.MultiSimilarityLoss(miner="hard")


def test_a_miner_that_keeps_every_pair_changes_nothing_and_one_that_keeps_none_gives_zero():
    every = kml.miners.BatchEasyHardMiner("all", "all")
    for loss in (kml.MultiSimilarityLoss, kml.TripletMarginLoss, kml.BatchContrastiveLoss,
                 kml.HistogramLoss):  # fmt: skip
        np.testing.assert_allclose(
            numpy(loss(miner=every, reduction=None)(LABELS, EMBEDDINGS)),
            numpy(loss(reduction=None)(LABELS, EMBEDDINGS)),
            rtol=1e-6,
        )
        nothing = kml.miners.PairMarginMiner(pos_margin=10.0, neg_margin=-10.0)
        np.testing.assert_array_equal(numpy(loss(miner=nothing)(LABELS, EMBEDDINGS)), 0.0)


def test_the_loss_uses_only_the_mined_pairs():
    """`BatchContrastiveLoss` with a miner equals the loss of the mined pairs alone, computed
    from the mined masks (PML's pair-based loss over the mined pairs)."""
    miner = kml.miners.PairMarginMiner(pos_margin=1.4, neg_margin=1.4)
    mined = miner(LABELS, EMBEDDINGS)
    positive, negative = numpy(mined.positive), numpy(mined.negative)
    assert 0 < positive.sum() < 14 and 0 < negative.sum() < 42  # some of the pairs
    unit = EMBEDDINGS / np.linalg.norm(EMBEDDINGS, axis=1, keepdims=True)
    distance = np.linalg.norm(unit[:, None] - unit[None], axis=-1)
    pos_loss = np.where(positive, distance, 0)
    neg_loss = np.where(negative, np.maximum(1.0 - distance, 0), 0)
    mean = lambda v, m: v.sum() / max((v > 0).sum(), 1)  # noqa: E731 (PML's AvgNonZeroReducer)
    expected = mean(pos_loss, positive) + mean(neg_loss, negative)
    loss = kml.compat.pml.loss("ContrastiveLoss")
    loss = type(loss).from_config({**loss.get_config(), "miner": miner})
    np.testing.assert_allclose(float(loss(LABELS, EMBEDDINGS)), expected, rtol=1e-5)


def test_miners_take_multi_hot_labels():
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1]])
    mined = kml.miners.BatchHardMiner()(labels, EMBEDDINGS[:4])
    # Rows 0 and 1 share label 0, rows 0 and 3 label 2: the hardest positive is one of them.
    assert numpy(mined.positive)[0, [1, 3]].sum() == 1
    assert not numpy(mined.negative)[0, [1, 3]].any()


def test_a_loss_with_a_miner_round_trips_its_config():
    loss = kml.MultiSimilarityLoss(miner=kml.miners.MultiSimilarityMiner(epsilon=0.2))
    config = json.loads(json.dumps(loss.get_config()))
    restored = kml.MultiSimilarityLoss.from_config(config)
    assert restored.miner.epsilon == 0.2 and restored.get_config() == loss.get_config()
    np.testing.assert_allclose(
        numpy(restored(LABELS, EMBEDDINGS)), numpy(loss(LABELS, EMBEDDINGS)), rtol=1e-6
    )


def test_a_miner_mines_the_batch_against_the_memory():
    """Inside `CrossBatchMemory` the miner selects among the memory's keys."""
    miner = kml.miners.BatchHardMiner()
    loss = kml.TripletMarginLoss(miner=miner)
    memory = kml.layers.CrossBatchMemory(loss, memory_size=16)
    x, y = keras.Input((5,)), keras.Input((), dtype="int32")
    model = keras.Model([x, y], memory([keras.layers.Dense(4)(x), y]))
    model.compile(optimizer="adam")
    history = model.fit([EMBEDDINGS, LABELS], batch_size=4, epochs=3, verbose=0).history
    assert np.isfinite(history["loss"]).all() and history["loss"][0] > 0
