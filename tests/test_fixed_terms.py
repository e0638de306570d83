"""Term structure of the fixed effects: R's factors codes, lmerTest's containment, drop.scope."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from inference_refs import data, fit
from jaxhlm._src.infer.fixed_terms import dummy_matrices, factor_matrix, fixed_structure, model_frame


def _names(ts):
    return [t.label for t in ts]


def test_codes_and_containment_as_r():
    fs = fixed_structure(fit("cake_slopes_only"))  # temp + temp:recipe
    t, tr = fs.terms
    assert tr.codes == (2, 1)  # R: temp is coded 2 in temp:recipe (its margin recipe is absent)
    assert fs.contained_in(t) == []  # so temp is not contained in temp:recipe (lmerTest)
    fs = fixed_structure(fit("cake_numtemp"))  # recipe * temp
    recipe, temp, inter = fs.terms
    assert _names(fs.contained_in(temp)) == ["recipe:temp"]  # same numeric variable
    assert fs.contained_in(recipe) == []  # recipe:temp has a numeric variable recipe lacks
    assert _names(fs.droppable()) == ["recipe:temp"]


def test_columns_and_numeric_flags():
    m = fit("nels_sub_rs")
    fs = fixed_structure(m)
    assert fs.intercept
    assert fs.numeric == {"family_inc": True, "region": False, "ses": True}
    cols = [c for t in fs.terms for c in t.cols]
    assert sorted(cols) == list(range(1, m.p))
    assert [fs.names[c] for c in fs.term("family_inc:region").cols] == ["family_inc:regionsouth", "family_inc:regionwest"]


def test_aliased_columns_are_not_in_x():
    m = fit("oats_missing_cell")
    fs = fixed_structure(m)
    inter = fs.term("Variety:nitro")
    assert len(inter.cols) == 5 and len(inter.cols_full) == 6


def test_dummy_matrices_span_the_model():
    m = fit("oats_unbal")
    frame = model_frame(m)
    rdX, Xt, match, term_cols = dummy_matrices(m, frame)
    assert rdX.shape[1] == 1 + 3 + 4 + 12 and Xt.shape[1] == m.p
    np.testing.assert_array_equal(rdX[:, match], Xt)  # each Xt column is one rdX cell
    B, *_ = np.linalg.lstsq(Xt, m.design.X, rcond=None)
    np.testing.assert_allclose(Xt @ B, m.design.X, atol=1e-10)


def test_model_frame_needs_the_data():
    m = fit("sleep_uncorr")
    assert len(model_frame(m)) == m.nobs
    with pytest.raises(jaxhlm.InferenceError, match="complete rows"):
        model_frame(m, data("sleep_uncorr").iloc[:20])
    with pytest.raises(jaxhlm.InferenceError, match="DataFrame"):
        model_frame(m, [1, 2])


def test_model_frame_does_not_touch_the_data():
    d = data("cake_numtemp").copy()
    before = d.copy()
    m = jaxhlm.lmer("angle ~ recipe * temp + (1 | recipe:replicate)", d)
    f = model_frame(m)
    f["angle"] = -1.0
    pd.testing.assert_frame_equal(d, before)


def test_factor_matrix_encodes_as_the_fit():
    d = data("cake_numtemp").copy()
    m = jaxhlm.lmer("angle ~ log(temp) + C(recipe, sum) + (1 | recipe:replicate)", d)
    fs = fixed_structure(m)
    assert fs.numeric == {"log(temp)": True, "C(recipe, sum)": False}
    assert fs.columns["log(temp)"] == ("temp",)
    frame = model_frame(m)
    x, names = factor_matrix(m, "log(temp)", frame)
    np.testing.assert_allclose(x[:, 0], np.log(frame["temp"].to_numpy(float)))
    ind, labels = factor_matrix(m, "C(recipe, sum)", frame.iloc[::-1])
    assert labels == ["C(recipe, sum)" + lv for lv in fs.levels["C(recipe, sum)"]]
    assert np.all(ind.sum(axis=1) == 1)
    with pytest.raises(jaxhlm.InferenceError, match="not a variable"):
        factor_matrix(m, "recipe", frame)
