"""The design layer against R: for formulas exercising R's semantics (I() powers, ^ / %in% / a/b
expansion, term and variable order, treatment / sum / helmert / poly contrasts, ordered factors,
factor() and C() in formulas, poly(), scale(), offset(), weights, cbind() and factor responses,
|| expansion, missing values), build_design gives lme4's model matrices: the same column names
in the same order, the same values, the same rows, response, offset, weights and random-term
matrices (tests/data/rformula/model_matrices.json from tools/formula_reference.R, lme4 1.1-31's
lFormula / glFormula)."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxhlm import build_design
from jaxhlm._src.design.general import general_parts
from jaxhlm._src.formula.terms import parse_formula

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "rformula", "model_matrices.json")) as fh:
    REF = json.load(fh)
CASES = [c for c in REF["cases"] if "error" not in c]


def r_data(case) -> pd.DataFrame:
    """The data as R saw it: numeric columns R made factors become categoricals, text stays text."""
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


def same_matrix(ours, names, ref, what):
    assert list(names) == list(ref["names"]), what
    ours = np.asarray(ours, dtype=float)
    assert ours.shape == (ref["nrow"], len(ref["names"])), what
    first = np.asarray([[np.nan if v is None else v for v in row] for row in ref["first"]], dtype=float)
    np.testing.assert_allclose(ours[: len(first)], first.reshape(len(first), -1), rtol=1e-12, atol=1e-12, err_msg=what)
    np.testing.assert_allclose(ours.sum(axis=0), np.asarray(ref["colsums"], float), rtol=1e-10, atol=1e-9, err_msg=what)
    np.testing.assert_allclose((ours ** 2).sum(axis=0), np.asarray(ref["colsumsq"], float), rtol=1e-10, err_msg=what)


def build(case, df):
    kw = dict(contrasts=case.get("contrasts") or None, weights=case.get("weights"), family=case.get("family"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        design = build_design(case["formula"], df, **kw)
        parts = general_parts(parse_formula(case["formula"]), df, contrasts=kw["contrasts"], weights=kw["weights"],
                              family=kw["family"] or "gaussian")
    return design, parts


@pytest.fixture(scope="module", params=CASES, ids=[c["id"] for c in CASES])
def case(request):
    c = request.param
    df = r_data(c)
    snapshot = df.copy()
    design, parts = build(c, df)
    pd.testing.assert_frame_equal(df, snapshot)  # the user's data is never modified
    return c, df, design, parts


def test_rows_used(case):
    c, df, design, _ = case
    assert design.n == c["n"]
    assert design.index.equals(df.index[np.asarray(c["rows"]) - 1])
    assert design.n_dropped == len(df) - c["n"]


def test_fixed_effects_matrix(case):
    c, df, design, parts = case
    same_matrix(parts["X_full"], parts["names_full"], c["X"], "X")
    assert design.fixef_names == c["X_kept"]
    np.testing.assert_array_equal(design.X, parts["X_full"][:, design.fixed_keep])
    assert list(parts["fixed_spec"].assign) == c["X_assign"]
    labels = [lab for lab in c["term_labels"] if not lab.startswith("offset(")]
    assert list(design.fixef_terms) == labels
    assert list(design.fixef_assign) == [a for a, k in zip(c["X_assign"], design.fixed_keep) if k]


def test_new_data_encoded_like_the_fit(case):
    """predict's path: the stored spec re-encodes the rows used and gives the same matrix."""
    c, df, design, parts = case
    design.ensure_specs()
    X = design.fixed_spec.get_model_matrix(df.iloc[np.asarray(c["rows"]) - 1])
    same_matrix(X, parts["names_full"], c["X"], "X from the spec")


def test_random_term_matrices(case):
    c, df, design, parts = case
    parsed = parse_formula(c["formula"])
    assert len(parsed.random) == len(c["re"])
    for k, (t, ref) in enumerate(zip(parsed.random, c["re"])):
        Z, names = parts["Z"][k]
        same_matrix(Z, names, ref, str(t))
        spec = design.term_specs[[td.term for td in design.terms].index(t)]
        same_matrix(spec.get_model_matrix(df.iloc[np.asarray(c["rows"]) - 1]), names, ref, f"{t} from the spec")


def test_response_offset_weights(case):
    c, df, design, _ = case
    yr = c["y"]
    if "names" in yr:  # cbind(successes, failures)
        first = np.asarray(yr["first"], float)
        k = len(first)
        np.testing.assert_allclose(design.trials[:k], first.sum(axis=1), rtol=1e-14)
        np.testing.assert_allclose(design.y[:k] * design.trials[:k], first[:, 0], rtol=1e-14)
        np.testing.assert_allclose(design.trials.sum(), sum(yr["colsums"]), rtol=1e-14)
    else:
        np.testing.assert_allclose(design.y[: len(yr["first"])], yr["first"], rtol=1e-13)
        assert design.y.sum() == pytest.approx(yr["sum"], rel=1e-12)
        assert (design.y ** 2).sum() == pytest.approx(yr["sumsq"], rel=1e-12)
    for key, ours in (("offset", design.offset), ("prior_weights", design.weights)):
        ref = c.get(key)
        assert (ref is None) == (ours is None), key
        if ref is not None:
            assert ours.dtype == np.float64 and len(ours) == c["n"]
            np.testing.assert_allclose(ours[: len(ref["first"])], ref["first"], rtol=1e-13)
            assert ours.sum() == pytest.approx(ref["sum"], rel=1e-12)


def test_random_term_names_as_lme4(case):
    """Terms in lme4's order (by decreasing number of levels), with lme4's column names."""
    c, _, design, _ = case
    ours = [(design.factors[td.factor].name, td.names) for td in design.terms]
    assert ours == [(x["group"], x["names"]) for x in c["cnms"]]
