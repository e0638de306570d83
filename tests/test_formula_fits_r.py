"""End to end: lmer fits of R-spelled formulas against lme4 (tests/data/rformula/fits.json, from
tools/formula_fit_reference.R): ``I(x^2)``, ``I(x^3)``, ``(a + b)^2``, ``log(y)``, ``poly(x, 2)``,
``poly(x, 2, raw = TRUE)``, ``scale(x)``, contr.sum / contr.helmert, ordered factors (contr.poly).
Objective, fixed effects (names and values), theta, sigma, and ``predict(newdata)`` with and
without random effects, which re-encodes new data with what the fit learned (poly coefficients,
scale centre and spread, contrasts, levels). Tolerances as tests/test_reference_lmer.py."""
from __future__ import annotations

import functools
import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm import build_design

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "rformula", "fits.json")) as fh:
    REF = {c["id"]: c for c in json.load(fh)["cases"]}



def r_data(case) -> pd.DataFrame:
    for d in ("rformula", "", "extra"):
        path = os.path.join(HERE, "data", d, case["data"])
        if os.path.exists(path):
            df = pd.read_csv(path)
            break
    for f in case["factors"]:
        if pd.api.types.is_numeric_dtype(df[f]):
            df[f] = pd.Categorical(df[f])
    for f in case["ordered"]:
        df[f] = pd.Categorical(df[f], categories=sorted(df[f].unique()), ordered=True)
    return df


def lmer(formula, data, reml, **design_kw):
    """jaxhlm.lmer with contrasts / weights as lmer takes them."""
    return jaxhlm.lmer(formula, data, reml=reml, **design_kw)


@functools.lru_cache(maxsize=None)
def fit(case_id):
    c = REF[case_id]
    df = r_data(c)
    kw = {}
    if c.get("contrasts"):
        kw["contrasts"] = c["contrasts"]
    if c.get("weights"):
        kw["weights"] = c["weights"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return c, df, lmer(c["formula"], df, bool(c["REML"]), **kw)


def new_data(c, df) -> pd.DataFrame:
    """New rows as plain columns (numbers, text): matched to the fit's levels by label."""
    return pd.DataFrame(c["newdata"])


IDS = list(REF)


@pytest.mark.parametrize("case_id", IDS)
def test_fit_matches_lme4(case_id):
    c, df, m = fit(case_id)
    assert m.nobs == c["n"]
    assert m.objective <= c["objective"] + 1e-3 and m.objective >= c["objective"] - 0.05
    assert list(m.fixef.index) == list(c["beta"])
    se = m.se
    for k, v in c["beta"].items():
        assert abs(m.fixef[k] - v) <= 2e-3 * se[k], k
    th = np.asarray(list(c["theta"].values()), float)
    assert np.max(np.abs(m.theta.to_numpy() - th)) <= 5e-3 * np.max(np.abs(th))
    assert m.sigma == pytest.approx(c["sigma"], rel=2e-3)
    np.testing.assert_allclose(m.fitted.to_numpy()[: len(c["fitted_first"])], c["fitted_first"],
                               atol=1e-3 * np.std(m.y.to_numpy()))


@pytest.mark.parametrize("case_id", IDS)
def test_predict_new_data_matches_lme4(case_id):
    c, df, m = fit(case_id)
    nd = new_data(c, df)
    tol = 1e-3 * np.std(m.y.to_numpy())
    np.testing.assert_allclose(m.predict(nd, re_form="~0").to_numpy(), c["predict_NA"], atol=tol)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", jaxhlm.NewLevelsWarning)
        np.testing.assert_allclose(m.predict(nd).to_numpy(), c["predict_NULL"], atol=tol)


def test_oats_contr_sum_matches_the_shared_reference():
    """lmer(yield ~ Variety * nitro + (1 | Block/Variety), contrasts = contr.sum for both factors):
    the shared lme4 reference (its README: coefficient names Variety1, Variety2, ...)."""
    with open(os.path.join(HERE, "data", "rformula", "oats_contrsum_shared.json")) as fh:
        ref = json.load(fh)
    df = pd.read_csv(os.path.join(HERE, "data", "rformula", "Oats.csv"))
    df["nitro"] = pd.Categorical(df["nitro"])
    contrasts = {k: v for k, v in ref["contrasts"].items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = lmer(ref["formula"], df, True, contrasts=contrasts)
    assert list(m.fixef.index) == list(ref["beta"])
    assert m.objective <= ref["objective"] + 1e-3 and m.objective >= ref["objective"] - 0.05
    for k, v in ref["beta"].items():
        assert abs(m.fixef[k] - v) <= 2e-3 * ref["se"][k], k
        assert m.se[k] == pytest.approx(ref["se"][k], rel=2e-3), k
    th = np.asarray(list(ref["theta"].values()))
    assert list(m.theta.index) == list(ref["theta"])
    assert np.max(np.abs(m.theta.to_numpy() - th)) <= 5e-3 * np.max(th)
    rows = df.iloc[np.asarray(ref["predict_newdata_rows"]) - 1]
    np.testing.assert_allclose(m.predict(rows, re_form="~0").to_numpy(), ref["predict_re_form_NA"], atol=1e-2)
    np.testing.assert_allclose(m.predict(rows).to_numpy(), ref["predict_re_form_NULL"], atol=1e-2)
