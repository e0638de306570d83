"""optim.start: the moment (Swamy) estimate of theta from the statistics."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import load_data

import jaxhlm
from jaxhlm._src.design.build import build_design
from jaxhlm._src.optim.start import moment_start
from jaxhlm._src.stats.layout import build_layout
from jaxhlm._src.stats.suffstats import compute_stats


def test_moment_start_is_close_to_the_optimum():
    df = load_data("sleepstudy.csv")
    m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", df)
    th0 = m.layout.rectify(moment_start(m.layout, m.stats))
    np.testing.assert_allclose(th0, m.theta.to_numpy(), rtol=0.1, atol=0.02)
    m2 = jaxhlm.lmer("Reaction ~ Days + (Days || Subject)", df)
    th0 = moment_start(m2.layout, m2.stats)
    assert th0.shape == (2,) and np.all(th0 > 0)
    np.testing.assert_allclose(th0, m2.theta.to_numpy(), rtol=0.1)


def test_moment_start_never_starts_on_zero():
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=300)
    df = pd.DataFrame({"y": 1.0 + 0.5 * x + rng.normal(size=300), "x": x, "g": g})  # no group effect
    with pytest.warns(jaxhlm.SingularFitWarning):
        m = jaxhlm.lmer("y ~ x + (x | g)", df, reml=False)
    th0 = moment_start(m.layout, m.stats)
    assert np.all(np.isfinite(th0)) and np.all(np.abs(th0[m.layout.is_diag()]) > 0)
    assert m.is_singular


def test_moment_start_falls_back_to_lme4_start_when_undefined():
    df = pd.DataFrame({"y": [1.0, 2.0, 4.0, 3.0, 5.0, 7.0], "x": [0.0, 1.0, 2.0, 0.0, 1.0, 3.0],
                       "g": [1, 1, 1, 2, 2, 2]})
    d = build_design("y ~ x + (x | g)", df)
    lay = build_layout(d)
    np.testing.assert_array_equal(moment_start(lay, compute_stats(d, lay)), lay.lme4_start())


@pytest.mark.parametrize("fname, formula, reml", [
    ("nels_like.csv", "mathscore ~ family_inc + (family_inc | sch_id)", False),
    ("Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", True),
    ("Pastes.csv", "strength ~ 1 + (1 | batch/cask)", True),
])
def test_moment_start_and_lme4_start_reach_the_same_optimum(fname, formula, reml):
    df = load_data(fname)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxhlm.SingularFitWarning)
        m = jaxhlm.lmer(formula, df, reml=reml)
        m1 = jaxhlm.lmer(formula, df, reml=reml, start=m.layout.lme4_start())
    assert abs(m.objective - m1.objective) < 1e-6
    np.testing.assert_allclose(m.fixef, m1.fixef, rtol=1e-5)


def test_moment_start_with_four_correlated_random_effects():
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
    m1 = jaxhlm.lmer(f, df, reml=False, start=m.layout.lme4_start())
    assert m.converged and m1.converged
    assert abs(m.objective - m1.objective) < 1e-6
    assert m.optinfo["iterations"] < m1.optinfo["iterations"]


def _crossed_data(seed=3, n_s=60, n_i=40, sd_s=0.5, sd_i=0.8):
    rng = np.random.default_rng(seed)
    s, i = np.meshgrid(np.arange(n_s), np.arange(n_i), indexing="ij")
    s, i = s.ravel(), i.ravel()
    keep = rng.random(s.size) < 0.7  # unbalanced: 70% of the pairs
    s, i = s[keep], i[keep]
    x = rng.normal(size=s.size)
    y = 2.0 + 0.3 * x + sd_s * rng.normal(size=n_s)[s] + sd_i * rng.normal(size=n_i)[i] + rng.normal(size=s.size)
    return pd.DataFrame({"y": y, "x": x, "s": s, "i": i})


def test_crossed_start_shares_one_residual_variance():
    """Each crossed factor's within-level variance holds the other factor's variance too: the
    moments divided by one corrected residual variance start closer to the optimum than each
    factor's own (12% and 5% low on InstEval) and the fit takes fewer gradient calls."""
    from jaxhlm._src.optim import start as S

    df = _crossed_data()
    m = jaxhlm.lmer("y ~ x + (1 | s) + (1 | i)", df, reml=True)
    opt = m.theta.to_numpy()
    th0 = moment_start(m.layout, m.stats)
    own = []
    for f in range(2):
        cov_b, V, s2 = S._swamy_parts(*S._factor_blocks(m.stats, m.layout, f), np.asarray(m.stats.XytXy), float(m.stats.n))
        own.append(np.sqrt(S._relative(cov_b, V, s2)[0, 0]))
    assert np.all(np.abs(th0 / opt - 1) < 0.1)
    assert np.all(np.abs(th0 / opt - 1) < np.abs(np.array(own) / opt - 1))
    m_own = jaxhlm.lmer("y ~ x + (1 | s) + (1 | i)", df, reml=True, start=own)
    assert abs(m_own.objective - m.objective) < 1e-8
    assert m.optinfo["iterations"] <= m_own.optinfo["iterations"]


def test_overlap_of_crossed_and_nested_factors():
    from jaxhlm._src.optim.start import _overlap

    # every (a, k) pair once, 4 levels of a x 5 of k: within a level of a, k varies but for
    # the share 1/n_a its level mean takes
    a, k = np.repeat(np.arange(4), 5), np.tile(np.arange(5), 4)
    w = np.ones(20)
    assert _overlap(w, a) == pytest.approx(1 - 4 / 20)
    assert _overlap(w, k) == pytest.approx(1 - 5 / 20)
    # classes nested in schools: within a class the school does not vary at all
    cls, sch = np.arange(6), np.array([0, 0, 0, 1, 1, 1])
    cnt = np.array([3.0, 4, 5, 2, 2, 6])
    assert _overlap(cnt, cls) == 0.0
    assert 0 < _overlap(cnt, sch) < 1
    assert _overlap(np.r_[cnt, 0.0], np.r_[cls, 99]) == 0.0  # padding pairs (weight 0) ignored
