"""GLM families (jaxhlm._src.engine.families) against scipy and autodiff: links, variances,
deviance residuals, R's aic(), and the PIRLS working quantities (score, Fisher and observed
weights as derivatives of the deviance)."""
import jax
import numpy as np
import pytest
from scipy import stats as sps

import jaxhlm
from jaxhlm._src.engine.families import get_family

LINKS = [("binomial", "logit"), ("binomial", "probit"), ("binomial", "cloglog"), ("poisson", "log")]
ETA = np.linspace(-3, 2.5, 12)


def _inv(link, eta):
    return {"logit": lambda e: 1 / (1 + np.exp(-e)), "probit": sps.norm.cdf,
            "cloglog": lambda e: 1 - np.exp(-np.exp(e)), "log": np.exp}[link](eta)


@pytest.mark.parametrize("fam,link", LINKS)
def test_link_functions(fam, link):
    f = get_family(fam, link)
    mu = np.asarray(f.linkinv(ETA))
    np.testing.assert_allclose(mu, _inv(link, ETA), rtol=1e-13)
    np.testing.assert_allclose(np.asarray(f.linkfun(mu)), ETA, rtol=1e-10, atol=1e-12)
    d = np.array([float(jax.grad(lambda e: f.linkinv(e))(e)) for e in ETA])
    np.testing.assert_allclose(np.asarray(f.mu_eta(ETA)), d, rtol=1e-10)
    # the host version (simulation), clipping included, equals the traced one
    wide = np.concatenate([ETA, [-800.0, -40.0, -31.0, 31.0, 40.0, 800.0]])
    host = f.linkinv(wide, xp=np)
    assert isinstance(host, np.ndarray)
    np.testing.assert_allclose(host, np.asarray(f.linkinv(wide)), rtol=1e-15, atol=0)


@pytest.mark.parametrize("fam,link", LINKS)
def test_deviance_aic_and_working_weights(fam, link):
    f = get_family(fam, link)
    rng = np.random.default_rng(1)
    mu = np.asarray(f.linkinv(ETA))
    if fam == "binomial":
        n = rng.integers(1, 9, ETA.size).astype(float)
        y = rng.binomial(n.astype(int), mu) / n
        ll = sps.binom.logpmf(np.round(y * n), n, mu)
        wt = n
    else:
        n = np.ones(ETA.size)
        y = rng.poisson(mu).astype(float)
        ll = sps.poisson.logpmf(y, mu)
        wt = n
    assert float(f.minus2loglik(y, n, mu, wt)) == pytest.approx(-2 * ll.sum(), rel=1e-12)
    # deviance = aic(mu) - aic(y): the saturated constant
    dev = float(np.sum(np.asarray(f.dev_resids(y, mu, wt))))
    assert dev == pytest.approx(float(f.minus2loglik(y, n, mu, wt)) - f.minus2loglik_saturated(y, n, wt), rel=1e-10)
    # score r = -1/2 dD/deta, observed weight = 1/2 d2D/deta2, Fisher weight wt mu_eta^2 / V
    D = lambda e, i: f.dev_resids(y[i], f.linkinv(e), wt[i])  # noqa: E731
    _, r, W, Wo = (np.asarray(v) for v in f.working(ETA, y, wt))
    for i, e in enumerate(ETA):
        assert r[i] == pytest.approx(-0.5 * float(jax.grad(D)(e, i)), rel=1e-8, abs=1e-12)
        assert Wo[i] == pytest.approx(0.5 * float(jax.grad(jax.grad(D))(e, i)), rel=1e-7, abs=1e-12)
        assert Wo[i] >= -1e-12  # log-concave likelihoods
    me = np.asarray(f.mu_eta(ETA))
    np.testing.assert_allclose(W, wt * me**2 / np.asarray(f.variance(mu)), rtol=1e-12)
    if f.canonical:
        np.testing.assert_allclose(W, Wo, rtol=1e-10)


def test_public_spellings_and_refusals():
    assert jaxhlm.families.Binomial() == get_family("binomial")
    assert jaxhlm.families.Poisson().link == "log"
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.families.Binomial("log")
    with pytest.raises(jaxhlm.ArgumentError):
        get_family("gaussian")
    sim = get_family("binomial").simulate(np.random.default_rng(0), np.full(4, 0.3), np.array([1, 2, 5, 0.0]), 3)
    assert sim.shape == (4, 3) and np.all(sim[3] == 0)
