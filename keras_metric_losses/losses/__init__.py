"""The package's losses: a function (per-example values) and a Keras `Loss` class each.

Each family is a package whose modules declare their losses (`base.declare`), and two modules
hold losses made of other losses (`MultipleLosses`, `SelfSupervisedLoss`); importing them
registers them (`api.REGISTRY`), and the names of this module, its `__all__` and the
README's table are read from that registry: adding a loss adds no line here.
"""

from keras_metric_losses.api import REGISTRY, public_names
from keras_metric_losses.losses import (  # noqa: F401 (importing a family declares its losses)
    clip,
    matryoshka,
    multiple,
    npairs,
    pair,
    proxy,
    sampled,
    self_supervised,
    softmax,
    ssl,
    text,
    triplet,
)
from keras_metric_losses.losses.base import DECLARED

__all__ = public_names(__name__)
globals().update({name: REGISTRY[name] for name in __all__})

# The losses made of other losses, written by hand (the README's table lists them after the
# declared losses).
COMPOSITE = (multiple.MultipleLosses, self_supervised.SelfSupervisedLoss)
COMPOSITE += (matryoshka.MatryoshkaLoss,)


def markdown_table():
    """The README's table of the losses, made from their declarations (`base.DECLARED`)."""
    rows = ["| loss | function | reference | what it does |", "| --- | --- | --- | --- |"]
    for d in (d for d in DECLARED if d.cls is not None):  # the functions alone go with them
        function = d.function.__name__ if d.function is not None else d.related
        rows.append(
            f"| `{d.cls.__name__}` | `{function}` | {d.original or '(none)'} | {d.summary} |"
        )
    for cls in COMPOSITE:
        original = getattr(cls, "original", f"PML `{cls.__name__}`")
        rows.append(f"| `{cls.__name__}` | | {original} | {cls.summary} |")
    return "\n".join(rows)
