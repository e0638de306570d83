"""Simulation from glmer fits: simulate's distribution, batched refits equal to single refits,
bootstrap and power (checked against exact binomial / normal calculations)."""
import numpy as np
import pytest

import glmm_refs as G
import jaxhlm
from jaxhlm._src.sim.glmm_sim import refit_many_glmm


@pytest.fixture(scope="module")
def model():
    return G.fit("cbpp_cbind_laplace")


def test_simulate_shapes_and_reproducibility(model):
    Y = model.simulate(5, seed=3)
    assert Y.shape == (model.nobs, 5)
    n = np.asarray(model.glmm_data.n)[:, None]
    np.testing.assert_allclose(Y * n, np.round(Y * n), atol=1e-9)  # successes out of the trials
    assert np.all((Y >= 0) & (Y <= 1))
    np.testing.assert_array_equal(Y[:, :2], model.simulate(2, seed=3))
    with pytest.raises(Exception):
        model.simulate(0)


def test_simulate_mean_matches_marginal_mean(model):
    """Without random effects (theta = 0) the mean of the simulated proportions is mu = g^-1(X beta)."""
    Y = model.simulate(4000, seed=5, theta=[0.0])
    mu = 1 / (1 + np.exp(-(model.design.X @ model.beta)))
    se = np.sqrt(mu * (1 - mu) / np.asarray(model.glmm_data.n) / 4000)
    assert np.max(np.abs(Y.mean(axis=1) - mu) / se) < 4.5


def test_refit_many_equals_single_refits(model):
    Y = model.simulate(3, seed=11)
    R = model.refit_many(Y)
    assert list(R.columns[:2]) == ["objective", "theta.herd.(Intercept)"] and R["converged"].all()
    for j in range(3):
        mj = model.refit(Y[:, j])
        assert R["objective"][j] == pytest.approx(mj.objective, abs=1e-7)
        np.testing.assert_allclose(R.filter(like="beta.").iloc[j].to_numpy(), mj.beta, atol=1e-4)
        np.testing.assert_allclose(R.filter(like="se.").iloc[j].to_numpy(), mj.se.to_numpy(), rtol=1e-4)
        assert R["theta.herd.(Intercept)"][j] == pytest.approx(mj.theta.iloc[0], abs=1e-4)
    # refitting the observed response reproduces the fit
    R0 = model.refit_many(model.glmm_data.y)
    assert R0["objective"][0] == pytest.approx(model.objective, abs=1e-7)


def test_power_and_bootstrap(model):
    pw = model.power("period2", nsim=64, seed=2, fixef={"period2": -0.6})
    assert pw.trials + pw.n_failed == 64 and pw.method == "z"
    assert 0 <= pw.lower <= pw.power <= pw.upper <= 1
    assert pw.effect["period2"] == -0.6
    p = pw.pvalues
    z = pw.replicates["beta.period2"] / pw.replicates["se.period2"]
    from scipy.stats import norm

    np.testing.assert_allclose(p, 2 * norm.sf(np.abs(z)))
    # no effect: about alpha of the tests reject
    null = model.power("period2", nsim=64, seed=4, fixef={"period2": 0.0})
    assert null.power < 0.25
    bs = model.bootstrap(nsim=64, seed=1)
    ci = bs.confint()
    # jaxhlm.power dispatches a glmer fit to its own simulation; lmer-only arguments are refused by name
    a = jaxhlm.power(model, "period2", nsim=16, seed=9, effect=-0.6)
    b = model.power("period2", nsim=16, seed=9, fixef={"period2": -0.6})
    np.testing.assert_array_equal(a.pvalues, b.pvalues)
    with pytest.raises(jaxhlm.ArgumentError, match="sigma"):
        jaxhlm.power(model, "period2", nsim=10, sigma=2.0)
    assert "period2" in ci.index and ci.loc["period2"].iloc[0] < model.fixef["period2"] < ci.loc["period2"].iloc[1]


def test_power_curve_of_a_binomial_fit(model):
    """simr's powerCurve for glmer: each size is a resized design whose rows keep their trials;
    power grows with the number of herds; jaxhlm.power_curve dispatches to it."""
    from jaxhlm._src.sim.glmm_sim import _on_design
    from jaxhlm._src.sim.power import resize_design

    d = model.design
    r = resize_design(d, "herd", 40, np.random.default_rng(0))
    assert r.trials.shape == (r.n,)
    for j in range(r.factors[0].nlevels):
        src = d.factors[0].levels.astype(str).get_loc(str(r.factors[0].levels[j]).split("#")[0])
        a, b = r.factors[0].codes == j, d.factors[0].codes == src
        assert sorted(zip(r.trials[a], r.y[a], r.X[a, 1:].tolist())) == sorted(zip(d.trials[b], d.y[b], d.X[b, 1:].tolist()))
    proto = _on_design(model, r)
    np.testing.assert_array_equal(proto.glmm_data.n, r.trials)
    np.testing.assert_array_equal(proto.theta, model.theta)
    pc = jaxhlm.power_curve(model, "herd", [6, 60], test="period2", nsim=48, effect=-1.0, seed=7)
    assert list(pc.columns) == ["size", "nobs", "power", "lower", "upper", "successes", "trials", "n_failed"]
    assert pc["nobs"].iloc[1] > pc["nobs"].iloc[0]
    assert pc["power"].iloc[0] < pc["power"].iloc[1] and pc["power"].iloc[1] > 0.8
    res = pc.attrs["results"][1]
    assert res.method == "z" and res.effect["period2"] == -1.0
    z = res.replicates["beta.period2"] / res.replicates["se.period2"]
    from scipy.stats import norm

    np.testing.assert_allclose(res.pvalues, 2 * norm.sf(np.abs(z)))
    same = model.power_curve("herd", [6], test="period2", nsim=48, fixef={"period2": -1.0}, seed=7)
    assert same["power"].iloc[0] == pc["power"].iloc[0]


def test_refits_side_by_side_equal_one_at_a_time(model, monkeypatch):
    """Chunks of replicates run on two threads (base/threads.side_by_side): the same table, in
    the same order, as one chunk after the other."""
    Y = model.simulate(40, seed=21)
    monkeypatch.setenv("JAXHLM_WORKERS", "2")
    two = refit_many_glmm(model, Y, chunk_size=8)
    monkeypatch.setenv("JAXHLM_WORKERS", "1")
    one = refit_many_glmm(model, Y, chunk_size=8)
    np.testing.assert_array_equal(two.to_numpy(), one.to_numpy())


def test_refits_run_the_fits_own_search_program(model):
    """On a CPU every refit calls the compiled search the fit built (no program of its own)."""
    from jaxhlm._src.base import programcache

    m = G.fit("cbpp_cbind_laplace")  # a fit in this process: its programs are in memory
    Y = m.simulate(6, seed=4)
    before = set(programcache._MEMO)
    R = m.refit_many(Y)
    assert R["converged"].all()
    new = [k[0] for k in set(programcache._MEMO) - before]
    assert not [nm for nm in new if "glmm" in nm or "search" in nm], new


def test_batched_route_equals_one_by_one(model, monkeypatch):
    """The accelerators' route (replicates mapped in one program, padded to its width) gives the
    CPU route's estimates, standard errors and flags."""
    from jaxhlm._src.optim import glmm_batch

    Y = model.simulate(5, seed=8)
    one = glmm_batch.refit_batch(model, Y)
    monkeypatch.setattr(glmm_batch, "default_batch_size", lambda: 2)
    many = glmm_batch.refit_batch(model, Y, width=6)
    assert many["beta"].shape == one["beta"].shape == (5, model.p)
    for key in ("objective", "theta", "beta", "se"):
        np.testing.assert_allclose(many[key], one[key], rtol=1e-6, atol=1e-8)
    np.testing.assert_array_equal(many["converged"], one["converged"])
