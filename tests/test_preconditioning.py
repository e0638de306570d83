"""The statistics are formed from centred and scaled columns (jaxhlm._src.stats.suffstats.preconditioner)
and every result is transformed back: a fit is equivariant under shifts and scalings of the
predictors and the response, to rounding, at any scale float64 holds; and the preconditioned fit
gives the numbers of the raw one where the raw one is well conditioned."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import jaxhlm
from jaxhlm._src.infer.satterthwaite import satterthwaite_df
from jaxhlm._src.stats.xform import preconditioning

from conftest import load_data

FORMULA = "y ~ x1 + x2 + z + (1 + z | g)"


def _data(seed: int) -> pd.DataFrame:
    """A small random design (10 groups of 6), the same shapes for every seed (one compiled program)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(10), 6)
    x1, x2, z = rng.normal(size=60), rng.uniform(-1, 2, 60), rng.normal(size=60)
    b0, b1 = rng.normal(0, 1.0, 10), rng.normal(0, 0.5, 10)
    y = 1 + 0.5 * x1 - 0.3 * x2 + 0.8 * z + b0[g] + b1[g] * z + rng.normal(0, 0.7, 60)
    return pd.DataFrame({"y": y, "x1": x1, "x2": x2, "z": z, "g": g.astype(str)})


def _fit(df, reml=True):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer(FORMULA, df, reml=reml)
    assert m.converged
    return m


_REF = {}


def _reference(seed, reml):
    key = (seed, reml)
    if key not in _REF:
        _REF[key] = _fit(_data(seed), reml)
    return _REF[key]


def _assert_rel(got, want, rtol, scale=None, what=""):
    got, want = np.asarray(got, float), np.asarray(want, float)
    scale = np.abs(want) if scale is None else np.maximum(np.abs(want), np.asarray(scale, float))
    err = np.abs(got - want) / scale
    assert np.all(err <= rtol), f"{what}: relative error {err.max():.3g} > {rtol:g}\n got  {got}\n want {want}"


exponent = st.integers(min_value=-6, max_value=8)
# offsets in units of the column's own scale: up to 1e6 for predictors (at 1e7 R's rank check,
# tol 1e-7 relative, rightly calls a column of offset/spread 1e7 aliased with the intercept),
# up to 1e7 for the response
offset_exp = st.one_of(st.none(), st.integers(min_value=0, max_value=6))
y_offset_exp = st.one_of(st.none(), st.integers(min_value=0, max_value=7))


@settings(max_examples=14, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2), reml=st.booleans(), e1=exponent, e2=exponent, ey=exponent,
       o1=offset_exp, o2=offset_exp, oy=y_offset_exp, sy=st.sampled_from([1.0, -1.0]))
def test_fit_is_equivariant_under_shifts_and_scalings(seed, reml, e1, e2, ey, o1, o2, oy, sy):
    """``x_k -> a_k x_k + c_k``, ``y -> a_y y + c_y`` (scales 1e-6..1e8, offsets up to 1e6 / 1e7 scales):
    ``X' = X T``, so ``beta' = T^{-1}(a_y beta + c_y e_0)``, ``vcov' = a_y^2 T^{-1} vcov T^{-T}``,
    ``sigma' = |a_y| sigma``, theta unchanged (``z`` is untouched), the ML deviance moves by
    ``n log a_y^2`` and the REML criterion by ``(n - p) log a_y^2 + 2 log|det T|``; the
    Satterthwaite df of ``beta'`` are those of the rows of ``T^{-1}`` in the reference fit."""
    ref = _reference(seed, reml)
    df = _data(seed)
    a1, a2, ay = 10.0**e1, 10.0**e2, sy * 10.0**ey
    c1 = 0.0 if o1 is None else 10.0**o1 * a1
    c2 = 0.0 if o2 is None else -(10.0**o2) * a2
    cy = 0.0 if oy is None else 10.0**oy * abs(ay)
    d2 = df.assign(x1=a1 * df["x1"] + c1, x2=a2 * df["x2"] + c2, y=ay * df["y"] + cy)
    m = _fit(d2, reml)
    n, p = ref.nobs, ref.p
    T = np.eye(p)
    T[0, 1], T[1, 1], T[0, 2], T[2, 2] = c1, a1, c2, a2
    Ti = np.linalg.inv(T)
    beta = Ti @ (ay * ref.fixef.to_numpy() + cy * np.eye(p)[0])
    V = ay**2 * Ti @ ref.vcov.to_numpy() @ Ti.T
    se = np.sqrt(np.diag(V))
    # the data themselves carry the rounding of a_k x + c_k: |c| eps relative to a spread
    tol = 1e-7
    _assert_rel(m.theta.to_numpy(), ref.theta.to_numpy(), tol, scale=1e-3, what="theta")
    _assert_rel(m.sigma, abs(ay) * ref.sigma, tol, what="sigma")
    _assert_rel(m.fixef.to_numpy(), beta, tol, scale=se, what="fixef")
    _assert_rel(m.se.to_numpy(), se, tol, what="se")
    _assert_rel(np.diag(m.vcov.to_numpy()), np.diag(V), 2 * tol, what="vcov")
    shift = (n - p) * math.log(ay**2) + 2 * math.log(abs(a1 * a2)) if reml else n * math.log(ay**2)
    assert m.objective == pytest.approx(ref.objective + shift, rel=0, abs=1e-6)
    assert m.loglik == pytest.approx(ref.loglik - shift / 2, rel=0, abs=1e-6)
    _assert_rel(m.coef_table["df"].to_numpy(), satterthwaite_df(ref, Ti), tol, what="Satterthwaite df")


def test_ml_loglik_moves_by_the_jacobian_of_the_response_scaling():
    ref = _reference(0, False)
    df = _data(0)
    m = _fit(df.assign(y=1e-4 * df["y"] + 3e3), False)
    assert m.loglik == pytest.approx(ref.loglik - ref.nobs * math.log(1e-4), rel=0, abs=1e-7)
    assert m.deviance == pytest.approx(ref.deviance + 2 * ref.nobs * math.log(1e-4), rel=0, abs=1e-7)


def _both(f, data, reml=True):
    out = []
    for pc in (True, False):
        with preconditioning(pc), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            out.append(jaxhlm.lmer(f, data, reml=reml))
    return out


@pytest.mark.parametrize("reml", [True, False])
def test_preconditioned_fit_gives_the_raw_fits_numbers_on_well_scaled_data(reml):
    """sleepstudy is well conditioned: with and without preconditioning every reported number
    agrees to rounding (Satterthwaite and Kenward-Roger df to 1e-8)."""
    a, b = _both("Reaction ~ Days + (Days | Subject)", load_data("sleepstudy.csv"), reml)
    assert a.objective == pytest.approx(b.objective, rel=1e-12)
    np.testing.assert_allclose(a.theta, b.theta, rtol=1e-7)
    np.testing.assert_allclose(a.sigma, b.sigma, rtol=1e-9)
    ta, tb = a.coef_table, b.coef_table
    np.testing.assert_allclose(ta.to_numpy(), tb.to_numpy(), rtol=1e-8)
    if reml:
        np.testing.assert_allclose(a.coef_table_kr().to_numpy(), b.coef_table_kr().to_numpy(), rtol=1e-8)
    np.testing.assert_allclose(a.anova().to_numpy(), b.anova().to_numpy(), rtol=1e-8)
    ra = a.refit_many(np.column_stack([a.y.to_numpy() * 1.01, a.y.to_numpy()[::-1]]))
    rb = b.refit_many(np.column_stack([b.y.to_numpy() * 1.01, b.y.to_numpy()[::-1]]))
    cols = [c for c in ra.columns if ra[c].dtype.kind == "f" and c != "max_abs_grad"]
    np.testing.assert_allclose(ra[cols].to_numpy(), rb[cols].to_numpy(), rtol=1e-6)


def test_badly_scaled_predictor_and_response_give_the_centred_fit():
    """The cases of issue 15: ``x + 1e6`` gave a deviance 0.0098 too low, other fixed effects and
    a convergence warning; ``y + 1e10`` a wrong fit (or LinAlgError); ``x * 1e155``, ``x * 1e-170``
    and ``y * 1e151`` failed. Now each is the centred fit transformed back."""
    df = load_data("sleepstudy.csv")
    f = "Reaction ~ Days + (1 | Subject)"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        base = jaxhlm.lmer(f, df, reml=False)
        b0, b1 = base.fixef.to_numpy()
        cases = [(1.0, 1e6, 1.0, 0.0), (1.0, 0.0, 1.0, 1e10), (1e155, 0.0, 1.0, 0.0), (1e-170, 0.0, 1.0, 0.0),
                 (1.0, 0.0, 1e151, 0.0), (1e-2, 1e4, 1e4, -1e9)]
        for xs, xo, ys, yo in cases:
            d = df.assign(Days=df["Days"] * xs + xo, Reaction=df["Reaction"] * ys + yo)
            m = jaxhlm.lmer(f, d, reml=False)
            assert m.converged, (xs, xo, ys, yo)
            assert m.objective == pytest.approx(base.objective + len(df) * math.log(ys**2), rel=0, abs=2e-6)
            slope = ys * b1 / xs
            assert m.fixef.iloc[1] == pytest.approx(slope, rel=1e-7)
            assert m.fixef.iloc[0] == pytest.approx(ys * b0 + yo - slope * xo, rel=1e-7,
                                                    abs=1e-7 * abs(slope * xo) + 1e-7 * abs(ys) * base.se.iloc[0])
            np.testing.assert_allclose(m.theta, base.theta, rtol=1e-6)
            assert m.sigma == pytest.approx(ys * base.sigma, rel=1e-7)
            assert m.se.iloc[1] == pytest.approx(ys * base.se.iloc[1] / xs, rel=1e-6)
            np.testing.assert_allclose(m.coef_table["df"].iloc[1], base.coef_table["df"].iloc[1], rtol=1e-6)


def test_badly_scaled_inference_profiles_and_refits_are_transformed_back():
    """Profile intervals, Kenward-Roger and refits of a fit with ``x + 1e6`` and ``y * 1e3``."""
    df = load_data("sleepstudy.csv")
    f = "Reaction ~ Days + (1 | Subject)"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        base = jaxhlm.lmer(f, df)
        m = jaxhlm.lmer(f, df.assign(Days=df["Days"] + 1e6, Reaction=df["Reaction"] * 1e3))
        ci0, ci = base.confint(parm=[".sig01", ".sigma", "Days"]), m.confint(parm=[".sig01", ".sigma", "Days"])
    np.testing.assert_allclose(ci.to_numpy(), 1e3 * ci0.to_numpy(), rtol=1e-5)
    a0, a = base.anova(), m.anova()  # lmerTest's F table: invariant
    np.testing.assert_allclose(a.loc["Days", ["F value", "DenDF"]].to_numpy(float),
                               a0.loc["Days", ["F value", "DenDF"]].to_numpy(float), rtol=1e-6)
    k0, k = base.coef_table_kr(), m.coef_table_kr()
    assert k["df"].iloc[1] == pytest.approx(k0["df"].iloc[1], rel=1e-8)  # (was 160.999964 for 161 in x's units)
    assert k["Std. Error"].iloc[1] == pytest.approx(1e3 * k0["Std. Error"].iloc[1], rel=1e-6)
    r0 = base.refit_many(np.column_stack([base.y.to_numpy()[::-1]]))
    r = m.refit_many(np.column_stack([1e3 * base.y.to_numpy()[::-1]]))
    assert r["beta.Days"].iloc[0] == pytest.approx(1e3 * r0["beta.Days"].iloc[0], rel=1e-6)
    assert r["sigma"].iloc[0] == pytest.approx(1e3 * r0["sigma"].iloc[0], rel=1e-6)
    assert r["df.Days"].iloc[0] == pytest.approx(r0["df.Days"].iloc[0], rel=1e-6)
    assert r["objective"].iloc[0] == pytest.approx(r0["objective"].iloc[0] + (len(df) - 2) * math.log(1e6), abs=1e-6)


def test_out_of_core_fit_is_scaled_and_warns_of_uncentred_columns():
    """Out-of-core second moments are summed raw (the pseudo-rows are then only scaled, not
    centred): the fit still equals the in-memory one at any scale, and a column with a large mean
    is named in a warning instead of silently losing digits."""
    dd = pytest.importorskip("dask.dataframe")
    df = load_data("sleepstudy.csv")
    f = "Reaction ~ Days + (1 | Subject)"
    d = df.assign(Days=df["Days"] * 1e-120, Reaction=df["Reaction"] * 1e100)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        a = jaxhlm.lmer(f, d, reml=False)
        b = jaxhlm.lmer(f, dd.from_pandas(d, npartitions=3), reml=False)
    np.testing.assert_allclose(b.fixef, a.fixef, rtol=1e-9)
    np.testing.assert_allclose(b.se, a.se, rtol=1e-8)
    np.testing.assert_allclose(b.theta, a.theta, rtol=1e-8)
    assert b.objective == pytest.approx(a.objective, rel=1e-12)
    with pytest.warns(jaxhlm.JaxhlmWarning, match=r"\['Days'\] have a mean over"):
        jaxhlm.lmer(f, dd.from_pandas(df.assign(Days=df["Days"] + 1e6), npartitions=3), reml=False)


def test_raw_screen_decides_as_the_column_passes():
    """The screen from the raw cross-products makes the decisions of needs_preconditioning and
    response_scaling (None exactly where either sends the fit to the full preconditioner), and
    its s is the response's root mean square."""
    from jaxhlm._src.stats.xform import needs_preconditioning, raw_screen, response_scaling

    rng = np.random.default_rng(3)
    n = 500
    x = rng.normal(size=n)
    y = 3.0 + rng.normal(size=n)
    spike = np.zeros(n)
    spike[7] = 1.0
    w = rng.uniform(0.1, 3.0, size=n)
    # around the magnitude screen's edges (1e-30, 1e30): spread columns and a single spike, where
    # the bounds sqrt(x'x / n) <= max|x| <= sqrt(x'x) are loosest
    edges = [(v * f, y) for v in (x, spike) for f in (1e29, 0.99999e30, 1.00001e30, 1e31, 1e-29, 1.00001e-30,
                                                        0.99999e-30, 1e-31)]
    for xs, ys in [(x, y), (x + 1e6, y), (x, y + 1e8), (x * 1e155, y), (x * 1e-170, y), (x, y * 1e-40),
                   (np.zeros(n), y), (x, np.zeros(n)), (x * np.inf, y), *edges]:
        for icpt in (True, False):
            X = np.column_stack([np.ones(n), xs]) if icpt else xs[:, None]
            for wt in (None, w):
                Xw = X if wt is None else X * wt[:, None]
                with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                    got = raw_screen(X, ys, wt, Xw.T @ X, Xw.T @ ys, ys @ (ys if wt is None else wt * ys))
                    want = None if needs_preconditioning(X, wt) else response_scaling(X, ys, wt)
                assert (got is None) == (want is None), (icpt, xs[:2], ys[:2], wt is None)
                if got is not None:
                    np.testing.assert_allclose(float(got.s), float(want.s), rtol=1e-13)
