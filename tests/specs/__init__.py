"""One spec per loss: its function and class, the kind of inputs it takes, its reference, its
outcomes for bad inputs and whether it gathers across replicas.

Every cross-cutting test (robustness, serialization, precision, function-vs-class, `fit`,
distributed, benchmarks, demo) iterates over `SPECS`, and the reference files of
`tests/data/` are checked through `GOLDEN`: `(file name, case["call"]) -> check(case, run)`.
Each family is a module of this package with a `SPECS` list and a `GOLDEN` dict, found by
name: adding a loss means adding one `Spec` to its family's module (and one `GOLDEN` entry per
reference call it reproduces).
"""

import dataclasses
import importlib
import pkgutil

from specs.kinds import Kind


@dataclasses.dataclass(frozen=True)
class Spec:
    """How the shared tests exercise one loss.

    Attributes:
        function: The public loss function, or `None`.
        cls: The public loss class (built with `kwargs`), or `None`.
        kind: The `Kind` of its inputs.
        family: The docs / demo family it belongs to.
        kwargs: Hyperparameters for the tests (the defaults when empty).
        reference: `reference(y_true, y_pred) -> [B]` per-example values in float64 (a NumPy
            oracle), or `None`.
        outcomes: Fault outcomes that differ from the kind's (for function and class).
        class_outcomes: Fault outcomes that differ for the class only.
        cross_replica: Whether the loss has a `cross_replica` option.
        precision: Whether the first mixed-precision step is bounded by the kind's Lipschitz
            rule (`False`: finite training only, e.g. losses whose mining jumps).
        compiled: Whether the shared tests compile `loss()` on `kind.model()` (`False`: a
            layer of that model computes the loss and adds it, so the model is compiled
            without one, `compile_loss()`).
    """

    function: object
    cls: object
    kind: Kind
    family: str
    kwargs: dict = dataclasses.field(default_factory=dict)
    reference: object = None
    outcomes: dict = dataclasses.field(default_factory=dict)
    class_outcomes: dict = dataclasses.field(default_factory=dict)
    cross_replica: bool = False
    precision: bool = True
    compiled: bool = True

    @property
    def name(self):
        return (self.cls or self.function).__name__

    def loss(self, **kwargs):
        """The class built with `kwargs` (and the spec's), for `model.compile`."""
        return self.cls(**{**self.kwargs, **kwargs})

    def compile_loss(self, **kwargs):
        """The `loss` of `model.compile` for `kind.model()`: `loss(**kwargs)`, or `None` where
        the model's layer adds the loss."""
        return self.loss(**kwargs) if self.compiled else None


def _collect():
    """`SPECS` and `GOLDEN` of every family module of this package."""
    families = [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in pkgutil.iter_modules(__path__)
        if info.name not in ("faults", "kinds")
    ]
    specs = [spec for family in families for spec in family.SPECS]
    golden = {key: check for family in families for key, check in family.GOLDEN.items()}
    return specs, golden


SPECS, GOLDEN = _collect()
