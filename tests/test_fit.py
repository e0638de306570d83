"""optim.fit: the compiled fit, the boundary checks after it, and lme4's convergence rule.

The property test fits random small designs and holds the deviance against a brute-force
minimisation of the dense criterion (tests/test_oracle.py) from several starts, the boundary
points among them: the fit must never end above a point it should have compared with.
"""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.optimize

import jaxhlm
from jaxhlm._src.design.build import build_design
from jaxhlm._src.engine.pls import objective
from jaxhlm._src.optim.fit import criterion_at, optimize
from jaxhlm._src.stats.layout import build_layout
from jaxhlm._src.stats.suffstats import compute_stats

from test_oracle import dense_deviance


def _nels(formula):
    from conftest import load_data

    d = build_design(formula, load_data("nels_like.csv"))
    lay = build_layout(d)
    return d, lay, compute_stats(d, lay, precondition=False)  # absolute numbers of the raw [X y]


@pytest.mark.parametrize("reml", [False, True])
def test_criterion_at_uses_the_fit_program(reml):
    _, lay, st = _nels("mathscore ~ family_inc + (family_inc | sch_id)")
    for theta in ([0.5, -0.03, 0.02], [0.0, 0.1, 0.3], [1.0, 0.0, 0.0]):
        want = float(objective(np.asarray(theta), st, lay, reml))
        np.testing.assert_allclose(criterion_at(np.asarray(theta), st, lay, reml), want, rtol=1e-12)


def test_optimum_results_match_the_factorisation():
    d, lay, st = _nels("mathscore ~ family_inc + (family_inc | sch_id)")
    opt = optimize(st, lay, False)
    assert opt.converged and opt.objective == pytest.approx(60310.495947, abs=1e-5)
    ref = float(objective(opt.theta, st, lay, False))
    assert opt.objective == pytest.approx(ref, rel=1e-13)
    X, y = d.X, d.y
    assert np.all(np.isfinite(opt.beta)) and opt.beta.shape == (2,)
    assert opt.r2 > 0 and opt.ldRX2 == pytest.approx(2 * np.sum(np.log(np.diag(opt.Lx))))


def _small_design(seed):
    rng = np.random.default_rng(seed)
    J = rng.integers(3, 6)  # few groups: multimodal criteria (interior optima above boundary ones)
    nj = rng.integers(2, 5, J)
    g = np.repeat(np.arange(J), nj)
    x = rng.normal(size=g.size)
    sd0, sd1 = rng.choice([0.0, 0.3, 1.5]), rng.choice([0.0, 0.2, 1.0])
    y = 1 + 0.5 * x + sd0 * rng.normal(size=J)[g] + sd1 * rng.normal(size=J)[g] * x + rng.normal(size=g.size)
    return pd.DataFrame({"y": y, "x": x, "g": g})


def _brute_force(design, reml):
    """Minimum of the dense criterion over theta, from a grid of starts including the boundary."""
    def f(th):
        try:
            v = dense_deviance(th, design, reml, woodbury=True)
        except np.linalg.LinAlgError:
            return 1e10
        return v if np.isfinite(v) else 1e10

    lay = build_layout(design)
    diag = lay.is_diag()
    bounds = [(0.0, 50.0) if dg else (-50.0, 50.0) for dg in diag]
    best = np.inf
    starts = [lay.lme4_start(), np.zeros(lay.ntheta), np.array([1.0, 0.0, 0.0]), np.array([0.0, 0.0, 1.0]),
              np.array([0.3, 0.5, 0.3]), np.array([2.0, -1.0, 0.5]), np.array([0.5, 0.5, 0.0])]
    for x0 in starts:
        res = scipy.optimize.minimize(f, x0, method="L-BFGS-B", bounds=bounds, options={"ftol": 1e-15, "gtol": 1e-10})
        best = min(best, res.fun)
    return best


@pytest.mark.parametrize("reml", [False, True])
def test_fits_of_random_small_designs_reach_the_brute_force_optimum(reml):
    worst = []
    for seed in range(40):
        df = _small_design(seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            m = jaxhlm.lmer("y ~ x + (x | g)", df, reml=reml)
        best = _brute_force(m.design, reml)
        worst.append(m.objective - best)
        assert m.objective <= best + 1e-6, (seed, m.objective, best, m.theta.to_numpy())
    assert max(worst) <= 1e-6


def test_boundary_optimum_is_snapped_to_exactly_zero():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=g.size)
    df = pd.DataFrame({"y": 1.0 + x + rng.normal(size=g.size), "x": x, "g": g})
    with pytest.warns(jaxhlm.SingularFitWarning):
        m = jaxhlm.lmer("y ~ x + (1 | g)", df)
    if m.theta.iloc[0] != 0.0:  # when zero is the optimum it is reported as exactly zero
        f0 = float(objective(np.array([0.0]), m.stats, m.layout, True))
        assert f0 > float(m.opt.objective) + 1e-10  # (the engine's criterion: preconditioned statistics)
    else:
        assert m.ranef_condsd["g"].to_numpy().max() == 0.0
