"""PML's miners (`kml.miners`): the golden checks of pml_miners.json (the selected pairs and
triplets as masks; for the stochastic miners the deterministic parts, PML's sampling weights,
bins and counts; their draws are tested statistically in tests/test_miners.py)."""

import keras
import numpy as np

import keras_metric_losses as kml

SPECS = []


def _mask(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor)).astype(bool)


def check_case(case, run):
    """The masks of the selected pairs, and the selected triplets, against PML's sets."""
    miner = kml.compat.pml.mining(case["call"], **case["kwargs"])
    labels = np.asarray(case["labels"])
    embeddings = np.asarray(case["embeddings"], case["dtype"])
    references = {}
    if "ref_emb" in case:
        references = dict(ref_embeddings=np.asarray(case["ref_emb"], case["dtype"]),
                          ref_labels=np.asarray(case["ref_labels"]))  # fmt: skip
    given = None
    if "external_from" in case:  # HDC filtering another miner's pairs
        source = case["external_from"]
        given = kml.compat.pml.mining(source["call"], **source["kwargs"])

    def select(y, e):
        batch = kml.pairs.build(y, e, kml.pairs.keys_of(**references))
        if given is not None:
            chosen = given.mine(batch)
            batch = batch.restricted(chosen.positive, chosen.negative)
        mined = miner.mine(batch)
        return mined.positive, mined.negative, mined.triplet_mask()

    positive, negative, triplets = map(_mask, run(select, labels, embeddings))
    if "expected_pos_mask" in case:
        np.testing.assert_array_equal(positive, case["expected_pos_mask"], "positive pairs")
        np.testing.assert_array_equal(negative, case["expected_neg_mask"], "negative pairs")
    if "expected_triplets" in case:
        found = np.argwhere(triplets).reshape(-1, 3)
        np.testing.assert_array_equal(found, np.reshape(case["expected_triplets"], (-1, 3)))


def case_batch(case, seed=0):
    """`(miner, labels, embeddings, batch(labels, embeddings))` of a stochastic case."""
    miner = kml.compat.pml.mining(case["call"], **case["kwargs"], seed=seed)
    references = {}
    if "ref_emb" in case:
        references = dict(ref_embeddings=np.asarray(case["ref_emb"], case["dtype"]),
                          ref_labels=np.asarray(case["ref_labels"]))  # fmt: skip

    def batch(labels, embeddings):
        return kml.pairs.build(labels, embeddings, kml.pairs.keys_of(**references))

    return miner, np.asarray(case["labels"]), np.asarray(case["embeddings"], case["dtype"]), batch


def matrix_of(miner, batch):
    return (batch.normalized() if miner.normalize else batch).distances(miner.distance)


def nan_array(rows):
    return np.array([[np.nan if v is None else v for v in row] for row in rows], np.float64)


def _drawing(run):
    """`run` for the draws: eager under `torch.compile`, which cannot trace Keras' torch RNG
    (a graph break, refused with `fullgraph=True`)."""
    torch = keras.backend.backend() == "torch"
    return (lambda fn, *arrays: fn(*arrays)) if torch and getattr(run, "compiled", 0) else run


def check_distance_weighted(case, run):
    """PML's weights (NaN rows included), its number of triplets per anchor, and a draw whose
    triplets are all (anchor, positive, weighted negative) and make the mined mask."""
    miner, labels, embeddings, batch_of = case_batch(case)

    def weights(y, e):
        batch = batch_of(y, e)
        return miner.weights(batch, matrix_of(miner, batch)), batch.positive

    def draw(y, e):
        batch = batch_of(y, e)
        matrix = matrix_of(miner, batch)
        return *miner.draw(batch, matrix), miner.select(batch, matrix, False).triplets

    weights, positives = map(_array, run(weights, labels, embeddings))
    positive, negative, kept, triplets = map(_array, _drawing(run)(draw, labels, embeddings))
    expected = nan_array(case["expected_weights"])
    np.testing.assert_array_equal(np.isnan(weights), np.isnan(expected), "NaN rows")
    np.testing.assert_allclose(weights, expected, 1e-5, 1e-6, err_msg="weights")
    counts = {str(a): int(n) for a, n in enumerate(kept.sum(axis=1)) if n}
    assert counts == case["expected_anchor_counts"], counts
    anchors = np.nonzero(kept)[0]
    assert positives[anchors, positive[kept]].all() and (weights[anchors, negative[kept]] > 0).all()
    drawn = np.zeros_like(triplets)
    drawn[anchors, positive[kept], negative[kept]] = True
    np.testing.assert_array_equal(triplets, drawn)


def check_uniform_histogram(case, run):
    """PML's pairs, bin edges, bin of each pair and number of pairs drawn, and a draw whose
    pairs are all in non-empty bins and make the mined masks."""
    miner, labels, embeddings, batch_of = case_batch(case)
    sides = (("pos", "positive", miner.pos_per_bin), ("neg", "negative", miner.neg_per_bin))

    def bins(y, e):
        batch = batch_of(y, e)
        matrix = matrix_of(miner, batch)
        return [
            x
            for _, name, _ in sides
            for x in (getattr(batch, name), *miner.bins(matrix, getattr(batch, name)))
        ]

    def draw(y, e):
        batch = batch_of(y, e)
        matrix = matrix_of(miner, batch)
        mined, outputs = miner.select(batch, matrix, False), []
        for _, name, per_bin in sides:
            uniform = miner.uniform((miner.num_bins * per_bin,), matrix.dtype)
            outputs += [*miner.draw(matrix, getattr(batch, name), per_bin, uniform),
                        getattr(mined, name)]  # fmt: skip
        return outputs

    binned = [_array(x) for x in run(bins, labels, embeddings)]
    drawn = [_array(x) for x in _drawing(run)(draw, labels, embeddings)]
    for index, (side, _, per_bin) in enumerate(sides):
        (mask, edges, bins), (pair, kept, chosen) = (
            binned[3 * index : 3 * index + 3],
            drawn[3 * index : 3 * index + 3],
        )
        assert np.argwhere(mask).tolist() == case[f"{side}_pairs_all"], side
        np.testing.assert_allclose(edges, case[f"{side}_bin_edges"], 1e-5, 1e-6, err_msg=side)
        np.testing.assert_array_equal(bins[mask], case[f"{side}_bin_of_pair"], side)
        assert kept.sum() == case[f"expected_{side}_count"], (side, kept.sum())
        slot_bins = np.repeat(np.arange(miner.num_bins), per_bin)
        assert (bins.reshape(-1)[pair[kept]] == slot_bins[kept]).all(), side
        assert chosen.any() and mask[chosen].all(), side


def _array(tensor):
    return np.asarray(keras.ops.convert_to_numpy(tensor))


GOLDEN = {("pml_miners.json", name): check_case for name in kml.miners.__all__}
GOLDEN["pml_miners.json", "DistanceWeightedMiner"] = check_distance_weighted
GOLDEN["pml_miners.json", "UniformHistogramMiner"] = check_uniform_histogram
