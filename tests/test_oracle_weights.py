"""Weighted fits against the dense marginal likelihood, independent of lme4.

With prior weights ``w`` (lme4's ``weights=``) the model is ``y ~ N(X beta, sigma^2 V)``,
``V = Z Lambda Lambda' Z' + W^{-1}``, ``W = diag(w)``, and the profiled criteria are those of the
unweighted case with this ``V``:

    ML:    d(theta)   = log|V| + n (1 + log(2 pi s / n)),                     s = r' V^{-1} r
    REML:  d_R(theta) = log|V| + log|X' V^{-1} X| + (n - p)(1 + log(2 pi s / (n - p)))

(lme4 writes ``log|V| = log|L_theta|^2 - sum log w``.) The fitted optimum must equal the dense
criterion there, and no start found by scipy on the dense criterion may go lower.
"""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import jaxhlm
from test_oracle import THETA_MAX, dense_Z_Lambda

LOG2PI = math.log(2.0 * math.pi)


def dense_weighted(theta, design, w, reml):
    Z, Lam = dense_Z_Lambda(design, np.asarray(theta, dtype=np.float64))
    X, y = design.X, design.y
    n, p = X.shape
    U = Z @ Lam
    V = U @ U.T + np.diag(1.0 / w)
    C = np.linalg.cholesky(V)
    ldV = 2.0 * np.sum(np.log(np.diag(C)))
    Xw, yw = np.linalg.solve(C, X), np.linalg.solve(C, y)
    A = Xw.T @ Xw
    beta = np.linalg.solve(A, Xw.T @ yw)
    s = float(yw @ yw - (Xw.T @ yw) @ beta)
    if not reml:
        return ldV + n * (1.0 + LOG2PI + math.log(s / n)), beta
    return ldV + np.linalg.slogdet(A)[1] + (n - p) * (1.0 + LOG2PI + math.log(s / (n - p))), beta


FORMULAS = ["y ~ x + (x | g)", "y ~ x + (1 | g) + (1 | h)", "y ~ x + (1 | a/b)"]


def data(seed: int, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.r_[np.arange(6), rng.integers(0, 6, n - 6)]
    h = rng.integers(0, 4, n)
    a, b = rng.integers(0, 3, n), rng.integers(0, 3, n)
    x = rng.normal(size=n)
    w = rng.uniform(0.2, 5.0, n)
    y = 1 + x + rng.normal(size=6)[g] * (1 + 0.5 * x) + 0.5 * rng.normal(size=4)[h] + rng.normal(size=n) / np.sqrt(w)
    return pd.DataFrame({"y": y, "x": x, "g": g, "h": h, "a": a, "b": b, "w": w})


@pytest.mark.parametrize("formula", FORMULAS)
@pytest.mark.parametrize("reml", [True, False])
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(30, 60))
@example(seed=410331399, n=60)
def test_weighted_fit_is_the_dense_optimum(formula, reml, seed, n):
    d = data(seed, n)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer(formula, d, reml=reml, weights="w")
    w = d["w"].to_numpy()
    th = m.theta.to_numpy()
    dev, beta = dense_weighted(th, m.design, w, reml)
    assert m.objective == pytest.approx(dev, rel=1e-9, abs=1e-7)
    np.testing.assert_allclose(m.fixef.to_numpy(), beta, rtol=1e-7, atol=1e-9)
    lower = np.where(m.layout.is_diag(), 0.0, -np.inf)
    f = lambda t: dense_weighted(t, m.design, w, reml)[0]  # noqa: E731
    bounds = [(max(lo, -THETA_MAX), THETA_MAX) for lo in lower]  # (see test_oracle.THETA_MAX)
    for start in (th, np.where(m.layout.is_diag(), 1.0, 0.0)):
        res = scipy.optimize.minimize(f, start, method="L-BFGS-B", bounds=bounds)
        assert m.objective <= res.fun + 1e-6 * (1 + abs(res.fun))


def test_scaling_all_weights_scales_only_the_residual():
    """Weights multiplied by ``c``: each row's residual variance ``sigma^2 / w_i`` is unchanged, so
    ``sigma`` grows by ``sqrt(c)`` and nothing else changes (fixed effects, the random effects'
    covariance; theta, relative to sigma, shrinks by ``sqrt(c)``)."""
    d = data(5, 50)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1 = jaxhlm.lmer("y ~ x + (x | g)", d, weights="w")
        m2 = jaxhlm.lmer("y ~ x + (x | g)", d, weights=d["w"].to_numpy() * 4.0)
    np.testing.assert_allclose(m2.fixef, m1.fixef, rtol=1e-6)
    np.testing.assert_allclose(m2.theta, m1.theta / 2.0, rtol=1e-5, atol=1e-7)
    assert m2.sigma == pytest.approx(m1.sigma * 2.0, rel=1e-6)
    v1, v2 = m1.varcorr["vcov"].to_numpy(), m2.varcorr["vcov"].to_numpy()
    np.testing.assert_allclose(v2[:-1], v1[:-1], rtol=1e-5, atol=1e-8)  # all but the residual
