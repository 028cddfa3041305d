"""The decorator that makes an object part of the public, serializable API."""

import keras

PACKAGE = "keras_metric_losses"


def export(obj):
    """Registers `obj` with Keras serialization under the package name `keras_metric_losses`.

    Saved models then refer to it as `"keras_metric_losses>Name"` and load after a plain
    `import keras_metric_losses`, with no `custom_objects`.
    """
    return keras.saving.register_keras_serializable(package=PACKAGE)(obj)
