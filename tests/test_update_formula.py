"""R's update.formula on strings (references from tools/reference_update_formula.R)."""
from __future__ import annotations

import json
import os

import pytest

import jaxhlm
from jaxhlm._src.formula.update import formula_terms, update_formula

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "inference_extra", "update_formula.json")) as fh:
    PAIRS = json.load(fh)


@pytest.mark.parametrize("case", PAIRS, ids=[f"{c['old']} | {c['new']}" for c in PAIRS])
def test_update_formula_as_r(case):
    assert update_formula(case["old"], case["new"]) == case["result"]


def test_random_terms_match_with_spaces_ignored():
    assert update_formula("y ~ x + (Days|Subject)", "~ . - ( Days | Subject )") == "y ~ x"
    assert update_formula("y ~ x + (1|g)", ". ~ . + (1|h)") == "y ~ x + (1 | g) + (1 | h)"


def test_python_calls_are_variables():
    assert update_formula("y ~ np.log(x + 1) + C(f, contr.sum)", ". ~ . - C(f, contr.sum)") == "y ~ np.log(x + 1)"
    terms, icpt, order, text = formula_terms("a*b + I(x**2)")
    assert icpt and [sorted(t) for t in terms] == [["a"], ["b"], ["I(x**2)"], ["a", "b"]]


def test_errors():
    with pytest.raises(jaxhlm.FormulaError, match="~"):
        update_formula("y ~ x", "x + z")
    with pytest.raises(jaxhlm.FormulaError):
        update_formula("y ~ x", "~ . + (x")
    with pytest.raises(jaxhlm.FormulaError, match="more than one"):
        update_formula("y ~ x", "~ . ~ z")
