"""Contrasts of fixed effects against lmerTest 3.1-3's contest (numbers from R, stored here)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from conftest import fit_case

# R: m <- lmer(Reaction ~ Days + (Days | Subject), sleepstudy)   (REML)
SLEEP = {
    "t_days": {"F": 45.8529615558586, "df": 16.9999837255917},
    "rhs250": {"F": 9.91604916007004, "df": 16.9997273377664},  # contest(m, c(1, 2), rhs = 250)
    "F_I2": {"F": 749.950453899299, "df": 16.9998460493499, "SS": 982345.112942736},
    "KR_I2": {"F": 705.835721316987, "df": 16.0000000000003, "SS": 982345.112942735},
    "KR_15": {"F": 1004.98953195656, "df": 17.0000000000003},
}
# R: lmer(mathscore ~ family_inc * urban + (1 + family_inc | sch_id), nels_like) (REML; lme4 warned
# max|grad| = 0.0066, so its estimates differ from the optimum in the 5th digit)
NELS = {
    "F": 3.9595758121364, "DenDF": 664.888267619533, "p": 0.0195226270041085,
    "KR_F": 3.94891147596987, "KR_DenDF": 708.999012182296,
    "t": [-1.22581204229979, 0.15681058612744], "df": [628.602102429031, 676.007003365484],
}


@pytest.fixture(scope="module")
def sleep():
    return fit_case("sleepstudy_rs_reml")


def test_single_contrast_t_test(sleep):
    out = sleep.contest([0, 1])
    assert list(out.columns) == ["Estimate", "Std. Error", "df", "t value", "lower", "upper", "Pr(>|t|)"]
    assert out["t value"].iloc[0] ** 2 == pytest.approx(SLEEP["t_days"]["F"], rel=1e-4)
    assert out["df"].iloc[0] == pytest.approx(SLEEP["t_days"]["df"], rel=1e-4)
    # equals the Days row of the coefficient table
    ct = sleep.coef_table.loc["Days"]
    for col in ("Estimate", "Std. Error", "df", "t value", "Pr(>|t|)"):
        assert out[col].iloc[0] == pytest.approx(ct[col], rel=1e-10)
    r = sleep.contest([1, 2], rhs=250)
    assert r["t value"].iloc[0] ** 2 == pytest.approx(SLEEP["rhs250"]["F"], rel=1e-4)
    assert r["df"].iloc[0] == pytest.approx(SLEEP["rhs250"]["df"], rel=1e-4)


def test_joint_F_test(sleep):
    out = sleep.contest(np.eye(2))
    assert list(out.columns) == ["Sum Sq", "Mean Sq", "NumDF", "DenDF", "F value", "Pr(>F)"]
    assert out["NumDF"].iloc[0] == 2
    assert out["F value"].iloc[0] == pytest.approx(SLEEP["F_I2"]["F"], rel=1e-4)
    assert out["DenDF"].iloc[0] == pytest.approx(SLEEP["F_I2"]["df"], rel=1e-4)
    assert out["Sum Sq"].iloc[0] == pytest.approx(SLEEP["F_I2"]["SS"], rel=1e-4)
    # one row as a matrix: F = t^2 with the same df
    one = sleep.contest([[0, 1]])
    t = sleep.contest([0, 1])
    assert one["F value"].iloc[0] == pytest.approx(t["t value"].iloc[0] ** 2, rel=1e-10)
    assert one["DenDF"].iloc[0] == pytest.approx(t["df"].iloc[0], rel=1e-10)
    # a redundant row does not change the test (rank 2)
    red = sleep.contest(np.array([[1, 0], [0, 1], [1, 1]]))
    assert red["NumDF"].iloc[0] == 2
    assert red["F value"].iloc[0] == pytest.approx(out["F value"].iloc[0], rel=1e-8)


def test_kenward_roger_contrasts(sleep):
    out = sleep.contest(np.eye(2), ddf="kenward-roger")
    assert out["F value"].iloc[0] == pytest.approx(SLEEP["KR_I2"]["F"], rel=1e-4)
    assert out["DenDF"].iloc[0] == pytest.approx(SLEEP["KR_I2"]["df"], rel=1e-6)
    assert out["Sum Sq"].iloc[0] == pytest.approx(SLEEP["KR_I2"]["SS"], rel=1e-4)
    t = sleep.contest([1, 5], ddf="KR")
    assert t["t value"].iloc[0] ** 2 == pytest.approx(SLEEP["KR_15"]["F"], rel=1e-4)
    assert t["df"].iloc[0] == pytest.approx(SLEEP["KR_15"]["df"], rel=1e-6)


def test_nels_cross_level_contrasts():
    m = fit_case("nels_urban_slope_reml")
    L = np.array([[0, 0, 1, 0], [0, 0, 0, 1]])
    F = m.contest(L)
    assert F["F value"].iloc[0] == pytest.approx(NELS["F"], rel=2e-3)
    assert F["DenDF"].iloc[0] == pytest.approx(NELS["DenDF"], rel=2e-3)
    assert F["Pr(>F)"].iloc[0] == pytest.approx(NELS["p"], rel=0.02)
    K = m.contest(L, ddf="kenward-roger")
    assert K["F value"].iloc[0] == pytest.approx(NELS["KR_F"], rel=2e-3)
    assert K["DenDF"].iloc[0] == pytest.approx(NELS["KR_DenDF"], rel=2e-3)
    T = m.contest(L, joint=False)
    np.testing.assert_allclose(T["t value"], NELS["t"], rtol=2e-3)
    np.testing.assert_allclose(T["df"], NELS["df"], rtol=2e-3)


def test_contrast_input_forms(sleep):
    a = sleep.contest({"Days": 1.0})
    b = sleep.contest(pd.Series({"Days": 1.0}))
    c = sleep.contest([0.0, 1.0])
    pd.testing.assert_frame_equal(a, c)
    pd.testing.assert_frame_equal(b, c)
    df = pd.DataFrame({"(Intercept)": [1.0, 0.0], "Days": [0.0, 1.0]}, index=["int", "slope"])
    t = sleep.contest(df, joint=False)
    assert list(t.index) == ["int", "slope"]
    np.testing.assert_allclose(t["Estimate"], sleep.fixef.to_numpy())


def test_contrast_errors(sleep):
    with pytest.raises(jaxhlm.ArgumentError, match="2 columns"):
        sleep.contest([1, 0, 0])
    with pytest.raises(jaxhlm.ArgumentError, match="Dayz"):
        sleep.contest({"Dayz": 1})
    with pytest.raises(jaxhlm.ArgumentError, match="ddf"):
        sleep.contest([0, 1], ddf="containment")
    with pytest.raises(jaxhlm.ArgumentError):
        sleep.contest(np.zeros((1, 2)))
