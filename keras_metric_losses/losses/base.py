"""A loss is declared once: its elements function and one `declare` call.

The elements function computes one value per example with `keras.ops`, from the `Pairs` of the
front end (`kml.pairs`) for losses on labels and embeddings, else from `(y_true, y_pred)`. Its
docstring gives the summary, the math, the example and the paper. `declare` adds, from one
`Hyperparameter(default, check, doc)` per hyperparameter and the options the loss supports:

- the public function, with its signature, its checks and its `Args` / `Returns` / `Raises`;
- the `keras.losses.Loss` class, with its signature (the original's positional arguments,
  then `name`, `reduction`, `dtype`, then keyword-only ones), `get_config`, a strict
  `from_config` and its `Args` (each hyperparameter's text once, for both);
- the registration of both under the package name, and an entry in `DECLARED`, from which the
  docs' tables and the coverage tests are made.

```python
def circle_elements(pairs, *, distance, gamma, margin, joint):
    '''Circle loss, one value per anchor. ...'''
    ...

circle_loss, CircleLoss = declare(
    circle_elements, function="circle_loss", cls="CircleLoss",
    hyperparameters=dict(distance=Hyperparameter("cosine", distances.check, "A distance."), ...),
    positional=("distance", "gamma", "margin"), options=(KEYS, CROSS_REPLICA),
    class_doc='''Circle loss (`circle_loss`). ...''',
)
```

Reduction, `sample_weight`, masks and distribution scaling are Keras' own (`wrapper`, the class
every declared loss is); `generated` writes the function, the class and their docstrings.
"""

import dataclasses

import keras

from keras_metric_losses import miners, pairs, reduction, validation
from keras_metric_losses.api import export
from keras_metric_losses.losses import generated
from keras_metric_losses.losses.wrapper import LossFunctionWrapper  # noqa: F401 (its home for users)

# Options a loss on labels and embeddings may support, each a set of arguments of the function.
KEYS = "keys"  # `ref_embeddings` / `ref_labels`, and a `CrossBatchMemory` around it
CROSS_REPLICA = "cross_replica"  # the keys of every replica
TILING = "tiling"  # `block_size`
MINER = "miner"  # `miner`: a `kml.miners` miner selects the pairs or triplets used

DECLARED = []  # every `Declaration`, in the order of definition


@dataclasses.dataclass(frozen=True)
class Hyperparameter:
    """A hyperparameter: its default, its check and its documentation (written once).

    Attributes:
        default: The default value (of the function and the class).
        check: `check(value, name)` returning the accepted value (normalised, e.g. a NumPy int
            as an int) or raising an error that names `name` and the value received.
        doc: The `Args` text, without the default (`Defaults to ...` is added).
    """

    default: object
    check: object
    doc: str


def boolean(default, doc):
    return Hyperparameter(default, validation.boolean, doc)


def real(default, doc, **bounds):
    return Hyperparameter(default, lambda v, n: validation.real(v, n, **bounds), doc)


def positive_real(default, doc):
    return Hyperparameter(default, validation.positive_real, doc)


def one_of(default, allowed, doc):
    return Hyperparameter(default, lambda v, n: validation.one_of(v, n, allowed), doc)


def normalize(default):
    """`normalize` (or PML's `normalize_embeddings`): the front end L2-normalises the queries
    and keys (`ops.l2_normalize`, as PML's distances do by default)."""
    return boolean(default, "L2-normalise the embeddings (and keys) first.")


def reducer(doc):
    """`reducer`: `"anchor"` (each anchor's own mean) or `"pml"` (its share of PML's batch
    aggregate, see `kml.reduction`); `doc` says what each means for the loss."""
    return Hyperparameter("anchor", reduction.check_reducer, doc)


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What a loss function takes besides its hyperparameters.

    Attributes:
        names: The argument names (`("y_true", "y_pred")` for a `keras.losses.Loss`).
        docs: Their `Args` texts.
        front_end: `None` (the elements function takes the arguments), or the keyword
            arguments of `pairs.build` (`{}`, `{"multi_hot": True}`, `{"views": True}`): the
            elements function then takes the `Pairs`.
        returns: The `Returns` text.
        keywords: `((name, doc), ...)`: keyword-only data arguments of the function (not of
            the class), `None` by default, passed on to the elements function.
        example: Doctest lines (imports, inputs) that the `Example` sections of the function
            and the class start with, unless they start with an `import` of their own.
        raises: The `Raises` section of the function (`None`: that of the front end, if any).
    """

    names: tuple
    docs: tuple
    front_end: dict = None
    returns: str = "`[B]` per-anchor losses in the dtype of `y_pred`."
    keywords: tuple = ()
    example: str = None
    raises: str = None


_CLASS_LABELS = "`[B]` or `[B, 1]` integer class labels."
# Two classes of two unit embeddings, the inputs of most examples of losses on embeddings.
EMBEDDINGS_EXAMPLE = """>>> import keras
>>> import numpy as np
>>> import keras_metric_losses as kml
>>> labels = np.array([0, 0, 1, 1])
>>> embeddings = np.array([[1.0, 0.0], [0.8, 0.6], [0.0, 1.0], [0.6, 0.8]])"""
EMBEDDINGS = Inputs(
    ("y_true", "y_pred"), (_CLASS_LABELS, "`[B, D]` embeddings."), {}, example=EMBEDDINGS_EXAMPLE
)
VIEWS = Inputs(
    ("y_true", "y_pred"),
    (_CLASS_LABELS, "`[B, D]` embeddings, or `[B, V, D]`: `V` views of each example."),
    {"views": True},
    "`[B]` per-example losses in the dtype of `y_pred`.",
)
MULTI_HOT_VIEWS = dataclasses.replace(
    VIEWS,
    docs=("`[B, C]` multi-hot labels.", VIEWS.docs[1]),
    front_end={"views": True, "multi_hot": True},
)

_OPTION_ARGS = {
    CROSS_REPLICA: (
        Hyperparameter(
            False,
            validation.boolean,
            "Compare each anchor with the embeddings of every replica (`tf.distribute`, "
            "`torch.distributed`; the identity on one device and under JAX).",
        ),
    ),
    TILING: (
        Hyperparameter(
            None,
            lambda v, n: None if v is None else validation.positive_int(v, n),
            "`None` computes the `[B, K]` matrices at once; an int computes the loss by tiles of "
            "`block_size` rows and columns (the same values and gradients, memory that grows "
            "with `B` rather than `B**2`; see `kml.tiling`).",
        ),
    ),
    MINER: (
        Hyperparameter(
            None,
            lambda v, n: _miner(v, n),  # defined below
            "A miner of `kml.miners` that selects the pairs (or triplets) the loss uses, from "
            "the embeddings as given: PML's `loss(embeddings, labels, miner(embeddings, "
            "labels))`. Defaults to `None`: every pair.",
        ),
    ),
}
_OPTION_NAMES = {CROSS_REPLICA: ("cross_replica",), TILING: ("block_size",), MINER: ("miner",)}


def _miner(value, name):
    """A hyperparameter check: `None`, a miner of `kml.miners`, or its saved config."""
    if isinstance(value, dict):
        value = keras.saving.deserialize_keras_object(value)
    if value is not None and not isinstance(value, miners.Miner):
        raise TypeError(
            f"`{name}` must be a miner of `kml.miners` (for example "
            f"`kml.miners.MultiSimilarityMiner()`) or None. Received: {name}={value!r}"
        )
    return value


@dataclasses.dataclass(frozen=True)
class Declaration:
    """Everything `declare` knows of a loss (what the docs' tables and coverage tests read).

    Attributes:
        elements: The elements function.
        function: The public function.
        cls: The public `Loss` class.
        family: The family module (`"pair"`, `"triplet"`, ...).
        inputs: Its `Inputs`.
        hyperparameters: `{name: Hyperparameter}` in signature order, options included.
        options: The options it supports (`KEYS`, `CROSS_REPLICA`, `TILING`).
        original: The loss it re-creates, or `None`.
        summary: What it does, in one line.
        related: The name of a public function written by hand for the same loss (with the
            original's signature, such as `nce_loss`), or `None`.
    """

    elements: object
    function: object
    cls: object
    family: str
    inputs: Inputs
    hyperparameters: dict
    options: tuple
    original: str
    summary: str
    related: str = None

    @property
    def supports_keys(self):
        return KEYS in self.options

    @property
    def names(self):
        """The public names: the function's (if any) and the class's."""
        return tuple(obj.__name__ for obj in (self.function, self.cls) if obj is not None)


def declare(
    elements,
    *,
    function,
    cls,
    hyperparameters,
    class_doc,
    summary,
    original=None,
    name=None,
    positional=(),
    function_positional=False,
    inputs=EMBEDDINGS,
    options=(),
    joint_checks=(),
    bases=(),
    related=None,
):
    """Declares a loss: returns its public function and `Loss` class, registered.

    Args:
        elements: `elements(pairs, **hyperparameters) -> [b]` values in the compute dtype
            (`inputs.front_end` set), else `elements(*inputs, **hyperparameters) -> [B]`
            losses in the dtype of the predictions.
        function: The public function's name, or `None` for a class alone (its function is
            then private: a loss of a layer's output, such as `NCELoss`).
        cls: The class's name, or `None` for a function alone (its class takes other inputs
            and is declared on its own, such as `ArcFaceLoss` on the logits of a layer).
        hyperparameters: `{name: Hyperparameter}`, in the signature's order. An option's
            argument declared here (say `cross_replica`) replaces the option's text.
        class_doc: The class docstring: a summary pointing to the function, an example and the
            paper (the `Args` are added).
        summary: What the loss does, in one line (the README's table).
        original: The loss it re-creates (`"tfa.losses.TripletSemiHardLoss"`), or `None`.
        name: The class's default `name`. Defaults to `function`.
        positional: The hyperparameters that the class takes positionally, in order (the
            original's); the others are keyword-only.
        function_positional: The function takes `positional` positionally too.
        inputs: The function's `Inputs`. Defaults to `EMBEDDINGS`.
        options: The options it supports: `KEYS`, `CROSS_REPLICA`, `TILING`.
        joint_checks: Callables `check(values)` on every hyperparameter, for rules that
            involve several of them; they raise (or return normalised values).
        bases: Mixins of the class, before `LossFunctionWrapper` (config compatibility).
        related: The name of a public function written by hand for the same loss, or `None`.

    Returns:
        `(function, cls)`, `cls` alone with `function=None`, or the function alone with
        `cls=None`.
    """
    every = dict(hyperparameters)
    for option in options:  # a declared hyperparameter of the option's name gives its own text
        names = _OPTION_NAMES.get(option, ())
        for argument, default in zip(names, _OPTION_ARGS.get(option, ()), strict=True):
            every.setdefault(argument, default)
    references = ("ref_embeddings", "ref_labels") if KEYS in options else ()
    extra = references + tuple(name for name, _ in inputs.keywords)
    check = _checker(every, joint_checks)
    call = _caller(elements, inputs, every, references, check)
    doc = generated.function_doc(elements.__doc__, inputs, every, extra)
    if elements.__doc__ is not None:  # its docstring is now the public function's
        owner = function or cls
        elements.__doc__ = f"The values of `{owner}` (whose docstring this function's text is)."
    public = generated.function(
        function or f"_{cls}_function",
        inputs.names,
        every,
        positional if function_positional else (),
        extra,
        call,
        doc,
    )
    public.check_hyperparameters = check
    public.per_example = call
    loss_cls = None
    if cls is not None:
        loss_cls = generated.loss_class(
            cls,
            name or function,
            every,
            positional,
            public,
            bases,
            generated.class_doc(class_doc, every, name or function, inputs.example),
        )
    family = elements.__module__.split(".")[2] if elements.__module__.count(".") > 2 else ""
    declaration = Declaration(
        elements,
        None if function is None else export(public),
        None if cls is None else export(loss_cls),
        family,
        inputs,
        every,
        tuple(options),
        original,
        summary,
        related,
    )
    if cls is not None:
        loss_cls.declaration = declaration
    DECLARED.append(declaration)
    if cls is None:
        return public
    return loss_cls if function is None else (public, loss_cls)


def _checker(every, joint_checks):
    def check(values):
        checked = {name: every[name].check(value, name) for name, value in values.items()}
        for joint in joint_checks:
            checked = joint(checked) or checked
        return checked

    return check


def _caller(elements, inputs, every, references, check):
    """`call(*inputs, keys=None, **values)`: the checked values of every hyperparameter, the
    front end (with `keys`, or those of `ref_*` / `cross_replica`), the elements."""
    names = tuple(every)

    def call(*args, keys=None, **values):
        given = {name: values.pop(name, every[name].default) for name in names}
        references_ = [values.pop(name, None) for name in references]
        checked = check(given)
        if inputs.front_end is None:
            return elements(*args, **checked, **values)
        cross_replica = checked.pop("cross_replica", False)
        miner = checked.pop("miner", None)
        if keys is None:
            keys = pairs.keys_of(*references_, cross_replica=cross_replica)
        normalize = any([checked.pop(n, False) for n in ("normalize", "normalize_embeddings")])
        batch = pairs.build(*args, keys, normalize=normalize and miner is None, **inputs.front_end)
        if batch.is_empty:
            return batch.finish(batch.zeros())
        if miner is not None:  # the miner sees the embeddings as given, the loss its own
            mined = miner.mine(batch)
            batch = batch.normalized() if normalize else batch
            batch = batch.restricted(mined.positive, mined.negative, mined.triplets)
        return batch.finish(elements(batch, **checked, **values))

    return call
