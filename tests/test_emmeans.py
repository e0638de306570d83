"""emmeans(): estimates, SE, df (Kenward-Roger / Satterthwaite / asymptotic), CIs and pairs vs R."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from inference_refs import CASES, fit, num, ref
from jaxhlm._src.infer.emmeans import _adjust_p, emmeans

EMM = []
for cid in CASES:
    for lab, e in (ref(cid).get("emmeans") or {}).items():
        for mode in ("default", "satterthwaite", "asymptotic"):
            if mode in e:
                EMM.append((cid, lab, mode))


def _run(cid, lab, mode):
    e = ref(cid)["emmeans"][lab]
    specs = e["specs"]
    return e, e[mode], emmeans(fit(cid), specs, by=e.get("by"), at=e.get("at"),
                              lmer_df=None if mode == "default" else mode)


def _col(t, name):
    return num(t[name]) if name in t else None


@pytest.mark.parametrize("cid,lab,mode", EMM, ids=[f"{c}-{lab}-{m}" for c, lab, m in EMM])
def test_emmeans_match_r(cid, lab, mode):
    e, want, got = _run(cid, lab, mode)
    t = want["table"]
    assert got.attrs["df_method"] == want["df_method"]
    assert list(got.columns) == want["columns"]
    # the linear functions are exact; with R's coefficients they give R's estimates to 1e-10
    W = np.array(want["linfct"]["matrix"], dtype=float)
    np.testing.assert_allclose(got.linfct.to_numpy(), W, atol=1e-10)
    rbeta = np.array(list(ref(cid)["beta"].values()))
    np.testing.assert_allclose(W @ rbeta, num(t["emmean"]), rtol=1e-10)
    # jaxhlm's own fit differs from lme4's by ~1e-5 relative at most in these cases
    np.testing.assert_allclose(got["emmean"], num(t["emmean"]), rtol=1e-5)
    np.testing.assert_allclose(got["SE"], num(t["SE"]), rtol=1e-3)
    df = num(t["df"])
    if np.all(np.isnan(df)):  # R writes Inf as null
        assert np.all(np.isinf(got["df"]))
    else:
        np.testing.assert_allclose(got["df"], df, rtol=1e-3)
    lo = "lower.CL" if "lower.CL" in t else "asymp.LCL"
    hi = "upper.CL" if "upper.CL" in t else "asymp.UCL"
    np.testing.assert_allclose(got[lo], num(t[lo]), rtol=1e-4)
    np.testing.assert_allclose(got[hi], num(t[hi]), rtol=1e-4)
    for v in want["columns"][: list(want["columns"]).index("emmean")]:
        assert [str(x) for x in got[v]] == [str(x) for x in t[v]] or \
            np.allclose(pd.to_numeric(got[v]).to_numpy(float), num(t[v]))
    if mode == "default":
        note = any("misleading" in m for m in want["messages"])
        assert note == any("misleading" in m for m in got.attrs["messages"])
    assert [m for m in got.attrs["mesg"] if m.startswith("Results are averaged")] == \
        [m.strip() for m in want["mesg"] if m.startswith("Results are averaged")]


@pytest.mark.parametrize("cid,lab,mode", EMM, ids=[f"{c}-{lab}-{m}" for c, lab, m in EMM])
def test_pairs_match_r(cid, lab, mode):
    e, want, got = _run(cid, lab, mode)
    pw = want["pairs"]["table"]
    p = got.pairs()
    assert list(p["contrast"]) == pw["contrast"]
    assert list(p.columns) == want["pairs"]["columns"]
    se = num(pw["SE"])
    np.testing.assert_allclose(p["estimate"], num(pw["estimate"]), atol=1e-4 * se.max())
    np.testing.assert_allclose(p["SE"], se, rtol=1e-3)
    df = num(pw["df"])
    if not np.all(np.isnan(df)):
        np.testing.assert_allclose(p["df"], df, rtol=1e-3)
    W = np.array(want["pairs"]["linfct"]["matrix"], dtype=float)
    np.testing.assert_allclose(p.attrs["linfct"].to_numpy(), W, atol=1e-10)
    # Tukey p-values: R's ptukey and scipy's studentized range agree to ~1e-7 absolute
    pv = num(pw["p.value"])
    np.testing.assert_allclose(p["p.value"], pv, rtol=2e-3, atol=1e-6)
    if "pairs_bonferroni" in want:
        np.testing.assert_allclose(got.pairs("bonferroni")["p.value"], num(want["pairs_bonferroni"]["p.value"]),
                                   rtol=2e-3, atol=1e-10)
        np.testing.assert_allclose(got.pairs("none")["p.value"], num(want["pairs_none"]["p.value"]),
                                   rtol=2e-3, atol=1e-10)


def test_kr_se_uses_the_adjusted_covariance():
    m = fit("oats_unbal")
    kr = emmeans(m, "Variety")
    sat = emmeans(m, "Variety", lmer_df="satterthwaite")
    assert np.all(kr["SE"] > sat["SE"])  # unbalanced: Phi_A > vcov
    np.testing.assert_allclose(kr["emmean"], sat["emmean"])


def test_ml_fit_kr_uses_the_reml_refit():
    m = fit("oats_unbal_ml")
    kr = emmeans(m, "nitro")
    reml = m.update(reml=True)
    from jaxhlm._src.infer.kenward_roger import kr_parts

    L = kr.linfct.to_numpy()
    np.testing.assert_allclose(kr["SE"], np.sqrt(np.einsum("ki,ij,kj->k", L, kr_parts(reml)["PhiA"], L)), rtol=1e-10)
    np.testing.assert_allclose(kr["emmean"], L @ m.fixef.to_numpy())


def test_limits_switch_df_methods():
    m = fit("oats_unbal")
    a = emmeans(m, "Variety", pbkrtest_limit=10)
    assert a.attrs["df_method"] == "satterthwaite" and any("pbkrtest_limit" in s for s in a.attrs["messages"])
    b = emmeans(m, "Variety", pbkrtest_limit=10, lmertest_limit=10)
    assert b.attrs["df_method"] == "asymptotic" and "asymp.LCL" in b.columns
    assert "z.ratio" in b.pairs().columns


def test_level_and_method():
    m = fit("splitplot3")
    e90 = m.emmeans("A", level=0.9)
    e95 = m.emmeans("A")
    assert np.all(e90["upper.CL"] - e90["lower.CL"] < e95["upper.CL"] - e95["lower.CL"])
    assert "Confidence level used: 0.9" in e90.attrs["mesg"]
    assert "emmean" in str(e95)


def test_adjustments():
    p = np.array([0.01, 0.04, 0.03])
    np.testing.assert_allclose(_adjust_p(p, None, None, 3, "bonferroni"), [0.03, 0.12, 0.09])
    np.testing.assert_allclose(_adjust_p(p, None, None, 3, "holm"), [0.03, 0.06, 0.06])
    np.testing.assert_allclose(_adjust_p(p, None, None, 3, "sidak"), 1 - (1 - p) ** 3)
    # Tukey with 2 means is the unadjusted t test
    t, df = np.array([2.1]), np.array([12.0])
    from scipy import stats

    np.testing.assert_allclose(_adjust_p(2 * stats.t.sf(t, df), t, df, 2, "tukey"), 2 * stats.t.sf(2.1, 12), rtol=1e-6)


def test_errors_name_the_problem():
    m = fit("oats_unbal")
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Varietyy"):
        m.emmeans("Varietyy")
    with pytest.raises(jaxhlm.ArgumentError, match="lmer_df"):
        m.emmeans("Variety", lmer_df="wald")
    with pytest.raises(jaxhlm.ArgumentError, match="pairs|adjust"):
        m.emmeans("Variety").pairs(adjust="scheffe")
    with pytest.raises(jaxhlm.ArgumentError, match="not a level"):
        m.emmeans("Variety", at={"Variety": ["Nope"]})


def test_non_estimable_means_are_nan():
    m = fit("oats_missing_cell")
    e = m.emmeans(["Variety", "nitro"], lmer_df="satterthwaite")
    bad = (e["Variety"].astype(str) == "Victory") & (e["nitro"].astype(float) == 0.6)
    assert bad.sum() == 1
    assert np.isnan(e.loc[bad, "emmean"]).all() and np.isfinite(e.loc[~bad, "emmean"]).all()
    assert any("not estimable" in s for s in e.attrs["messages"])
