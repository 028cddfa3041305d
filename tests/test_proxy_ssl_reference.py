"""The NumPy oracles of pml_proxy_reference.py and ssl_reference.py against the stored values.

pml_proxy.json: pytorch-metric-learning 2.9.0 (ProxyAnchor, ProxyNCA, NormalizedSoftmax, ArcFace,
CosFace, SphereFace, LargeMarginSoftmax, SoftTriple). tfsim_ssl.json: TensorFlow Similarity
0.17.1 (SimCLRLoss, Barlow, VicReg, SimSiamLoss; the XBM cases belong to another oracle). Every
case of each file is checked, whatever their number: the default-reducer scalar, every stored
sub-loss (values, indices, divisor) and the per-example values.

The files are looked up in tests/data, then in $KML_GOLDEN_DIR (default /work/shared/golden).
This module needs only NumPy and pytest (`pytest --noconftest` runs it without Keras).
"""

import json
import os
from pathlib import Path

import numpy as np
import pytest
from pml_proxy_reference import LOSSES as PML_LOSSES
from pml_proxy_reference import pml_proxy_reference
from ssl_reference import LOSSES as SSL_LOSSES
from ssl_reference import ssl_reference

RTOL, ATOL = 1e-5, 1e-6
SEARCH = [
    Path(__file__).parent / "data",
    Path(os.environ.get("KML_GOLDEN_DIR", "/work/shared/golden")),
]


def load_cases(name, skip_calls=()):
    for folder in SEARCH:
        path = folder / name
        if path.exists():
            cases = json.loads(path.read_text())["cases"]
            return [case for case in cases if case["call"] not in skip_calls]
    return []


PML_CASES = load_cases("pml_proxy.json")
SSL_CASES = load_cases("tfsim_ssl.json", skip_calls=("XBM",))


def close(actual, expected):
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=RTOL, atol=ATOL)


def cases_or_skip(cases, name):
    return cases or [pytest.param(None, marks=pytest.mark.skip(reason=f"{name} not found"))]


def case_id(case):
    return case["id"] if case else "missing"


@pytest.mark.parametrize("case", cases_or_skip(PML_CASES, "pml_proxy.json"), ids=case_id)
def test_pml_proxy_oracle(case):
    assert case["call"] in PML_LOSSES, case["call"]
    result = pml_proxy_reference(case)
    close(result.loss, case["expected"])
    for name, stored in case["expected_elements"].items():
        got = result.elements[name]
        assert len(got["losses"]) == stored["count"], name
        if "divisor" in stored:
            assert got["divisor"] == stored["divisor"], name
        if stored.get("omitted"):
            continue
        close(got["losses"], stored["losses"])
        np.testing.assert_array_equal(got["indices"], stored["indices"])
    if "expected_per_example" in case:
        close(result.per_anchor, case["expected_per_example"])
    # The per-anchor decomposition (per proxy elements for ProxyAnchor) averages to the scalar.
    assert result.per_anchor.shape == (len(case["labels"]),)
    close(np.mean(result.per_anchor), case["expected"])


@pytest.mark.parametrize("case", cases_or_skip(SSL_CASES, "tfsim_ssl.json"), ids=case_id)
def test_tfsim_ssl_oracle(case):
    assert case["call"] in SSL_LOSSES, case["call"]
    expected, per_example = ssl_reference(case)
    close(expected, case["expected"])
    if "expected_per_example" in case:
        assert per_example is not None
        close(per_example, case["expected_per_example"])
        close(np.mean(per_example), case["expected"])
    if case["call"] == "Barlow":
        assert per_example is None  # always a scalar, whatever the reduction
