"""R's formula syntax, checked against R itself (tests/data/rformula/syntax.json, written by
tools/formula_syntax_reference.R): deparse (how model-matrix columns are named), terms() (labels,
order, intercept, variables and the contrasts/indicator code of every factor in every term),
contrast matrices, and the collation order of text levels."""
from __future__ import annotations

import json
import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhlm import FormulaError
from jaxhlm._src.design.contrasts import Contrast, contrast_matrix
from jaxhlm._src.design.rvalues import sort_levels
from jaxhlm._src.formula.rparse import deparse, parse_r, r_number
from jaxhlm._src.formula.rterms import r_terms

HERE = os.path.dirname(os.path.abspath(__file__))
with open(os.path.join(HERE, "data", "rformula", "syntax.json")) as fh:
    REF = json.load(fh)

UNSUPPORTED = {"a$b"}


@pytest.mark.parametrize("case", REF["deparse"], ids=[c["text"] for c in REF["deparse"]])
def test_deparse_as_r(case):
    if case["text"] in UNSUPPORTED:
        with pytest.raises(FormulaError):
            parse_r(case["text"])
        return
    want = case["deparse"]
    if case["text"].startswith("`") and case["text"].endswith("`"):
        want = f"`{want}`" if " " in want else want  # model.matrix names keep backticks (deparse(backtick = TRUE))
    assert deparse(parse_r(case["text"])) == want


@pytest.mark.parametrize("case", REF["terms"], ids=[c["formula"] for c in REF["terms"]])
def test_terms_as_r(case):
    lhs, _, rhs = case["formula"].partition("~")
    t = r_terms(rhs.strip(), lhs.strip())
    labels = [lab for lab in case["labels"] if lab != t.variables[t.response]]  # R's model.matrix drops it
    assert list(t.labels) == labels
    assert int(t.intercept) == case["intercept"]
    assert list(t.variables) == case["factor_rows"] or list(t.variables) == case["variables"]
    assert [case["variables"].index(case["variables"][i]) + 1 for i in t.offsets] == case["offset"]
    cols = [col for col, lab in zip(case["factors"], case["labels"]) if lab in labels]
    for term, codes, col in zip(t.terms, t.codes, cols):
        assert {v: c for v, c in zip(term, codes)} == {i: c for i, c in enumerate(col) if c}


def test_terms_notes_for_r_pitfalls():
    assert "I(x^2)" in r_terms("x^2", "y").notes[0]
    assert "dropped" in r_terms("x + y", "y").notes[0]
    with pytest.raises(FormulaError, match="invalid power"):
        r_terms("(a + b)^z", "y")
    with pytest.raises(FormulaError, match="not a term"):
        r_terms("a + 2", "y")


@pytest.mark.parametrize("case", REF["contrasts"], ids=[str(len(c["levels"])) for c in REF["contrasts"]])
@pytest.mark.parametrize("kind", ["treatment", "sum", "helmert", "poly", "SAS"])
def test_contrast_matrices_as_r(case, kind):
    levels = tuple(case["levels"])
    C, names = contrast_matrix(Contrast(kind), levels, "f")
    ref = case[kind]
    np.testing.assert_allclose(C, np.asarray(ref["matrix"], float), rtol=0, atol=1e-14)
    want = ref["colnames"] or [str(j) for j in range(1, len(levels))]
    assert list(names) == want


def test_text_levels_sort_as_r():
    assert sort_levels(REF["sort"]["input"]) == REF["sort"]["sorted"]


@pytest.mark.parametrize("v, s", [(1e5, "1e+05"), (123456.0, "123456"), (0.001, "0.001"), (1e-4, "1e-04"),
                                  (0.1 + 0.2, "0.3"), (1 / 3, "0.333333333333333"), (-2.5, "-2.5"),
                                  (1.5e10, "1.5e+10"), (2.0, "2"), (1e300, "1e+300")])
def test_numbers_print_as_r(v, s):
    assert r_number(v) == s


@pytest.mark.parametrize("text, pos", [("I(x^)", 4), ("a b", 2), ("f(x,, y)", 4), ("x +", 3), ("'abc", 0),
                                       ("`abc", 0), ("x %in", 2)])
def test_parse_errors_have_positions(text, pos):
    with pytest.raises(FormulaError) as ei:
        parse_r(text)
    assert ei.value.position == pos


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet="0123456789abcdefghijklmnopqrstuvwxyz", max_size=6), min_size=1, max_size=30, unique=True),
       st.booleans())
def test_plain_ids_sort_by_code_point_as_r_sorts_them(labels, upper):
    """Digits with letters of one case: code-point order is r_sort_key's order (the fast path
    for string ids); anything else goes through the key."""
    from jaxhlm._src.design.rvalues import code_point_order_is_r, r_sort_key, sort_levels

    if upper:
        labels = [v.upper() for v in labels]
    assert code_point_order_is_r(labels)
    assert sorted(labels) == sorted(labels, key=r_sort_key) == sort_levels(labels)


def test_ids_that_need_the_collation_key():
    from jaxhlm._src.design.rvalues import code_point_order_is_r, sort_levels

    for labels in (["b", "B", "a"], ["s_1", "s1"], ["é", "f"], ["a.1", "a1"], ["x y", "xy"]):
        assert not code_point_order_is_r(labels)
    assert sort_levels(["b", "B", "a", "A"]) == ["a", "A", "b", "B"]
    assert sort_levels(["10", "9", "1"]) == ["1", "10", "9"]
