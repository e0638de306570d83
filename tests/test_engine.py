"""The blocked factorisation (engine.pls) against a dense oracle, for every plan of the layout.

Each design is fitted through every plan that can hold it (one factor; nested chains; crossed
with dense coupling, the scalar fill map, or pairs of pairs), at random theta (zeros and
negative values included), and compared with the dense marginal likelihood of test_oracle:
the criterion (ML, REML), its gradient (against central differences of the dense criterion),
the exact Hessian (against differences of the gradient) and the conditional modes (against
the dense solution of the penalised least squares problem).
"""
from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pandas as pd
import pytest

from jaxhlm._src.design.build import build_design
from jaxhlm._src.engine import pls
from jaxhlm._src.optim.fit import hessian_theta
from jaxhlm._src.stats.layout import Plan, build_layout
from jaxhlm._src.stats.suffstats import compute_stats

from test_oracle import dense_deviance, dense_Z_Lambda, make_data

DESIGNS = {
    "one_q1": "y ~ x + (1 | g)",
    "one_q3": "y ~ x + (x + z | g)",
    "one_terms": "y ~ x + (1 | g) + (0 + z | g)",
    "crossed": "y ~ x + (1 | g) + (1 | h)",
    "crossed_slope": "y ~ x + (x | g) + (1 | h)",
    "crossed_q2_both": "y ~ x + (x | g) + (x | h)",
    "crossed3": "y ~ x + (1 | g) + (x | h) + (1 | a)",
    "nested": "y ~ x + (1 | a/b)",
    "nested_slope": "y ~ x + (x | a/b)",
    "nested3": "y ~ x + (1 | a/b/c)",
}


def _data(seed=3, extra=25):
    df = make_data(seed, extra)
    df["c"] = np.random.default_rng(seed + 1).integers(0, 2, len(df))
    return df


def _plans(layout):
    """The layout's own plan and every crossed plan that can hold the design (nested designs:
    the sparse ones only; dense coupling is exercised by the crossed designs)."""
    out = [layout.plan]
    if layout.nfactors > 1:
        if layout.plan.kind == "crossed":
            out.append(Plan("crossed", "dense", "dense"))
        out.append(Plan("crossed", "sparse", "scalar" if layout.q[0] == 1 else "pairs"))
        if layout.q[0] == 1 and layout.plan.kind == "crossed":
            out.append(Plan("crossed", "sparse", "pairs"))
    return list(dict.fromkeys(out))


CASES = []
for _name, _formula in DESIGNS.items():
    _d = build_design(_formula, _data())
    for _plan in _plans(build_layout(_d)):
        CASES.append(pytest.param(_formula, _plan, id=f"{_name}-{_plan.kind}-{_plan.fill or 'batched'}"))


def _setup(formula, plan):
    d = build_design(formula, _data())
    lay = dataclasses.replace(build_layout(d), plan=plan)
    return d, lay, compute_stats(d, lay, precondition=False)  # the engine on the raw [X y]


def _dense_modes(d, theta):
    Z, Lam = dense_Z_Lambda(d, theta)
    X, y = d.X, d.y
    U = Z @ Lam
    Vi = np.linalg.inv(np.eye(len(y)) + U @ U.T)
    beta = np.linalg.solve(X.T @ Vi @ X, X.T @ Vi @ y)
    u = np.linalg.solve(np.eye(U.shape[1]) + U.T @ U, U.T @ (y - X @ beta))
    return Lam @ u


@pytest.mark.parametrize("formula, plan", CASES)
def test_criterion_gradient_and_modes_equal_the_dense_oracle(formula, plan):
    d, lay, st = _setup(formula, plan)

    @jax.jit
    def everything(th):  # one program per case: both criteria, the ML gradient, the modes
        ml, g = jax.value_and_grad(lambda t: pls.objective(t, st, lay, False))(th)
        return ml, pls.objective(th, st, lay, True), g, pls.solve(th, st, lay)

    rng = np.random.default_rng(7)
    for trial in range(2):
        th = rng.normal(size=lay.ntheta) * 0.8
        if trial == 1:
            th[lay.is_diag()] = np.where(rng.random(lay.is_diag().sum()) < 0.5, 0.0, th[lay.is_diag()])
        ml, reml, grad, sol = everything(th)
        modes = sol.b
        assert float(ml) == pytest.approx(dense_deviance(th, d, False), rel=1e-11, abs=1e-9)
        assert float(reml) == pytest.approx(dense_deviance(th, d, True), rel=1e-11, abs=1e-9)
        h = 1e-6
        fd = [(dense_deviance(th + h * e, d, False) - dense_deviance(th - h * e, d, False)) / (2 * h)
              for e in np.eye(lay.ntheta)]
        np.testing.assert_allclose(np.asarray(grad), fd, rtol=1e-5, atol=1e-5)
        got = np.concatenate([np.asarray(b)[:, :fac.nlevels].T.reshape(-1) for b, fac in zip(modes, d.factors)])
        want = _dense_modes(d, th)
        np.testing.assert_allclose(got, want, rtol=1e-8, atol=1e-9 * max(1.0, np.abs(want).max()))
        # the spherical modes and beta of the penalised least-squares problem (PIRLS's step)
        Z, Lam = dense_Z_Lambda(d, th)
        U = Z @ Lam
        A = np.block([[U.T @ U + np.eye(U.shape[1]), U.T @ d.X], [d.X.T @ U, d.X.T @ d.X]])
        full = np.linalg.solve(A, np.concatenate([U.T @ d.y, d.X.T @ d.y]))
        u = np.concatenate([np.asarray(v)[:, :fac.nlevels].T.reshape(-1) for v, fac in zip(sol.u, d.factors)])
        np.testing.assert_allclose(u, full[:U.shape[1]], rtol=1e-8, atol=1e-9 * max(1.0, np.abs(full).max()))
        np.testing.assert_allclose(sol.beta, full[U.shape[1]:], rtol=1e-8, atol=1e-9)


@pytest.mark.parametrize("formula", ["y ~ x + (x | g)", "y ~ x + (x | g) + (1 | h)", "y ~ x + (1 | a/b)"])
def test_exact_hessian_equals_differences_of_the_gradient(formula):
    d = build_design(formula, _data())
    lay = build_layout(d)
    st = compute_stats(d, lay)
    th = np.linspace(0.9, 0.2, lay.ntheta) * np.where(lay.is_diag(), 1.0, -0.3)
    H = hessian_theta(th, st, lay, True)
    g = jax.jit(jax.grad(lambda t: pls.objective(t, st, lay, True)))
    h = 1e-5
    fd = np.stack([(np.asarray(g(th + h * e)) - np.asarray(g(th - h * e))) / (2 * h) for e in np.eye(lay.ntheta)])
    np.testing.assert_allclose(H, 0.5 * (fd + fd.T), rtol=1e-5, atol=1e-6)


def test_plans_agree_on_a_larger_crossed_design():
    """Dense coupling, scalar map and pairs of pairs: the same criterion on the same data."""
    rng = np.random.default_rng(2)
    n = 600
    df = pd.DataFrame({"g": rng.integers(0, 40, n), "h": rng.integers(0, 15, n), "x": rng.normal(size=n)})
    df["y"] = df.x + rng.normal(size=40)[df.g] + rng.normal(size=15)[df.h] + rng.normal(size=n)
    vals = []
    for plan in [Plan("crossed", "dense", "dense"), Plan("crossed", "sparse", "scalar"), Plan("crossed", "sparse", "pairs")]:
        d = build_design("y ~ x + (1 | g) + (1 | h)", df)
        lay = dataclasses.replace(build_layout(d), plan=plan)
        st = compute_stats(d, lay)
        vals.append(float(pls.objective(np.array([0.7, 0.4]), st, lay, True)))
    np.testing.assert_allclose(vals, vals[0], rtol=1e-12)


@pytest.mark.parametrize("formula", ["y ~ x + (1 | g) + (1 | h)", "y ~ x + (1 | g) + (1 | h) + (1 | a)"])
def test_large_scalar_dense_block_by_its_pattern_equals_the_whole_block(formula):
    """A dense block wider than SMALL_DENSE (host LAPACK) formed from its pattern's values
    (engine/pattern.py) and as a whole block: criterion, gradient and exact Hessian."""
    from jaxhlm._src.engine import kernels as K

    rng = np.random.default_rng(5)
    n, G, Hn = 2500, 400, K.SMALL_DENSE + 30
    df = pd.DataFrame({"g": rng.integers(0, G, n), "h": rng.integers(0, Hn, n), "a": rng.integers(0, 6, n),
                       "x": rng.normal(size=n)})
    df["y"] = df.x + rng.normal(size=G)[df.g] + rng.normal(size=Hn)[df.h] + rng.normal(size=6)[df.a] + rng.normal(size=n)
    d = build_design(formula, df)
    lay = build_layout(d)
    st = compute_stats(d, lay)
    assert lay.plan.fill == "scalar" and st.fill.up is not None and lay.QD > K.SMALL_DENSE
    whole = st._replace(fill=st.fill._replace(slot=None, up=None, lo=None))
    th = np.linspace(0.7, 1.3, lay.ntheta)
    for reml in (False, True):
        f = jax.jit(jax.value_and_grad(lambda t, s: pls.objective(t, s, lay, reml)))
        (v1, g1), (v2, g2) = f(th, st), f(th, whole)
        assert float(v1) == pytest.approx(float(v2), rel=1e-12)
        np.testing.assert_allclose(np.asarray(g1), np.asarray(g2), rtol=1e-9, atol=1e-9)
        np.testing.assert_allclose(hessian_theta(th, st, lay, reml), hessian_theta(th, whole, lay, reml),
                                   rtol=1e-8, atol=1e-8)
