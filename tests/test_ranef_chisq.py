"""Raudenbush & Bryk's (HLM) chi-square test of random coefficients, against a direct numpy
computation: one OLS regression per group, in a Python loop."""
from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.stats

import jaxhlm
from conftest import fit_case, load_data


def direct_chisq(m, data, group, level1, coef_preds):
    """chi2 per random coefficient by a loop over groups.

    level1: columns of the level-1 model (callables of the group frame), in order;
    coef_preds: for each tested coefficient (index into level1), list of (fixef name, W(frame)).
    """
    gamma = m.fixef
    s2 = m.sigma**2
    chi = np.zeros(len(coef_preds))
    used = omitted = 0
    for _, g in data.groupby(group, observed=True):
        X = np.column_stack([f(g) for f in level1])
        if len(g) < X.shape[1] or np.linalg.matrix_rank(X) < X.shape[1]:
            omitted += 1
            continue
        used += 1
        b = np.linalg.solve(X.T @ X, X.T @ g["Reaction" if "Reaction" in g else "mathscore"].to_numpy())
        V = s2 * np.linalg.inv(X.T @ X)
        for i, (q, preds) in enumerate(coef_preds):
            pred = sum(gamma[name] * w(g)[0] for name, w in preds)  # W is constant in the group
            chi[i] += (b[q] - pred) ** 2 / V[q, q]
    return chi, used, omitted


@pytest.fixture(scope="module")
def small():
    """sleepstudy with a subject-level predictor, one subject with 1 row, one with constant Days."""
    d = load_data("sleepstudy.csv").copy()
    subj = sorted(d["Subject"].unique())
    w = {s: float(i % 3) - 1.0 for i, s in enumerate(subj)}
    d["w"] = d["Subject"].map(w)
    d = d[~((d["Subject"] == subj[0]) & (d["Days"] > 0))]  # one row left: omitted (n_j < 2)
    d.loc[d["Subject"] == subj[1], "Days"] = 4.0  # X_j'X_j singular: omitted
    d["Days2"] = d["Days"] ** 2
    return d.reset_index(drop=True)


def test_random_slope_with_level2_predictor(small):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer("Reaction ~ Days * w + (Days | Subject)", small)
    tab = m.ranef_chisq()
    one = lambda g: np.ones(len(g))  # noqa: E731
    wj = lambda g: g["w"].to_numpy()  # noqa: E731
    chi, used, omitted = direct_chisq(
        m, small, "Subject", [one, lambda g: g["Days"].to_numpy()],
        [(0, [("(Intercept)", one), ("w", wj)]), (1, [("Days", one), ("Days:w", wj)])],
    )
    assert (used, omitted) == (16, 2)
    rows = tab.loc["Subject"]
    assert list(rows.index) == ["(Intercept)", "Days"]
    np.testing.assert_allclose(rows["chi2"].to_numpy(), chi, rtol=1e-9)
    assert list(rows["df"]) == [used - 2, used - 2]  # J - S_q - 1 with one level-2 predictor
    assert list(rows["groups used"]) == [16, 16] and list(rows["groups omitted"]) == [2, 2]
    np.testing.assert_allclose(rows["p-value"].to_numpy(), scipy.stats.chi2.sf(chi, used - 2), rtol=1e-9)
    assert rows["level-2 predictors"].iloc[1] == ["Days", "Days:w"]


def test_fixed_level1_slope_enters_the_group_regressions(small):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer("Reaction ~ Days + Days2 + (1 | Subject)", small)
    tab = m.ranef_chisq()
    one = lambda g: np.ones(len(g))  # noqa: E731
    chi, used, omitted = direct_chisq(
        m, small, "Subject", [one, lambda g: g["Days"].to_numpy(), lambda g: g["Days2"].to_numpy()],
        [(0, [("(Intercept)", one)])],
    )
    assert (used, omitted) == (16, 2)
    row = tab.loc[("Subject", "(Intercept)")]
    assert row["chi2"] == pytest.approx(chi[0], rel=1e-9)
    assert row["df"] == used - 1


def test_cross_level_interaction_on_nels():
    m = fit_case("nels_urban_slope_reml")  # mathscore ~ family_inc * urban + (1 + family_inc | sch_id)
    data = load_data("nels_like.csv")
    one = lambda g: np.ones(len(g))  # noqa: E731
    urb = lambda g: g["urban"].to_numpy()  # noqa: E731
    chi, used, omitted = direct_chisq(
        m, data, "sch_id", [one, lambda g: g["family_inc"].to_numpy()],
        [(0, [("(Intercept)", one), ("urban", urb)]), (1, [("family_inc", one), ("family_inc:urban", urb)])],
    )
    tab = m.ranef_chisq().loc["sch_id"]
    np.testing.assert_allclose(tab["chi2"].to_numpy(), chi, rtol=1e-9)
    assert list(tab["groups used"]) == [used] * 2 and list(tab["groups omitted"]) == [omitted] * 2
    assert list(tab["df"]) == [used - 2] * 2


def test_table_per_factor():
    m = fit_case("penicillin_reml")
    tab = m.ranef_chisq()
    assert list(tab.index) == [("plate", "(Intercept)"), ("sample", "(Intercept)")]
    assert list(tab["df"]) == [23, 5]
    assert isinstance(tab, pd.DataFrame) and (tab["p-value"] < 1e-6).all()
