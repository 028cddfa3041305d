"""`kml.miners` and the `miner=` argument (PML's values: specs/miners.py and the golden cases of
the losses with a miner)."""

import json

import keras
import numpy as np
import pytest
from specs.miners import case_batch, matrix_of
from support import DATA, compiled, numpy, traced

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


STOCHASTIC_MINERS = {
    "DistanceWeightedMiner": dict(cutoff=0.3),
    "UniformHistogramMiner": dict(num_bins=4, pos_per_bin=3, neg_per_bin=3),
}


@pytest.mark.parametrize("name", sorted(STOCHASTIC_MINERS))
def test_stochastic_miners_seed_config_and_argument_checks(name):
    """An int seed draws the same every call, a `SeedGenerator` anew (saved in the config as
    its initial seed); the arguments are checked."""
    cls, kwargs = getattr(kml.miners, name), STOCHASTIC_MINERS[name]
    labels, embeddings = np.arange(16) % 3, np.random.default_rng(5).normal(size=(16, 6))

    def masks(miner):
        mined = miner(labels, embeddings)
        return np.concatenate([numpy(mined.positive), numpy(mined.negative)])

    np.testing.assert_array_equal(masks(cls(**kwargs, seed=4)), masks(cls(**kwargs, seed=4)))
    miner = cls(**kwargs, seed=keras.random.SeedGenerator(4))
    assert not all(np.array_equal(masks(miner), masks(miner)) for _ in range(3))
    config = json.loads(json.dumps(keras.saving.serialize_keras_object(miner)))
    restored = keras.saving.deserialize_keras_object(config)
    assert isinstance(restored.seed, keras.random.SeedGenerator)
    assert restored.get_config() == miner.get_config()
    assert restored.seed.get_config()["seed"] == 4
    with pytest.raises(TypeError, match="Received: seed='a'"):
        cls(seed="a")
    with pytest.raises(ValueError, match="Received: num_bins=0"):
        kml.miners.UniformHistogramMiner(num_bins=0)


@pytest.mark.parametrize("name", sorted(STOCHASTIC_MINERS))
def test_losses_take_the_stochastic_miners_also_compiled(name):
    """`miner=` takes them: the loss of the drawn pairs or triplets, finite and positive, the
    same compiled as eager on JAX (an int seed is a stateless draw)."""
    miner = getattr(kml.miners, name)(**STOCHASTIC_MINERS[name], seed=2)
    for loss in (kml.TripletMarginLoss(miner=miner), kml.MultiSimilarityLoss(miner=miner)):
        value = numpy(loss(LABELS, EMBEDDINGS))
        assert np.isfinite(value) and value > 0, type(loss).__name__
        if keras.backend.backend() != "torch":  # Keras' torch RNG is not traceable by dynamo
            again = numpy(compiled(lambda y, e, loss=loss: loss(y, e))(LABELS, EMBEDDINGS))
            assert np.isfinite(again)
            if keras.backend.backend() == "jax":
                np.testing.assert_allclose(again, value, rtol=1e-6)


def test_stochastic_miners_take_multi_hot_labels():
    """Multi-hot labels: the drawn positives share a label with the anchor, the negatives
    none; an anchor draws one triplet per positive and one for itself."""
    labels = np.array([[1, 0, 1], [1, 0, 0], [0, 1, 0], [0, 1, 1], [0, 0, 1], [1, 1, 0]])
    embeddings = np.random.default_rng(2).normal(size=(6, 4)).astype("float32")
    shared = labels @ labels.T > 0
    batch = kml.pairs.build(labels, embeddings, kml.pairs.keys_of(), multi_hot=True)
    miner = kml.miners.DistanceWeightedMiner(nonzero_loss_cutoff=2.0, seed=1)
    positive, negative, kept = map(numpy, miner.draw(batch, matrix_of(miner, batch)))
    np.testing.assert_array_equal(kept.sum(axis=1), shared.sum(axis=1))
    rows = np.nonzero(kept)[0]
    assert shared[rows, positive[kept]].all() and (positive[kept] != rows).all()
    assert not shared[rows, negative[kept]].any()
    mined = kml.miners.UniformHistogramMiner(num_bins=3, pos_per_bin=2, seed=1)(labels, embeddings)
    assert (shared & ~np.eye(6, dtype=bool))[numpy(mined.positive)].all()
    assert not shared[numpy(mined.negative)].any()


# --- the stochastic miners' draws, against PML's distributions (pml_miners.json) --------------

STOCHASTIC = [
    case
    for case in json.loads((DATA / "pml_miners.json").read_text())["cases"]
    if case.get("stochastic")
]
DRAWS = 200  # calls per case


def chi_square(groups, minimum=5.0):
    """`(statistic, bound)`: Pearson's statistic summed over groups `[(observed, expected)]`
    (each one distribution's cells; those expected fewer than `minimum` times are pooled into
    one cell, itself added to the smallest other cell if still below) and a bound that it
    exceeds with a negligible probability: its degrees of freedom plus 6 standard deviations."""
    statistic = freedom = 0.0
    for observed, expected in groups:
        small = expected < minimum
        seen, wanted = observed[~small], expected[~small]
        if small.any() and expected[small].sum() > 0:
            seen, wanted = (
                np.append(seen, observed[small].sum()),
                np.append(wanted, expected[small].sum()),
            )
            if wanted[-1] < minimum and len(wanted) > 1:
                low = np.argmin(wanted[:-1])
                seen[low], wanted[low] = seen[low] + seen[-1], wanted[low] + wanted[-1]
                seen, wanted = seen[:-1], wanted[:-1]
        statistic += np.sum((seen - wanted) ** 2 / wanted)
        freedom += len(wanted) - 1
    return statistic, freedom + 6 * np.sqrt(2 * freedom)


def _draws(call, sample):
    """`sample(miner, batch, matrix)`, `DRAWS` draws (tuples of arrays) of a fresh generator, as
    NumPy arrays, for every stochastic case of `call`, with the case."""
    for case in (c for c in STOCHASTIC if c["call"] == call):
        miner, labels, embeddings, batch_of = case_batch(case, keras.random.SeedGenerator(7))
        batch = batch_of(labels, embeddings)
        matrix = matrix_of(miner, batch)
        yield case, [[numpy(x) for x in draw] for draw in sample(miner, batch, matrix)]


def test_distance_weighted_draws_follow_pml_weights_and_uniform_positives():
    """Over 200 draws of each case: the negatives of each anchor follow PML's weights
    (`expected_weights`), its positives are uniform, each draw has PML's number of triplets per
    anchor. The same counts against uniform negatives fail the bound."""

    def sample(miner, batch, matrix):
        return [(*miner.draw(batch, matrix), batch.positive) for _ in range(DRAWS)]

    for case, draws in _draws("DistanceWeightedMiner", sample):
        weights = np.nan_to_num(np.array(case["expected_weights"], np.float64))
        positives = draws[0][3]
        negative_counts, positive_counts = np.zeros_like(weights), np.zeros_like(weights)
        for positive, negative, kept, _ in draws:
            anchors = np.nonzero(kept)[0]
            np.add.at(positive_counts, (anchors, positive[kept]), 1)
            np.add.at(negative_counts, (anchors, negative[kept]), 1)
            counts = {str(a): int(n) for a, n in enumerate(kept.sum(axis=1)) if n}
            assert counts == case["expected_anchor_counts"], counts
        per_anchor = negative_counts.sum(axis=1, keepdims=True)
        rows = np.nonzero(per_anchor[:, 0])[0]
        uniform_positives = per_anchor * positives / np.maximum(positives.sum(1, keepdims=True), 1)
        for observed, expected in ((negative_counts, per_anchor * weights),
                                   (positive_counts, uniform_positives)):  # fmt: skip
            support = expected > 0
            assert not observed[~support].any(), case["id"]
            statistic, bound = chi_square([(observed[r][support[r]], expected[r][support[r]])
                                           for r in rows])  # fmt: skip
            assert statistic < bound, (case["id"], statistic, bound)
        uniform = per_anchor * (weights > 0) / np.maximum((weights > 0).sum(1, keepdims=True), 1)
        support = weights > 0
        wrong = chi_square([(negative_counts[r][support[r]], uniform[r][support[r]]) for r in rows])
        assert wrong[0] > wrong[1], (case["id"], "uniform negatives pass", wrong)


def test_uniform_histogram_draws_are_uniform_within_pml_bins():
    """Over 200 draws of each case: every non-empty bin of PML's (`*_bin_of_pair`) gets
    `per_bin` pairs per draw, uniform among its pairs. The same counts against pairs drawn
    uniformly from all pairs fail the bound."""

    def sample(miner, batch, matrix):
        # Each side's uniforms in one call, and its draws by one traced function (as `fit`
        # runs them): 200 eager calls took 14 s on TensorFlow.
        sides = []
        for mask, per_bin in ((batch.positive, miner.pos_per_bin),
                              (batch.negative, miner.neg_per_bin)):  # fmt: skip
            uniforms = miner.uniform((DRAWS, miner.num_bins * per_bin), matrix.dtype)
            draw = traced(
                lambda u, mask=mask, per_bin=per_bin: miner.draw(matrix, mask, per_bin, u)
            )
            sides.append([draw(uniforms[i]) for i in range(DRAWS)])
        return [(*positive, *negative) for positive, negative in zip(*sides, strict=True)]

    for case, draws in _draws("UniformHistogramMiner", sample):
        keys = len(case.get("ref_labels", case["labels"]))
        for side, per_bin, part in (("pos", case["kwargs"].get("pos_per_bin", 10), 0),
                                    ("neg", case["kwargs"].get("neg_per_bin", 10), 2)):  # fmt: skip
            pairs = np.asarray(case[f"{side}_pairs_all"])
            bins = np.asarray(case[f"{side}_bin_of_pair"])
            column = np.full(len(case["labels"]) * keys, -1)
            column[pairs[:, 0] * keys + pairs[:, 1]] = np.arange(len(pairs))
            counts = np.zeros(len(pairs))
            for outputs in draws:
                pair, kept = outputs[part], outputs[part + 1]
                assert kept.sum() == case[f"expected_{side}_count"]
                assert (column[pair[kept]] >= 0).all(), case["id"]
                np.add.at(counts, column[pair[kept]], 1)
            sizes = np.bincount(bins)
            expected = DRAWS * per_bin / sizes[bins]
            groups = [(counts[bins == j], expected[bins == j]) for j in np.nonzero(sizes)[0]]
            statistic, bound = chi_square(groups)
            assert statistic < bound, (case["id"], side, statistic, bound)
            wrong = chi_square([(counts, np.full(len(pairs), counts.sum() / len(pairs)))])
            assert wrong[0] > wrong[1], (case["id"], side, "uniform pairs pass", wrong)
