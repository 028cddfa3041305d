"""The registry (`kml.api.REGISTRY`, filled by `export`, and `kml.losses.base.DECLARED`, filled
by `declare`) is the one list of public objects: `__all__`, the README's loss table, the API
pages and every coverage list (test specs, benchmark cases, demo recipes) are checked here
against it."""

import inspect
import pathlib
import re
import sys

import pytest
from specs import SPECS

import keras_metric_losses as kml
from keras_metric_losses.api import REGISTRY
from keras_metric_losses.demo.recipes import RECIPES
from keras_metric_losses.losses.base import DECLARED

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))
import cases  # noqa: E402

LOSSES = [obj for obj in REGISTRY.values() if obj.__module__.startswith(f"{kml.__name__}.losses")]
LAYERS = [obj for obj in REGISTRY.values() if obj.__module__.startswith(f"{kml.__name__}.layers")]
DECLARED_NAMES = [name for d in DECLARED for name in d.names]
# Losses made of other losses (written by hand, not declared).
COMPOSITE_NAMES = [cls.__name__ for cls in kml.losses.COMPOSITE]
# One declaration per loss class (a proxy loss's function is declared alone, named `related`).
CLASSES = [d for d in DECLARED if d.cls is not None]


def test_all_is_the_registry():
    assert sorted(kml.losses.__all__) == sorted(obj.__name__ for obj in LOSSES)
    assert sorted(kml.layers.__all__) == sorted(obj.__name__ for obj in LAYERS)
    top_level = {n for n in kml.__all__ if not inspect.ismodule(getattr(kml, n))}
    reachable = {*kml.losses.__all__, "ClassProxies", "PairwiseSimilarity"}
    assert top_level == reachable | {"log_uniform_candidate_sampler"}
    for name in top_level:
        assert REGISTRY[name] is getattr(kml, name)


def test_every_loss_is_declared_or_named_by_its_declaration():
    by_hand = {obj.__name__ for obj in LOSSES} - set(DECLARED_NAMES) - set(COMPOSITE_NAMES)
    assert by_hand == {d.related for d in CLASSES if d.function is None} - set(DECLARED_NAMES)
    assert by_hand == {"nce_loss", "sampled_softmax_loss"}, by_hand  # tf.nn's signatures
    assert COMPOSITE_NAMES == ["MultipleLosses", "SelfSupervisedLoss", "MatryoshkaLoss"]


def test_the_readme_table_is_made_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert kml.losses.markdown_table() in readme


def test_every_loss_has_one_api_entry_and_every_entry_resolves():
    directive = re.compile(r"^::: keras_metric_losses\.(\w+)$", re.MULTILINE)
    pages = sorted((ROOT / "docs" / "losses").glob("*.md"))
    targets = [t for page in pages for t in directive.findall(page.read_text())]
    assert sorted(targets) == sorted(set(targets)), "an object documented twice"
    assert set(DECLARED_NAMES) | {"nce_loss", "sampled_softmax_loss"} <= set(targets)
    assert set(COMPOSITE_NAMES) <= set(targets)
    assert all(REGISTRY.get(target) is getattr(kml, target) for target in targets)


@pytest.mark.parametrize("declaration", CLASSES, ids=lambda d: d.cls.__name__)
def test_every_declared_loss_has_a_spec_and_a_benchmark_case(declaration):
    specs = [s for s in SPECS if s.cls is declaration.cls]
    assert len(specs) == 1, declaration.cls
    function = declaration.function or REGISTRY[declaration.related]
    assert specs[0].function is function
    measured = {case.loss for case in cases.CASES.values()}
    assert {declaration.cls.__name__, function.__name__} & measured, declaration.names


def test_every_demo_recipe_trains_a_registered_loss():
    for recipe in RECIPES.values():
        if not recipe.baseline:
            assert REGISTRY[recipe.loss.__name__] is recipe.loss, recipe


@pytest.mark.parametrize("declaration", DECLARED, ids=lambda d: "/".join(d.names))
def test_declared_objects_live_in_their_module(declaration):
    """The generated function and class say they come from a family module that defines them
    under their name (the docs' API pages and `pickle` look them up there)."""
    for obj in (declaration.function, declaration.cls):
        if obj is not None:
            assert obj.__module__.startswith(f"{kml.__name__}.losses."), obj.__module__
            assert getattr(sys.modules[obj.__module__], obj.__name__) is obj
