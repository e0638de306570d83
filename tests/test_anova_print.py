"""How anova tables print: R's print.anova layout (text) and an HTML table for Jupyter."""
from __future__ import annotations

import numpy as np
import pytest
from conftest import fit_case, load_cases, load_reference

import jaxhlm
from jaxhlm._src.infer.anova import AnovaTable

CASES = [c["id"] for c in load_cases("anova")]


def table_with_rs_numbers(ref):
    t = ref["table"]
    cols = ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)"]
    data = {c: np.array([np.nan if v is None else v for v in t[c]], dtype=float) for c in cols}
    tab = AnovaTable(data, index=t["rownames"])
    models = {m: load_reference(m)["formula"] for m in ref["models"]}
    tab.attrs["formulas"] = {lab: models[lab] for lab in t["rownames"]}
    tab.attrs["data_name"] = "dat"
    return tab


@pytest.mark.parametrize("case", CASES)
def test_text_is_rs_print_anova(case):
    ref = load_reference(case)
    assert table_with_rs_numbers(ref).lines() == [ln.rstrip() for ln in ref["print_text"]]


@pytest.mark.parametrize("case", CASES)
def test_real_table_has_rs_lines(case):
    ref = load_reference(case)
    tab = jaxhlm.anova(*[fit_case(i) for i in ref["models"]])
    want = [ln.rstrip() for ln in ref["print_text"]][1:]  # (no data name: no "Data:" line)
    got = tab.lines()
    assert len(got) == len(want)
    k = len(ref["models"]) + 1
    assert got[:k] == want[:k]  # "Models:" and the formulas
    assert [ln.split() for ln in got[k:k + 1]] == [ln.split() for ln in want[k:k + 1]]  # the header
    assert ("Signif. codes" in "\n".join(got)) == ("Signif. codes" in "\n".join(want))


def test_boundary_column_prints_as_one_word():
    tab = jaxhlm.anova(fit_case("nels_m1"), fit_case("nels_m2"), boundary=True)
    lines = tab.lines()
    header = next(ln for ln in lines if ln.lstrip().startswith("npar"))
    assert header.split() == ["npar", "AIC", "BIC", "logLik", "deviance", "Chisq", "Df", "Pr(>Chisq)", "Pr(>Chibar2)"]
    assert "boundary" not in header
    assert lines[-1].startswith("Pr(>Chibar2): p-value of the 50:50 mixture") and len(lines[-1]) <= 80
    assert "Signif. codes" not in "\n".join(lines)  # p = 0.12 and 0.08 on the boundary: no stars by Pr(>Chisq)
    assert "Pr(&gt;Chibar2)" in tab._repr_html_()


def test_html_has_no_nan_and_integer_df():
    tab = jaxhlm.anova(fit_case("nels_m3"), fit_case("nels_m1"), fit_case("nels_m2"))
    h = tab._repr_html_()
    assert "NaN" not in h and "nan" not in h
    assert "<td class='r'>1</td>" in h and "<td class='r'>1.0</td>" not in h
    assert "61253</td>" in h  # rounded as R prints it
    assert "&lt;2e-16" in h and "***" in h and "Signif. codes" in h
    assert "mathscore ~ 1 + family_inc + (family_inc | sch_id)" in h
    two = jaxhlm.anova(fit_case("nels_m1"), fit_case("nels_m2"))._repr_html_()
    assert "Signif. codes" not in two
