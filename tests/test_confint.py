"""Confidence intervals against lme4 1.1-31's confint (Wald and profile).

Profile intervals are compared within 1% of the interval's width. lme4 evaluates the profile
on a grid and interpolates splines; where it warned about that ("bad spline fit",
"non-monotonic profile") or where its fit stopped short of the optimum, its numbers are not
the exact profile: those parameters are checked against an independent Nelder-Mead
minimisation of the deviance instead. Profiles compile one constrained optimiser per model,
so by default only a few models are profiled; ``JAXHLM_SLOW_TESTS=1`` profiles every case.
"""
from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize

import jaxhlm
from conftest import fit_case, load_cases, load_reference
from jaxhlm._src.engine.pls import objective_vp

# InstEval (73k rows, two large crossed factors) takes minutes to fit: JAXHLM_SLOW_TESTS=1 only
CASES = [c["id"] for c in load_cases("lmer") if c["id"] != "insteval_reml" or os.environ.get("JAXHLM_SLOW_TESTS")]
SLOW = os.environ.get("JAXHLM_SLOW_TESTS") == "1"
PROFILE_DEFAULT = ["sleepstudy_rs_reml", "pastes_reml", "singular_ml"]


@pytest.mark.parametrize("case_id", CASES)
def test_wald_matches_lme4(case_id):
    ref = load_reference(case_id)["confint_wald"]
    m = fit_case(case_id)
    ci = m.confint(method="wald")
    assert list(ci.index) == ref["names"]
    assert list(ci.columns) == ref["columns"] == ["2.5 %", "97.5 %"]
    assert ci.attrs["names_long"] == ref["names_long"]
    lo, hi = np.array(ref["lower"], float), np.array(ref["upper"], float)
    nvar = int(np.sum(np.isnan(lo)))
    assert np.all(np.isnan(ci.iloc[:nvar].to_numpy()))
    width = hi[nvar:] - lo[nvar:]
    converged = (load_reference(case_id).get("objective_gap_default") or 0.0) < 1e-4
    tol = 0.01 if converged else 0.05
    assert np.all(np.abs(ci.iloc[nvar:, 0].to_numpy() - lo[nvar:]) <= tol * width)
    assert np.all(np.abs(ci.iloc[nvar:, 1].to_numpy() - hi[nvar:]) <= tol * width)


def _profile_reference(ref):
    r = ref.get("confint_profile")
    if not isinstance(r, dict) or r.get("names") is None:
        return None
    if r.get("lower") is None:  # lme4's default optimizer failed; the reference holds a fallback
        r = r.get("fallback") or {}
        if r.get("lower") is None:
            return None
    return r


def _unreliable(ref, r) -> set:
    """Parameters whose lme4 profile interpolation lme4 itself flagged."""
    bad = set()
    for w in r.get("warnings") or []:
        for name in r["names"]:
            if w.endswith(" " + name) or f"for {name}:" in w:
                bad.add(name)
    return bad


PROFILE_CASES = [c for c in CASES if _profile_reference(load_reference(c)) is not None]


def _check_profile(case_id, tol=0.01):
    ref = load_reference(case_id)
    r = _profile_reference(ref)
    m = fit_case(case_id)
    ci = m.confint()
    assert list(ci.index) == r["names"]
    assert ci.attrs["names_long"] == r["names_long"]
    lo, hi = np.array(r["lower"], float), np.array(r["upper"], float)
    width = hi - lo
    skip = _unreliable(ref, r)
    if (ref.get("objective_gap_default") or 0.0) > 1e-4:
        # lme4 profiled from a point short of the optimum: its variance-parameter intervals are
        # off (nels_m2 and nels_m2_reml, the same ML profile, get lower .sig03 = 0.015 and 0.063);
        # ours are checked independently in test_profile_nels_m2_independent
        tol = max(tol, 0.03)
        skip |= {nm for nm in r["names"] if nm.startswith(".sig") and nm != ".sigma"}
    for k, name in enumerate(r["names"]):
        if name in skip:
            continue
        assert abs(ci.iloc[k, 0] - lo[k]) <= tol * width[k], (name, ci.iloc[k, 0], lo[k])
        assert abs(ci.iloc[k, 1] - hi[k]) <= tol * width[k], (name, ci.iloc[k, 1], hi[k])
    return m, ci


@pytest.mark.parametrize("case_id", [c for c in PROFILE_DEFAULT if c in PROFILE_CASES])
def test_profile_matches_lme4(case_id):
    if case_id == "singular_ml":
        pytest.skip("checked in test_profile_singular_fit")
    _check_profile(case_id)


@pytest.mark.skipif(not SLOW, reason="set JAXHLM_SLOW_TESTS=1 to profile every reference case")
@pytest.mark.parametrize("case_id", [c for c in PROFILE_CASES if c not in PROFILE_DEFAULT and c != "insteval_reml"])
def test_profile_matches_lme4_all(case_id):
    _check_profile(case_id)


def _zeta_sigma_independent(m, sigma):
    """Signed root deviance of the sigma profile by Nelder-Mead over theta (several starts)."""
    f = jax.jit(lambda th: objective_vp(jnp.concatenate([th, jnp.array([sigma])]), m.stats, m.layout, False))
    th0 = m.theta.to_numpy()
    best = np.inf
    for start in (th0, th0 + 0.1, np.full_like(th0, 0.3), np.full_like(th0, 0.05)):
        res = scipy.optimize.minimize(lambda t: float(f(jnp.asarray(t))), start, method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-11, "maxiter": 20000, "maxfev": 20000})
        best = min(best, res.fun)
    return np.sign(sigma - m.sigma) * np.sqrt(max(best - m.objective, 0.0))


def test_profile_singular_fit():
    """Boundary fit (correlation -> 1, an sd -> 0): ends at the bounds as lme4 reports them."""
    ref = load_reference("singular_ml")
    r = _profile_reference(ref)
    m = fit_case("singular_ml")
    ci = m.confint()
    lo, hi = ci.iloc[:, 0], ci.iloc[:, 1]
    assert lo[".sig01"] == 0.0 and lo[".sig03"] == 0.0
    assert lo[".sig02"] == -1.0 and hi[".sig02"] == 1.0
    rl, rh = dict(zip(r["names"], r["lower"])), dict(zip(r["names"], r["upper"]))
    for name in (".sig01", "(Intercept)", "x"):
        w = rh[name] - rl[name]
        assert abs(hi[name] - rh[name]) <= 0.01 * w and abs(lo[name] - rl[name]) <= 0.01 * w
    # lme4's spline puts the lower end of sigma at 0.8485, where the exact profile is only at
    # zeta = -1.905; an independent minimisation confirms ours is at -1.96
    assert _zeta_sigma_independent(m, lo[".sigma"]) == pytest.approx(-1.959964, abs=2e-3)
    assert _zeta_sigma_independent(m, hi[".sigma"]) == pytest.approx(1.959964, abs=2e-3)


def test_parm_level_and_errors():
    m = fit_case("sleepstudy_rs_reml")
    ci = m.confint(parm=["Days", ".sigma"], level=0.9)
    assert list(ci.index) == ["Days", ".sigma"]
    assert list(ci.columns) == ["5 %", "95 %"]
    full = m.confint(parm="beta_", level=0.9)
    assert list(full.index) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(full.loc["Days"], ci.loc["Days"], rtol=1e-9)
    wide = m.confint(parm="Days")
    assert wide.iloc[0, 0] < ci.iloc[0, 0] and wide.iloc[0, 1] > ci.iloc[0, 1]
    assert list(m.confint(parm="theta_", method="wald").index) == [".sig01", ".sig02", ".sig03", ".sigma"]
    assert list(m.confint(parm="sd_Days|Subject", method="wald").index) == [".sig03"]
    with pytest.raises(jaxhlm.ArgumentError, match="Dayz"):
        m.confint(parm="Dayz")
    with pytest.raises(jaxhlm.ArgumentError, match="method"):
        m.confint(method="exact")
    with pytest.raises(jaxhlm.ArgumentError, match="level"):
        m.confint(level=95)


def _zeta_slope_sd_independent(m, sd_slope):
    """Signed root ML deviance with the slope sd fixed, by Nelder-Mead over (sd0, cor, sigma)."""
    f = jax.jit(lambda vp: objective_vp(vp, m.stats, m.layout, False))
    vc = m.varcorr["sdcor"].to_numpy()

    def dev(u):
        s0, sg, rho = np.exp(u[0]), np.exp(u[2]), np.tanh(u[1])
        l0 = s0 / sg
        l10 = rho * sd_slope / sg
        l11 = np.sqrt(max((sd_slope / sg) ** 2 - l10**2, 0.0))
        return float(f(jnp.array([l0, l10, l11, sg])))

    best = np.inf
    for start in ([np.log(vc[0]), np.arctanh(vc[2]), np.log(m.sigma)], [np.log(3.5), np.arctanh(-0.99), np.log(8.5)],
                  [np.log(3.5), 0.0, np.log(8.5)]):
        res = scipy.optimize.minimize(dev, start, method="Nelder-Mead",
                                      options={"xatol": 1e-10, "fatol": 1e-10, "maxiter": 20000, "maxfev": 20000})
        best = min(best, res.fun)
    return np.sign(sd_slope - vc[1]) * np.sqrt(max(best - m.objective, 0.0))


@pytest.mark.skipif(not SLOW, reason="set JAXHLM_SLOW_TESTS=1 to profile every reference case")
def test_profile_nels_m2_independent():
    """Where lme4 stopped short, our profile ends solve zeta = -1.96 by an independent minimisation,
    and the REML fit's profile (an ML profile, as lme4) equals the ML fit's."""
    m = fit_case("nels_m2")
    ci = m.confint(parm=[".sig02", ".sig03"])
    assert ci.loc[".sig02"].iloc[0] == -1.0  # the profile never reaches -1.96 before cor = -1
    assert _zeta_slope_sd_independent(m, ci.loc[".sig03"].iloc[0]) == pytest.approx(-1.959964, abs=2e-3)
    reml = fit_case("nels_m2_reml").confint(parm=[".sig02", ".sig03"])
    np.testing.assert_allclose(reml.to_numpy(), ci.to_numpy(), rtol=1e-4)


# ------------------------------------------------------------------ profile of a correlation (helper C)
def _zeta_cor_independent(m, rho):
    """Signed root ML deviance with the correlation of (1 + x | g) fixed at rho: Nelder-Mead over
    the log scales of the two columns (theta = (t1, rho r, sqrt(1 - rho^2) r)), several starts."""
    from jaxhlm._src.optim.fit import criterion_at as criterion

    th = m.theta.to_numpy()
    rho_hat = th[1] / np.hypot(th[1], th[2])

    def dev(z):
        return float(criterion(np.array([np.exp(z[0]), rho * np.exp(z[1]), np.sqrt(1 - rho**2) * np.exp(z[1])]),
                               m.stats, m.layout, False))

    best = np.inf
    for start in ([np.log(th[0]), np.log(np.hypot(th[1], th[2]))], [np.log(0.36), np.log(0.008)], [np.log(0.4), np.log(0.02)]):
        res = scipy.optimize.minimize(dev, start, method="Nelder-Mead",
                                      options={"xatol": 1e-9, "fatol": 1e-10, "maxiter": 4000, "maxfev": 4000})
        best = min(best, res.fun)
    return np.sign(rho - rho_hat) * np.sqrt(max(best - m.objective, 0.0))


def test_profile_correlation_nels_m2():
    """lme4 reports .sig02 in (-0.858, -0.156) with 'non-monotonic profile' / 'bad spline fit' warnings.
    The exact profile is monotonic: it rises to zeta = 2.0446 as the slope variance shrinks to 0
    (at rho ~ 0) and stays flat beyond; it crosses 1.96 at rho = -0.1955, and never reaches -1.96
    below the estimate (zeta(-1) > -1.96), so the interval is (-1, -0.1955)."""
    import warnings as _w

    m = fit_case("nels_m2")
    with _w.catch_warnings():
        _w.simplefilter("error", jaxhlm._src.base.errors.NonMonotonicProfileWarning)
        ci = m.confint(parm=[".sig02"])
    lo, hi = ci.iloc[0]
    assert lo == -1.0
    assert _zeta_cor_independent(m, hi) == pytest.approx(1.959964, abs=2e-3)
    assert _zeta_cor_independent(m, -0.999) > -1.959964
    # the plateau: with the slope variance at 0 the correlation no longer matters
    assert _zeta_cor_independent(m, 0.3) == pytest.approx(_zeta_cor_independent(m, 0.6), abs=1e-4)


def test_nonmonotone_detection():
    from jaxhlm._src.infer import confint as C

    xs = np.linspace(0.1, 1.0, 10)
    mono = [(x, 2 * x) for x in xs] + [(-x, -2 * x) for x in xs]
    assert C.nonmonotone_points(mono, 0.0) == []
    plateau = [(x, min(2 * x, 1.5)) for x in xs]
    assert C.nonmonotone_points(plateau, 0.0) == []
    bumpy = [(x, 2 * x) for x in xs] + [(1.1, 1.2)]
    assert C.nonmonotone_points(bumpy, 0.0) == [(1.0, 1.1)]
    left = [(-x, -(2 * x)) for x in xs] + [(-1.2, -1.0)]
    assert C.nonmonotone_points(left, 0.0) == [(-1.0, -1.2)]

    class FakeProfile:  # zeta dips between the estimate and the end
        xhat = 0.0

        def __init__(self):
            self.points = []

        def __call__(self, x, z_start=None):
            z = x * 3 if x < 0.5 else x * 3 - 1.2
            self.points.append((x, z, None))
            return z, 1.0, None

    with pytest.warns(jaxhlm._src.base.errors.NonMonotonicProfileWarning, match="not monotonic"):
        assert C._check_monotone(FakeProfile(), (np.nan, 1.0), ".sig02")
