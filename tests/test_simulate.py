"""simulate / refit / refit_many: distribution of simulated responses, and batched refits that
equal one-at-a-time fits."""
from __future__ import annotations

import warnings

import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.optim.fit import value_and_grad_theta

from conftest import load_data

NELS_RS = "mathscore ~ 1 + family_inc + (family_inc | sch_id)"


def _vals(row, prefix, names):
    return np.array([row[f"{prefix}.{k}"] for k in names], dtype=float)


def _quiet_lmer(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxhlm.lmer(formula, data, **kw)


@pytest.fixture(scope="module")
def nels():
    dat = load_data("nels_like.csv")
    return dat, jaxhlm.lmer(NELS_RS, dat, reml=False)


@pytest.fixture(scope="module")
def sleep():
    dat = load_data("sleepstudy.csv")
    return dat, jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", dat, reml=True)


@pytest.fixture(scope="module")
def nels_refits(nels):
    dat, m = nels
    Y = m.simulate(6, seed=11)
    return Y, m.refit_many(Y)


# ------------------------------------------------------------------------------ simulate
def test_simulate_shape_seed_and_prefix(nels):
    _, m = nels
    Y = m.simulate(5, seed=3)
    assert isinstance(Y, np.ndarray) and Y.shape == (m.nobs, 5)
    assert np.array_equal(Y, m.simulate(5, seed=3))
    assert np.array_equal(Y[:, :2], m.simulate(2, seed=3))  # replicate j does not depend on nsim
    assert not np.allclose(Y, m.simulate(5, seed=4))
    assert m.simulate(1).shape == (m.nobs, 1)


def test_simulate_moments_match_the_model(sleep):
    """Mean X beta and covariance sigma^2 (Z Lambda Lambda' Z' + I), from 6000 draws."""
    dat, m = sleep
    Y = m.simulate(6000, seed=1)
    X = np.column_stack([np.ones(len(dat)), dat["Days"].to_numpy()])
    mu = X @ m.fixef.to_numpy()
    th = m.theta.to_numpy()
    T = np.array([[th[0], 0.0], [th[1], th[2]]])
    S = m.sigma**2 * T @ T.T
    rows = [0, 9, 10]  # subject 1 days 0 and 9, subject 2 day 0
    Z = X[rows]
    V = Z @ S @ Z.T * np.array([[1, 1, 0], [1, 1, 0], [0, 0, 1]]) + m.sigma**2 * np.eye(3)
    emp_mean = Y[rows].mean(axis=1)
    se_mean = np.sqrt(np.diag(V) / Y.shape[1])
    assert np.all(np.abs(emp_mean - mu[rows]) < 4.5 * se_mean)
    C = np.cov(Y[rows])
    se_cov = np.sqrt((V**2 + np.outer(np.diag(V), np.diag(V))) / Y.shape[1])
    assert np.all(np.abs(C - V) < 4.5 * se_cov)


def test_simulate_with_new_fixef_and_use_u(sleep):
    dat, m = sleep
    Y = m.simulate(3000, seed=2, fixef={"Days": 0.0})
    by_day = pd.DataFrame(Y.mean(axis=1)).groupby(dat["Days"].to_numpy()).mean()[0]
    assert abs(by_day.loc[9] - by_day.loc[0]) < 5.0  # the slope 10.5 was set to 0
    Yu = m.simulate(3000, seed=2, use_u=True)
    resid = Yu.mean(axis=1) - m.fitted.to_numpy()
    assert np.max(np.abs(resid)) < 5 * m.sigma / np.sqrt(3000)
    with pytest.raises(jaxhlm.ArgumentError):
        m.simulate(2, fixef={"nope": 1.0})
    with pytest.raises(jaxhlm.ArgumentError):
        m.simulate(0)


# ------------------------------------------------------------------------------ refit_many
def test_refit_many_table_layout(nels, nels_refits):
    _, m = nels
    Y, r = nels_refits
    assert len(r) == 6 and r.index.name == "replicate"
    for nm in m.fixef.index:
        for pre in ("beta", "se", "df", "t", "p"):
            assert f"{pre}.{nm}" in r.columns
    for nm in m.theta.index:
        assert f"theta.{nm}" in r.columns
    for c in ("objective", "deviance", "sigma", "converged", "singular", "iterations"):
        assert c in r.columns
    assert r["converged"].all()
    assert np.allclose(r["deviance"], r["objective"])  # ML fit


def test_refit_many_equals_one_at_a_time_fits(nels, nels_refits):
    dat, m = nels
    Y, r = nels_refits
    for j in range(3):
        d2 = dat.copy()
        d2["mathscore"] = Y[:, j]
        mj = jaxhlm.lmer(NELS_RS, d2, reml=False)
        row = r.iloc[j]
        np.testing.assert_allclose(_vals(row, "beta", m.fixef.index), mj.fixef, rtol=1e-6, atol=1e-6)
        np.testing.assert_allclose(_vals(row, "theta", m.theta.index), mj.theta, rtol=1e-4, atol=2e-5)
        np.testing.assert_allclose(_vals(row, "se", m.fixef.index), mj.se, rtol=1e-5)
        np.testing.assert_allclose(row["sigma"], mj.sigma, rtol=1e-6)
        np.testing.assert_allclose(_vals(row, "df", m.fixef.index), mj.coef_table["df"], rtol=5e-4)
        # the batched optimum is at least as good as the one-at-a-time fit
        assert row["objective"] <= mj.objective + 1e-7
        assert abs(row["objective"] - mj.objective) < 1e-5


def test_refit_many_at_optimum_gradient(nels, nels_refits):
    """Independent check: the exact gradient of the criterion at the batched estimates is ~0."""
    _, m = nels
    Y, r = nels_refits
    from jaxhlm._src.stats.suffstats import compute_stats
    from jaxhlm._src.stats.xform import original_objective, xform_of

    stats = compute_stats(m.design, m.layout, y=Y[:, 0])  # an independent pass over the rows
    th = _vals(r.iloc[0], "theta", m.theta.index)
    f, g = value_and_grad_theta(jnp.asarray(th), stats, m.layout, False)
    assert np.max(np.abs(np.asarray(g))) < 0.05
    f = original_objective(float(f), xform_of(stats, m.p), m.nobs, m.p, False)  # (its own preconditioner)
    assert abs(f - r.iloc[0]["objective"]) < 1e-8


def test_refit_many_of_the_data_itself(nels):
    _, m = nels
    r = m.refit_many(m.y.to_numpy())
    row = r.iloc[0]
    np.testing.assert_allclose(_vals(row, "beta", m.fixef.index), m.fixef, rtol=1e-6)
    np.testing.assert_allclose(_vals(row, "df", m.fixef.index), m.coef_table["df"], rtol=1e-4)
    assert row["objective"] <= m.objective + 1e-7


def test_refit_returns_a_model_equal_to_lmer(nels, nels_refits):
    dat, m = nels
    Y, r = nels_refits
    mr = m.refit(Y[:, 0])
    assert isinstance(mr, jaxhlm.LinearMixedModel)
    d2 = dat.copy()
    d2["mathscore"] = Y[:, 0]
    mj = jaxhlm.lmer(NELS_RS, d2, reml=False)
    np.testing.assert_allclose(mr.fixef, mj.fixef, rtol=1e-6)
    np.testing.assert_allclose(mr.y.to_numpy(), Y[:, 0])
    assert abs(mr.objective - mj.objective) < 1e-5
    np.testing.assert_allclose(mr.fixef, _vals(r.iloc[0], "beta", m.fixef.index), rtol=1e-6)


def test_chunks_and_vmap_batches_give_the_same_estimates(nels):
    _, m = nels
    Y = m.simulate(5, seed=5)
    a = m.refit_many(Y, satterthwaite=False)
    b = m.refit_many(Y, satterthwaite=False, chunk_size=2)
    c = m.refit_many(Y, satterthwaite=False, batch_size=2)
    cols = [c_ for c_ in a.columns if c_.startswith(("beta.", "theta.")) or c_ == "objective"]
    np.testing.assert_allclose(b[cols], a[cols], rtol=1e-9, atol=1e-10)
    np.testing.assert_allclose(c[cols], a[cols], rtol=1e-9, atol=1e-10)
    assert "df.family_inc" not in a.columns


def test_refit_many_several_factors():
    """Crossed factors (the second one in the dense block): REML."""
    fname, formula = "Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)"
    dat = load_data(fname)
    m = jaxhlm.lmer(formula, dat, reml=True)
    Y = m.simulate(3, seed=8)
    r = m.refit_many(Y)
    for j in range(3):
        d2 = dat.copy()
        d2[m.design.response_name] = Y[:, j]
        mj = _quiet_lmer(formula, d2, reml=True)
        assert r.iloc[j]["objective"] <= mj.objective + 1e-7
        assert abs(r.iloc[j]["objective"] - mj.objective) < 1e-4
        np.testing.assert_allclose(r.iloc[j]["beta.(Intercept)"], mj.fixef.iloc[0], rtol=1e-6)


def test_failed_replicates_are_flagged_not_dropped(nels):
    _, m = nels
    Y = m.simulate(3, seed=1)
    Y[:, 1] = 0.0  # a constant response: the criterion is not finite
    with pytest.warns(jaxhlm.ConvergenceWarning, match="1 of 3"):
        r = m.refit_many(Y)
    assert len(r) == 3
    assert list(r["converged"]) == [True, False, True]
    assert np.isnan(r.iloc[1]["objective"]) and np.isnan(r.iloc[1]["beta.family_inc"])


def test_bad_responses_raise(sleep):
    _, m = sleep
    with pytest.raises(jaxhlm.DataError, match="shape"):
        m.refit_many(np.zeros((m.nobs + 1, 2)))
    Y = m.simulate(2, seed=1)
    Y[3, 1] = np.nan
    with pytest.raises(jaxhlm.DataError, match="column 1"):
        m.refit_many(Y)
    with pytest.raises(jaxhlm.DataError):
        m.refit(m.simulate(2, seed=1))


def test_replicates_leave_a_singular_fit():
    """From a fit with theta = 0 (gradient exactly 0 there) replicates still find their optimum."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rng = np.random.default_rng(1)
        d = pd.DataFrame({"g": np.repeat(np.arange(20), 10), "y": rng.normal(size=200)})
        m = jaxhlm.lmer("y ~ 1 + (1 | g)", d, reml=False)
        assert m.is_singular
        Y = m.simulate(4, seed=1, theta=[1.0])
        r = m.refit_many(Y)
        for j in range(4):
            d2 = d.copy()
            d2["y"] = Y[:, j]
            mj = jaxhlm.lmer("y ~ 1 + (1 | g)", d2, reml=False)
            assert r.iloc[j]["objective"] == pytest.approx(mj.objective, abs=1e-6)
            assert r.iloc[j]["theta.g.(Intercept)"] == pytest.approx(mj.theta.iloc[0], rel=1e-4)
