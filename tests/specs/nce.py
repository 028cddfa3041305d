"""The sampled losses (`tf.nn.nce_loss`, `tf.nn.sampled_softmax_loss`) and the `NCE` layer."""

import keras
import numpy as np
from nce_reference import reference_logits, reference_losses
from support import repeated_draws

import keras_metric_losses as kml
from specs import Spec
from specs.faults import NOT_SQUARE, NUM_CLASSES, Raises, Value, not_finite, not_integral
from specs.kinds import Entry, Kind, clustered_inputs, held_out_inputs, mean, normal, shape_errors
from specs.kinds import similarity_matrix_outcomes as logits_outcomes

NUM_SAMPLED, DIM = 3, 2
RNG = np.random.default_rng(0)
WEIGHTS = RNG.normal(size=(NUM_CLASSES, DIM)).astype("float32")
BIASES = RNG.normal(size=NUM_CLASSES).astype("float32")
# Tensors, so that compiled functions close over tensors (`torch.compile` cannot trace NumPy).
CANDIDATES = keras.ops.convert_to_tensor(np.array([3, 0, 5], "int32"))
CANDIDATE_COUNTS = keras.ops.convert_to_tensor(np.array([0.3, 0.6, 0.1], "float32"))
LAYER_CLASSES, LAYER_SAMPLED = 12, 5


def sampled_values(labels):
    """Fixed candidates, as tensors (also inside compiled functions)."""
    true_count = keras.ops.full((keras.ops.shape(labels)[0], 1), 0.3, "float32")
    return CANDIDATES, true_count, CANDIDATE_COUNTS


def _function_outcomes():
    return {
        **shape_errors("labels", "inputs", (4, 2)),
        "y_true two columns": Raises(
            ValueError, r"`labels`.*num_true=1. Received: labels.shape=\(4, 2\)"
        ),
        "non-square y_pred": NOT_SQUARE,
        "non-integral labels": not_integral("labels", "(0, 0)", "(4, 1)"),
        "NaN labels": not_integral("labels", "(0, 0)", "(4, 1)", "nan"),
        "out-of-range labels": Raises(
            ValueError,
            r"`labels` must be class ids in \[0, num_classes\) with num_classes=6. "
            r"Received: labels with min=-1 and max=6",
            traced=False,
        ),
        "NaN in y_pred": not_finite("inputs", (4, 2), 1, 0),
        "inf in y_pred": not_finite("inputs", (4, 2), 0, 1),
        "-inf in y_pred": not_finite("inputs", (4, 2), 0, 1),
        "empty batch": Value(),  # []
        "batch of one": Value(),
        "one class": Value(),
        "all labels differ": Value(),
    }


def _class_outcomes():
    ignored = Value()  # only the shape of y_true (num_true) is used
    return {
        **shape_errors("y_true", "y_pred", (4, 4)),
        "y_true rank + 2": Raises(
            ValueError, r"`y_true`.*\[batch, num_true\]. Received: y_true.shape=\(4, 1, 1\)"
        ),
        "y_pred rank 1": Raises(
            ValueError, r"`y_pred` must be the \[batch, num_true \+ num_sampled\].*\(4,\)"
        ),
        "y_pred rank 3": Raises(
            ValueError, r"`y_pred` must be the \[batch, num_true \+ num_sampled\].*\(4, 4, 1\)"
        ),
        "y_true two columns": ignored,  # num_true=2 with 2 sampled columns: a valid input
        "non-integral labels": ignored,
        "NaN labels": ignored,
        "out-of-range labels": ignored,
        **logits_outcomes(),  # -inf: a removed accidental hit (float16 loss dtype)
        "non-square y_pred": NOT_SQUARE,
    }


class Sampled(Kind):
    """A sampled loss: the function takes class weights and inputs, the class takes the sampled
    logits of `layers.NCE`. `column` picks the NCE (0) or sampled softmax (1) reference."""

    name = "sampled"
    predictions = staticmethod(normal(DIM))
    lipschitz_input = staticmethod(lambda output: np.asarray(output, np.float64))

    def __init__(self, column):
        self.column = column

    def precision_bound(self, error):
        # NCE sums a softplus over every column: its loss moves by the row sum of the errors.
        return error.sum(axis=1).mean() if self.column == 0 else 2 * error.max()

    def outcomes(self):
        return _function_outcomes()

    def entries(self, spec):
        weights, biases = (keras.ops.convert_to_tensor(w) for w in (WEIGHTS, BIASES))

        def function(labels, inputs):
            return spec.function(weights, biases, labels, inputs, NUM_SAMPLED, NUM_CLASSES,
                                 sampled_values=sampled_values(labels))  # fmt: skip

        def function_reference(labels, inputs):
            remove = self.column == 1  # sampled softmax removes accidental hits by default
            logits = reference_logits(WEIGHTS, BIASES, np.reshape(labels, (-1, 1)), inputs,
                                      sampled_values(labels), remove)  # fmt: skip
            return reference_losses(*logits)[self.column]

        def class_reference(labels, logits):
            logits = np.asarray(logits, np.float64)
            num_true = np.shape(labels)[1] if np.ndim(labels) == 2 else 1
            true, noise = logits[:, :num_true], logits[:, num_true:]
            return mean(reference_losses(true, noise, np.zeros(noise.shape, bool))[self.column])

        entries = [
            Entry(spec.function.__name__, spec.function, function, np.asarray,
                  self.predictions, _function_outcomes(), function_reference),
            Entry(spec.cls.__name__, spec.cls, spec.cls(), np.asarray,
                  normal(1 + NUM_SAMPLED), _class_outcomes(), class_reference),
        ]  # fmt: skip
        if self.column == 0:  # the layer once, with the NCE loss
            layer = kml.layers.NCE(NUM_CLASSES, NUM_SAMPLED)
            layer.build((None, DIM))
            layer.set_weights([WEIGHTS, BIASES])

            def layer_loss(labels, inputs):
                logits = layer.sampled_logits(inputs, labels, sampled_values(labels))
                return kml.NCELoss()(labels, logits)

            outcomes = _function_outcomes()
            outcomes["string labels"] = Raises(TypeError, r"`labels` must hold numbers")
            entries.append(
                Entry("NCE", kml.layers.NCE, layer_loss, np.asarray, self.predictions, outcomes)
            )
        return entries

    def model(self, cross_replica=False):
        features, labels = keras.Input((6,)), keras.Input((1,), dtype="int32")
        embedded = keras.layers.Dense(4, name="embedding")(features)
        nce = kml.layers.NCE(LAYER_CLASSES, LAYER_SAMPLED, remove_accidental_hits=self.column == 1,
                             seed=1, cross_replica=cross_replica, name="nce")  # fmt: skip
        return keras.Model([features, labels], nce([embedded, labels]))

    def data(self, batch=16, seed=0, scale=1.0, nuisance=0.0):
        (x, _), labels = clustered_inputs(batch, seed=seed, scale=scale, nuisance=nuisance)
        classes = _class_ids(labels)
        return [x, classes], classes

    def retrieval(self, model, nuisance=0.0):
        """The share of held-out points whose class has the largest full logit among the
        layer's `LAYER_CLASSES` (what sampled training is for)."""
        inputs, labels = held_out_inputs(nuisance=nuisance)
        logits = model.get_layer("nce")(model.get_layer("embedding")(inputs))
        predicted = np.argmax(keras.ops.convert_to_numpy(logits), axis=-1)
        return float(np.mean(predicted == _class_ids(labels)[:, 0]))


def _class_ids(labels):
    return (labels * 3 + 1)[:, None].astype("int32")  # ids below LAYER_CLASSES


SPECS = [
    Spec(kml.nce_loss, kml.NCELoss, Sampled(0), "sampled"),
    Spec(kml.sampled_softmax_loss, kml.SampledSoftmaxLoss, Sampled(1), "sampled"),
]


def case_arrays(case):
    """`(weights, biases, labels, inputs, sampled_values)` of a golden case, as NumPy."""
    dtype = case["dtype"]
    weights = case["weights"]
    if weights and isinstance(weights[0][0], list):  # a list of 'div' shards
        weights = [np.asarray(shard, dtype) for shard in weights]
    else:
        weights = np.asarray(weights, dtype)
    sampled, true_ec, sampled_ec = case["sampled_values"]
    values = (np.asarray(sampled, "int32"), np.asarray(true_ec, "float32"),
              np.asarray(sampled_ec, "float32"))  # fmt: skip
    return (weights, np.asarray(case["biases"], dtype), np.asarray(case["labels"], "int32"),
            np.asarray(case["inputs"], dtype), values)  # fmt: skip


def check_case(case, run):
    """`tf.nn`'s per-example losses for the stored candidates."""
    fn = getattr(kml, case["call"])
    weights, biases, labels, inputs, values = case_arrays(case)
    # Backend tensors, so that a compiled `loss` closes over tensors (not NumPy arrays).
    weights, biases, values = keras.tree.map_structure(
        keras.ops.convert_to_tensor, (weights, biases, values)
    )

    def loss(labels, inputs):
        return fn(weights, biases, labels, inputs, sampled_values=values, **case["kwargs"])

    result = run(loss, labels, inputs)
    assert tuple(result.shape) == (len(labels),)
    assert keras.backend.standardize_dtype(result.dtype) == "float32"
    expected = case["expected_per_example"]
    np.testing.assert_allclose(keras.ops.convert_to_numpy(result), expected, rtol=1e-5)


GOLDEN = {
    ("nce.json", "nce_loss"): check_case,
    ("sampled_softmax.json", "sampled_softmax_loss"): check_case,
}


def check_sampler_case(case, run, trials=2000):
    """Inclusion frequencies of the unique sampler within 5 binomial standard errors of
    TensorFlow's (+ 1/trials for p near 0 or 1); over ~1,000 classes a false alarm has
    probability ~1e-3. Draws of one advancing generator, compiled where that is cheap
    (`support.repeated_draws`; 2,000 eager calls took 15 s a case on JAX and TensorFlow, where
    each op of a call runs on its own; `run` is not used)."""
    range_max, num_sampled = case["range_max"], case["num_sampled"]
    labels = np.zeros((1, 1), "int32")

    def draw(generator):
        return kml.log_uniform_candidate_sampler(
            labels, 1, num_sampled, True, range_max, seed=generator
        )[0]

    draws = repeated_draws(draw, trials)
    assert draws.shape == (trials, num_sampled)
    assert all(len(set(row)) == num_sampled for row in draws)
    assert draws.min() >= 0 and draws.max() < range_max
    frequency = np.bincount(draws.ravel(), minlength=range_max) / trials
    golden, golden_trials = np.asarray(case["inclusion_frequency"]), case["trials"]
    assert abs(frequency.sum() - num_sampled) < 1e-9 and abs(golden.sum() - num_sampled) < 1e-6
    p = (frequency * trials + golden * golden_trials) / (trials + golden_trials)
    error = np.sqrt(p * (1 - p) * (1 / trials + 1 / golden_trials))
    assert (np.abs(frequency - golden) <= 5 * error + 1.0 / trials).all()


check_sampler_case.eager_only = True  # a statistical test of the draws, not of one function
GOLDEN[("log_uniform_sampler.json", None)] = check_sampler_case
