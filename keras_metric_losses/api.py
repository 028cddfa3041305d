"""What makes an object part of the public, serializable API: registration and strict configs."""

import inspect

import keras

PACKAGE = "keras_metric_losses"

_NAMED = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


# Every public object, by name, in the order of export: the one list that `__all__`, the API
# page, the README's table and the coverage tests are checked against (tests/test_api.py).
REGISTRY = {}


def export(obj):
    """Registers `obj` with Keras serialization under the package name `keras_metric_losses`
    and records it in `REGISTRY`.

    Saved models then refer to it as `"keras_metric_losses>Name"` and load after a plain
    `import keras_metric_losses`, with no `custom_objects`.
    """
    REGISTRY[obj.__name__] = obj
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)


def public_names(module):
    """The names of the registered objects defined in `module` or below it, in `__all__`'s
    order (ruff's RUF022: constants, then classes, then the rest, each alphabetically)."""
    names = [n for n, obj in REGISTRY.items() if obj.__module__.startswith(f"{module}.")]
    return sorted(names, key=lambda n: (0 if n.isupper() else 1 if n[:1].isupper() else 2, n))


def constructor_arguments(cls):
    """The keyword arguments `cls(...)` accepts: those of its `__init__` and, as long as an
    `__init__` passes `**kwargs` on, those of the next `__init__` up the class hierarchy."""
    names = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        parameters = list(inspect.signature(klass.__init__).parameters.values())[1:]
        names.update(p.name for p in parameters if p.kind in _NAMED)
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            break
    return names


class StrictConfig:
    """Mixin for a `keras.losses.Loss` or `keras.layers.Layer` (listed first among the bases)
    whose `from_config` names the keys its constructor does not take.

    Keras' own `from_config` calls `cls(**config)`, which fails deep inside the constructor
    ("unexpected keyword argument", or a layer's "Unrecognized keyword arguments"). Values of
    known keys are validated by the constructor, with errors that name the key.
    """

    @classmethod
    def from_config(cls, config):
        accepted = constructor_arguments(cls)
        unknown = sorted(set(config) - accepted)
        if unknown:
            received = ", ".join(f"{key}={config[key]!r}" for key in unknown)
            raise TypeError(
                f"Unknown key(s) {unknown} in the config of `{cls.__name__}`; its constructor "
                f"takes {sorted(accepted)}. Received: {received}"
            )
        return super().from_config(config)
