"""update(): refits with R's update syntax, new data, another criterion."""
from __future__ import annotations

import warnings

import numpy as np
import pytest

import jaxhlm
from inference_refs import data, fit


@pytest.fixture(autouse=True)
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxhlm.SingularFitWarning)
        yield


def test_update_fixed_and_random_terms():
    m = fit("oats_unbal")
    m1 = m.update(". ~ . - Variety:nitro")
    assert m1.formula == "yield ~ Variety + nitro + (1 | Block/Variety)"
    assert m1.p == 6 and m1.reml and m1.nobs == m.nobs
    m2 = m1.update("~ . - (1 | Block/Variety) + (1 | Block)")
    assert m2.formula == "yield ~ Variety + nitro + (1 | Block)"
    assert list(m2.ngroups) == ["Block"]
    direct = jaxhlm.lmer("yield ~ Variety + nitro + (1 | Block)", data("oats_unbal"))
    np.testing.assert_allclose(m2.objective, direct.objective, rtol=1e-10)


def test_update_reml_and_data():
    m = fit("sleep_uncorr")
    ml = m.update(reml=False)
    assert not ml.reml and ml.formula == m.formula
    np.testing.assert_allclose(ml.fixef, m.fixef, rtol=1e-6)
    half = data("sleep_uncorr").iloc[:90]
    m3 = m.update(data=half)
    assert m3.nobs == 90
    m4 = m.update("log(.) ~ .")
    assert m4.formula.startswith("log(Reaction) ~") or m4.formula.startswith("np.log")


def test_update_errors():
    m = fit("sleep_uncorr")
    with pytest.raises(jaxhlm.ArgumentError, match="reml"):
        m.update(reml="yes")
    # (Days || Subject) is one term of the formula: removing its expansion's parts does nothing, as in R
    assert m.update(". ~ . - (1 | Subject)").formula == "Reaction ~ Days + (Days || Subject)"
    with pytest.raises(jaxhlm.FormulaError, match="no random-effect term"):
        m.update(". ~ . - (Days || Subject)")
