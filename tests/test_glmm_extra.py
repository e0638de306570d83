"""glmer fits against extra lme4 references (tools/reference_glmm_extra.R ->
tests/data/reference_glmm_extra): probit and cloglog links (lme4's Laplace with the IRLS weights
in the log-determinant), a probit random slope, a Poisson rate with offset(log(size)), nAGQ = 0
and quadrature with a probit link. Held to lme4's fit with tolPwrss = 1e-12 (``tight``)."""
import numpy as np
import pytest

import glmm_refs as G

@pytest.fixture(scope="module", params=G.EXTRA_IDS)
def case(request):
    return G.ref_extra(request.param), G.fit_extra(request.param)


def test_estimates(case):
    r, m = case
    t = r["tight"]
    se = np.array(list(t["se"].values()))
    assert list(m.fixef.index) == list(t["beta"]) and list(m.theta.index) == list(t["theta"])
    assert m.objective <= min(t["objective"], r["default"]["objective"]) + 1e-3
    np.testing.assert_array_less(np.abs(m.beta - np.array(list(t["beta"].values()))) / se, 1e-3)
    np.testing.assert_allclose(m.se.to_numpy(), se, rtol=5e-3)
    np.testing.assert_allclose(m.varcorr["vcov"].to_numpy(), [v["vcov"] for v in t["varcorr"]], rtol=1e-2)
    np.testing.assert_allclose(m.loglik, t["logLik"], atol=5e-4)
    np.testing.assert_allclose(m.deviance, t["deviance"], rtol=1e-4)
    np.testing.assert_allclose(m.fitted.to_numpy()[:20], t["fitted_first20"], atol=1e-3)
    assert m.vcov_method == ("RX" if r["nAGQ"] == 0 else "hessian")
