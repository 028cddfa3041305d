"""What `declare` generates from a declaration: the public function and the `Loss` class, with
real signatures (made like `dataclasses` makes its methods, from checked identifiers only), and
their docstrings, whose `Args` are assembled from the declared texts."""

import inspect
import keyword
import linecache
import textwrap

from keras_metric_losses.losses.wrapper import LossFunctionWrapper

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


def function(name, input_names, every, positional, extra, call, doc):
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


def loss_class(cls_name, default_name, every, positional, function, bases, doc):
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
    declaring = (__name__, __name__.rpartition(".")[0] + ".base")
    while frame.f_globals.get("__name__") in declaring:
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
    """`doc` (cleaned) with the doctest lines `setup` before the first example of its `Example`
    section, unless that example starts with an import of its own."""
    lines = inspect.cleandoc(doc).split("\n")
    if setup is None or "Example:" not in lines:
        return "\n".join(lines)
    start = lines.index("Example:") + 1
    first = next((i for i in range(start, len(lines)) if lines[i].startswith(">>>")), None)
    if first is None or lines[first].startswith(">>> import"):
        return "\n".join(lines)
    return "\n".join([*lines[:first], *setup.split("\n"), *lines[first:]])


def function_doc(doc, inputs, every, extra):
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


def class_doc(doc, every, default_name, setup):
    if doc is None:
        return None
    doc = _with_example_setup(doc, setup)
    entries = _hyperparameter_entries(every)
    entries += [_entry(n, d.format(name=default_name)) for n, d in _CLASS_DOCS]
    return _insert(doc, "\n".join(["Args:", *entries]), ("Raises", "Example", "Reference"))
