"""The lme4 formula parser: property tests on generated formulas and syntax errors with positions.

Properties (formulas built from random parts by hypothesis):
* every random-effect term is found, none is left in the fixed part;
* ``(e || g)`` becomes one term per formula term of ``e`` (``1`` and ``0 + t``), as lme4's
  ``expandDoubleVerts``;
* ``(e | a/b/c)`` becomes terms for ``c:(b:a)``, ``b:a``, ``a`` (lme4's ``expandSlash`` names, innermost
  first), and with ``||`` the expression expansion comes first;
* the fixed part keeps exactly the fixed terms (compared as formulaic term sets).
"""
from __future__ import annotations

import formulaic
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxhlm import FormulaError, parse_formula
from jaxhlm._src.formula.terms import RandomTerm

NAMES = ["x", "z", "w", "age", "dose.x", "x_2"]
PYNAMES = ["x", "z", "age", "x_2"]  # usable inside Python calls
GROUPS = ["g", "h", "school", "class", "Subject"]


def terms_of(rhs: str) -> set:
    """formulaic's terms of a right-hand side, interactions with their factors sorted."""
    return {":".join(sorted(str(t).split(":"))) for t in formulaic.Formula(rhs)}


# ------------------------------------------------------------------------------ strategies
fixed_term = st.one_of(
    st.sampled_from(NAMES),
    st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMES)).map(lambda t: f"{t[0]}:{t[1]}"),
    st.sampled_from(PYNAMES).map(lambda v: f"I({v}**2)"),
    st.sampled_from(PYNAMES).map(lambda v: f"np.log({v})"),
)

re_expr = st.one_of(
    st.just("1"),
    st.sampled_from(NAMES),
    st.sampled_from(NAMES).map(lambda v: f"1 + {v}"),
    st.sampled_from(NAMES).map(lambda v: f"0 + {v}"),
    st.lists(st.sampled_from(NAMES), min_size=2, max_size=3, unique=True).map(" + ".join),
)

group_spec = st.one_of(
    st.sampled_from(GROUPS).map(lambda g: ("name", (g,))),
    st.lists(st.sampled_from(GROUPS), min_size=2, max_size=2, unique=True).map(lambda gs: ("inter", tuple(gs))),
    st.lists(st.sampled_from(GROUPS), min_size=2, max_size=3, unique=True).map(lambda gs: ("nest", tuple(gs))),
)


@st.composite
def lme4_formulas(draw):
    fixed = draw(st.lists(fixed_term, max_size=4, unique=True))
    intercept = draw(st.sampled_from(["", "1", "0", "-1"]))
    randoms = draw(st.lists(st.tuples(re_expr, st.sampled_from(["|", "||"]), group_spec), min_size=1, max_size=3))
    # interleave fixed and random terms
    pieces = [(f, None) for f in fixed] + [(None, r) for r in randoms]
    order = draw(st.permutations(range(len(pieces))))
    pieces = [pieces[i] for i in order]
    randoms = [r for _, r in pieces if r is not None]  # in formula order
    parts = []
    for f, r in pieces:
        if r is None:
            parts.append(f)
        else:
            expr, bar, (kind, gs) = r
            sep = {"name": ":", "inter": ":", "nest": "/"}[kind]
            parts.append(f"({expr} {bar} {sep.join(gs)})")
    if intercept in ("1", "0"):
        parts = [intercept] + parts
    rhs = " + ".join(parts)
    if intercept == "-1":
        rhs = rhs + " - 1"
    spaces = draw(st.booleans())
    formula = f"y ~ {rhs}" if spaces else f"y~{rhs}".replace(" ", "")
    return formula, fixed, intercept, randoms


def expected_groups(kind, gs):
    """(columns, lme4 name) of the grouping factors, innermost first."""
    if kind != "nest":
        return [(tuple(gs), ":".join(gs))]
    out = []
    acc, name = (), ""
    for g in gs:
        if not acc:
            acc, name = (g,), g
        else:
            name = f"{g}:({name})" if ":" in name else f"{g}:{name}"
            acc = (g,) + acc
        out.append((acc, name))
    return out[::-1]


def expected_terms(randoms):
    out = []
    for expr, bar, (kind, gs) in randoms:
        groups = expected_groups(kind, gs)
        if bar == "||":
            exprs = ["1" if t == "1" else f"0 + {t}" for t in (str(t) for t in formulaic.Formula(expr))]
        else:
            exprs = [expr]
        for e in exprs:
            for cols, name in groups:
                out.append((e, cols, name))
    return out


@settings(max_examples=80, deadline=None)
@given(lme4_formulas())
def test_parse_generated_formulas(case):
    formula, fixed, intercept, randoms = case
    p = parse_formula(formula)
    assert p.response == "y"
    got = [(t.expr.replace(" ", ""), t.group, t.group_name) for t in p.random]
    want = [(e.replace(" ", ""), cols, name) for e, cols, name in expected_terms(randoms)]
    assert got == want
    # the fixed part: same formulaic terms as the fixed pieces alone, intercept handled as written
    want_fixed = " + ".join(fixed) if fixed else "1"
    if intercept in ("0", "-1"):
        want_fixed = f"{want_fixed} - 1" if fixed else "0"
    assert terms_of(p.fixed) == terms_of(want_fixed)
    assert "|" not in p.fixed


@settings(max_examples=40, deadline=None)
@given(lme4_formulas())
def test_parse_is_stable_under_reparsing(case):
    """Writing the parsed terms back as a formula and parsing again gives the same terms."""
    formula, *_ = case
    p = parse_formula(formula)
    again = parse_formula(f"{p.response} ~ {p.fixed} + " + " + ".join(
        f"({t.expr} | {':'.join(t.group)})" for t in p.random))
    assert [(t.expr, t.group) for t in again.random] == [(t.expr, t.group) for t in p.random]
    assert terms_of(again.fixed) == terms_of(p.fixed)


# ------------------------------------------------------------------------------ lme4 examples
@pytest.mark.parametrize(
    "formula,terms",
    [
        ("Reaction ~ Days + (Days | Subject)", [("Days", "Subject")]),
        ("Reaction ~ Days + (Days || Subject)", [("1", "Subject"), ("0 + Days", "Subject")]),
        ("strength ~ 1 + (1 | batch/cask)", [("1", "cask:batch"), ("1", "batch")]),
        ("y ~ (1 | a/b/c)", [("1", "c:(b:a)"), ("1", "b:a"), ("1", "a")]),
        ("y ~ x + (x || a/b)", [("1", "b:a"), ("1", "a"), ("0 + x", "b:a"), ("0 + x", "a")]),
        ("y ~ x + (x * z || g)", [("1", "g"), ("0 + x", "g"), ("0 + z", "g"), ("0 + x:z", "g")]),
        ("y ~ x + (0 + x || g)", [("0 + x", "g")]),
        ("angle ~ recipe * temp + (1 | recipe:replicate)", [("1", "recipe:replicate")]),
        ("y ~ x + ((1 | g))", [("1", "g")]),
        ("y ~ `my x` + (1 | `my g`)", [("1", "my g")]),
    ],
)
def test_lme4_expansions(formula, terms):
    p = parse_formula(formula)
    assert [(t.expr, t.group_name) for t in p.random] == terms


def test_nested_group_columns_and_label():
    p = parse_formula("y ~ (1 | a/b/c)")
    assert [t.group for t in p.random] == [("c", "b", "a"), ("b", "a"), ("a",)]
    assert isinstance(p.random[0], RandomTerm) and str(p.random[0]) == "(1 | c:(b:a))"


def test_fixed_part_keeps_functions_and_intercept():
    p = parse_formula("np.log(y) ~ I(x**2) + C(f, Treatment('b')) - 1 + (1 + x | g)")
    assert p.response == "np.log(y)"
    assert terms_of(p.fixed) == terms_of("I(x**2) + C(f, Treatment('b')) - 1")
    p = parse_formula("y ~ 0 + (1 | g)")
    assert terms_of(p.fixed) == set()


# ------------------------------------------------------------------------------ syntax errors
@pytest.mark.parametrize(
    "formula,pos,words",
    [
        ("Reaction ~ Days +* (1|Subject)", 17, "'*'"),
        ("y ~ x + ", 6, "no right operand"),
        ("y ~ (x + (1|g)", 4, "never closed"),
        ("y ~ x + (1|g))", 13, "')'"),
        ("y ~ x z + (1|g)", 6, "missing operator"),
        ("y ~ x + 1|g", 9, "outside parentheses"),
        ("y ~ x + (1||)", 10, "no right operand"),
        ("y ~ x ~ z + (1|g)", 6, "second '~'"),
        ("y ~ x + () + (1|g)", 9, "empty parentheses"),
        ("~ x + (1|g)", 0, "no response"),
        ("y ~", 3, "nothing on the right"),
        ("y ~ x; z + (1|g)", 5, "unexpected character"),
        ("y ~ x + `a + (1|g)", 8, "backtick"),
        ("y ~ x + (|g)", 9, "no left operand"),
        ("y ~ x + foo(x + (1|g)", 11, "never closed"),
        ("Reaction ~ . + (1|Subject)", 11, "not supported"),
    ],
)
def test_syntax_error_positions(formula, pos, words):
    with pytest.raises(FormulaError) as ei:
        parse_formula(formula)
    e = ei.value
    assert isinstance(e, ValueError)
    assert e.position == pos
    assert words in str(e)
    lines = str(e).splitlines()
    assert lines[-2].strip() == formula.strip()
    # the caret sits under the offending character
    assert lines[-1].index("^") - lines[-2].index(formula[0]) == pos


@pytest.mark.parametrize(
    "formula,words",
    [
        ("y ~ x", "no random-effect term"),
        ("y ~ x + (1 | g + h)", "grouping factor"),
        ("y ~ x + (1 | factor(g))", "grouping factor"),
        ("y ~ x + (1 | g | h)", "too many '|'"),
        ("y ~ x * (1 | g)", "parenthesised"),
        ("y ~ x + (1|g) - (1|h)", "subtracted"),
        ("y x + (1|g)", "missing operator"),
    ],
)
def test_formula_errors_name_the_problem(formula, words):
    with pytest.raises(FormulaError, match=None) as ei:
        parse_formula(formula)
    assert words in str(ei.value)


def test_formula_must_be_a_string():
    with pytest.raises(FormulaError, match="must be a string"):
        parse_formula(3)
