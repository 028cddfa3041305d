"""PML's miners (`kml.miners`): the golden checks of pml_miners.json (the selected pairs and
triplets as masks; the stochastic miners are pending)."""

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


GOLDEN = {("pml_miners.json", name): check_case for name in kml.miners.__all__}
