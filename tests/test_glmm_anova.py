"""anova() between glmer fits against lme4 (cbpp_anova_period: a 3-df fixed factor;
contra_anova_slope: a random slope with its covariance), and the refusals."""
import numpy as np
import pytest

import glmm_refs as G
import jaxhlm


@pytest.mark.parametrize("aid", G.ANOVA_IDS)
def test_lrt_table(aid):
    r = G.ref(aid)
    models = [G.fit(c) for c in r["models"]]
    tab = jaxhlm.anova(*models)
    t = r["table"]
    assert list(tab.index) == t["rownames"]
    assert list(tab.columns) == r["columns"]
    np.testing.assert_array_equal(tab["npar"].to_numpy(), t["npar"])
    best = np.array([G.best(c)["objective"] for c in t["rownames"]])
    # jaxhlm's fits are at the converged optimum: lme4's default objectives are up to 5e-4 higher
    np.testing.assert_allclose(tab["deviance"].to_numpy(), best, atol=1e-3)
    np.testing.assert_allclose(tab["deviance"].to_numpy(), t["deviance"], atol=1e-3)
    np.testing.assert_allclose(tab["logLik"].to_numpy(), t["logLik"], atol=5e-4)
    np.testing.assert_allclose(tab["AIC"].to_numpy(), t["AIC"], atol=1e-3)
    np.testing.assert_allclose(tab["BIC"].to_numpy(), t["BIC"], atol=1e-3)
    assert tab["Df"].iloc[1] == t["Df"][1]
    np.testing.assert_allclose(tab["Chisq"].iloc[1], best[0] - best[1], atol=1e-9)
    np.testing.assert_allclose(tab["Chisq"].iloc[1], t["Chisq"][1], atol=1e-3)
    np.testing.assert_allclose(tab["Pr(>Chisq)"].iloc[1], t["Pr(>Chisq)"][1], rtol=1e-3)
    # the method gives the same table; the printed header is R's
    assert models[1].anova(models[0]).equals(tab)
    lines = str(tab).split("\n")
    ref = [ln.rstrip() for ln in r["print_text"]]
    assert lines[0] == "Models:" and lines[1:3] == ref[2:4]
    assert lines[3].split() == ref[4].split()


def test_refusals():
    a, b = G.fit("cbpp_cbind_laplace"), G.fit("cbpp_cbind_agq25")
    with pytest.raises(jaxhlm.ModelComparisonError, match="different scales"):
        jaxhlm.anova(a, b)
    lm = jaxhlm.lmer("incidence ~ period + (1 | herd)", G.frame("cbpp_cbind_laplace"), reml=False)
    with pytest.raises(jaxhlm.ModelComparisonError, match="glmer fits"):
        jaxhlm.anova(a, lm)
    c = G.fit("contra_ri")
    with pytest.raises(jaxhlm.ModelComparisonError):
        jaxhlm.anova(a, c)
