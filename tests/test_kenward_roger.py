"""Kenward-Roger df and adjusted standard errors against lmerTest/pbkrtest (REML fits)."""
from __future__ import annotations

import numpy as np
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
    a = kr._pieces_blocked(m)
    b = kr._pieces_dense(m, kr.MAX_Q)
    np.testing.assert_allclose(a[0], b[0], rtol=1e-9)
    for Pa, Pb in zip(a[1], b[1]):
        np.testing.assert_allclose(Pa, Pb, rtol=1e-8, atol=1e-12 * np.max(np.abs(Pb)))
    m_ = len(a[1])
    for i in range(m_):
        for j in range(i, m_):
            np.testing.assert_allclose(a[2][i][j], b[2][i][j], rtol=1e-8, atol=1e-12 * np.max(np.abs(b[2][i][j])))
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
