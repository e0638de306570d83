"""What Jupyter shows: the summary's, the model's and anova's HTML carry what the text carries."""
from __future__ import annotations

import html
import re
import warnings
from html.parser import HTMLParser

import pytest
from conftest import fit_case

import jaxhlm


class _Checker(HTMLParser):
    """Collects the text and checks that every opened tag is closed in order."""

    VOID = {"br", "hr", "img", "meta", "link", "input"}

    def __init__(self):
        super().__init__()
        self.stack, self.text, self.errors = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes {self.stack[-1:] or 'nothing'}")
        else:
            self.stack.pop()

    def handle_data(self, data):
        if self.stack[-1:] != ["style"]:
            self.text.append(data)


def parse(h: str) -> str:
    p = _Checker()
    p.feed(h)
    p.close()
    assert not p.errors and not p.stack, (p.errors, p.stack)
    return " ".join(" ".join(p.text).split())


NUM = re.compile(r"<\s?2e-16|[-+]?\d+\.\d+(?:e[-+]\d+)?|[-+]?\d+e[-+]\d+")


@pytest.mark.parametrize("case", ["nels_m5", "sleepstudy_rs_reml", "pastes_reml", "singular_ml"])
def test_summary_html_has_everything_the_text_has(case):
    m = fit_case(case)
    s = m.summary(data_name="dat")
    text = str(s)
    page = parse(s._repr_html_())
    for tok in NUM.findall(text):  # every number of the text, formatted the same
        assert tok.replace(" ", "") in page.replace(" ", ""), tok
    labels = ["Scaled residuals", "Random effects", "Fixed effects", "Residual", "Estimate", "Std. Error",
              "t value", "Pr(>|t|)", "dat", m.formula.split("~")[0].strip()]
    labels += list(m.fixef.index) + [str(g) for g in m.ngroups] + [str(v) for v in m.ngroups.values()]
    if m.p > 1:
        labels += ["Correlation of fixed effects", "(Intr)"]
    if "Signif. codes" in text:
        labels += ["Signif. codes", "***"]
    if m.optinfo["messages"]:
        labels += m.optinfo["messages"]
    if any(v.shape[1] > 1 for v in m.ranef.values()):
        labels.append("Corr")
    for lab in labels:
        assert lab in page, lab
    assert "NaN" not in page and "nan " not in page


def test_summary_html_p_value_formatting():
    h = fit_case("nels_m5").summary()._repr_html_()
    assert "&lt; 2e-16" in h or "&lt;2e-16" in h
    assert "0.00479" in h and "**" in h


def test_model_html():
    m = fit_case("sleepstudy_rs_reml")
    page = parse(m._repr_html_())
    assert "Reaction ~ Days + (Days | Subject)" in page
    assert "REML criterion at convergence" in page and "Std.Dev." in page and "Corr" in page
    assert "Subject: 18" in page and "180" in page
    for v in m.fixef:
        assert f"{v:.5g}"[:5] in page
    ml = fit_case("sleepstudy_rs_ml")
    assert "log-likelihood" in parse(ml._repr_html_())


def test_anova_html_is_well_formed():
    tab = jaxhlm.anova(fit_case("nels_m3"), fit_case("nels_m1"), fit_case("nels_m2"))
    page = parse(tab._repr_html_())
    assert "932.621" in page and "<2e-16" in html.unescape(page) and "NaN" not in page


@pytest.mark.slow
def test_in_a_real_notebook():
    """docs/notebook_check.py: the displays in a Jupyter kernel (needs nbclient and ipykernel)."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "notebook_check.py")
    spec = importlib.util.spec_from_file_location("notebook_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    nb = mod.execute(mod.build())
    assert mod.check(nb) == []
