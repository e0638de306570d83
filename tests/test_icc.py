"""Intraclass correlations: merTools' ICC (R reference) and performance-style ICCs of a fit."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from conftest import fit_case, load_cases, load_data, load_reference, reference_data
from jaxhlm._src.infer.icc import variance_components

ICC_CASES = [c["id"] for c in load_cases("icc")]


def _data(ref):
    return reference_data(ref)


@pytest.mark.parametrize("case_id", ICC_CASES)
def test_icc_matches_mertools(case_id):
    ref = load_reference(case_id)
    data = _data(ref)
    before = data.copy()
    value = jaxhlm.icc(data, ref["outcome"], ref["group"])
    assert abs(value - ref["icc"]) < 1e-5
    pd.testing.assert_frame_equal(data, before)


def test_icc_bad_columns():
    data = load_data("sleepstudy.csv")
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Reactoin"):
        jaxhlm.icc(data, "Reactoin", "Subject")
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Subjekt"):
        jaxhlm.icc(data, "Reaction", "Subjekt")
    with pytest.raises(jaxhlm.ArgumentError):
        jaxhlm.icc(data.to_numpy(), "Reaction", "Subject")


def test_model_icc_null_model_equals_mertools():
    # fit.icc() of the REML null model is merTools' ICC, and both ICCs coincide (no fixed effects)
    ref = load_reference("dyestuff_icc")
    m = fit_case("dyestuff_reml")  # Yield ~ 1 + (1 | Batch), REML
    out = m.icc()
    assert list(out.index) == ["adjusted", "conditional"]
    assert abs(out["adjusted"] - ref["icc"]) < 1e-5
    assert abs(out["conditional"] - out["adjusted"]) < 1e-14


def test_model_icc_random_intercept_with_fixed_effects():
    m = fit_case("nels_m5")  # mathscore ~ family_inc + urban + (1 | sch_id)
    tau00 = m.varcorr["vcov"].iloc[0]
    s2 = m.sigma**2
    xb = m.design.X @ m.fixef.to_numpy()
    vf = np.sum((xb - xb.mean()) ** 2) / (len(xb) - 1)
    out = m.icc()
    assert out["adjusted"] == pytest.approx(tau00 / (tau00 + s2), rel=1e-12)
    assert out["conditional"] == pytest.approx(tau00 / (vf + tau00 + s2), rel=1e-12)
    assert out["conditional"] < out["adjusted"]


def test_model_icc_random_slope_uses_mean_of_z_sigma_z():
    m = fit_case("sleepstudy_rs_reml")
    data = load_data("sleepstudy.csv")
    S = m.varcorr
    v0, v1, c01 = S["vcov"].iloc[0], S["vcov"].iloc[1], S["vcov"].iloc[2]
    days = data["Days"].to_numpy(dtype=float)
    # direct: mean over rows of (1, d) Sigma (1, d)'
    var_random = np.mean(v0 + 2 * c01 * days + v1 * days**2)
    vc = variance_components(m)
    assert vc["var_random"] == pytest.approx(var_random, rel=1e-12)
    assert vc["var_residual"] == pytest.approx(m.sigma**2, rel=1e-12)
    out = m.icc()
    assert out["adjusted"] == pytest.approx(var_random / (var_random + m.sigma**2), rel=1e-12)


def test_model_icc_crossed_sums_terms():
    m = fit_case("penicillin_reml")
    v = m.varcorr["vcov"].to_numpy()
    out = m.icc()
    assert out["adjusted"] == pytest.approx((v[0] + v[1]) / (v[0] + v[1] + v[2]), rel=1e-12)
