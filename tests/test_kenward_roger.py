"""Kenward-Roger df and adjusted standard errors against lmerTest/pbkrtest (REML fits)."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from conftest import fit_case, load_cases, load_reference
from jaxhlm._src.infer import kenward_roger as kr

KR_CASES = []
for c in load_cases("lmer"):
    ref = load_reference(c["id"])
    if ref["REML"] and isinstance(ref.get("kenward_roger"), dict) and "df" in ref["kenward_roger"]:
        KR_CASES.append(c["id"])


def _as_array(v, names):
    return np.array([v[k] for k in names]) if isinstance(v, dict) else np.atleast_1d(np.asarray(v, float))


@pytest.mark.parametrize("case_id", KR_CASES)
def test_kr_matches_pbkrtest(case_id):
    ref = load_reference(case_id)
    m = fit_case(case_id)
    tab = m.coef_table_kr()
    names = list(tab.index)
    want = ref["kenward_roger"]
    np.testing.assert_allclose(tab["df"].to_numpy(), _as_array(want["df"], names), rtol=0.02)
    np.testing.assert_allclose(tab["Std. Error"].to_numpy(), _as_array(want["se"], names), rtol=5e-3)
    np.testing.assert_allclose(tab["Estimate"].to_numpy(), m.fixef.to_numpy())
    assert list(tab.columns) == ["Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"]


def test_kr_tight_where_lme4_converged():
    # balanced designs: KR df are exact integers; elsewhere agreement to ~1e-5
    m = fit_case("sleepstudy_rs_reml")
    np.testing.assert_allclose(m.coef_table_kr()["df"], [17.0, 17.0], rtol=1e-9)
    m = fit_case("penicillin_reml")
    ref = load_reference("penicillin_reml")["kenward_roger"]
    np.testing.assert_allclose(m.coef_table_kr()["df"].iloc[0], _as_array(ref["df"], ["(Intercept)"])[0], rtol=1e-4)


@pytest.mark.parametrize("case_id", ["sleepstudy_rs_reml", "sleepstudy_uncorr_reml", "cake_cat_reml"])
def test_blocked_and_dense_paths_agree(case_id):
    """One grouping factor: per-level blocks; the dense Q x Q path must give the same numbers."""
    m = fit_case(case_id)
    a = kr._pieces_blocked(m)  # in the statistics' preconditioned columns X_c = X A
    b = kr._pieces_dense(m, kr.MAX_Q)  # in the original columns
    A = np.asarray(m.xform.A)
    c = lambda M: A.T @ M @ A  # noqa: E731
    np.testing.assert_allclose(a[0], c(b[0]), rtol=1e-9, atol=1e-12 * np.max(np.abs(a[0])))  # (zeros: rounding)
    for Pa, Pb in zip(a[1], b[1]):
        np.testing.assert_allclose(Pa, c(Pb), rtol=1e-8, atol=1e-12 * np.max(np.abs(c(Pb))))
    m_ = len(a[1])
    for i in range(m_):
        for j in range(i, m_):
            np.testing.assert_allclose(a[2][i][j], c(b[2][i][j]), rtol=1e-8,
                                       atol=1e-12 * np.max(np.abs(c(b[2][i][j]))))
    np.testing.assert_allclose(a[3], b[3], rtol=1e-8)


def test_adjusted_vcov_is_larger_and_summary_uses_it():
    m = fit_case("sleepstudy_uncorr_reml")
    parts = kr.kr_parts(m)
    np.testing.assert_allclose(parts["Phi"], m.vcov.to_numpy(), rtol=1e-6)
    assert np.all(np.linalg.eigvalsh(parts["PhiA"] - parts["Phi"]) > -1e-12)
    s = m.summary(ddf="kenward-roger")
    np.testing.assert_allclose(s.coef_table["df"], m.coef_table_kr()["df"])


def test_kr_refuses_ml_fits_and_huge_q():
    with pytest.raises(jaxhlm.InferenceError, match="REML"):
        fit_case("sleepstudy_rs_ml").coef_table_kr()
    with pytest.raises(jaxhlm.InferenceError, match="max_q"):
        kr.kr_parts(fit_case("penicillin_reml"), max_q=10)


# ---------------------------------------------------------------------------- more designs (helper C)
from inference_refs import fit as inf_fit  # noqa: E402
from inference_refs import ids_with, ref as inf_ref, table  # noqa: E402

KR_EXTRA = [c for c in ids_with("kenward_roger") if "vcov_adj" in inf_ref(c)["kenward_roger"]]


@pytest.mark.parametrize("case_id", KR_EXTRA)
def test_kr_matches_pbkrtest_more_designs(case_id):
    """Balanced and unbalanced split plots, a missing cell, crossed and nested factors, random slopes."""
    m = inf_fit(case_id)
    want = table(inf_ref(case_id)["kenward_roger"])
    got = m.coef_table_kr()
    np.testing.assert_allclose(got["df"], want["df"], rtol=5e-4)
    np.testing.assert_allclose(got["Std. Error"], want["Std. Error"], rtol=2e-4)
    Va = np.array(inf_ref(case_id)["kenward_roger"]["vcov_adj"]["matrix"], dtype=float)
    np.testing.assert_allclose(kr.kr_parts(m)["PhiA"], Va, rtol=1e-3, atol=2e-5 * np.abs(Va).max())


def test_balanced_split_plot_whole_plot_df_is_exactly_two():
    # 3 blocks x 2 whole-plot levels: whole-plot error df (3-1)(2-1) = 2 (textbook, pbkrtest, Satterthwaite)
    tab = inf_fit("splitplot3_additive").coef_table_kr()
    np.testing.assert_allclose(tab.loc["Aa2", "df"], 2.0, rtol=1e-10)
    from jaxhlm._src.infer.ftests import anova_table

    t3 = anova_table(inf_fit("splitplot3"), type=3, ddf="kenward-roger")
    np.testing.assert_allclose(t3.loc["A", "DenDF"], 2.0, rtol=1e-10)
    # the general expression is 0/0 there: before the fix one spelling of the same model gave 1.8963
    oats = pd.read_csv(os.path.join(os.path.dirname(__file__), "data", "Oats.csv"))
    oats = oats[oats.Block.isin(["IV", "V", "VI"]) & oats.Variety.isin(["Victory", "Marvellous"])].copy()
    oats["nitro"] = pd.Categorical(oats["nitro"])
    dfs = []
    for f in ("yield ~ nitro + Variety + (1 | Block/Variety)", "yield ~ nitro + Variety + (1 | Block) + (1 | Block:Variety)"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = jaxhlm.lmer(f, oats)
        dfs.append(m.coef_table_kr().loc["VarietyVictory", "df"])
    np.testing.assert_allclose(dfs, [2.0, 2.0], rtol=1e-9)


def test_kr_scaling_closed_forms():
    # one contrast: df = 2 / A for every A (the general formula, evaluated away from A = 1)
    for A in (0.01, 0.3, 0.7, 1.0, 1.6):
        df, sc = kr._kr_scaling(A, A, 1)
        assert df == pytest.approx(2 / A, rel=1e-12) and sc == 1.0
    # A1 = q A2 (balanced): df = 2 q / A2, no scaling; compare with the general formula nearby
    for q in (2, 3, 5):
        for a2 in (0.05, 0.4):
            df, sc = kr._kr_scaling(q * a2, a2, q)
            assert df == pytest.approx(2 * q / a2, rel=1e-12) and sc == 1.0
            df_n, sc_n = kr._kr_scaling(q * a2 * (1 + 1e-7), a2, q)
            assert df_n == pytest.approx(df, rel=1e-5) and sc_n == pytest.approx(1.0, abs=1e-5)
    assert kr._kr_scaling(0.0, 0.0, 2) == (float("inf"), 1.0)
