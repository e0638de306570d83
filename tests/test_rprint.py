"""R's formatting re-implemented (jaxhlm/_src/infer/rprint.py) against R 4.2's own output
(tests/data/rformat_reference.json, made by tools/rformat_reference.R)."""
import json
import os

import pytest

from jaxhlm._src.infer import rprint

REF = json.load(open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "rformat_reference.json")))


@pytest.mark.parametrize("case", REF["format"], ids=lambda c: str(c["x"])[:40])
def test_format_real(case):
    assert rprint.format_real(case["x"], case["digits"][0], case["nsmall"][0]) == case["out"]


@pytest.mark.parametrize("case", REF["format_pval"], ids=lambda c: str(c["p"])[:40])
def test_format_pval(case):
    assert rprint.format_pval(case["p"], 3) == case["out"]


@pytest.mark.parametrize("case", REF["abbreviate"], ids=lambda c: str(c["names"])[:40])
def test_abbreviate(case):
    assert rprint.abbreviate(case["names"], case["minlength"][0]) == case["out"]


@pytest.mark.parametrize("case", REF["deparse"], ids=lambda c: c["formula"][0])
def test_deparse_formula(case):
    assert rprint.deparse_formula(case["formula"][0]) == case["out"][0]


@pytest.mark.parametrize("case", REF["strwrap"], ids=lambda c: c["text"][0][:30])
def test_strwrap(case):
    assert rprint.strwrap(case["text"][0], case["width"][0], case["exdent"][0]) == case["out"]


def test_layout_helpers():
    assert rprint.print_named(["-3.8940", "4.0119"], ["Min", "Max"]) == ["    Min     Max", "-3.8940  4.0119"]
    assert rprint.print_matrix([["a", "bb"]], ["x", "yyy"], rownames=["r1"], right=True) == ["   x yyy", "r1 a  bb"]
    assert rprint.cat_fill(["a" * 50, "b" * 40]) == ["a" * 50, "b" * 40]
    assert rprint.cat_fill(["Number of obs: 3, groups: ", "g, 2"]) == ["Number of obs: 3, groups:  g, 2"]
    assert rprint.signif_stars(0.0005) == "***" and rprint.signif_stars(0.2) == "" and rprint.signif_stars(float("nan")) == ""
    assert list(rprint.zapsmall([4.0119, -0.000338], 5)) == [4.0119, -0.0003]


@pytest.mark.parametrize("case", REF["zapsmall"], ids=lambda c: str(c["x"])[:40])
def test_zapsmall(case):
    assert list(rprint.zapsmall(case["x"], case["digits"][0])) == case["out"]
