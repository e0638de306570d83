"""Predictions (lme4's predict.merMod): reference rows, fitted values, new and unseen levels."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from conftest import fit_case, load_cases, load_reference, reference_data

CASES = [c["id"] for c in load_cases("lmer")]


def case_data(case_id) -> pd.DataFrame:
    """The data of a reference case as the fit saw it (numeric factor columns as categoricals)."""
    return reference_data(load_reference(case_id))


@pytest.mark.parametrize("case_id", CASES)
def test_predict_reference_rows(case_id):
    ref = load_reference(case_id)
    m = fit_case(case_id)
    data = case_data(case_id)
    rows = [r - 1 for r in ref["predict_newdata_rows"]]
    nd = data.iloc[rows]
    converged = (ref.get("objective_gap_default") or 0.0) < 1e-4
    tol = (1e-3 if converged else 1e-2) * ref["sigma"]
    pop = m.predict(nd, re_form="NA")
    cond = m.predict(nd)
    assert list(pop.index) == list(nd.index)
    np.testing.assert_allclose(pop.to_numpy(), ref["predict_re_form_NA"], rtol=0, atol=tol)
    np.testing.assert_allclose(cond.to_numpy(), ref["predict_re_form_NULL"], rtol=0, atol=tol)
    assert cond.attrs["new_levels"] == {}


def test_predict_without_newdata_is_fitted():
    m = fit_case("sleepstudy_rs_reml")
    np.testing.assert_allclose(m.predict().to_numpy(), m.fitted.to_numpy(), rtol=1e-12)
    xb = m.design.X @ m.fixef.to_numpy()
    for form in ("~0", "NA", " ~ 0", float("nan")):
        np.testing.assert_allclose(m.predict(re_form=form).to_numpy(), xb, rtol=1e-12)
    # newdata equal to the data reproduces the fitted values
    data = case_data("sleepstudy_rs_reml")
    np.testing.assert_allclose(m.predict(data).to_numpy(), m.fitted.to_numpy(), rtol=1e-10)


def test_re_form_subset_of_terms():
    m = fit_case("penicillin_reml")
    data = case_data("penicillin_reml").iloc[:7]
    both = m.predict(data)
    plate = m.predict(data, re_form="~ (1 | plate)")
    pop = m.predict(data, re_form="~0")
    b_plate = m.ranef["plate"]["(Intercept)"]
    b_sample = m.ranef["sample"]["(Intercept)"]
    np.testing.assert_allclose(plate - pop, b_plate.loc[data["plate"]].to_numpy(), rtol=1e-10)
    np.testing.assert_allclose(both - plate, b_sample.loc[data["sample"]].to_numpy(), rtol=1e-10)
    with pytest.raises(jaxhlm.ArgumentError, match="not in the model"):
        m.predict(data, re_form="~ (1 | batch)")


def test_unseen_levels_get_population_prediction():
    m = fit_case("sleepstudy_rs_reml")
    data = case_data("sleepstudy_rs_reml")
    nd = data.iloc[[0, 1, 2, 3]].copy()
    nd["Subject"] = nd["Subject"].astype(object)
    nd.iloc[1, nd.columns.get_loc("Subject")] = 99999
    nd.iloc[3, nd.columns.get_loc("Subject")] = None
    before = nd.copy()
    with pytest.warns(jaxhlm.NewLevelsWarning, match="2 rows"):
        p = m.predict(nd)
    pd.testing.assert_frame_equal(nd, before)  # user data untouched
    assert p.attrs["new_levels"] == {"Subject": 2}
    pop = m.predict(nd, re_form="NA")
    full = m.predict(data.iloc[[0, 2]])
    np.testing.assert_allclose(p.to_numpy()[[1, 3]], pop.to_numpy()[[1, 3]], rtol=1e-12)
    np.testing.assert_allclose(p.to_numpy()[[0, 2]], full.to_numpy(), rtol=1e-12)
    with pytest.raises(jaxhlm.DataError, match="not seen in the fit"):
        m.predict(nd, allow_new_levels=False)


def test_level_labels_matched_across_dtypes():
    m = fit_case("sleepstudy_ri_ml")
    data = case_data("sleepstudy_ri_ml").iloc[[0, 15, 40]]
    want = m.predict(data).to_numpy()
    for conv in (lambda s: s.astype(str), lambda s: s.astype(float), lambda s: s.astype("int64")):
        nd = data.copy()
        nd["Subject"] = conv(nd["Subject"].astype("int64"))
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_allclose(m.predict(nd).to_numpy(), want, rtol=1e-12)


def test_interaction_grouping_factor_and_missing_predictor():
    m = fit_case("pastes_reml")
    data = case_data("pastes_reml").iloc[:4].copy()
    p = m.predict(data)
    want = m.fixef.iloc[0] + m.ranef["cask:batch"]["(Intercept)"].loc[
        (data["cask"].astype(str) + ":" + data["batch"].astype(str)).to_numpy()].to_numpy()
    want = want + m.ranef["batch"]["(Intercept)"].loc[data["batch"]].to_numpy()
    np.testing.assert_allclose(p.to_numpy(), want, rtol=1e-12)
    s = fit_case("sleepstudy_rs_reml")
    nd = case_data("sleepstudy_rs_reml").iloc[:3].copy()
    nd["Days"] = nd["Days"].astype(float)
    nd.iloc[1, nd.columns.get_loc("Days")] = np.nan
    out = s.predict(nd)
    assert np.isnan(out.iloc[1]) and np.all(np.isfinite(out.iloc[[0, 2]]))


def test_bad_newdata():
    m = fit_case("sleepstudy_rs_reml")
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Days"):
        m.predict(pd.DataFrame({"Subject": [308]}))
    with pytest.raises(jaxhlm.ColumnNotFoundError, match="Subject"):
        m.predict(pd.DataFrame({"Days": [1.0]}))
    with pytest.raises(jaxhlm.ArgumentError):
        m.predict(np.zeros((2, 2)))


def test_unseen_fixed_factor_level_is_an_error():
    m = fit_case("cake_cat_reml")
    nd = case_data("cake_cat_reml").iloc[:2].copy()
    nd["recipe"] = ["A", "Z"]
    with pytest.raises(jaxhlm.DataError, match="levels unseen"):
        m.predict(nd)
