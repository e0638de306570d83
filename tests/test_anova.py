"""Likelihood-ratio tests of nested models against lme4's anova()."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import jaxhlm
from conftest import fit_case, load_cases, load_data, load_reference
from jaxhlm._src.infer.anova import chibar_pvalue

ANOVA_CASES = [c["id"] for c in load_cases("anova")]


@pytest.mark.parametrize("case_id", ANOVA_CASES)
def test_anova_matches_lme4(case_id):
    ref = load_reference(case_id)
    models = [fit_case(i) for i in ref["models"]]
    tab = jaxhlm.anova(*models)
    t = ref["table"]
    assert list(tab.index) == t["rownames"]
    assert list(tab.columns) == ref["columns"]
    assert list(tab["npar"]) == t["npar"]
    np.testing.assert_allclose(tab["logLik"], t["logLik"], rtol=0, atol=5e-3)
    np.testing.assert_allclose(tab["AIC"], t["AIC"], rtol=0, atol=1e-2)
    np.testing.assert_allclose(tab["BIC"], t["BIC"], rtol=0, atol=1e-2)
    np.testing.assert_allclose(tab["deviance"], t["deviance"], rtol=0, atol=1e-2)
    assert np.isnan(tab["Chisq"].iloc[0]) and t["Chisq"][0] is None
    np.testing.assert_allclose(tab["Chisq"].iloc[1:], t["Chisq"][1:], rtol=0, atol=2e-3)
    np.testing.assert_array_equal(tab["Df"].iloc[1:], t["Df"][1:])
    np.testing.assert_allclose(tab["Pr(>Chisq)"].iloc[1:], t["Pr(>Chisq)"][1:], rtol=0.02)
    text = str(tab)
    for line in ref["print_text"]:
        if ":" in line and "~" in line:  # the "label: formula" lines
            assert line in text


def test_anova_order_names_and_print():
    m1, m2, m3 = fit_case("nels_m1"), fit_case("nels_m2"), fit_case("nels_m3")
    tab = jaxhlm.anova(m2, m1, m3, names=["slope", "intercept", "null"])
    assert list(tab.index) == ["null", "intercept", "slope"]  # ordered by npar
    assert isinstance(tab, pd.DataFrame)
    lines = str(tab).splitlines()
    assert lines[0] == "Models:"
    assert lines[1] == "null: mathscore ~ 1 + (1 | sch_id)"
    assert any(ln.startswith("intercept ") and "<2e-16 ***" in ln for ln in lines)
    # derived frames are plain DataFrames
    assert type(tab[["AIC"]]) is pd.DataFrame


def test_boundary_mixture_pvalue():
    m1, m2 = fit_case("nels_m1"), fit_case("nels_m2")
    tab = jaxhlm.anova(m1, m2, boundary=True)
    x, df = tab["Chisq"].iloc[1], tab["Df"].iloc[1]
    want = 0.5 * scipy.stats.chi2.sf(x, df - 1) + 0.5 * scipy.stats.chi2.sf(x, df)
    assert tab["Pr(>Chisq) boundary"].iloc[1] == pytest.approx(want, rel=1e-12)
    assert tab["Pr(>Chisq) boundary"].iloc[1] < tab["Pr(>Chisq)"].iloc[1]
    # one-df test: half the chi2(1) tail; chi2(0) is a point mass at 0
    assert chibar_pvalue(2.0, 1) == pytest.approx(0.5 * scipy.stats.chi2.sf(2.0, 1), rel=1e-12)
    assert chibar_pvalue(0.0, 1) == pytest.approx(1.0)
    assert np.isnan(chibar_pvalue(np.nan, 1))


def test_reml_fits_are_refitted_by_ml():
    reml_rs, reml_uc = fit_case("sleepstudy_rs_reml"), fit_case("sleepstudy_uncorr_reml")
    with pytest.warns(jaxhlm.JaxhlmWarning, match="refitting model"):
        tab = jaxhlm.anova(reml_rs, reml_uc)
    assert tab.attrs["refitted_ml"]
    ml_rs = fit_case("sleepstudy_rs_ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml_uc = jaxhlm.lmer("Reaction ~ Days + (Days || Subject)", load_data("sleepstudy.csv"), reml=False)
    want = jaxhlm.anova(ml_uc, ml_rs)
    np.testing.assert_allclose(tab["logLik"].to_numpy(), want["logLik"].to_numpy(), rtol=0, atol=1e-6)
    np.testing.assert_allclose(tab["Chisq"].iloc[1], want["Chisq"].iloc[1], atol=1e-5)
    assert list(tab.index) == ["sleepstudy_uncorr_reml", "sleepstudy_rs_reml"]
    # the models themselves are not changed
    assert reml_rs.reml and reml_uc.reml


def test_different_data_refused():
    ss = load_data("sleepstudy.csv")
    m = fit_case("sleepstudy_rs_ml")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fewer = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", ss.iloc[:170], reml=False)
        shifted = ss.copy()
        shifted["Reaction"] = shifted["Reaction"] + 1.0
        other = jaxhlm.lmer("Reaction ~ Days + (1 | Subject)", shifted, reml=False)
    with pytest.raises(jaxhlm.ModelComparisonError, match="same size"):
        jaxhlm.anova(m, fewer)
    with pytest.raises(jaxhlm.ModelComparisonError, match="different data"):
        jaxhlm.anova(m, other)
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.anova(m)
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.anova(m, "not a model")
