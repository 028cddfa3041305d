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

Reduction, `sample_weight`, masks and distribution scaling are Keras' own.
"""

import dataclasses
import inspect
import keyword
import linecache
import textwrap

import keras

from keras_metric_losses import pairs, reduction, validation
from keras_metric_losses.api import StrictConfig, export

# Options a loss on labels and embeddings may support, each a set of arguments of the function.
KEYS = "keys"  # `ref_embeddings` / `ref_labels`, and a `CrossBatchMemory` around it
CROSS_REPLICA = "cross_replica"  # the keys of every replica
TILING = "tiling"  # `block_size`

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
}
_OPTION_NAMES = {CROSS_REPLICA: ("cross_replica",), TILING: ("block_size",)}
_REFERENCE_DOCS = (
    ("ref_embeddings", "Optional `[K, D]` keys (a gallery, the other tower) instead of the batch."),
    ("ref_labels", "The `[K]` labels of `ref_embeddings` (`[K, C]` for multi-hot labels)."),
)
_CLASS_DOCS = (
    ("name", "Name of the loss. Defaults to `{name!r}`."),
    ("reduction", "Keras reduction. Defaults to `'sum_over_batch_size'`."),
    (
        "dtype",
        "Loss dtype or dtype policy (half precision is computed in float32). Defaults to "
        "`keras.config.floatx()`.",
    ),
)
_EMBEDDING_RAISES = """Raises:
    ValueError: for a hyperparameter out of range, labels not `[B]`/`[B, 1]`, `y_pred` not
        rank 2, different batch sizes, or keys that do not match the batch. With value checks
        on (`kml.config`), also for non-integral float labels and NaN or inf in `y_pred`.
    TypeError: if the labels are not numbers, or a flag is not a bool."""


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
    doc = _function_doc(elements.__doc__, inputs, every, extra)
    if elements.__doc__ is not None:  # its docstring is now the public function's
        owner = function or cls
        elements.__doc__ = f"The values of `{owner}` (whose docstring this function's text is)."
    public = _generate_function(
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
        loss_cls = _generate_class(
            cls,
            name or function,
            every,
            positional,
            public,
            bases,
            _class_doc(class_doc, every, name or function, inputs.example),
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
        if keys is None:
            keys = pairs.keys_of(*references_, cross_replica=cross_replica)
        normalize = any([checked.pop(n, False) for n in ("normalize", "normalize_embeddings")])
        batch = pairs.build(*args, keys, normalize=normalize, **inputs.front_end)
        if batch.is_empty:
            return batch.finish(batch.zeros())
        return batch.finish(elements(batch, **checked))

    return call


def _generate_function(name, input_names, every, positional, extra, call, doc):
    """A function with a real signature (so that `torch.compile` and IDEs see plain
    arguments) that calls `call` with them, made like `dataclasses` makes its methods."""
    keyword_only = [n for n in every if n not in positional] + list(extra)
    defaults = {n: every[n].default for n in every} | {n: None for n in extra}
    parameters = [*input_names, *(f"{n}=_d[{n!r}]" for n in positional)]
    if keyword_only:
        parameters += ["*", *(f"{n}=_d[{n!r}]" for n in keyword_only)]
    arguments = ", ".join([*input_names, *(f"{n}={n}" for n in [*positional, *keyword_only])])
    _check_names([*input_names, *every, *extra])
    source = f"def {name}({', '.join(parameters)}):\n    return _call({arguments})\n"
    fn = _compile(source, name, {"_d": defaults, "_call": call})
    fn.__doc__, fn.__qualname__, fn.__module__ = doc, name, _caller_module()
    return fn


def _generate_class(cls_name, default_name, every, positional, function, bases, doc):
    keyword_only = [n for n in every if n not in positional]
    parameters = [
        "self",
        *(f"{n}=_d[{n!r}]" for n in positional),
        f"name={default_name!r}",
        "reduction='sum_over_batch_size'",
        "dtype=None",
    ]
    if keyword_only:
        parameters += ["*", *(f"{n}=_d[{n!r}]" for n in keyword_only)]
    values = ", ".join(f"{n}={n}" for n in every)
    source = (
        f"def __init__({', '.join(parameters)}):\n"
        f"    LossFunctionWrapper.__init__(self, _fn, name=name, reduction=reduction, "
        f"dtype=dtype{', ' if values else ''}{values})\n"
    )
    namespace = {
        "_d": {n: every[n].default for n in every},
        "_fn": function,
        "LossFunctionWrapper": LossFunctionWrapper,
    }
    init = _compile(source, "__init__", namespace, cls_name)
    init.__qualname__ = f"{cls_name}.__init__"
    module = _caller_module()
    attributes = {"__init__": init, "__doc__": doc, "__module__": module}
    return type(cls_name, (*bases, LossFunctionWrapper), attributes)


def _compile(source, name, namespace, owner=""):
    """The function `name` defined by `source` (made from checked identifiers only), with its
    source in `linecache` under a file name of its own, so that tracebacks, `inspect` and
    TensorFlow's AutoGraph (which converts a function from its source) read this source."""
    filename = f"<keras_metric_losses generated {owner}{'.' if owner else ''}{name}>"
    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    exec(compile(source, filename, "exec"), namespace)
    return namespace[name]


def _caller_module():
    """The module that called `declare` (where the generated objects are said to live)."""
    frame = inspect.currentframe()
    while frame.f_globals.get("__name__") == __name__:
        frame = frame.f_back
    return frame.f_globals["__name__"]


def _check_names(names):
    bad = [n for n in names if not n.isidentifier() or keyword.iskeyword(n)]
    if bad:
        raise ValueError(f"Not argument names: {bad}")


def _entry(name, text):
    """A Google-style `Args` entry (four spaces in), wrapped at 96 columns."""
    return textwrap.fill(
        f"{name}: {text}",
        96,
        initial_indent="    ",
        subsequent_indent="        ",
        break_on_hyphens=False,
    )


def _hyperparameter_entries(every):
    return [_entry(n, f"{h.doc} Defaults to `{h.default!r}`.") for n, h in every.items()]


def _insert(doc, block, before):
    """The cleaned `doc` with `block` inserted before the first of the sections `before`."""
    lines = inspect.cleandoc(doc).split("\n")
    for index, line in enumerate(lines):
        if line.endswith(":") and line[:-1] in before:
            return "\n".join([*lines[:index], *block.split("\n"), "", *lines[index:]])
    return "\n".join([*lines, "", *block.split("\n")])


def _with_example_setup(doc, setup):
    """`doc` (cleaned) with the doctest lines `setup` at the start of its `Example` section,
    unless that section starts with an import of its own."""
    lines = inspect.cleandoc(doc).split("\n")
    if setup is None or "Example:" not in lines:
        return "\n".join(lines)
    start = lines.index("Example:") + 1
    first = next((i for i in range(start, len(lines)) if lines[i].strip()), len(lines))
    if first < len(lines) and lines[first].startswith(">>> import"):
        return "\n".join(lines)
    return "\n".join([*lines[:first], *setup.split("\n"), *lines[first:]])


def _function_doc(doc, inputs, every, extra):
    if doc is None:  # `python -OO`
        return None
    doc = _with_example_setup(doc, inputs.example)
    entries = [_entry(n, d) for n, d in zip(inputs.names, inputs.docs, strict=True)]
    entries += _hyperparameter_entries(every)
    entries += [_entry(n, d) for n, d in (*_REFERENCE_DOCS, *inputs.keywords) if n in extra]
    block = ["Args:", *entries]
    if "Returns:" not in doc:
        block += ["", "Returns:", f"    {inputs.returns}"]
    raises = inputs.raises or (_EMBEDDING_RAISES if inputs.front_end is not None else None)
    if "Raises:" not in doc and raises:
        block += ["", raises]
    return _insert(doc, "\n".join(block), ("Returns", "Raises", "Example", "Reference"))


def _class_doc(doc, every, default_name, setup):
    if doc is None:
        return None
    doc = _with_example_setup(doc, setup)
    entries = _hyperparameter_entries(every)
    entries += [_entry(n, d.format(name=default_name)) for n, d in _CLASS_DOCS]
    return _insert(doc, "\n".join(["Args:", *entries]), ("Raises", "Example", "Reference"))


class _PerExample(keras.losses.Loss):
    """Keras' `Loss.__call__` around `loss.call(labels, y_pred)`, with `labels` kept as given.

    Keras converts `y_pred` to the loss dtype, reads its mask, and reduces with
    `sample_weight`, as for its own losses; its `y_true` (converted to the loss dtype, which
    would merge integer ids above 2**24 in float32) is a placeholder here.
    """

    def __init__(self, loss, labels):
        super().__init__(name=loss.name, reduction=loss.reduction, dtype=loss.dtype_policy)
        self.loss, self.labels = loss, labels

    def call(self, placeholder, y_pred):
        return self.loss.call(self.labels, y_pred)


class LossFunctionWrapper(StrictConfig, keras.losses.Loss):
    """A Keras `Loss` that computes a per-example loss function with declared hyperparameters.

    - `y_true` keeps its own dtype (`keras.losses.Loss.__call__` casts it to the loss dtype,
      which merges integer class ids above 2**24 in float32, above 2048 in float16); `y_pred`
      is converted to the loss dtype as in Keras.
    - `call()` returns one value per example; Keras' own reduction then applies `reduction`,
      `sample_weight` and a Keras mask on `y_pred`, so `reduction=None` gives the `[B]` values.
    - Each hyperparameter is checked when the class is built (errors name the argument) and
      stored as an attribute; `get_config` saves them all with `name`, `reduction` and `dtype`,
      and `from_config` names unknown keys. A callable hyperparameter (a distance) is saved by
      its registered name.

    Args:
        fn: A declared loss function (`declare`).
        name: Name of the loss.
        reduction: Keras reduction. Defaults to `"sum_over_batch_size"`.
        dtype: Loss dtype or dtype policy. Defaults to `keras.config.floatx()`.
        **hyperparameters: Every hyperparameter that `fn` declares.
    """

    declaration = None

    def __init__(self, fn, name=None, reduction="sum_over_batch_size", dtype=None, **values):
        if name is not None and not isinstance(name, str):
            raise TypeError(f"`name` must be a string. Received: name={name!r}")
        try:
            self.dtype_policy = keras.dtype_policies.get(dtype or keras.config.floatx())
        except ValueError as error:
            raise ValueError(
                f"`dtype` must be a float dtype or a dtype policy name. Received: dtype={dtype!r}"
            ) from error
        super().__init__(name=name, reduction=reduction, dtype=self.dtype_policy)
        self.fn = fn
        self._hyperparameter_names = tuple(values)
        for key, value in fn.check_hyperparameters(values).items():
            setattr(self, key, value)

    @property
    def hyperparameters(self):
        """The hyperparameters passed to the loss function, by name."""
        return {key: getattr(self, key) for key in self._hyperparameter_names}

    def __call__(self, y_true, y_pred, sample_weight=None):
        labels = validation.numeric_tensor(y_true, "y_true")
        return _PerExample(self, labels)(0.0, y_pred, sample_weight=sample_weight)

    def call(self, y_true, y_pred):
        return self.fn(y_true, y_pred, **self.hyperparameters)

    def per_example(self, y_true, y_pred, keys):
        """The `[B]` values of this loss against explicit `keys` (a `pairs.Keys`), as
        `kml.layers.CrossBatchMemory` calls it."""
        return self.fn.per_example(y_true, y_pred, keys=keys, **self.hyperparameters)

    def get_config(self):
        config = {"name": self.name, "reduction": self.reduction, "dtype": self.dtype_policy.name}
        for key, value in self.hyperparameters.items():
            config[key] = _config_value(key, value)
        return config


def _config_value(key, value):
    """A hyperparameter as saved in a config: callables by their registered name."""
    if not callable(value):
        return value
    name = keras.saving.get_registered_name(value)
    if keras.saving.get_registered_object(name) is not value:
        raise ValueError(
            f"A callable `{key}` must be registered with "
            "`@keras.saving.register_keras_serializable()` to be saved in a config. "
            f"Received: {key}={value!r}"
        )
    return name
