"""The demo: backend choice, command line, protocol and baselines, `--data DIR`."""

import dataclasses
import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_metric_losses as kml
from keras_metric_losses.demo import experiment, report
from keras_metric_losses.demo.__main__ import main, parser, with_controls
from keras_metric_losses.demo.recipes import RECIPES, SOFTMAX_BASELINE

ROOT = pathlib.Path(__file__).resolve().parent.parent
BACKENDS = ("jax", "torch", "tensorflow")
BACKEND = keras.backend.backend()


def _env(**extra):
    """The environment of a child process that imports this tree's package."""
    root = os.path.dirname(os.path.dirname(os.path.abspath(experiment.__file__)))
    root = os.path.dirname(root)
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def _run(code, env, *, blocked=()):
    """Runs `code` in a fresh interpreter where the modules `blocked` cannot be imported (only
    installed ones need blocking: the test environments have one backend each)."""
    blocked = [m for m in blocked if importlib.util.find_spec(m) is not None]
    prelude = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.partition('.')[0] in {tuple(blocked)!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
    )
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )


# --- backend choice --------------------------------------------------------------------------


@pytest.mark.slow
def test_without_keras_backend_an_installed_backend_is_chosen_and_named(tmp_path):
    # Keras' configured backend (keras.json) is another one, which cannot be imported here.
    configured = next(b for b in BACKENDS if b != BACKEND)
    (tmp_path / "keras.json").write_text(json.dumps({"backend": configured}))
    others = [b for b in BACKENDS if b != BACKEND]
    code = (
        "import keras_metric_losses as kml, keras\n"
        "from keras_metric_losses.demo.__main__ import backend_line\n"
        "print(keras.backend.backend(), kml._backend.CHOSEN['configured'])\n"
        "print(backend_line())\n"
    )
    result = _run(code, _env(KERAS_HOME=str(tmp_path)), blocked=others)
    assert result.returncode == 0, result.stderr[-3000:]
    first, line = result.stdout.strip().splitlines()[-2:]
    assert first == f"{BACKEND} {configured}"
    assert f"chose {BACKEND}" in line and "KERAS_BACKEND" in line


@pytest.mark.slow
def test_an_unavailable_backend_is_one_readable_line(tmp_path):
    missing = next(b for b in BACKENDS if b != BACKEND)
    # As `python -m keras_metric_losses.demo`: runpy imports the package with argv[0] == "-m".
    code = (
        "import runpy\n"
        "sys.argv = ['-m', '--help']\n"
        "runpy.run_module('keras_metric_losses.demo', run_name='__main__', alter_sys=True)\n"
    )
    env = _env(KERAS_BACKEND=missing, KERAS_HOME=str(tmp_path))
    result = _run(code, env, blocked=[missing])
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"KERAS_BACKEND={missing}, but {missing} is not installed")
    assert f"(`pip install {missing}`)" in lines[0] and BACKEND in lines[0]
    # Imported as a library, the same message as a ModuleNotFoundError.
    result = _run("import keras_metric_losses", env, blocked=[missing])
    assert "ModuleNotFoundError: KERAS_BACKEND=" in result.stderr


@pytest.mark.slow
def test_kml_demo_script(tmp_path):
    script = pathlib.Path(sys.executable).parent / "kml-demo"
    if not script.exists():
        pytest.skip("the package is not installed with its console script in this environment")
    result = subprocess.run(
        [str(script), "--help"],
        capture_output=True,
        text=True,
        env=_env(KERAS_BACKEND=BACKEND, KERAS_HOME=str(tmp_path)),
        timeout=300,
        check=False,
    )
    assert result.returncode == 0 and "--data DIR" in result.stdout, result.stderr[-2000:]
    missing = [b for b in BACKENDS if importlib.util.find_spec(b) is None]
    if missing:
        result = subprocess.run(
            [str(script)],
            capture_output=True,
            text=True,
            env=_env(KERAS_BACKEND=missing[0], KERAS_HOME=str(tmp_path)),
            timeout=300,
            check=False,
        )
        assert result.returncode == 1 and "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_help_describes_every_option():
    p = parser()
    text = p.format_help()
    documented = (ROOT / "docs" / "demo.md").read_text()
    for action in p._actions:
        if not action.option_strings or action.dest == "help":
            continue
        assert action.help and len(action.help) > 20, action.dest
        assert action.option_strings[0] in text
        assert f"`{action.option_strings[0]}" in documented, action.option_strings[0]
    for name in RECIPES:
        assert name in text


# --- recipes and protocol ------------------------------------------------------------------


# The loss of each family in the default run (the brief of issue 18: one loss per family).
FAMILY_LOSSES = {
    "npairs": "NpairsLoss",
    "pn": "PNLoss",
    "nce": "SampledSoftmaxLoss",
    "triplet": "TripletSemiHardLoss",
    "ms": "MultiSimilarityLoss",
    "proxy": "ProxyAnchorLoss",
    "arcface": "ArcFaceLoss",
    "supcon": "SupConLoss",
    "small-batch": "MultiSimilarityLoss",
    "memory": "MultiSimilarityLoss",
}


def test_one_recipe_per_family_with_its_settings_shown():
    families = [recipe.family for recipe in RECIPES.values()]
    assert len(families) == len(set(families))
    assert {name: r.loss.__name__ for name, r in RECIPES.items()} == FAMILY_LOSSES
    for recipe in RECIPES.values():
        assert recipe.steps > 0 and recipe.learning_rate > 0
        assert recipe.settings().startswith(recipe.loss.__name__)
        if getattr(recipe.model, "description", None):  # the layer it trains through
            assert recipe.model.description in recipe.settings()
    assert SOFTMAX_BASELINE.baseline and not any(r.baseline for r in RECIPES.values())
    # Cross-batch memory is shown against its control: the same loss and batches, no memory.
    memory, control = RECIPES["memory"], RECIPES[RECIPES["memory"].control]
    assert "CrossBatchMemory(memory_size=" in memory.settings()
    assert dataclasses.replace(memory, model=control.model, control="", title="") == (
        dataclasses.replace(control, title="", family=memory.family)
    )


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nce", "memory"])
def test_a_reused_compiled_model_trains_as_a_fresh_one(name):
    """The demo compiles each recipe once and resets the model for the next seed: the same
    weights after training as a model built and compiled for that seed (NCE's sampler and
    the memory are state that must be reset too)."""
    split = experiment.load_digits_split()
    recipe = dataclasses.replace(RECIPES[name], steps=20)
    compiled = {}
    with experiment.small_network_threads():
        experiment.train(recipe, split, experiment.mlp_network, 0, compiled=compiled)
        reused, _ = experiment.train(recipe, split, experiment.mlp_network, 1, compiled=compiled)
        fresh, _ = experiment.train(recipe, split, experiment.mlp_network, 1)
    assert reused is compiled["network"]
    for a, b in zip(reused.weights, fresh.weights, strict=True):
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


def test_a_recipe_brings_its_control_and_the_verdict_compares_them():
    assert with_controls(["memory"]) == ["small-batch", "memory"]
    assert with_controls(["pn", "small-batch", "memory"]) == ["pn", "small-batch", "memory"]
    untrained = experiment.Result("untrained", [{"unseen": {"map@r": 0.3}}] * 2)
    control = experiment.Result("control", [], RECIPES["small-batch"])
    memory = experiment.Result("memory", [], RECIPES["memory"])
    control.runs += [{"unseen": {"map@r": 0.35}, "test": {"map@r": 0.8}}] * 2
    memory.runs += [
        {"unseen": {"map@r": 0.4}, "test": {"map@r": 0.9}},
        {"unseen": {"map@r": 0.3}, "test": {"map@r": 0.9}},
    ]
    results = {"untrained": untrained, "small-batch": control, "memory": memory}
    text, failures = report.verdicts(results)
    assert failures == ["memory"]  # not above the untrained network in the second seed
    assert "against control (the same loss and batches): MAP@R +0.000 held-out classes" in text
    assert "+0.100 held-out images (held-out classes better in 1 of 2 seeds)" in text
    for result in results.values():
        del result.runs[1]
    text, failures = report.verdicts(results)
    assert not failures
    assert "MAP@R +0.050 held-out classes, +0.100 held-out images\n" in text
    assert " of 1 seeds" not in text


def test_split_holds_out_classes_and_images():
    split = experiment.load_digits_split()
    assert split.train_classes == [0, 2, 4, 6, 8] and split.unseen_classes == [1, 3, 5, 7, 9]
    assert set(np.unique(split.y_train)) == set(range(5)) == set(np.unique(split.y_test))
    assert set(np.unique(split.y_unseen)) == {1, 3, 5, 7, 9}
    assert split.x_train.shape[1:] == split.x_test.shape[1:] == split.x_unseen.shape[1:] == (8, 8)
    # Held-out images of the training classes are not trained on (compared before lighting).
    from sklearn.datasets import load_digits

    digits = load_digits()
    clean = experiment.split_classes(
        (digits.images / 16.0).astype("float32"), digits.target, split.class_names, (0, 2, 4, 6, 8)
    )
    np.testing.assert_array_equal(split.x_train, clean.x_train)  # relit in each batch
    train = {row.tobytes() for row in clean.x_train}
    assert not any(row.tobytes() in train for row in clean.x_test)
    assert 0.15 < len(split.y_test) / (len(split.y_test) + len(split.y_train)) < 0.25
    # The held-out images are relit once, from their own seed.
    rng = np.random.default_rng(experiment.HELD_OUT_LIGHTING_SEED)
    np.testing.assert_array_equal(split.x_test, experiment.relight(clean.x_test, rng))
    np.testing.assert_array_equal(split.x_unseen, experiment.relight(clean.x_unseen, rng))


def test_the_lighting_is_fixed_by_the_seed_and_the_same_on_every_backend():
    """The task's augmentation is drawn with NumPy: a seed gives the same images, here and on
    every backend (this test runs under each, against the same numbers); another seed,
    other images."""
    split = experiment.load_digits_split()
    again = experiment.load_digits_split()
    np.testing.assert_array_equal(split.x_unseen, again.x_unseen)
    np.testing.assert_array_equal(split.x_test, again.x_test)
    # The same held-out images on every backend (NumPy's float64 maths, up to rounding).
    np.testing.assert_allclose(split.x_unseen.astype("float64").sum(), 47876.0042, rtol=1e-6)
    np.testing.assert_allclose(split.x_test.astype("float64").sum(), 9791.1790, rtol=1e-6)
    np.testing.assert_allclose(
        split.x_unseen[0, 3, :4], [0.25663677, 0.42993557, 0.32351178, 0.61653787], rtol=1e-5
    )
    x = split.x_train[:40]
    first = experiment.relight(x, np.random.default_rng(3))
    np.testing.assert_array_equal(first, experiment.relight(x, np.random.default_rng(3)))
    assert not np.allclose(first, experiment.relight(x, np.random.default_rng(4)))
    assert first.dtype == np.float32 and first.shape == x.shape and first.min() >= 0.0
    # It is lighting: the relit image is a contrast times the digit plus a smooth field and
    # noise, so a digit stays correlated with itself more than with the other digits.
    lit = first.reshape(len(x), -1) - first.reshape(len(x), -1).mean(1, keepdims=True)
    own = [np.corrcoef(lit[i], x[i].ravel())[0, 1] for i in range(len(x))]
    assert np.median(own) > 0.5

    # Training batches: relit anew in every batch from (seed, epoch, batch), identically when
    # rebuilt, differently for another seed or epoch.
    def batches(seed):
        sampler = kml.data.ClassBalancedSampler(
            split.x_train, split.y_train, classes_per_batch=5, samples_per_class=8, seed=seed
        )
        return experiment._Batches(sampler, lambda x, y: (x, y), split.augment)

    a, b, c = batches(0), batches(0), batches(1)
    np.testing.assert_array_equal(a[0][0], b[0][0])
    rows = a.sampler.batch_indices(0)
    assert not np.allclose(a[0][0], split.x_train[rows])  # relit, not the clean images
    assert not np.allclose(a[0][0], c[0][0])
    before = a[0][0]
    a.on_epoch_end()
    b.on_epoch_end()
    np.testing.assert_array_equal(a[0][0], b[0][0])
    assert not np.allclose(a[0][0], before)


def _small_run(tmp_path, loss):
    return main(["--loss", loss, "--seeds", "2", "--steps", "30", "--out", str(tmp_path)])


@pytest.mark.slow
def test_command_line_reports_baselines_seeds_and_writes_the_plot(tmp_path, capsys):
    results = _small_run(tmp_path, "pn")
    out = capsys.readouterr().out
    assert set(results) == {"pixels", "untrained", "softmax", "pn"}
    for row in ("raw inputs (pixels)", "untrained network", "softmax classifier", "PNLoss"):
        assert row in out
    assert "held-out classes MAP@R" in out and "held-out images MAP@R" in out
    assert re.search(r"PNLoss\s+\d\.\d{3} ± \d\.\d{3}", out)  # mean ± spread over 2 seeds
    assert "settings: PNLoss(" in out and "about" in out and "s left" in out  # progress
    assert "Backend:" in out.splitlines()[0]
    assert len(results["pn"].runs) == 2 and len(results["pixels"].runs) == 1
    png = tmp_path / "embeddings.png"
    assert png.stat().st_size > 20_000


def _results(**maps):
    """Results of one seed per value: `name=(title, recipe, [map@r per seed])`."""
    return {
        key: experiment.Result(title, [{"unseen": {"map@r": v}} for v in values], recipe)
        for key, (title, recipe, values) in maps.items()
    }


def test_verdicts_compare_with_the_strongest_baseline_in_every_seed():
    results = _results(
        pixels=("raw inputs (pixels)", None, [0.35]),
        untrained=("untrained network", None, [0.4, 0.42]),
        softmax=("softmax classifier", SOFTMAX_BASELINE, [0.44, 0.41]),
        pn=("good", RECIPES["pn"], [0.5, 0.45]),
        npairs=("bad", RECIPES["npairs"], [0.3, 0.41]),
        ms=("mixed", RECIPES["ms"], [0.6, 0.40]),
    )
    text, failures = report.verdicts(results)
    lines = {line.split()[0]: line for line in text.splitlines() if not line.startswith(" ")}
    assert lines["good"].endswith(
        "beats all three baselines on held-out-class MAP@R: +0.050 against the strongest, the "
        "softmax classifier; better than each in 2 of 2 seeds"
    )
    assert "bad" in lines and "does NOT beat all three baselines" in lines["bad"]
    # Above the strongest on average, but not in the second seed: reported and flagged.
    assert (
        "beats all three" in lines["mixed"] and "better than each in 1 of 2 seeds" in lines["mixed"]
    )
    assert failures == ["npairs", "ms"]
    # The softmax baseline is compared with the other two, and never flagged.
    assert (
        lines["softmax"].split(":")[0].endswith("beats the other baselines on held-out-class MAP@R")
    )
    assert "+0.015 against the strongest, the untrained network" in lines["softmax"]


def test_one_seed_is_worded_as_one_seed():
    results = _results(
        pixels=("raw inputs (pixels)", None, [0.35]),
        untrained=("untrained network", None, [0.4]),
        pn=("PNLoss", RECIPES["pn"], [0.5]),
    )
    for result in results.values():
        for run in result.runs:
            run.update(test={"map@r": 0.5, "recall@1": 0.9})
            run["unseen"]["recall@1"] = 0.9
    table = report.format_table(results, [0])
    assert table.splitlines()[-1] == "(seed 0; raw inputs have no seed)"
    assert "±" not in table and "over seeds" not in table
    text, failures = report.verdicts(results)
    assert not failures and "seeds" not in text
    assert (
        "PNLoss                   beats both baselines on held-out-class MAP@R: +0.100 against "
        "the strongest, the untrained network\n" in text
    )
    assert "over seeds 0, 1, 2;" in report.format_table(results | {}, [0, 1, 2])


def test_the_picture_shows_each_baseline_once(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat([1, 3, 5], 10)
    split = experiment.Split(
        *(np.zeros((0, 2)), np.zeros(0)) * 2,
        rng.normal(size=(30, 4)),
        labels,
        [str(d) for d in range(10)],
        [0, 2, 4],
        [1, 3, 5],
    )

    def run():
        return {"unseen": {"map@r": 0.5}, "embeddings": rng.normal(size=(30, 4))}

    results = {
        "pixels": experiment.Result("raw inputs (pixels)", [run()]),
        "untrained": experiment.Result("untrained network", [run(), run()]),
        "softmax": experiment.Result("softmax classifier", [run(), run()], SOFTMAX_BASELINE),
    }
    for name in ("pn", "ms", "npairs"):
        results[name] = experiment.Result(RECIPES[name].title, [run(), run()], RECIPES[name])
    titles = report.plot_embeddings(results, split, tmp_path / "e.png", "jax")
    assert len(titles) == len(results) == 6
    assert sum("untrained" in t for t in titles) == 1
    assert sum("raw inputs" in t for t in titles) == 1
    assert titles[0].startswith("before: raw inputs") and titles[1].startswith("before: untrained")
    assert [t.split("\n")[0] for t in titles[2:]] == [
        "after: softmax classifier",
        "after: PNLoss",
        "after: MultiSimilarityLoss",
        "after: NpairsLoss",
    ]
    assert (tmp_path / "e.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.skipif(
    keras.backend.backend() != "jax", reason="the README's demo runs on JAX (a minute a backend)"
)
def test_default_run_every_loss_beats_every_baseline_in_every_seed(tmp_path, capsys):
    """The demo's claim, on JAX as the README runs it: with the tuned settings every loss
    beats the raw pixels, the untrained network and the softmax classifier on held-out-class
    MAP@R, in each of the 3 seeds. The weights and batches are drawn with NumPy, so the other
    backends train the same networks up to float rounding; their runs here are the short
    ones above."""
    results = main(["--out", str(tmp_path)])
    out = capsys.readouterr().out
    baselines = [results[k].values("unseen", "map@r") for k in ("untrained", "softmax")]
    best = np.maximum(np.max(baselines, axis=0), results["pixels"].values("unseen", "map@r"))
    assert len(best) == 3
    for name, recipe in RECIPES.items():
        assert not recipe.note
        assert (results[name].values("unseen", "map@r") > best).all(), (name, out)
        assert f"{recipe.title:<24} beats all three baselines" in out
        assert "better than each in 3 of 3 seeds" in out
    assert "Not above every baseline" not in out
    assert (tmp_path / "embeddings.png").stat().st_size > 50_000


# --- your own data -------------------------------------------------------------------------


def _image_folder(root, classes=6, per_class=10, size=20):
    """Class folders of small PNGs: each class a bright square of its own colour near its own
    place, on noise."""
    rng = np.random.default_rng(0)
    for c in range(classes):
        folder = root / f"class_{c}"
        folder.mkdir(parents=True)
        for i in range(per_class):
            image = rng.integers(0, 140, size=(size, size, 3)).astype("uint8")
            top, left = 2 + 3 * (c // 3) + rng.integers(0, 3), 2 + 5 * (c % 3) + rng.integers(0, 3)
            image[top : top + 6, left : left + 6, c % 3] = 255
            keras.utils.save_img(folder / f"{i}.png", image)
    return root


@pytest.mark.slow
def test_own_data_trains_reports_and_saves(tmp_path, capsys):
    data = _image_folder(tmp_path / "images")
    out = tmp_path / "out"
    args = ["--data", str(data), "--loss", "pn", "--steps", "20", "--image-size", "20", "20"]
    results = main([*args, "--out", str(out)])
    text = capsys.readouterr().out
    assert "6 classes, 60 images of 20x20" in text
    assert "held-out classes MAP@R" in text and "held-out images MAP@R" in text
    assert set(results) == {"pixels", "untrained", "trained"}
    assert results["trained"].runs[0]["embeddings"].shape[0] == 30  # 3 held-out classes
    model = keras.saving.load_model(out / "model.keras")
    images = np.zeros((2, 20, 20, 3), "float32")
    assert keras.ops.convert_to_numpy(model(images)).shape == (2, 32)
    assert (out / "neighbours.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "args", [["--seeds", "0"], ["--steps", "-1"], ["--held-out", "1.5"], ["--loss", "nope"]]
)
def test_bad_options_are_usage_errors(args, capsys):
    with pytest.raises(SystemExit) as error:
        main(args)
    assert error.value.code == 2 and "error:" in capsys.readouterr().err


def test_own_data_errors_are_one_line(tmp_path):
    with pytest.raises(SystemExit, match="not a directory"):
        main(["--data", str(tmp_path / "nope")])
    (tmp_path / "empty" / "a").mkdir(parents=True)
    with pytest.raises(SystemExit, match="no images found"):
        main(["--data", str(tmp_path / "empty")])
    data = _image_folder(tmp_path / "two", classes=2, per_class=2)
    with pytest.raises(SystemExit, match="at least 4 class subfolders"):
        main(["--data", str(data)])


def test_retrieval_metrics_on_a_hand_made_case():
    from keras_metric_losses.demo.experiment import retrieval

    embeddings = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    assert retrieval(embeddings, np.array([0, 0, 1, 1])) == {"map@r": 1.0, "recall@1": 1.0}
    assert retrieval(embeddings, np.array([0, 1, 0, 1])) == {"map@r": 0.0, "recall@1": 0.0}
