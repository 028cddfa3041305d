"""What `ClassProxies` adds for a loss on its embeddings and proxies (`TAKES = "proxies"`, the
manifold loss): the `keras.random.SeedGenerator` its meta classes are drawn from, saved with
the layer.

Keras does not save a layer's seed generators (a loaded `Dropout` draws from its seed again);
this one's state is saved with the layer's variables, under `SEED_KEY`, so that a model saved
and loaded (`.keras`) resumes the same draws.
"""

import keras
import numpy as np

from keras_metric_losses import validation

SEED_KEY = "meta_class_seed_state"


def takes_proxies(loss):
    """Whether the layer's `loss` takes `(embeddings, proxies)` rather than the logits."""
    return loss is not None and loss.TAKES == "proxies"


def checked_seed(seed, loss):
    """`meta_class_seed`: an int `>= 0` or `None`, for a loss on the proxies only."""
    if seed is None:
        return None
    seed = validation.positive_int(seed, "meta_class_seed", low=0)
    if not takes_proxies(loss):
        raise ValueError(
            "`meta_class_seed` seeds the meta classes drawn for a loss on the embeddings and "
            "the proxies (`loss=kml.ManifoldLoss()`). Received: "
            f"meta_class_seed={seed!r} and loss={type(loss).__name__ if loss else None}"
        )
    return seed


def generator(loss, seed):
    """The layer's `SeedGenerator` of meta classes, or `None` for the other losses."""
    return keras.random.SeedGenerator(seed, name="meta_class_seed") if takes_proxies(loss) else None


def save(seeds, store):
    """Adds the state of `seeds` (a `SeedGenerator` or `None`) to a layer's saved variables."""
    if seeds is not None:
        store[SEED_KEY] = seeds.state


def load(seeds, store, load_variables):
    """Restores the state of `seeds` from `store` and the other variables with
    `load_variables(store)` (Keras' own, which reads exactly the layer's variables)."""
    if seeds is None or SEED_KEY not in store:  # a file saved before the state was
        load_variables(store)
        return
    # Keras' H5 store has `keys()` but no iteration.
    load_variables({key: store[key] for key in store.keys() if key != SEED_KEY})  # noqa: SIM118
    seeds.state.assign(np.asarray(store[SEED_KEY]))
