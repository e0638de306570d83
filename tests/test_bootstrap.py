"""Parametric bootstrap (percentile intervals) and the bootstrap likelihood-ratio test."""
from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import scipy.stats

import jaxhlm
from jaxhlm._src.sim.bootstrap import BootstrapResult, percentile_interval

from conftest import load_data

NELS_RS = "mathscore ~ 1 + family_inc + (family_inc | sch_id)"


@pytest.fixture(scope="module")
def nels():
    dat = load_data("nels_like.csv")
    return dat, jaxhlm.lmer(NELS_RS, dat, reml=False)


@pytest.fixture(scope="module")
def boot(nels):
    _, m = nels
    return m.bootstrap(200, seed=7)


def _norm_inter(t, a):
    """boot:::norm.inter written out for one tail (the reference for percentile_interval)."""
    t = np.sort(t)
    R = len(t)
    rk = (R + 1) * a
    k = math.floor(rk)
    if rk == k:
        return t[k - 1]
    z = scipy.stats.norm.ppf
    return t[k - 1] + (z(a) - z(k / (R + 1))) / (z((k + 1) / (R + 1)) - z(k / (R + 1))) * (t[k] - t[k - 1])


def test_percentile_interval_is_boot_ci_perc():
    x = np.random.default_rng(0).normal(size=999)
    lo, hi = percentile_interval(x, 0.95)
    xs = np.sort(x)
    assert lo == xs[24] and hi == xs[974]  # (999 + 1) * 0.025 = 25: an order statistic
    y = x[:500]
    lo, hi = percentile_interval(y, 0.9)
    assert lo == pytest.approx(_norm_inter(y, 0.05), rel=1e-12)
    assert hi == pytest.approx(_norm_inter(y, 0.95), rel=1e-12)
    assert percentile_interval(np.array([np.nan, 1.0, 2.0, 3.0]), 0.5)[0] >= 1.0


def test_bootstrap_replicates_are_refits_of_simulated_responses(nels, boot):
    _, m = nels
    assert isinstance(boot, BootstrapResult) and boot.nsim == 200
    Y = m.simulate(3, seed=7)
    r = m.refit_many(Y, satterthwaite=False)
    cols = [c for c in r.columns if c.startswith(("beta.", "theta.")) or c == "objective"]
    np.testing.assert_allclose(boot.replicates[cols].iloc[:3].to_numpy(dtype=float), r[cols].to_numpy(dtype=float),
                               rtol=1e-9)


def test_bootstrap_confint_layout_and_coverage_of_estimates(nels, boot):
    _, m = nels
    ci = boot.confint()
    assert list(ci.index) == [".sig01", ".sig02", ".sig03", ".sigma", "(Intercept)", "family_inc"]
    assert list(ci.columns) == ["2.5 %", "97.5 %"]
    assert ci.attrs["names_long"][0] == "sd_(Intercept)|sch_id"
    assert np.all(ci["2.5 %"] < ci["97.5 %"])
    est = boot.estimates
    assert np.all((ci["2.5 %"] < est[ci.index]) & (est[ci.index] < ci["97.5 %"]))
    # sdcor scale from theta and sigma, checked for the estimates against varcorr
    vc = m.varcorr
    assert est[".sig01"] == pytest.approx(vc["sdcor"].iloc[0], rel=1e-10)
    assert est[".sig02"] == pytest.approx(vc["sdcor"].iloc[2], rel=1e-10)
    assert est[".sigma"] == pytest.approx(m.sigma, rel=1e-12)
    # bootstrap standard errors of the fixed effects near the model's (200 replicates: +-15%)
    sd = boot.params[["(Intercept)", "family_inc"]].std(ddof=1).to_numpy()
    np.testing.assert_allclose(sd, m.se.to_numpy(), rtol=0.15)
    one = boot.confint(level=0.8, parm="family_inc")
    assert list(one.index) == ["family_inc"] and list(one.columns) == ["10 %", "90 %"]
    assert one.iloc[0, 0] > ci.loc["family_inc", "2.5 %"]


def test_confint_method_boot_delegates(nels, boot):
    _, m = nels
    ci = m.confint(method="boot", boot=boot, parm="beta_")
    np.testing.assert_allclose(ci.to_numpy(), boot.confint(parm="beta_").to_numpy())
    s = boot.summary()
    assert list(s.columns) == ["estimate", "boot_mean", "bias", "std_error"]


def test_bootstrap_lrt_table():
    dat = load_data("sleepstudy.csv")
    m0 = jaxhlm.lmer("Reaction ~ Days + (1 | Subject)", dat, reml=False)
    m1 = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", dat, reml=False)
    tab = jaxhlm.bootstrap_lrt(m0, m1, nsim=60, seed=3)
    assert list(tab.index) == ["LRT", "PBtest", "Bartlett"]
    assert list(tab.columns) == ["stat", "df", "p.value"]
    lrt = 2 * (m1.loglik - m0.loglik)
    assert tab.loc["LRT", "stat"] == pytest.approx(lrt, rel=1e-9)
    assert tab.loc["LRT", "df"] == 2
    assert tab.loc["LRT", "p.value"] == pytest.approx(scipy.stats.chi2.sf(lrt, 2), rel=1e-9)
    s = tab.lrt_samples[np.isfinite(tab.lrt_samples)]
    assert len(s) == tab.n_used >= 55
    assert tab.loc["PBtest", "p.value"] == pytest.approx((1 + np.sum(s >= lrt)) / (1 + len(s)))
    assert np.all(s > -1e-6)  # the larger model never fits worse
    # order of the arguments does not matter; REML fits are refitted by ML
    with pytest.warns(jaxhlm.JaxhlmWarning, match="refitting"):
        tab2 = jaxhlm.bootstrap_lrt(jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", dat), m0, nsim=60, seed=3)
    np.testing.assert_allclose(tab2["p.value"].to_numpy(), tab["p.value"].to_numpy(), rtol=1e-6)
    assert "Parametric bootstrap" in str(tab)


def test_bootstrap_lrt_refuses_different_data():
    dat = load_data("sleepstudy.csv")
    m0 = jaxhlm.lmer("Reaction ~ Days + (1 | Subject)", dat, reml=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m1 = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", dat.iloc[:-5], reml=False)
    with pytest.raises(jaxhlm.ModelComparisonError):
        jaxhlm.bootstrap_lrt(m0, m1, nsim=10)
    with pytest.raises(jaxhlm.ModelComparisonError):
        jaxhlm.bootstrap_lrt(m0, m0, nsim=10)
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.bootstrap_lrt(m0, "m1", nsim=10)
