"""What the docs promise: the quick start runs as written, loss identifiers work as documented,
the error messages of the bad-inputs section, and the built site renders its formulas.

The site checks need MkDocs (`nox -s docs` installs it and runs them); the screenshot needs
Chromium (Debian: `apt-get install chromium`). Each skips with a message where its tool is
missing.
"""

import ast
import doctest
import functools
import html
import http.server
import importlib.util
import os
import pathlib
import re
import shutil
import subprocess
import sys
import threading

import keras
import numpy as np
import pytest
from support import python_block

import keras_metric_losses as kml

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


QUICK_STARTS = {
    "README": (ROOT / "README.md", "## Quick start"),
    "index-first-model": (DOCS / "index.md", "## First model"),
    "index-balanced": (DOCS / "index.md", "## Losses on embeddings need class-balanced batches"),
    "index-identifiers": (DOCS / "index.md", "## Naming a loss by string"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(QUICK_STARTS))
def test_quick_start_runs_as_written(name, tmp_path, monkeypatch):
    path, heading = QUICK_STARTS[name]
    monkeypatch.chdir(tmp_path)  # it may save a model in the working directory
    code = python_block(path, heading)
    namespace = {"__name__": "quick_start"}
    exec(compile(code, f"{path.name}:{heading}", "exec"), namespace)
    if "model" in namespace:
        assert isinstance(namespace["model"], keras.Model)
    if "history" in namespace:
        assert np.isfinite(namespace["history"].history["loss"]).all()
    if "embeddings" in namespace:
        assert namespace["embeddings"].shape == (512, 32)


# The loss pages whose examples train a model: every python block, in order, in one namespace
# (a later block uses the names of the earlier ones).
TRAINING_PAGES = [
    "losses/clip.md",
    "losses/sentence-transformers-ranking.md",
    "losses/sentence-transformers-pairs.md",
]


@pytest.mark.slow
@pytest.mark.parametrize("page", TRAINING_PAGES)
def test_the_training_examples_of_loss_pages_run_as_written(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = re.findall(r"```python\n(.*?)```", (DOCS / page).read_text(), re.S)
    assert blocks
    namespace = {"__name__": "loss_page"}
    for index, block in enumerate(blocks):
        exec(compile(block, f"{page}:{index}", "exec"), namespace)
    assert isinstance(namespace["model"], keras.Model)
    assert np.isfinite(namespace["model"].history.history["loss"]).all()


# --- install lines and release metadata ----------------------------------------------------

PYPROJECT = (ROOT / "pyproject.toml").read_text()
INSTALL_PAGES_PENDING = set()  # pages not yet held to the check below
INDEX_INSTALL = re.compile(r'pip install "keras-metric-losses\[(?P<extras>[^\]]*)\]"(?! @)')
EXTRAS = re.compile(r'(?:pip install "\.|keras-metric-losses)\[(?P<extras>[^\]]*)\]')


def install_pages():
    pages = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    return [p for p in pages if str(p.relative_to(ROOT)) not in INSTALL_PAGES_PENDING]


def test_install_lines_work_today_and_the_index_line_says_it_is_for_a_release():
    # The package is not on PyPI until a release: a page that shows the index line says so on
    # that line (or the line before) and gives the line that works today, from a clone.
    optional = PYPROJECT.split("[project.optional-dependencies]")[1].split("\n[")[0]
    declared = set(re.findall(r"^(\w+) = \[", optional, re.M))
    assert {"jax", "tensorflow", "torch", "all", "demo"} <= declared, declared
    index_lines = 0
    for path in install_pages():
        lines = path.read_text().splitlines()
        name = path.relative_to(ROOT)
        for number, line in enumerate(lines):
            for match in EXTRAS.finditer(line):
                extras = {extra.strip() for extra in match["extras"].split(",")}
                assert extras <= declared, f"{name}:{number + 1}: unknown extra in {line!r}"
            if INDEX_INSTALL.search(line):
                index_lines += 1
                context = " ".join(lines[max(number - 1, 0) : number + 1]).lower()
                assert "release" in context, (
                    f"{name}:{number + 1}: {line!r} works only once a release is on PyPI: say "
                    "so on that line (or the line before), next to the install from a clone"
                )
                assert 'pip install ".[' in "\n".join(lines), f"{name}: no install from a clone"
    assert index_lines >= 2  # README and the getting-started page keep it, for a release


def test_release_metadata_is_consistent():
    version = re.search(r'^version = "([^"]+)"', PYPROJECT, re.M).group(1)
    assert kml.__version__ == version
    changelog = (ROOT / "CHANGELOG.md").read_text()
    assert re.search(rf"^## {re.escape(version)}\b", changelog, re.M), "CHANGELOG: no " + version
    assert re.search(r'^license = "Apache-2.0"$', PYPROJECT, re.M)  # SPDX (setuptools >= 77)
    files = re.search(r"^license-files = \[(.*)\]$", PYPROJECT, re.M)
    assert files, "pyproject.toml: no license-files"
    for name in re.findall(r'"([^"]+)"', files.group(1)):
        assert (ROOT / name).is_file(), name
    assert "Apache License" in (ROOT / "LICENSE").read_text()
    assert re.search(r'^readme = "README.md"$', PYPROJECT, re.M)


def migration_blocks():
    """The runnable blocks of the migration page's before/after section: its data block, then
    every "# After" block (the PyTorch-loop one only on the PyTorch backend)."""
    text = (DOCS / "migration.md").read_text()
    text = text[text.index("## Before and after: runnable code") :]
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    wanted = {"# Data", "# After"}
    if keras.backend.backend() == "torch":
        wanted.add("# After (PyTorch backend)")
    firsts = [block.splitlines()[0] for block in blocks]
    assert all(first.startswith(("# Data", "# Before", "# After")) for first in firsts), firsts
    return [block for block, first in zip(blocks, firsts, strict=True) if first in wanted]


@pytest.mark.slow
def test_migration_after_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the word2vec block saves a model
    blocks = migration_blocks()
    assert len(blocks) >= 6
    namespace = {"__name__": "migration"}
    for block in blocks:
        exec(compile(block, "migration.md", "exec"), namespace)
    assert isinstance(namespace["trained"], keras.Model)


def test_migration_normalises_with_unit_normalization_not_a_lambda(tmp_path):
    # TF Addons' triplet tutorial normalises with `Lambda(l2_normalize)`: in Keras 3 that model
    # saves, but does not load in safe mode. The guide says so where it maps TF Addons.
    text = (DOCS / "migration.md").read_text()
    start, end = text.index("## From `tfa.losses`"), text.index("## From `tensorflow_similarity")
    section = text[start:end]
    assert "keras.layers.UnitNormalization()" in section, section[-1500:]
    assert "safe mode" in section and "l2_normalize" in section
    normalise = keras.layers.Lambda(lambda t: keras.ops.normalize(t, axis=-1))
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3), normalise])
    model.save(tmp_path / "lambda.keras")
    with pytest.raises(ValueError, match="Lambda"):
        keras.saving.load_model(tmp_path / "lambda.keras")


def text_block_after(path, marker):
    """The first ```text block after `marker` in `path`."""
    text = path.read_text()
    match = re.search(r"```text\n(.*?)```", text[text.index(marker) :], re.DOTALL)
    assert match, f"no text block after {marker!r} in {path}"
    return match.group(1)


def test_choosing_page_cites_the_demos_table_as_the_readme_gives_it():
    # The page's only numbers are the demo's table, in one marked section: when the demo's
    # table in the README changes, copy it to docs/choosing.md and check the sentences below it.
    readme = text_block_after(ROOT / "README.md", "Its table on JAX")
    choosing = text_block_after(DOCS / "choosing.md", "## The demo's numbers")
    assert choosing == readme, "docs/choosing.md: copy the README's demo table (and re-read it)"
    text = (DOCS / "choosing.md").read_text()
    numbers = re.compile(r"\b\d\.\d{3}\b")
    before = text[: text.index("## The demo's numbers")]
    assert not numbers.findall(before), "numbers outside the marked section"
    after = text[text.index("```text") :]
    for value in numbers.findall(after[after.index("```", 3) :]):
        assert value in readme, f"docs/choosing.md cites {value}, not in the demo's table"
    nav = [line.strip() for line in (ROOT / "mkdocs.yml").read_text().splitlines()]
    after_getting_started = nav[nav.index("- Getting started: index.md") + 1]
    assert after_getting_started == "- Which loss to start with: choosing.md"


FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


def fenced_blocks(path):
    """The fenced code blocks of a Markdown file: (info string, first line number, code)."""
    blocks, opened = [], None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened = (match["indent"], match["fence"], match["info"].strip(), number, [])
        elif (
            match
            and match["fence"][0] == opened[1][0]
            and len(match["fence"]) >= len(opened[1])
            and not match["info"].strip()
        ):
            blocks.append((opened[2], opened[3], "\n".join(opened[4])))
            opened = None
        else:
            assert not (match and match["info"].strip()), (
                f"{path.relative_to(ROOT)}:{number}: a fence opens inside the block of line "
                f"{opened[3]} (a closing fence is missing)"
            )
            indent = opened[0]
            opened[4].append(line[len(indent) :] if line.startswith(indent) else line)
    assert opened is None, f"{path.relative_to(ROOT)}:{opened[3]}: code fence never closed"
    return blocks


def test_every_python_block_in_the_docs_parses():
    paths = [ROOT / "README.md", *sorted(DOCS.rglob("*.md"))]
    checked = 0
    for path in paths:
        for info, number, code in fenced_blocks(path):
            if info.split(" ")[0] not in ("python", "py"):
                continue
            first = code.strip().splitlines()[0] if code.strip() else "(empty block)"
            # A console session (`>>>` prompts, as in a doctest): each example must parse.
            examples = doctest.DocTestParser().get_examples(code) if first.startswith(">>>") else []
            try:
                for source in [example.source for example in examples] or [code]:
                    ast.parse(source)
            except SyntaxError as error:
                pytest.fail(
                    f"{path.relative_to(ROOT)}:{number}: the python block starting with "
                    f"{first!r} does not parse: {error}"
                )
            checked += 1
    assert checked > 20


# --- loss identifiers --------------------------------------------------------------------------


def test_registered_names_are_not_loss_strings_but_the_documented_forms_work():
    # Keras 3 looks a string loss up among its own losses only (`keras.losses.get`), with no
    # public hook for a package's registered names: the docs give the forms that work.
    with pytest.raises(ValueError, match="Could not interpret loss identifier"):
        keras.losses.get("keras_metric_losses>PNLoss")
    loss = keras.losses.get({"class_name": "keras_metric_losses>PNLoss", "config": {"margin": 0.5}})
    assert isinstance(loss, kml.PNLoss) and loss.get_config()["margin"] == 0.5
    cls = keras.saving.get_registered_object("keras_metric_losses>PNLoss")
    assert cls is kml.PNLoss
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=loss)
    assert model.loss is loss
    text = (DOCS / "index.md").read_text()
    assert '"class_name": "keras_metric_losses>PNLoss"' in text
    assert "get_registered_object" in text


# --- error messages of the bad-inputs section --------------------------------------------------


def test_nce_names_the_users_arguments_when_num_sampled_exceeds_num_classes():
    weights, biases = np.zeros((10, 4), "float32"), np.zeros(10, "float32")
    labels, inputs = np.zeros((2, 1), "int32"), np.zeros((2, 4), "float32")
    for fn in (kml.nce_loss, kml.sampled_softmax_loss):
        with pytest.raises(ValueError, match="num_sampled=20, num_classes=10") as error:
            fn(weights, biases, labels, inputs, num_sampled=20, num_classes=10)
        assert "range_max" not in str(error.value) and "unique" not in str(error.value)


def test_nce_accepts_tensorflows_name_argument():
    weights = np.random.default_rng(0).normal(size=(10, 4)).astype("float32")
    biases, labels = np.zeros(10, "float32"), np.array([[1], [2]])
    inputs = np.ones((2, 4), "float32")
    for fn in (kml.nce_loss, kml.sampled_softmax_loss):
        a = fn(weights, biases, labels, inputs, num_sampled=3, num_classes=10, seed=1)
        b = fn(weights, biases, labels, inputs, 3, 10, seed=1, name="my_loss")
        np.testing.assert_allclose(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))


@pytest.mark.slow
def test_string_labels_through_fit_fail_in_keras_as_documented():
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
    model.compile(optimizer="sgd", loss=kml.PNLoss())
    x = np.zeros((4, 3), "float32")
    labels = np.array(["cat", "dog", "cat", "dog"])
    with pytest.raises(Exception, match="str") as error:
        model.fit(x, labels, verbose=0)
    # Keras converts the labels before any loss sees them; the docs say so and give the fix.
    text = (DOCS / "concepts.md").read_text() + (DOCS / "index.md").read_text()
    assert "np.unique(labels, return_inverse=True)" in text
    ids = np.unique(labels, return_inverse=True)[1]
    model.fit(x, ids, verbose=0)
    assert "str" in str(error.value).lower()


# --- the built site ------------------------------------------------------------------------


def _needs(module, why):
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed: {why} (`nox -s docs` runs this check)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """The built site: `KML_DOCS_SITE` if set (nox builds it first), else built here."""
    given = os.environ.get("KML_DOCS_SITE")
    if given:
        return pathlib.Path(given)
    _needs("mkdocs", "the site cannot be built")
    _needs("latex2mathml", "formulas cannot be converted")
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.mark.slow
def test_site_has_mathml_and_no_raw_formulas(site):
    pages = sorted(site.glob("losses/*/index.html"))
    assert pages
    formulas = 0
    for page in pages:
        html = page.read_text()
        assert 'class="arithmatex"' not in html, f"unconverted formula in {page}"
        formulas += html.count("<math ")
    assert formulas > 5
    # Nothing loaded from another host: no MathJax/KaTeX script, no web font.
    for page in [*pages, site / "index.html"]:
        html = page.read_text()
        assert not re.search(r"<(script|link)[^>]+(src|href)=\"(https?:)?//", html), page
    api = (site / "api" / "index.html").read_text()
    assert "keras_metric_losses.losses.PNLoss" in api
    assert "LossFunctionWrapper" not in api  # private base classes are not shown
    benchmarks = (site / "benchmarks" / "index.html").read_text()
    assert "benchmarks.png" in benchmarks and (site / "benchmarks.png").exists()


MATH_ELEMENT = re.compile(r"<math\b.*?</math>", re.DOTALL)
# What latex2mathml leaves as text when it does not know a command (`\arg`), or a `$` of a
# formula that Markdown did not delimit (`$$$$` from two display blocks with no blank line).
RAW_TEX = re.compile(r"\\[A-Za-z]+|\$")


@pytest.mark.slow
def test_site_formulas_hold_no_raw_tex(site):
    pages = sorted(site.rglob("*.html"))
    formulas, leftovers = 0, []
    for page in pages:
        for element in MATH_ELEMENT.findall(page.read_text()):
            formulas += 1
            text = html.unescape(re.sub(r"<[^>]+>", "", element))
            found = RAW_TEX.findall(text)
            if found:
                leftovers.append(f"{page.relative_to(site)}: {found} in {text[:160]!r}")
    assert formulas > 50
    assert not leftovers, "raw TeX inside MathML:\n" + "\n".join(leftovers)


@pytest.mark.slow
def test_site_holds_no_python_files(site):
    # The build hooks (mkdocs.yml `hooks:`, the griffe extension) are not pages.
    assert not sorted(str(p.relative_to(site)) for p in site.rglob("*.py"))


def _chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if shutil.which(name):
            return shutil.which(name)
    return None


@pytest.mark.slow
def test_a_loss_page_renders_in_headless_chromium(site, tmp_path):
    browser = _chromium()
    if browser is None:
        pytest.skip(
            "Chromium is not installed (Debian: `apt-get install chromium`): the browser "
            "screenshot of a loss page is skipped"
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site), **{})
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/losses/npairs/"
    shot = pathlib.Path(os.environ.get("KML_DOCS_SCREENSHOT", tmp_path / "npairs.png"))
    common = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    try:
        result = subprocess.run(
            [*common, f"--screenshot={shot}", "--window-size=1100,1400", url],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0 and shot.exists(), result.stderr[-2000:]
        dom = subprocess.run(
            [*common, "--dump-dom", url], capture_output=True, text=True, timeout=120, check=False
        ).stdout
    finally:
        server.shutdown()
    assert "<math" in dom and "\\[" not in dom
    image = shot.read_bytes()
    assert image[:8] == b"\x89PNG\r\n\x1a\n" and len(image) > 50_000
    print(f"screenshot of {url}: {shot}")


ADDING = DOCS / "adding-a-loss.md"


def test_adding_a_loss_shows_the_real_loss_and_its_example_runs():
    """The guide's module is the file itself, its registration and spec lines are the real
    ones, and its usage block runs."""
    module = ROOT / "keras_metric_losses" / "losses" / "pair" / "intra_pair_variance.py"
    assert python_block(ADDING, "## 1. The module") == module.read_text()
    family = (module.parent / "__init__.py").read_text()
    assert "    intra_pair_variance,\n" in python_block(ADDING, "## 2. The family") and (
        "    intra_pair_variance,\n" in family
    )
    spec = python_block(ADDING, "## 3. The test spec")
    specs = (ROOT / "tests" / "specs" / "pair.py").read_text()
    for entry in (spec[spec.index("    Spec(") : spec.index("    ),\n") + 7],
                  '("pml_more.json", "IntraPairVarianceLoss"): check_pml_more,'):  # fmt: skip
        assert entry.replace("  # PML's values and gradients", "") in specs, entry
    namespace = {"__name__": "adding_a_loss"}
    exec(compile(python_block(ADDING, "## Using it"), "adding-a-loss.md", "exec"), namespace)
    assert namespace["pml_settings"][0] == "IntraPairVarianceLoss"
