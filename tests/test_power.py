"""Power analysis by simulation (simr-style) and resized designs for power curves."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import jaxhlm
from jaxhlm._src.model.pipeline import fit_design, mk_devfun
from jaxhlm._src.sim.power import clopper_pearson, resize_design

from conftest import load_data

NELS_RS = "mathscore ~ 1 + family_inc + (family_inc | sch_id)"


@pytest.fixture(scope="module")
def nels():
    dat = load_data("nels_like.csv")
    return dat, jaxhlm.lmer(NELS_RS, dat, reml=False)


def test_clopper_pearson_matches_scipy():
    for k, n in [(0, 20), (3, 20), (20, 20), (137, 500)]:
        ci = scipy.stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
        lo, hi = clopper_pearson(k, n, 0.95)
        assert lo == pytest.approx(ci.low, abs=1e-12) and hi == pytest.approx(ci.high, abs=1e-12)


def test_power_under_the_null_is_alpha(nels):
    _, m = nels
    r = jaxhlm.power(m, "family_inc", nsim=200, effect=0.0, seed=1)
    assert isinstance(r, jaxhlm.PowerResult)
    assert r.trials == 200 and r.n_failed == 0
    assert r.lower <= 0.05 <= r.upper
    assert r.successes == int(np.sum(r.pvalues < 0.05))
    assert r.power == r.successes / r.trials
    assert r.effect["family_inc"] == 0.0
    assert "Power for predictor 'family_inc'" in str(r)


def test_power_grows_with_the_effect(nels):
    _, m = nels
    small = jaxhlm.power(m, "family_inc", nsim=200, effect=0.05, seed=2)
    big = jaxhlm.power(m, nsim=200, fixef={"family_inc": 0.2}, seed=2)
    assert big.test == ["family_inc"]  # the default: first coefficient after the intercept
    assert small.power < big.power
    assert big.power > 0.95
    # expected power of a t test with the model's standard error: 0.05 / 0.036 = 1.39 se
    se = m.se["family_inc"]
    expect = scipy.stats.norm.sf(1.96 - 0.05 / se) + scipy.stats.norm.cdf(-1.96 - 0.05 / se)
    assert small.lower - 0.05 < expect < small.upper + 0.05


def test_power_z_and_lrt_agree_with_t(nels):
    _, m = nels
    t = jaxhlm.power(m, "family_inc", nsim=200, effect=0.06, seed=4)
    z = jaxhlm.power(m, "family_inc", nsim=200, effect=0.06, seed=4, method="z")
    assert abs(z.successes - t.successes) <= 3  # df ~ 600: t and z p-values nearly equal
    lr = jaxhlm.power(m, "family_inc", nsim=200, effect=0.06, seed=4, method="lrt")
    assert abs(lr.successes - t.successes) <= 12
    assert lr.method == "lrt"


def test_power_errors(nels):
    _, m = nels
    with pytest.raises(jaxhlm.ArgumentError, match="not a fixed-effect"):
        jaxhlm.power(m, "nope", nsim=10)
    with pytest.raises(jaxhlm.ArgumentError, match="alpha"):
        jaxhlm.power(m, nsim=10, alpha=1.5)
    with pytest.raises(jaxhlm.ArgumentError, match="method"):
        jaxhlm.power(m, nsim=10, method="kr")
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.power_curve(m, along="school", sizes=[10])
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.power_curve(m, along="sch_id", sizes=[1])


def test_resize_design_shrink_and_grow(nels):
    _, m = nels
    d = m.design
    cnt = np.bincount(d.factors[0].codes)
    small = resize_design(d, "sch_id", 50, np.random.default_rng(0))
    assert small.factors[0].nlevels == 50
    assert set(small.factors[0].levels) <= set(d.factors[0].levels)
    src = d.factors[0].levels.get_indexer(small.factors[0].levels)
    assert small.n == cnt[src].sum()
    big = resize_design(d, "sch_id", 1000, np.random.default_rng(0))
    assert big.factors[0].nlevels == 1000 and len(set(big.factors[0].levels)) == 1000
    assert big.n > d.n
    # every copy carries the covariate values of its source level
    lev = big.factors[0].levels
    name = next(x for x in lev if "#" in x)
    srcname = name.split("#")[0]
    rows_copy = big.X[big.factors[0].codes == lev.get_loc(name), 1]
    rows_src = d.X[d.factors[0].codes == d.factors[0].levels.get_loc(type(d.factors[0].levels[0])(srcname)), 1]
    np.testing.assert_array_equal(np.sort(rows_copy), np.sort(rows_src))


def test_resized_design_fits_like_the_equivalent_data(nels):
    """The resized design's statistics equal those of a DataFrame holding its rows."""
    _, m = nels
    d = resize_design(m.design, "sch_id", 120, np.random.default_rng(5))
    fit = fit_design(d, *mk_devfun(d), False)
    frame = pd.DataFrame({"mathscore": d.y, "family_inc": d.X[:, 1],
                          "sch_id": np.asarray(d.factors[0].levels)[d.factors[0].codes]})
    ref = jaxhlm.lmer(NELS_RS, frame, reml=False)
    np.testing.assert_allclose(fit.fixef, ref.fixef, rtol=1e-8)
    assert fit.objective == pytest.approx(ref.objective, rel=1e-10)


def test_power_curve(nels):
    _, m = nels
    pc = jaxhlm.power_curve(m, along="sch_id", sizes=[40, 300, 1500], nsim=100, effect=0.1, seed=3)
    assert list(pc["size"]) == [40, 300, 1500]
    assert pc["nobs"].is_monotonic_increasing
    assert pc["power"].iloc[0] < pc["power"].iloc[2]
    assert pc["power"].iloc[2] > 0.9
    assert len(pc.attrs["results"]) == 3
    assert np.all((pc["lower"] <= pc["power"]) & (pc["power"] <= pc["upper"]))


def test_power_curve_nested_factor_copies():
    dat = load_data("Pastes.csv")
    m = jaxhlm.lmer("strength ~ 1 + (1 | batch/cask)", dat)
    d = m.design
    names = [f.name for f in d.factors]
    big = resize_design(d, "batch", 14, np.random.default_rng(1))
    fb = big.factors[names.index("batch")]
    fc = big.factors[names.index("cask:batch")]
    assert fb.nlevels == 14
    assert fc.nlevels == 14 * 3  # casks are nested in batches: copies get their own casks


def test_resized_design_carries_weights_and_offsets():
    """Prior weights and offsets go with their rows (a weighted fit's power curve)."""
    dat = load_data("sleepstudy.csv")
    dat = dat.assign(w=np.linspace(0.5, 2.0, len(dat)), off=np.linspace(-3.0, 3.0, len(dat)))
    m = jaxhlm.lmer("Reaction ~ Days + offset(off) + (Days | Subject)", dat, weights="w")
    d = m.design
    for size in (7, 30):
        r = resize_design(d, "Subject", size, np.random.default_rng(1))
        assert r.weights.shape == r.offset.shape == r.y.shape == (r.n,)
        key = lambda des: sorted(zip(des.X[:, 1], des.y, des.weights, des.offset))  # noqa: E731
        for j in range(r.factors[0].nlevels):  # each level's rows are those of its source level
            lab = str(r.factors[0].levels[j]).split("#")[0]
            src = d.factors[0].levels.astype(str).get_loc(lab)
            rows_r, rows_d = r.factors[0].codes == j, d.factors[0].codes == src
            sub = lambda des, rows: sorted(zip(des.X[rows, 1], des.y[rows], des.weights[rows], des.offset[rows]))  # noqa: E731
            assert sub(r, rows_r) == sub(d, rows_d)
        assert key(r) != [] and len(key(r)) == r.n
    pc = jaxhlm.power_curve(m, "Subject", [8, 24], test="Days", nsim=40, effect=4.0, seed=2)
    assert list(pc["nobs"]) == [80, 240] and pc["trials"].sum() == 80


def test_power_of_a_fit_searched_with_a_centred_random_slope():
    """``(Days + 1e4 | Subject)`` is searched centred (optim/recentre.py); power() simulates and
    refits the centred twin (in the user's columns every replicate failed) and reports theta in
    the user's columns: the same power as the unshifted model's, within simulation error."""
    d = load_data("sleepstudy.csv")
    f = "Reaction ~ Days + (Days | Subject)"
    base = jaxhlm.lmer(f, d, reml=False)
    m = jaxhlm.lmer(f, d.assign(Days=d["Days"] + 1e4), reml=False)
    pa = jaxhlm.power(base, "Days", nsim=100, seed=3, fixef={"Days": 2.0})
    pb = jaxhlm.power(m, "Days", nsim=100, seed=3, fixef={"Days": 2.0})
    assert pb.trials >= 97 and abs(pa.power - pb.power) < 0.15
    # the slope's relative SD sqrt(t10^2 + t11^2) (the same in both parametrisations) over the replicates
    def slope_sd(r):
        return np.hypot(r["theta.Subject.Days.(Intercept)"], r["theta.Subject.Days"])

    assert np.median(slope_sd(pb.replicates)) == pytest.approx(np.median(slope_sd(pa.replicates)), rel=0.2)
    assert np.median(np.abs(pb.replicates["theta.Subject.(Intercept)"])) > 100  # the user's columns
