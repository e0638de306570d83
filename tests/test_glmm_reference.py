"""glmer fits against lme4 (tests/data/reference_glmm, README.md there): every case's objective,
fixed effects, standard errors, variance components, random effects, fitted values,
predictions, likelihood summaries and printed summary.

jaxhlm solves the inner PIRLS problem to convergence, so it is held to lme4's ``tight_pirls``
refit (tolPwrss = 1e-12) and to the best objective of every optimizer tried: objective within
1e-3 of the best (or lower), fixed effects within 1e-3 SE, SEs within 0.5 %, variances within
1 %. Quantities the reference gives only for lme4's default fit (which stops PIRLS early:
deviance up to 2e-3 high, fixed effects off by up to 1e-2 SE) are compared with tolerances
that cover that gap.
"""
import numpy as np
import pytest

import glmm_refs as G

IDS = G.GLMER_IDS


@pytest.mark.parametrize("cid", IDS)
def test_objective_and_estimates(cid):
    m, b = G.fit(cid), G.best(cid)
    assert m.objective <= b["objective"] + 1e-3, (m.objective, b["objective"])
    assert m.objective >= b["objective"] - 1e-3  # not lower by more than lme4's own rounding of PIRLS
    assert list(m.fixef.index) == list(G.ref(cid)["beta"])
    assert list(m.theta.index) == list(G.ref(cid)["theta"])
    np.testing.assert_array_less(np.abs(m.beta - b["beta"]) / b["se"], 1e-3)
    np.testing.assert_allclose(m.se.to_numpy(), b["se"], rtol=5e-3)
    np.testing.assert_allclose(m.theta.to_numpy(), b["theta"], rtol=1e-3, atol=1e-4)
    assert m.converged and m.optinfo["pirls_converged"]


@pytest.mark.parametrize("cid", IDS)
def test_variance_components(cid):
    m, r = G.fit(cid), G.ref(cid)
    vc, rv = m.varcorr, r["varcorr"]
    assert list(vc["grp"]) == rv["grp"] and list(vc["var1"]) == rv["var1"]
    assert [None if v is None or v != v else v for v in vc["var2"]] == rv["var2"]
    # the reference is the default fit; the tight fit's theta differs from it by < 0.03 %
    np.testing.assert_allclose(vc["vcov"].to_numpy(), rv["vcov"], rtol=1e-2)
    np.testing.assert_allclose(vc["sdcor"].to_numpy(), rv["sdcor"], rtol=5e-3)


@pytest.mark.parametrize("cid", IDS)
def test_likelihood_summaries(cid):
    m, r, b = G.fit(cid), G.ref(cid), G.best(cid)
    assert m.npar == r["logLik_df"] and m.df_resid == r["df_resid"] and m.nobs == r["n"]
    np.testing.assert_allclose(m.loglik, -0.5 * b["objective"], atol=5e-4)
    np.testing.assert_allclose(m.aic, b["objective"] + 2 * r["logLik_df"], atol=1e-3)
    np.testing.assert_allclose(m.bic, b["objective"] + np.log(r["n"]) * r["logLik_df"], atol=1e-3)
    # deviance(m): the conditional deviance at the modes (not -2 logLik); the default fit's
    # modes are those of slightly different estimates
    np.testing.assert_allclose(m.deviance, r["deviance"], rtol=2e-4)
    np.testing.assert_allclose(m.minus2loglik_saturated, r["minus2logLik_saturated"], atol=1e-8)
    np.testing.assert_allclose(m.objective_full_scale - m.objective, r["objective_full_scale"] - r["objective"],
                               atol=1e-9)
    assert m.is_singular == r["isSingular"]


@pytest.mark.parametrize("cid", IDS)
def test_fitted_residuals_predictions(cid):
    m, r = G.fit(cid), G.ref(cid)
    tol = dict(rtol=0, atol=3e-3)  # the default fit's estimates differ in the 4th digit
    np.testing.assert_allclose(m.fitted.to_numpy()[:50], r["fitted_first50"], **tol)
    np.testing.assert_allclose(m.eta.to_numpy()[:50], r["eta_first50"], **tol)
    for kind in ("deviance", "pearson", "response"):
        np.testing.assert_allclose(m.residuals(kind).to_numpy()[:50], r[f"residuals_{kind}_first50"], **tol)
    np.testing.assert_array_equal(m.prior_weights.to_numpy()[:50], r["prior_weights_first50"])
    nd = G.frame(cid).iloc[[i - 1 for i in r["predict_newdata_rows"]]]
    for kind in ("link", "response"):
        for re_form, key in ((None, "NULL"), ("NA", "NA"), ("~0", "NA")):
            p = m.predict(nd, type=kind, re_form=re_form)
            np.testing.assert_allclose(p.to_numpy(), r[f"predict_{kind}_re_form_{key}"], **tol)
    np.testing.assert_allclose(m.predict(type="response").to_numpy(), m.fitted.to_numpy())


@pytest.mark.parametrize("cid", IDS)
def test_ranef_and_condsd(cid):
    m, r = G.fit(cid), G.ref(cid)
    for g, rr in r["ranef"].items():
        re, cs = m.ranef[g], m.ranef_condsd[g]
        assert [str(v) for v in re.index] == rr["levels"]
        for term in rr["terms"]:
            np.testing.assert_allclose(re[term].to_numpy(), rr["values"][term], rtol=0, atol=3e-3)
            np.testing.assert_allclose(cs[term].to_numpy(), rr["condsd"][term], rtol=3e-3)
        for col, vals in r["coef"][g]["columns"].items():
            np.testing.assert_allclose(m.coef[g][col].to_numpy(), vals, rtol=0, atol=3e-3)


@pytest.mark.parametrize("cid", IDS)
def test_coef_table_and_wald(cid):
    m, r, b = G.fit(cid), G.ref(cid), G.best(cid)
    ct = m.coef_table
    assert list(ct.columns) == ["Estimate", "Std. Error", "z value", "Pr(>|z|)"]
    np.testing.assert_allclose(ct["z value"].to_numpy(), b["beta"] / b["se"], rtol=6e-3, atol=2e-3)
    vt = np.array(r["tight_pirls"]["vcov"]["matrix"], dtype=float)
    scale = np.outer(b["se"], b["se"])
    np.testing.assert_array_less(np.abs(m.vcov.to_numpy() - vt) / scale, 1e-2)  # correlations and variances
    ci = m.confint()
    lo = np.array([v for v, n in zip(r["confint_wald"]["lower"], r["confint_wald"]["names"]) if n in m.fixef.index])
    # the reference interval is the default fit's (SEs up to 1.3 % off the converged ones)
    np.testing.assert_array_less(np.abs(ci.iloc[:, 0].to_numpy() - lo), 0.05 * b["se"])


@pytest.mark.parametrize("cid", IDS)
def test_summary_layout(cid):
    m, r = G.fit(cid), G.ref(cid)
    s = m.summary()
    s.data_name = "dat"
    mine = str(s).split("\n")
    ref = [ln.rstrip() for ln in r["summary_text"]]
    n = ref.index("Fixed effects:")
    # title, family, formula, criterion line, random-effects table: identical up to rounding
    assert len(mine[:k0]) == n if (k0 := mine.index("Fixed effects:")) else False
    for a, b in zip(mine[:n], ref[:n]):
        if not any(ch.isdigit() for ch in b) or b.startswith(("Formula", "Number of obs")):
            assert a == b
        else:  # numbers in the same places (the last digit may differ: lme4's default fit)
            assert len(a.split()) == len(b.split()), (a, b)
    # fixed-effects table: same rows and columns
    k = mine.index("Fixed effects:")
    assert mine[k + 1].split() == ref[n + 1].split()
    assert [ln.split()[0] for ln in mine[k + 2:k + 2 + m.p]] == [ln.split()[0] for ln in ref[n + 2:n + 2 + m.p]]
