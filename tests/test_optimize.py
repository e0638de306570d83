"""The optimiser's pieces: the moment start and the Hessian-seeded quasi-Newton."""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.optim.fit import quasi_newton, rectify
from jaxhlm._src.optim.start import lme4_start, moment_start

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


def _vg(f):
    return jax.jit(jax.value_and_grad(lambda x: (f(x), {}), has_aux=True))


def test_seeded_quasi_newton_is_newton_on_a_quadratic():
    A = jnp.array([[4.0, 1.0, 0.5], [1.0, 3.0, 0.2], [0.5, 0.2, 2.0]]) * 100.0
    b = jnp.array([1.0, -2.0, 3.0])
    f = lambda x: 0.5 * x @ A @ x - b @ x
    res = quasi_newton(_vg(f), jnp.zeros(3), seed_hessian=True)
    np.testing.assert_allclose(res["x"], np.linalg.solve(A, b), rtol=1e-6)
    assert bool(res["converged"])
    # 1 call at x0, 3 probes, the Newton step and the confirming call at most
    assert int(res["it"]) <= 6
    plain = quasi_newton(_vg(f), jnp.zeros(3))
    assert int(plain["it"]) > int(res["it"])


def test_seed_that_is_not_positive_definite_falls_back():
    f = lambda x: (x[0] ** 2 - 1.0) ** 2 + 10.0 * x[1] ** 2  # concave in x[0] near 0
    res = quasi_newton(_vg(f), jnp.array([0.1, 0.3]), seed_hessian=True)
    assert bool(res["converged"])
    np.testing.assert_allclose(np.abs(res["x"]), [1.0, 0.0], atol=1e-5)


def test_moment_start_is_close_to_the_optimum():
    df = pd.read_csv(os.path.join(DATA, "sleepstudy.csv"))
    m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", df)
    th0 = rectify(moment_start(m._struct, m._stats), m._struct)
    np.testing.assert_allclose(th0, m.theta.to_numpy(), rtol=0.1, atol=0.02)
    m2 = jaxhlm.lmer("Reaction ~ Days + (Days || Subject)", df)
    th0 = moment_start(m2._struct, m2._stats)
    assert th0.shape == (2,) and np.all(th0 > 0)
    np.testing.assert_allclose(th0, m2.theta.to_numpy(), rtol=0.1)


def test_moment_start_never_starts_on_zero():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    df = pd.DataFrame({"y": 1.0 + 0.5 * x + rng.normal(size=300), "x": x, "g": g})  # no group effect
    with pytest.warns(jaxhlm.SingularFitWarning):
        m = jaxhlm.lmer("y ~ x + (x | g)", df, reml=False)
    th0 = moment_start(m._struct, m._stats)
    diag = m._struct.theta_is_diag()
    assert np.all(np.isfinite(th0)) and np.all(np.abs(th0[diag]) > 0)
    assert m.is_singular


def test_moment_start_falls_back_to_lme4_start_when_undefined():
    df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0, 5.0, 7.0], "x": [0.0, 1.0, 2.0, 0.0, 1.0, 3.0],
                       "g": [1, 1, 1, 2, 2, 2]})
    from jaxhlm._src.design.build import build_design
    from jaxhlm._src.stats.suffstats import build_structure, compute_stats

    d = build_design("y ~ x + (x | g)", df)
    s = build_structure(d)
    np.testing.assert_array_equal(moment_start(s, compute_stats(d, s)), lme4_start(s))


@pytest.mark.parametrize(
    "fname, formula, reml",
    [
        ("nels_like.csv", "mathscore ~ family_inc + (family_inc | sch_id)", False),
        ("Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
        ("Pastes.csv", "strength ~ 1 + (1 | batch/cask)", True),
    ],
)
def test_moment_start_and_lme4_start_reach_the_same_optimum(fname, formula, reml):
    df = pd.read_csv(os.path.join(DATA, fname))
    m = jaxhlm.lmer(formula, df, reml=reml)
    m1 = jaxhlm.lmer(formula, df, reml=reml, start=lme4_start(m._struct))
    assert abs(m.objective - m1.objective) < 1e-6
    np.testing.assert_allclose(m.fixef, m1.fixef, rtol=1e-5)


def test_moment_start_with_four_correlated_random_effects():
    """q = 4 (batched LAPACK branch of the start): same optimum as lme4's start, fewer iterations."""
    rng = np.random.default_rng(5)
    J, nj = 200, 12
    g = np.repeat(np.arange(J), nj)
    n = J * nj
    X = rng.normal(size=(n, 3))
    L = np.array([[1.0, 0, 0, 0], [0.3, 0.5, 0, 0], [-0.2, 0.1, 0.4, 0], [0.1, 0.0, 0.2, 0.3]])
    b = rng.normal(size=(J, 4)) @ L.T
    y = 1 + X @ [0.5, -0.3, 0.2] + b[g, 0] + (b[g, 1:] * X).sum(1) + rng.normal(size=n)
    df = pd.DataFrame({"y": y, "x1": X[:, 0], "x2": X[:, 1], "x3": X[:, 2], "g": g})
    f = "y ~ x1 + x2 + x3 + (x1 + x2 + x3 | g)"
    m = jaxhlm.lmer(f, df, reml=False)
    m1 = jaxhlm.lmer(f, df, reml=False, start=lme4_start(m._struct))
    assert m.converged and m1.converged
    assert abs(m.objective - m1.objective) < 1e-6
    assert m.optinfo["iterations"] < m1.optinfo["iterations"]


def _nels(formula):
    from jaxhlm._src.design.build import build_design
    from jaxhlm._src.stats.suffstats import build_structure, compute_stats

    d = pd.read_csv(os.path.join(DATA, "nels_like.csv"))
    design = build_design(formula, d)
    struct = build_structure(design)
    return design, struct, compute_stats(design, struct)


def test_packed_fit_unpacks_to_the_fit_dict():
    from jaxhlm._src.optim.fit import _fit_core, run_fit

    _, struct, stats = _nels("mathscore ~ family_inc + (family_inc | sch_id)")
    th0 = lme4_start(struct)
    core = jax.jit(_fit_core, static_argnames=("struct", "reml", "moment"))
    ref = jax.device_get(core(jnp.asarray(th0), stats, struct, False, moment=True))
    got = run_fit(th0, stats, struct, False, moment=True)
    for k, v in ref.items():
        np.testing.assert_array_equal(np.asarray(got[k]), np.asarray(v), err_msg=k)
    # beta, r^2 and L_X from the optimum's L_XX (host) match the conditional-modes solution
    from jaxhlm._src.engine.pls import conditional_modes

    cm = jax.device_get(conditional_modes(jnp.asarray(got["theta"]), stats, struct))
    np.testing.assert_allclose(got["beta"], cm["beta"], rtol=1e-10)
    np.testing.assert_allclose(got["r2"], cm["r2"], rtol=1e-10)
    np.testing.assert_allclose(got["ldRX2"], cm["ldRX2"], rtol=1e-10)
    np.testing.assert_allclose(got["ldL2"], cm["ldL2"], rtol=1e-10)


@pytest.mark.parametrize("formula", ["mathscore ~ family_inc + (family_inc | sch_id)",
                                     "mathscore ~ family_inc + (family_inc || sch_id)",
                                     "mathscore ~ family_inc + (1 | sch_id)"])
def test_one_factor_modes_match_the_blocked_solution(formula):
    """random_effects' closed form (onefactor.modes) against the general blocked solve."""
    from jaxhlm._src.engine.pls import conditional_modes
    from jaxhlm._src.optim.fit import random_effects

    _, struct, stats = _nels(formula)
    theta = jnp.asarray(np.linspace(0.3, 0.05, struct.ntheta) * np.where(struct.theta_is_diag(), 1.0, -0.2))
    got = random_effects(theta, stats, struct)
    cm = conditional_modes(theta, stats, struct)
    np.testing.assert_allclose(got["bA"], np.asarray(cm["Ts"][0] @ cm["uA"]), rtol=1e-9, atol=1e-12)


def test_modes_are_computed_on_first_use():
    d = pd.read_csv(os.path.join(DATA, "nels_like.csv"))
    m = jaxhlm.lmer("mathscore ~ family_inc + (1 | sch_id)", d, reml=False)
    assert "bA" not in m._fit  # the fit stops at theta
    b = m.ranef["sch_id"]
    assert b.shape == (m.ngroups["sch_id"], 1) and np.isfinite(b.to_numpy()).all()
    np.testing.assert_allclose(m.resid.to_numpy(), m.y.to_numpy() - m.fitted.to_numpy())


@pytest.mark.parametrize("reml", [False, True])
def test_criterion_check_uses_the_fit_program(reml):
    """criterion() (one loop iteration of the fit program) equals the blocked objective."""
    from jaxhlm._src.engine.pls import objective
    from jaxhlm._src.optim.fit import criterion

    _, struct, stats = _nels("mathscore ~ family_inc + (family_inc | sch_id)")
    for theta in ([0.5, -0.03, 0.02], [0.0, 0.1, 0.3], [1.0, 0.0, 0.0]):
        want = float(objective(jnp.asarray(theta), stats, struct, reml))
        np.testing.assert_allclose(criterion(np.asarray(theta), stats, struct, reml), want, rtol=1e-12)
