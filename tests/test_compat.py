"""`kml.compat`: the originals' names, arguments and settings, run against the originals'
values, and the migration guide made from them."""

import inspect
import pathlib

import numpy as np
import pytest
from support import first_of_each, golden_cases, numpy

import keras_metric_losses as kml
from keras_metric_losses.compat import pml, tf_nn, tfa, tfsim

MIGRATION = (pathlib.Path(__file__).parent.parent / "docs" / "migration.md").read_text()
PML_CASES = [c for c in golden_cases("pml_pair") if c["call"] in pml.ORIGINALS]


def _positional(obj):
    target = obj.__init__ if inspect.isclass(obj) else obj
    parameters = list(inspect.signature(target).parameters.values())[inspect.isclass(obj) :]
    kinds = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return [p.name for p in parameters if p.kind in kinds]


# Every case on torch (0.3 s there, 29 s op by op on JAX's empty cache), the first of each call
# elsewhere: the translation of PML's arguments is Python, and the golden tests check the same
# cases through it on every backend.
@pytest.mark.parametrize(
    "case",
    first_of_each(
        ((c["call"], pytest.param(c, id=c["id"])) for c in PML_CASES), every_one_on="torch"
    ),
)
def test_pml_losses_from_pml_arguments_give_pml_values(case):
    kwargs = dict(case["kwargs"])
    if case["call"] == "NTXentLoss" and pml.our_distance(kwargs["distance"])[0] != (
        "cosine_similarity"
    ):
        with pytest.raises(ValueError, match=r"CosineSimilarity only.*UnitNormalization"):
            pml.loss(case["call"], **kwargs)
        return
    ours, arguments = pml.arguments(case["call"], **kwargs)
    if "miner" in case:
        miner = case["miner"]["kwargs"]
        arguments.update(pml.miner(miner["type_of_triplets"], miner["margin"]))
    loss = getattr(kml, ours)(**arguments)
    labels, embeddings = np.asarray(case["labels"]), np.asarray(case["embeddings"], "float32")
    value = numpy(loss(labels, embeddings))
    np.testing.assert_allclose(value, case["expected"], rtol=1e-5, atol=1e-6)


def test_pml_arguments_are_checked():
    with pytest.raises(TypeError, match=r"PML's CircleLoss takes .*Received: margin=0.3"):
        pml.loss("CircleLoss", margin=0.3)
    with pytest.raises(ValueError, match="PML's GenericPairLoss has no counterpart"):
        pml.loss("GenericPairLoss")  # an abstract base of PML's, never ported
    with pytest.raises(ValueError, match=r"`distance` must be one of PML's"):
        pml.loss("ContrastiveLoss", distance={"class": "LpDistance", "p": 3})


@pytest.mark.parametrize("case", golden_cases("tfsim_metric"), ids=lambda c: c["id"])
def test_tf_similarity_losses_from_their_arguments_give_their_values(case):
    loss = tfsim.loss(case["call"], **case["kwargs"])
    value = numpy(loss(np.asarray(case["y_true"]), np.asarray(case["y_pred"], case["dtype"])))
    np.testing.assert_allclose(value, case["expected"], rtol=1e-5, atol=1e-6)


def test_tf_similarity_arguments_and_configs_translate():
    assert (
        tfsim.loss("PNLoss", margin=None).get_config() == kml.PNLoss(soft_margin=True).get_config()
    )
    distance = {"class_name": "CosineDistance", "config": {"name": "cosine"}}
    restored = kml.CircleLoss.from_config({"reduction": "auto", "distance": distance})
    assert restored.distance == "cosine" and restored.reduction == "sum_over_batch_size"
    assert tfsim.memory(kml.MultiSimilarityLoss(), 16).mode == "tf_similarity"
    with pytest.raises(TypeError, match="TF Similarity's CircleLoss takes"):
        tfsim.loss("CircleLoss", m=0.4)


@pytest.mark.parametrize("name", sorted(tfsim.ORIGINALS))
def test_tf_similarity_names_and_defaults_are_ours(name):
    parameters = inspect.signature(getattr(kml, name)).parameters
    for argument, default in tfsim.ORIGINALS[name].items():
        assert parameters[argument].default == default, (name, argument)


@pytest.mark.parametrize(
    "module, name",
    [(tfa, n) for n in tfa.ORIGINALS] + [(tf_nn, n) for n in tf_nn.ORIGINALS],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_tensorflow_names_take_their_arguments_in_their_order(module, name):
    """Ours has the original's name, and its positional arguments start with the original's,
    in the same order (Keras' input names where TF Addons says `labels`, `embeddings`)."""
    obj = getattr(kml, name)
    renamed = getattr(module, "RENAMED", {})
    not_ours = getattr(module, "NOT_OURS", {}).get(name, ())
    not_ours += getattr(module, "BY_KEYWORD", {}).get(name, ())
    expected = [renamed.get(a, a) for a in module.ORIGINALS[name] if a not in not_ours]
    parameters = list(inspect.signature(obj).parameters)
    assert [a for a in parameters if a in expected] == expected, (name, parameters)


def test_the_migration_guide_is_made_from_compat():
    assert pml.markdown_table() in MIGRATION
    for name in [*tfa.ORIGINALS, *tfsim.ORIGINALS, *tf_nn.ORIGINALS, *pml.ORIGINALS]:
        assert f"{name}(" in MIGRATION, name


def test_compat_is_public_and_its_functions_documented():
    assert kml.compat.pml is pml and "compat" in kml.__all__
    for fn in (pml.loss, tfsim.loss):
        assert "Example" in inspect.getdoc(fn)
