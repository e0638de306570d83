"""The fast design path gives exactly the design the general path gives, or steps aside."""
from __future__ import annotations

import os

import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import jaxhlm
from jaxhlm._src.design import build as D
from jaxhlm._src.design.fast import fast_columns, parse_simple_rhs
from jaxhlm._src.formula.terms import parse_formula

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data")


@pytest.mark.parametrize(
    "rhs, expected",
    [
        ("x", (True, ["x"])),
        ("1 + x + z", (True, ["x", "z"])),
        ("0 + x", (False, ["x"])),
        ("x - 1", (False, ["x"])),
        ("-1 + x", (False, ["x"])),
        ("1", (True, [])),
        ("0+Days", (False, ["Days"])),
        ("x_2 + X3", (True, ["x_2", "X3"])),
    ],
)
def test_simple_rhs_is_recognised(rhs, expected):
    assert parse_simple_rhs(rhs) == expected


@pytest.mark.parametrize(
    "rhs",
    ["x*z", "x:z", "I(x**2)", "np.log(x)", "C(x)", "x + x", "x - z", "0 + 1 + x", "Sepal.Length",
     "poly(x, 2)", "center(x)", "x + -1 + 1", "C", "`a b`", "", "x - 0", "_x", "x^2", "offset(x)", "x %in% z"],
)
def test_anything_else_goes_to_formulaic(rhs):
    assert parse_simple_rhs(rhs) is None


def _general(formula, data):
    orig = D.fast_columns
    D.fast_columns = lambda *a: None
    try:
        return D.build_design(formula, data)
    finally:
        D.fast_columns = orig


def _same(a, b):
    assert np.array_equal(a.y, b.y) and a.y.dtype == b.y.dtype
    assert np.array_equal(a.X, b.X) and a.X.flags.f_contiguous == b.X.flags.f_contiguous
    assert a.fixef_names == b.fixef_names and a.dropped_fixef == b.dropped_fixef
    assert np.array_equal(a.fixed_keep, b.fixed_keep)
    assert a.n_dropped == b.n_dropped and a.index.equals(b.index)
    assert a.response_name == b.response_name
    assert a.offset is None and b.offset is None and a.weights is None and b.weights is None
    assert a.trials is None and b.trials is None
    assert [t.names for t in a.terms] == [t.names for t in b.terms]
    assert [t.factor for t in a.terms] == [t.factor for t in b.terms]
    assert [t.term for t in a.terms] == [t.term for t in b.terms]
    for ta, tb in zip(a.terms, b.terms):
        assert np.array_equal(ta.Z, tb.Z)
    for fa, fb in zip(a.factors, b.factors):
        assert fa.name == fb.name and np.array_equal(fa.codes, fb.codes) and fa.levels.equals(fb.levels)


def _same_specs(a, b, newdata):
    """The lazily built specs of the fast path encode new data as the general path's do."""
    a.ensure_specs()
    b.ensure_specs()
    np.testing.assert_array_equal(a.fixed_spec.get_model_matrix(newdata), b.fixed_spec.get_model_matrix(newdata))
    assert a.fixed_spec.column_names == b.fixed_spec.column_names
    for sa, sb in zip(a.term_specs, b.term_specs):
        np.testing.assert_array_equal(sa.get_model_matrix(newdata), sb.get_model_matrix(newdata))


def _with_missing(df, cols):
    df = df.copy()
    rng = np.random.default_rng(3)
    for c in cols:
        if df[c].dtype.kind == "i":
            df[c] = df[c].astype(float)
        df.loc[df.index[rng.random(len(df)) < 0.05], c] = np.nan
    return df


CASES = [
    ("nels_like.csv", "mathscore ~ family_inc + (family_inc | sch_id)", ["mathscore", "family_inc", "sch_id"]),
    ("nels_like.csv", "mathscore ~ 0 + family_inc + ses + (family_inc || sch_id)", ["ses"]),
    ("nels_like.csv", "mathscore ~ family_inc - 1 + (1 | sch_id) + (0 + family_inc | sch_id)", ["family_inc"]),
    ("sleepstudy.csv", "Reaction ~ Days + (Days | Subject)", ["Reaction", "Days"]),
    ("Penicillin.csv", "diameter ~ 1 + (1 | plate) + (1 | sample)", ["plate", "diameter"]),
    ("Pastes.csv", "strength ~ 1 + (1 | batch/cask)", ["cask"]),
]


@pytest.mark.parametrize("missing", [False, True])
@pytest.mark.parametrize("fname, formula, na_cols", CASES)
def test_fast_design_equals_formulaic(fname, formula, na_cols, missing):
    df = pd.read_csv(os.path.join(DATA, fname))
    if missing:
        df = _with_missing(df, na_cols)
    before = df.copy()
    assert fast_columns(parse_formula(formula), df) is not None
    fast = D.build_design(formula, df)
    general = _general(formula, df)
    _same(fast, general)
    _same_specs(fast, general, df.head(20))
    pd.testing.assert_frame_equal(df, before)  # never modified


def test_fast_design_specs_predict_like_formulaic():
    df = pd.read_csv(os.path.join(DATA, "sleepstudy.csv"))
    m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", df)
    assert m.design.fixed_spec is None  # built lazily
    new = pd.DataFrame({"Days": [0.5, 3.0, 11.0], "Subject": [308, 309, 330]})
    beta = m.fixef.to_numpy()
    b = m.ranef["Subject"]
    expect = [beta[0] + b.loc[s, "(Intercept)"] + (beta[1] + b.loc[s, "Days"]) * d for d, s in zip(new.Days, new.Subject)]
    np.testing.assert_allclose(m.predict(new), expect, rtol=1e-12)


@pytest.mark.parametrize(
    "formula, frame",
    [
        ("y ~ f + (1 | g)", {"f": ["a", "b"] * 20}),  # categorical predictor
        ("y ~ x + (1 | g)", {"x": [True, False] * 20}),  # bool
        ("y ~ x + (1 | g)", {"x": pd.array([1, 2] * 20, dtype="Int64")}),  # nullable integer
        ("y ~ x + (1 | g)", {"x": [1.0, np.inf] * 20}),  # the general path names the column
    ],
)
def test_ineligible_columns_use_formulaic(formula, frame):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=40), "g": np.repeat(np.arange(8), 5), **frame})
    assert fast_columns(parse_formula(formula), df) is None


# ------------------------------------------------------------------------------ generated cases
NUMERIC_DTYPES = ["float64", "float32", "int64", "int32", "int8", "uint8", "uint16"]


@st.composite
def plain_cases(draw):
    """A plain numeric formula (what the fast path takes) on columns of assorted NumPy dtypes,
    with missing values in some float columns and in the grouping column."""
    rng = np.random.default_rng(draw(st.integers(0, 10_000)))
    n = draw(st.integers(30, 80))
    names = ["x1", "x2", "x3", "Z"]
    dtypes = {c: draw(st.sampled_from(NUMERIC_DTYPES)) for c in names + ["y"]}
    df = pd.DataFrame({"g": rng.integers(0, 6, n), "h": rng.choice(["a", "b", "c", "d"], n)})
    for c, dt in dtypes.items():
        v = rng.normal(size=n) * 3
        if np.dtype(dt).kind in "iu":
            v = np.abs(v * 10) if np.dtype(dt).kind == "u" else v * 10
            v = np.clip(np.round(v), np.iinfo(dt).min, np.iinfo(dt).max)
        col = v.astype(dt)
        df[c] = col
        if np.dtype(dt).kind == "f" and draw(st.booleans()):
            df.loc[rng.random(n) < 0.1, c] = np.nan
    if draw(st.booleans()):
        df["g"] = df["g"].astype(float)
        df.loc[rng.random(n) < 0.05, "g"] = np.nan
    fixed = draw(st.lists(st.sampled_from(names), min_size=0, max_size=3, unique=True))
    intercept = draw(st.sampled_from(["", "1 + ", "0 + ", "-1"]))
    if not fixed:
        rhs = draw(st.sampled_from(["1", "0"]))
    else:
        rhs = (intercept if intercept != "-1" else "") + " + ".join(fixed) + (" - 1" if intercept == "-1" else "")
    slope = draw(st.sampled_from(["1", "x1", "0 + x2", "x1 + x3"]))
    bar = draw(st.sampled_from(["|", "||"]))
    grp = draw(st.sampled_from(["g", "h", "g:h"]))
    extra = draw(st.sampled_from(["", " + (1 | h)"]))
    return f"y ~ {rhs} + ({slope} {bar} {grp}){extra}", df


@settings(max_examples=60, deadline=None)
@given(plain_cases())
def test_fast_path_equals_general_path_on_generated_cases(case):
    formula, df = case
    assert fast_columns(parse_formula(formula), df) is not None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            general = _general(formula, df)
    except jaxhlm.JaxhlmError as exc:  # too few rows for the term, ...: both paths refuse alike
        with pytest.raises(type(exc)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                D.build_design(formula, df)
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fast = D.build_design(formula, df)
    _same(fast, general)
    _same_specs(fast, general, df.head(10))
