"""glmer with a fixed-effect column of a large mean (optim/glmm_centre.py): the search runs on
the centred column and every reported quantity equals the fit of the centred data, mapped."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.optim.glmm_centre import fixed_centring


def _data(seed=3, n=1500, J=30):
    rng = np.random.default_rng(seed)
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    z = rng.normal(size=n)
    eta = -0.3 + 0.5 * x - 0.4 * z + 0.8 * rng.normal(size=J)[g]
    y = (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float)
    k = rng.poisson(np.exp(0.2 + 0.3 * x + 0.5 * rng.normal(size=J)[g]))
    return pd.DataFrame({"y": y, "k": k, "x": x, "z": z, "g": g})


def _fit(formula, df, family):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        m = jaxhlm.glmer(formula, df, family=family)
    return m, [str(x.message) for x in w]


@pytest.mark.parametrize("family, formula, shift", [("binomial", "y ~ x + z + (1 | g)", 1e4),
                                                     ("poisson", "k ~ x + (1 | g)", 1e6)])
def test_a_shifted_predictor_changes_no_reported_quantity(family, formula, shift):
    df = _data()
    base, w0 = _fit(formula, df, family)
    m, w = _fit(formula, df.assign(x=df["x"] + shift), family)
    assert w == w0 == []  # no convergence or identifiability warnings
    assert m.objective == pytest.approx(base.objective, abs=1e-7)
    assert m.deviance == pytest.approx(base.deviance, rel=1e-9)
    np.testing.assert_allclose(m.theta.to_numpy(), base.theta.to_numpy(), rtol=1e-5)
    # the same model in another parametrisation: slopes equal, the intercept moves by -shift * slope
    A = np.eye(len(base.fixef))
    A[0, 1] = -shift  # beta_shifted = A beta_base
    np.testing.assert_allclose(m.fixef.to_numpy(), A @ base.fixef.to_numpy(), rtol=1e-6, atol=1e-6 * shift * 1e-3)
    np.testing.assert_allclose(m.se.to_numpy()[1:], base.se.to_numpy()[1:], rtol=1e-5)
    np.testing.assert_allclose(m.vcov.to_numpy(), A @ base.vcov.to_numpy() @ A.T, rtol=1e-5,
                               atol=1e-9 * shift**2)
    np.testing.assert_allclose(np.asarray(m.fitted), np.asarray(base.fitted), rtol=1e-8)
    np.testing.assert_allclose(m.ranef["g"].to_numpy(), base.ranef["g"].to_numpy(), rtol=1e-5, atol=1e-7)
    assert m.optinfo["converged"]


def test_refits_and_power_of_a_shifted_fit_equal_the_unshifted():
    df = _data()
    f = "y ~ x + z + (1 | g)"
    base, _ = _fit(f, df, "binomial")
    m, _ = _fit(f, df.assign(x=df["x"] + 1e5), "binomial")
    Y = base.simulate(12, seed=4)
    a, b = base.refit_many(Y), m.refit_many(Y)
    assert b["converged"].all()
    np.testing.assert_allclose(b["objective"], a["objective"], atol=1e-6)
    np.testing.assert_allclose(b["beta.x"], a["beta.x"], rtol=1e-5)
    np.testing.assert_allclose(b["se.x"], a["se.x"], rtol=1e-4)
    np.testing.assert_allclose(b["se.z"], a["se.z"], rtol=1e-4)
    one = m.refit(Y[:, 0])
    assert one.fixef["x"] == pytest.approx(a["beta.x"][0], rel=1e-5)
    # (simulated from the fitted parameters: a slope changed with the intercept held would move
    # the shifted model's mean by 1e5 times the change, as it should)
    pa, pb = base.power("z", nsim=40, seed=2), m.power("z", nsim=40, seed=2)
    assert pa.successes == pb.successes and pa.trials == pb.trials == 40


def test_which_columns_are_centred():
    rng = np.random.default_rng(0)
    n = 500
    one, x, d = np.ones(n), rng.normal(size=n), (rng.uniform(size=n) < 0.3).astype(float)
    assert fixed_centring(np.column_stack([one, x, d])) is None
    A = fixed_centring(np.column_stack([one, x + 2005.0, d, x * 0.01 + 1e6]))
    assert A is not None and A[0, 1] == pytest.approx(-np.mean(x + 2005.0)) and A[0, 2] == 0.0
    assert A[0, 3] == pytest.approx(-np.mean(x * 0.01 + 1e6))
    assert fixed_centring(np.column_stack([x + 2005.0, d])) is None  # no intercept: a shift changes the model


@pytest.mark.parametrize("shift", [1e4])
def test_a_shifted_random_slope_changes_no_reported_quantity(shift):
    rng = np.random.default_rng(3)
    J, n = 40, 2000
    g = rng.integers(0, J, n)
    x = rng.normal(size=n)
    eta = -0.3 + 0.5 * x + 0.8 * rng.normal(size=J)[g] + 0.4 * rng.normal(size=J)[g] * x
    df = pd.DataFrame({"y": (rng.uniform(size=n) < 1 / (1 + np.exp(-eta))).astype(float), "x": x, "g": g})
    f = "y ~ x + (x | g)"
    base, w0 = _fit(f, df, "binomial")
    m, w = _fit(f, df.assign(x=df["x"] + shift), "binomial")
    assert w == w0 == [] and not m.is_singular and m.optinfo["converged"]
    assert m.objective == pytest.approx(base.objective, abs=1e-7)
    assert m.fixef["x"] == pytest.approx(base.fixef["x"], rel=1e-6)
    assert m.se["x"] == pytest.approx(base.se["x"], rel=1e-5)
    # b = M b_c: the slope's modes are the same, the intercept's move by -shift * slope's
    rb, rm = base.ranef["g"].to_numpy(), m.ranef["g"].to_numpy()
    np.testing.assert_allclose(rm[:, 1], rb[:, 1], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(rm[:, 0], rb[:, 0] - shift * rb[:, 1], rtol=1e-5, atol=1e-8 * shift)
    vc_b, vc_m = base.varcorr, m.varcorr
    sd = [c for c in vc_b.columns if "sd" in c.lower() or "std" in c.lower()][0]
    assert vc_m[sd].iloc[1] == pytest.approx(vc_b[sd].iloc[1], rel=1e-5)  # the slope's SD
    np.testing.assert_allclose(np.asarray(m.fitted), np.asarray(base.fitted), rtol=1e-7)
    # refits run as the fit searched: same objectives and slopes
    Y = base.simulate(6, seed=8)
    a, b = base.refit_many(Y), m.refit_many(Y)
    np.testing.assert_allclose(b["objective"], a["objective"], atol=1e-6)
    np.testing.assert_allclose(b["beta.x"], a["beta.x"], rtol=1e-5)
    assert m.refit(Y[:, 1]).objective == pytest.approx(a["objective"][1], abs=1e-6)
