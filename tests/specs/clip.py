"""open_clip's losses (`ClipLoss`, `SigLipLoss`) on `[B, 2, D]` image and text features;
`y_true` is not used. Golden: clip.json, single-process and distributed cases."""

import keras
import numpy as np
from support import value_and_grad

import keras_metric_losses as kml
from keras_metric_losses.losses.clip.clip import clip_rows, clip_values
from keras_metric_losses.losses.clip.siglip import siglip_rows, siglip_values
from specs import Spec
from specs.ssl import STRING_LABELS, TwoViews


def _split(y_pred):
    y_pred = np.asarray(y_pred, np.float64)
    return y_pred[:, 0], y_pred[:, 1]


def _logsumexp(x):
    top = x.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(x - top).sum(axis=1, keepdims=True)))[:, 0]


def clip_reference(y_true, y_pred, scale=1 / 0.07, bias=None):
    """open_clip's two cross-entropies of each pair, averaged, in float64."""
    images, texts = _split(y_pred)
    logits = scale * images @ texts.T
    diagonal = np.diag(logits)
    return ((_logsumexp(logits) - diagonal) + (_logsumexp(logits.T) - diagonal)) / 2


def siglip_reference(y_true, y_pred, scale=10.0, bias=-10.0):
    """`-sum_j log sigmoid(z_ij x_ij)` of each image, in float64."""
    images, texts = _split(y_pred)
    logits = scale * images @ texts.T + (bias or 0.0)
    signs = 2 * np.eye(len(images)) - 1
    return np.logaddexp(0.0, -signs * logits).sum(axis=1)


SPECS = [
    Spec(
        kml.clip_loss,
        kml.ClipLoss,
        TwoViews(),
        "clip",
        reference=clip_reference,
        class_outcomes=STRING_LABELS,
        cross_replica=True,
        precision=False,  # not normalised: the logits grow with the raw features
    ),
    Spec(
        kml.siglip_loss,
        kml.SigLipLoss,
        TwoViews(),
        "clip",
        reference=siglip_reference,
        class_outcomes=STRING_LABELS,
        cross_replica=True,
        precision=False,  # not normalised: the logits grow with the raw features
    ),
]

# --- golden checks (clip.json) -----------------------------------------------------------------

RTOL, ATOL = 1e-5, 1e-6
CLASSES = {
    "ClipLoss": (kml.ClipLoss, kml.clip_loss),
    "SigLipLoss": (kml.SigLipLoss, kml.siglip_loss),
}


def _close(actual, expected, what):
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=RTOL, atol=ATOL, err_msg=what)


def _close_grad(actual, expected, what):
    """1e-5 x the array's largest element + 1e-6 (the README's gradient tolerance); gradients
    that are 0 in exact arithmetic (ClipLoss's bias, the scale of identical rows) are stored
    as float32 left them, up to 2e-6: absolute."""
    expected = np.asarray(expected, np.float64)
    atol = RTOL * np.abs(expected).max() + ATOL
    if what.endswith(("logit_bias", "logit_scale", "logit_scale_log")):
        atol = max(atol, 4e-6 if np.abs(expected).max() < 4e-6 else 0.0)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=0, atol=atol,
                               err_msg=what)  # fmt: skip


def _features(case):
    return (np.asarray(case[k], case["dtype"]) for k in ("image_features", "text_features"))


def _unpacked(x, shape):
    """`(images, texts, scale = exp(t), bias)` of the packed `[I, T, t, bias]` vector."""
    size = shape[0] * shape[1]
    images = keras.ops.reshape(x[:size], shape)
    texts = keras.ops.reshape(x[size : 2 * size], shape)
    return images, texts, keras.ops.exp(x[2 * size]), x[2 * size + 1]


def _packed(case):
    images, texts = _features(case)
    bias = case["logit_bias"] or 0.0
    tail = np.array([case["logit_scale_log"], bias], case["dtype"])
    return np.concatenate([images.ravel(), texts.ravel(), tail]), images.shape


def _check_grads(grad, expected, shape, what):
    """`grad` of the packed vector against open_clip's `grads` (t's gradient is s * d/ds)."""
    size = shape[0] * shape[1]
    _close_grad(grad[:size].reshape(shape), expected["image_features"], f"{what}: image_features")
    _close_grad(grad[size : 2 * size].reshape(shape), expected["text_features"],
                f"{what}: text_features")  # fmt: skip
    _close_grad(grad[2 * size], expected["logit_scale_log"], f"{what}: logit_scale_log")
    if expected.get("logit_bias") is not None:
        _close_grad(grad[2 * size + 1], expected["logit_bias"], f"{what}: logit_bias")
    return grad[2 * size]


def _values(call, images, texts, scale, bias, **kwargs):
    fn = clip_values if call == "ClipLoss" else siglip_values
    return fn(images, texts, scale=scale, bias=bias, **kwargs)


def _rank_values(call, images, texts, all_images, all_texts, columns, scale, bias):
    """The `[b]` values of one rank: what the cross-replica path computes after the gather."""
    if call == "SigLipLoss":
        return siglip_rows(images, all_texts, columns, scale=scale, bias=bias)
    image_to_text, text_to_image = clip_rows(images, texts, all_images, all_texts, columns,
                                             scale=scale, bias=bias)  # fmt: skip
    return (image_to_text + text_to_image) / 2.0


def _values_only(run):
    """The gradients are eager (`support.value_and_grad`): checked in the eager tier, and on
    JAX, whose every tier is compiled."""
    return getattr(run, "compiled", False) and keras.backend.backend() != "jax"


def check_case(case, run):
    """`Class(**kwargs)(image, text, logit_scale, logit_bias)` of open_clip is
    `Class(scale=logit_scale, bias=logit_bias)(None, stack([image, text], 1))`: per-example
    values of the class and the function (dense and by tiles), their mean, ClipLoss's two
    directions; every gradient (`_values_only`), with `scale = exp(t)` (t's gradient)."""
    call = case["call"]
    cls, fn = CLASSES[call]
    images, texts = _features(case)
    y_pred = np.stack([images, texts], axis=1)
    arguments = dict(scale=case["logit_scale"], bias=case["logit_bias"])
    per_example = case["expected_per_example"]
    if call == "ClipLoss":
        expected = (np.asarray(per_example["image_to_text"]) + per_example["text_to_image"]) / 2
    else:
        expected = np.asarray(per_example)
    for loss in (
        cls(reduction=None, **arguments),
        lambda y, p: fn(y, p, **arguments),
        lambda y, p: fn(y, p, block_size=5, **arguments),
    ):
        values = run(loss, np.zeros(len(images), "float32"), y_pred)
        assert keras.backend.standardize_dtype(values.dtype) == case["dtype"]
        _close(keras.ops.convert_to_numpy(values), expected, case["id"])
        _close(np.mean(keras.ops.convert_to_numpy(values)), case["expected"], case["id"])
    if call == "ClipLoss":
        columns = np.arange(len(images), dtype="int32")
        directions = run(lambda i, t, c: clip_rows(i, t, i, t, c, **arguments), images, texts,
                         columns)  # fmt: skip
        for values, key in zip(directions, ("image_to_text", "text_to_image"), strict=True):
            _close(keras.ops.convert_to_numpy(values), per_example[key], f"{case['id']}: {key}")
            _close(np.mean(keras.ops.convert_to_numpy(values)), case["expected_parts"][key],
                   f"{case['id']}: {key}")  # fmt: skip
    if _values_only(run):
        return
    x, shape = _packed(case)
    with_bias = case["logit_bias"] is not None

    def mean(x):
        images, texts, scale, bias = _unpacked(x, shape)
        return keras.ops.mean(_values(call, images, texts, scale, bias if with_bias else None))

    value, grad = value_and_grad(mean, x)
    _close(value, case["expected"], case["id"])
    t_grad = _check_grads(grad, case["grads"], shape, case["id"])
    _close_grad(t_grad / case["logit_scale"], case["grads"]["logit_scale"],
                f"{case['id']}: logit_scale")  # fmt: skip


def check_distributed(case, run):
    """A case on `world_size` ranks of `local_batch` rows. Values: each rank's with
    `_rank_values` (its rows against every rank's, targets offset by `r * b`: open_clip's
    `local_loss=True`), or the global loss on every rank (`local_loss=False`); the global loss.
    Gradients (`_values_only`): the global ones as the mean of the rank losses, each rank's
    scale gradient, and its feature gradient as open_clip's gather leaves it (W x or 1 x the
    global rows; with `local_loss=True, gather_with_grad=False` only through its own rows)."""
    call, world, local = case["call"], case["world_size"], case["local_batch"]
    kwargs = case["kwargs"]
    local_loss = call == "SigLipLoss" or kwargs["local_loss"]
    images, texts = _features(case)
    arguments = dict(scale=case["logit_scale"], bias=case["logit_bias"])
    cls, _ = CLASSES[call]
    y_pred = np.stack([images, texts], axis=1)
    dummy = np.zeros(len(y_pred), "float32")
    global_value = np.mean(keras.ops.convert_to_numpy(run(cls(**arguments), dummy, y_pred)))
    _close(global_value, case["expected_global"], case["id"])

    def rank_loss(r):
        rows = slice(r * local, (r + 1) * local)
        return lambda i, t, c: keras.ops.mean(
            _rank_values(call, i[rows], t[rows], i, t, c, **arguments)
        )

    for r in range(world):
        columns = np.arange(r * local, (r + 1) * local, dtype="int32")
        value = run(rank_loss(r), images, texts, columns) if local_loss else global_value
        _close(keras.ops.convert_to_numpy(value), case["expected_per_rank"][r],
               f"{case['id']}: rank {r}")  # fmt: skip
    if _values_only(run):
        return
    x, shape = _packed(case)
    with_bias = case["logit_bias"] is not None

    def rank_value(x, r, live=True):
        images, texts, scale, bias = _unpacked(x, shape)
        bias = bias if with_bias else None
        if not local_loss:
            return keras.ops.mean(_values(call, images, texts, scale, bias))
        rows = slice(r * local, (r + 1) * local)
        keys = (images, texts) if live else tuple(map(keras.ops.stop_gradient, (images, texts)))
        columns = keras.ops.arange(r * local, (r + 1) * local, dtype="int32")
        return keras.ops.mean(_rank_values(call, images[rows], texts[rows], *keys, columns,
                                           scale, bias))  # fmt: skip

    def global_mean(x):
        return sum(rank_value(x, r) for r in range(world)) / world

    _, grad = value_and_grad(global_mean, x)
    _check_grads(grad, case["grads_global"], shape, f"{case['id']}: global")
    size = shape[0] * shape[1]
    gather_with_grad = call == "SigLipLoss" or kwargs["gather_with_grad"]
    for r, expected in enumerate(case["grads_per_rank"]):
        what = f"{case['id']}: rank {r}"
        _, own = value_and_grad(lambda x, r=r: rank_value(x, r, gather_with_grad), x)
        _close_grad(own[2 * size], expected["logit_scale_log"], f"{what}: logit_scale_log")
        rows = slice(r * local, (r + 1) * local)
        for k, key in enumerate(("image_features", "text_features")):
            if local_loss and not gather_with_grad:  # partial: through its own rows only
                actual = own[k * size : (k + 1) * size].reshape(shape)[rows]
            else:
                factor = world if gather_with_grad else 1
                actual = factor * grad[k * size : (k + 1) * size].reshape(shape)[rows]
            _close_grad(actual, expected[key], f"{what}: {key}")


GOLDEN = {
    ("clip.json", call): lambda case, run: (
        check_distributed if case["world_size"] > 1 else check_case
    )(case, run)
    for call in CLASSES
}
