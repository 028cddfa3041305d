"""The N-pair losses (TF Addons' on a similarity matrix, PML's on labelled embeddings)."""

import keras
import numpy as np
import pml_npairs_vicreg_dsm_reference as pml_more
from references import reference_per_anchor

import keras_metric_losses as kml
from specs import Spec
from specs.kinds import MULTILABEL_SIMILARITY, SIMILARITY, Embeddings
from specs.pair import check_pml_more


class FirstRowsOfEachLabel(Embeddings):
    """Labelled embeddings whose order matters (PML's N-pairs: each label's first two rows
    make its pair), so the loss does not permute with the batch."""

    name = "embeddings in batch order"


SPECS = [
    Spec(
        kml.npairs_loss,
        kml.NpairsLoss,
        SIMILARITY,
        "npairs",
        reference=reference_per_anchor,
        cross_replica=True,
    ),
    Spec(
        kml.npairs_multilabel_loss,
        kml.NpairsMultilabelLoss,
        MULTILABEL_SIMILARITY,
        "npairs",
        reference=lambda y, s: reference_per_anchor(y, s, multilabel=True),
        cross_replica=True,
    ),
    Spec(
        kml.pml_npairs_loss,
        kml.PMLNPairsLoss,
        FirstRowsOfEachLabel(),
        "npairs",
        reference=pml_more.npairs_loss,
    ),
]

RTOL = {"float32": 1e-5, "float16": 1e-2}


def check_case(case, run):
    """TF Addons' scalar is the mean of the per-anchor values, in the input dtype."""
    fn = getattr(kml, case["call"])
    y_true, y_pred = np.asarray(case["y_true"]), np.asarray(case["y_pred"], dtype=case["dtype"])
    values = run(lambda y, s: fn(y, s, **case["kwargs"]), y_true, y_pred)
    assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
    assert tuple(values.shape) == (len(y_pred),)
    mean = np.mean(keras.ops.convert_to_numpy(keras.ops.cast(values, "float32")))
    np.testing.assert_allclose(mean, case["expected"], rtol=RTOL[case["dtype"]])


GOLDEN = {
    ("pml_more.json", "NPairsLoss"): check_pml_more,
    ("npairs.json", "npairs_loss"): check_case,
    ("npairs_multilabel.json", "npairs_multilabel_loss"): check_case,
}
