"""The evaluator computes formula expressions as R does (tests/data/rformula/eval.json, from
tools/formula_eval_reference.R): arithmetic with R's %% and %/%, powers, missing values that
propagate, three-valued & and |, comparisons giving logicals, R's functions, and the
transformations that learn from the data (scale, poly) applied to new data as R's predict does."""
from __future__ import annotations

import json
import os
import warnings

import numpy as np
import pandas as pd
import pytest

from jaxhlm import ColumnNotFoundError, DataError, FormulaError
from jaxhlm._src.design.evaluate import Evaluator
from jaxhlm._src.design.rvalues import Factor, Matrix, Numeric
from jaxhlm._src.formula.rparse import parse_r

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "rformula", "eval.json")) as fh:
    REF = json.load(fh)
DATA = pd.DataFrame(REF["data"]).astype({"x": float, "z": float, "w": float})
NEW = pd.DataFrame(REF["newdata"]).astype({"x": float, "z": float, "w": float})


def value(expr, data=DATA, state=None, learn=True):
    ev = Evaluator(data, {} if state is None else state, learn=learn)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ev.variable(parse_r(expr), "test")


def as_numbers(v) -> np.ndarray:
    if isinstance(v, Factor):
        return np.where(v.codes < 0, np.nan, v.codes + 1.0)
    return np.asarray(v.values, dtype=float)


@pytest.mark.parametrize("case", REF["values"], ids=[c["expr"] for c in REF["values"]])
def test_expression_values_as_r(case):
    v = value(case["expr"].replace("'", '"'))
    want = np.asarray([np.nan if x is None else float(x) for x in case["values"]], dtype=float)
    np.testing.assert_allclose(as_numbers(v), want, rtol=1e-14, atol=0, equal_nan=True)
    assert isinstance(v, Numeric) and v.logical == case["logical"]


@pytest.mark.parametrize("case", REF["transforms"], ids=[c["expr"] for c in REF["transforms"]])
def test_transformations_learn_and_apply_to_new_data_as_r(case):
    state: dict = {}
    fit = value(case["expr"], state=state)
    assert isinstance(fit, Matrix)
    want = np.column_stack([[np.nan if x is None else x for x in col] for col in case["fit"]])
    np.testing.assert_allclose(fit.values, want, rtol=1e-12, atol=1e-14, equal_nan=True)
    new = value(case["expr"], data=NEW, state=state, learn=False)
    want = np.column_stack([[np.nan if x is None else x for x in col] for col in case["new"]])
    np.testing.assert_allclose(new.values, want, rtol=1e-12, atol=1e-14, equal_nan=True)


def test_factor_values_and_labels():
    f = value("factor(f)")
    assert f.levels == ("a", "b", "c") and list(f.codes) == [1, 0, 2, -1, 0, 1, 2]
    g = value('relevel(factor(f), ref = "c")')
    assert g.levels == ("c", "a", "b") and list(g.codes) == [2, 1, 0, -1, 1, 2, 0]
    h = value("factor(w > 2)")
    assert h.levels == ("FALSE", "TRUE")
    k = value('factor(f, levels = c("c", "b", "a"))')
    assert k.levels == ("c", "b", "a") and list(k.codes) == [1, 2, 0, -1, 2, 1, 0]


def test_state_is_required_for_new_data():
    with pytest.raises(DataError, match="stored"):
        value("scale(x)", data=NEW, state={}, learn=False)


@pytest.mark.parametrize("expr, err, words", [
    ("x + f", DataError, "not meaningful"),
    ("factor(f) * 2", DataError, "factor"),
    ("foo(x)", FormulaError, "'foo'"),
    ("x(w)", FormulaError, "column"),
    ("nope + 1", ColumnNotFoundError, "'nope'"),
    ("poly(x, 2)", DataError, "missing values"),
    ("poly(w, 7)", DataError, "distinct"),
    ("poly(w, 1.5)", FormulaError, "whole number"),
    ("scale(w * 0)", DataError, "spread"),
    ("I(1:3)", FormulaError, "':'"),
    ("log(x, base = 2, 3)", FormulaError, "argument"),
    ("I(3)", DataError, "one value per row"),
])
def test_bad_expressions_are_refused_by_name(expr, err, words):
    with pytest.raises(err) as ei:
        value(expr)
    assert words in str(ei.value)


def test_as_numeric_of_a_numeric_looking_factor_warns():
    d = pd.DataFrame({"g": ["10", "20", "10", "30"]})
    with pytest.warns(Warning, match="level codes"):
        v = Evaluator(d, {}, True).variable(parse_r("as.numeric(factor(g))"), "test")
    np.testing.assert_array_equal(v.values, [1.0, 2.0, 1.0, 3.0])  # R's answer, with a warning
