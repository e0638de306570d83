"""optim/recentre.py: random-effect columns with a large mean are searched centred and mapped back."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm._src.optim import recentre
from jaxhlm._src.optim.fit import criterion_at
from jaxhlm._src.stats.suffstats import compute_stats

from conftest import load_data

F = "Reaction ~ Days + (Days | Subject)"


def _fit(df, formula=F, reml=False, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jaxhlm.lmer(formula, df, reml=reml, **kw)


@pytest.fixture(scope="module")
def sleep():
    return load_data("sleepstudy.csv")


@pytest.fixture(scope="module")
def base(sleep):
    return _fit(sleep)


def _sigma_b(m) -> np.ndarray:
    """The random effects' covariance of the (only) term, in the response's units."""
    T = m.T_blocks()[0]
    return m.sigma**2 * (T @ T.T)


@pytest.mark.parametrize("c", [3e2, 1e3, 1e4])
def test_shifted_slope_gives_the_unshifted_model(sleep, base, c):
    """``(Days + c | Subject)`` is ``(Days | Subject)`` reparametrised: the same deviance, residual
    SD and slope, and the random effects' covariance ``N^-1 Sigma N^-T`` (``N = [[1, c], [0, 1]]``);
    without the centred search the fit stopped above the optimum (by 2e-5 at 1e4, 28 at 1e6) and
    was flagged singular."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no singular-fit, convergence or precision warning
        m = jaxhlm.lmer("Reaction ~ Days + (Dc | Subject)", sleep.assign(Dc=sleep["Days"] + c), reml=False)
    assert m.objective == pytest.approx(base.objective, abs=1e-8)
    assert m.sigma == pytest.approx(base.sigma, rel=1e-7)
    assert m.fixef["Days"] == pytest.approx(base.fixef["Days"], rel=1e-6)
    assert not m.is_singular
    Ni = np.array([[1.0, -c], [0.0, 1.0]])
    want = Ni @ _sigma_b(base) @ Ni.T
    got = _sigma_b(m)
    np.testing.assert_allclose(got[1, 1], want[1, 1], rtol=1e-5)
    np.testing.assert_allclose(got[0, 0], want[0, 0], rtol=1e-5)
    np.testing.assert_allclose(got[0, 1] / np.sqrt(got[0, 0] * got[1, 1]),
                               want[0, 1] / np.sqrt(want[0, 0] * want[1, 1]), atol=1e-9)
    # the conditional modes follow b = N^-1 b_base, up to the intercept's cancellation
    b, b0 = m.ranef["Subject"].to_numpy(), base.ranef["Subject"].to_numpy()
    scale = np.abs(b0[:, 1]).max()
    np.testing.assert_allclose(b[:, 1], b0[:, 1], rtol=0, atol=1e-5 * scale)
    np.testing.assert_allclose(b[:, 0], b0[:, 0] - c * b0[:, 1], rtol=0, atol=1e-5 * c * scale)


def test_reml_fit_and_summary_numbers_unchanged(sleep):
    a = _fit(sleep, reml=True)
    b = _fit(sleep.assign(Dc=sleep["Days"] + 1e4), "Reaction ~ Days + (Dc | Subject)", reml=True)
    assert b.objective == pytest.approx(a.objective, rel=1e-9)
    np.testing.assert_allclose(b.se.to_numpy(), a.se.to_numpy(), rtol=1e-5)
    ta, tb = a.summary().coef_table, b.summary().coef_table
    np.testing.assert_allclose(tb["df"].to_numpy(float), ta["df"].to_numpy(float), rtol=1e-4)


def test_extreme_shift_is_exact_where_it_counts_and_warns_naming_the_column(sleep, base):
    """At a shift of 1e7 the user's columns cannot hold the criterion to working accuracy: the
    criterion, beta, sigma and the variance components still come from the centred search (exact;
    the plain search stopped 42 units above the optimum), and a warning names the column."""
    d = sleep.assign(Dc=sleep["Days"] + 1e7)
    with pytest.warns(jaxhlm.DataWarning, match=r"'Dc' of \(Dc \| Subject\)"):
        m = jaxhlm.lmer("Reaction ~ Days + (Dc | Subject)", d, reml=False)
    assert m.objective == pytest.approx(base.objective, abs=1e-8)
    assert m.sigma == pytest.approx(base.sigma, rel=1e-7)
    np.testing.assert_allclose(m.fixef.to_numpy(), base.fixef.to_numpy(), rtol=1e-7)
    assert not m.is_singular and m.converged
    vc, vc0 = m.varcorr.set_index(["grp", "var1"]), base.varcorr.set_index(["grp", "var1"])
    sd, sd0 = vc["sdcor"].to_numpy(), vc0["sdcor"].to_numpy()
    assert vc.index[1] == ("Subject", "Dc") and sd[1] == pytest.approx(sd0[1], rel=1e-6)  # the slope's SD


def test_theta_map_is_exact_for_full_and_singular_factors():
    rng = np.random.default_rng(3)
    d = load_data("sleepstudy.csv").assign(D2=lambda x: x["Days"] ** 2 + 5000.0, D1=lambda x: x["Days"] + 300.0)
    m = _fit(d, "Reaction ~ Days + (D1 + D2 | Subject)")
    shifts = recentre.shifted_columns(m.design)
    assert [(s.j, round(s.c, 6)) for s in shifts] == [(1, 304.5), (2, round(float(d["D2"].mean()), 6))]
    lay = m.layout
    for singular in (False, True):
        Tc = np.tril(rng.normal(size=(3, 3)))
        if singular:
            Tc[2, 2] = 0.0
        th_c = np.array([Tc[r, c] for r, c in zip(lay.theta_row, lay.theta_col)])
        th = recentre.theta_from_centred(th_c, lay, m.design, shifts)
        T = lay.T_arrays(th)[0]
        M = np.eye(3)
        M[0, 1], M[0, 2] = -shifts[0].c, -shifts[1].c
        np.testing.assert_allclose(T @ T.T, M @ Tc @ Tc.T @ M.T, rtol=1e-12, atol=1e-12 * np.abs(M).max() ** 2)
        assert np.all(np.diagonal(T) >= 0) and np.allclose(T, np.tril(T))
    # and the criterion agrees at corresponding points
    cd = recentre.centred_design(m.design, shifts)
    sc = compute_stats(cd, lay)
    th = recentre.theta_from_centred(th_c, lay, m.design, shifts)
    assert criterion_at(th, m.stats, lay, False) == pytest.approx(criterion_at(th_c, sc, lay, False), rel=1e-9)
    assert np.all(m.design.terms[0].Z[:, 1] == d["D1"].to_numpy())  # the user's design is untouched


@pytest.mark.parametrize("formula", ["Reaction ~ Days + (Dc || Subject)", "Reaction ~ Days + (0 + Dc | Subject)",
                                     "Reaction ~ Days + (1 | Subject) + (0 + Dc | Subject)"])
def test_terms_whose_model_changes_with_a_shift_are_left_alone(sleep, formula):
    m = _fit(sleep.assign(Dc=sleep["Days"] + 1e4), formula)
    assert recentre.shifted_columns(m.design) == []


def test_well_centred_columns_take_the_usual_route(sleep, base):
    assert recentre.shifted_columns(base.design) == []
    assert recentre.fit_recentred(base.design, base.layout, base.stats, False) is None


def test_conditional_covariances_and_anova_follow_the_reparametrisation(sleep, base):
    """condVar blocks map as ``N^-1 V N^-T``; the likelihood-ratio test against the random
    intercept model and the F test of Days are those of the unshifted model."""
    c = 1e4
    d = sleep.assign(Dc=sleep["Days"] + c)
    m = _fit(d, "Reaction ~ Days + (Dc | Subject)")
    Ni = np.array([[1.0, -c], [0.0, 1.0]])
    V, V0 = m.ranef_condvar["Subject"], base.ranef_condvar["Subject"]
    want = Ni @ V0 @ Ni.T
    np.testing.assert_allclose(V[:, 1, 1], want[:, 1, 1], rtol=1e-5)
    np.testing.assert_allclose(V[:, 0, 0], want[:, 0, 0], rtol=1e-5)
    small = _fit(d, "Reaction ~ Days + (1 | Subject)")
    a, a0 = jaxhlm.anova(small, m), jaxhlm.anova(_fit(sleep, "Reaction ~ Days + (1 | Subject)"), base)
    np.testing.assert_allclose(a["Chisq"].to_numpy(float)[1], a0["Chisq"].to_numpy(float)[1], rtol=1e-6)
    f, f0 = m.anova(), base.anova()
    np.testing.assert_allclose(f[["F value", "DenDF"]].to_numpy(float), f0[["F value", "DenDF"]].to_numpy(float),
                               rtol=1e-5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_designs_shifted_by_powers_of_ten_keep_their_deviance(seed):
    """Random two-slope designs: each slope column shifted by 10^k (k = 2..5, ratios up to about
    1e5 spreads) fits to the deviance of the unshifted design."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(12), 8)
    x, z = rng.normal(size=96), rng.uniform(0, 1, 96)
    B = rng.multivariate_normal([0, 0, 0], [[1, 0.3, 0], [0.3, 0.5, 0.1], [0, 0.1, 0.4]], size=12)
    y = 1 + x + 0.5 * z + B[g, 0] + B[g, 1] * x + B[g, 2] * z + rng.normal(0, 0.5, 96)
    df = pd.DataFrame({"y": y, "x": x, "z": z, "g": g.astype(str)})
    f = "y ~ x + z + (1 + x + z | g)"
    m0 = _fit(df, f)
    for k in (2, 3, 4, 5):
        m = _fit(df.assign(x=x + 10.0**k, z=z - 3 * 10.0**k), f)
        assert m.objective == pytest.approx(m0.objective, abs=1e-7 * (1 + abs(m0.objective))), k
        assert m.sigma == pytest.approx(m0.sigma, rel=1e-6), k
        assert m.is_singular == m0.is_singular


def test_refits_from_a_start_search_the_centred_terms(sleep, base):
    """lme4's refitML of a REML fit (anova's ML refit) and a refit from a user's start map the
    start to the centred terms: the ML optimum of the unshifted model."""
    from jaxhlm._src.model.pipeline import refit_ml

    d = sleep.assign(Dc=sleep["Days"] + 1e4)
    m_reml = _fit(d, "Reaction ~ Days + (Dc | Subject)", reml=True)
    ml = refit_ml(m_reml)
    assert ml.objective == pytest.approx(base.objective, abs=1e-8)
    th = recentre.theta_from_centred(base.theta.to_numpy(), ml.layout, ml.design,
                                     recentre.shifted_columns(ml.design))
    np.testing.assert_allclose(recentre.theta_from_centred(th, ml.layout, ml.design,
                                                           recentre.shifted_columns(ml.design), inverse=True),
                               base.theta.to_numpy(), rtol=1e-9, atol=1e-12)
    m = _fit(d, "Reaction ~ Days + (Dc | Subject)", start=th)
    assert m.objective == pytest.approx(base.objective, abs=1e-8)


def test_profile_intervals_of_unchanged_quantities_are_the_unshifted_models(sleep, base):
    """Profiles of the fixed effects, sigma and the slope's SD run on the centred twin (they were
    off by 0.14 for Days at a shift of 1e3); the intercept's SD, a different quantity, is
    profiled in the user's columns and is close to c times the slope's."""
    c = 1e3
    m = _fit(sleep.assign(Dc=sleep["Days"] + c), "Reaction ~ Days + (Dc | Subject)")
    ci, ci0 = m.confint(method="profile"), base.confint(method="profile")
    same = [".sig03", ".sigma", "(Intercept)", "Days"]
    np.testing.assert_allclose(ci.loc[same].to_numpy(), ci0.loc[same].to_numpy(), rtol=1e-5)
    np.testing.assert_allclose(ci.loc[".sig01"].to_numpy(), c * ci0.loc[".sig03"].to_numpy(), rtol=2e-3)
    assert ci.loc[".sig02"].to_numpy() == pytest.approx([-1.0, -1.0], abs=1e-4)
    twin = m.centred_twin()
    assert twin.objective == pytest.approx(base.objective, abs=1e-8) and base.centred_twin() is None


def test_batched_refits_run_on_the_centred_twin_and_report_the_users_theta(sleep, base):
    c = 1e4
    m = _fit(sleep.assign(Dc=sleep["Days"] + c), "Reaction ~ Days + (Dc | Subject)")
    Y = base.simulate(nsim=4, seed=11)
    r, r0 = m.refit_many(Y, progress=False), base.refit_many(Y, progress=False)
    for col in ("objective", "sigma", "beta.Days", "se.Days", "df.Days"):
        np.testing.assert_allclose(r[col].to_numpy(), r0[col].to_numpy(), rtol=1e-5, err_msg=col)
    assert r.shape == r0.shape and r["converged"].all()
    th0 = r0[[c_ for c_ in r0.columns if c_.startswith("theta.")]].to_numpy()
    th = r[[c_ for c_ in r.columns if c_.startswith("theta.")]].to_numpy()
    shifts = recentre.shifted_columns(m.design)
    want = np.array([recentre.theta_from_centred(t, m.layout, m.design, shifts) for t in th0])
    # (theta in these columns amplifies the refits' optimiser tolerance: T_11 ~ sqrt(1 - rho^2))
    np.testing.assert_allclose(th, want, rtol=2e-3)


def test_kenward_roger_runs_on_the_centred_twin(sleep):
    a = _fit(sleep, reml=True)
    b = _fit(sleep.assign(Dc=sleep["Days"] + 1e4), "Reaction ~ Days + (Dc | Subject)", reml=True)
    ka, kb = a.coef_table_kr(), b.coef_table_kr()
    np.testing.assert_allclose(kb[["Std. Error", "df"]].to_numpy(float), ka[["Std. Error", "df"]].to_numpy(float),
                               rtol=1e-6)


def test_large_mean_is_the_preconditioners_rule():
    """One rule for fixed-effect columns (stats/xform) and random-effect columns (here)."""
    from jaxhlm._src.stats.xform import large_mean, needs_preconditioning

    x = np.linspace(0.0, 9.0, 180)
    for c, scale in [(0.0, 1.0), (50.0, 1.0), (1e4, 1.0), (1e4, 1e155), (1e4, 1e-170)]:
        z = (x + c) * scale
        got = large_mean(z)
        shifted = c > 100 * x.std()
        assert (got is not None) == shifted, (c, scale)
        if scale == 1.0:  # the fixed-effect side decides the same
            assert needs_preconditioning(np.column_stack([np.ones_like(z), z])) == shifted
        if got is not None:
            assert got == pytest.approx((4.5 + c) * scale, rel=1e-12)
    assert large_mean(np.full(10, 3.0)) is None and large_mean(np.zeros(4)) is None
