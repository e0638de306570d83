"""The printed summary against lmerTest's (``summary_text`` of every stored R reference).

Two checks per case:

* the layout and number formatting: a stand-in model that returns R's own numbers (estimates,
  SEs, df, p-values, variance components, criteria, residual quantiles) must print exactly
  R's lines (only the class name in the title, lme4's expansion of ``||`` in the formula and
  the optimizer's name differ);
* the real fit: the same lines in the same order with the same labels; every number equal to
  R's printed one where jaxhlm's estimates agree with lme4's (cases where lme4's default
  optimizer reached the optimum), within the last printed digit otherwise close.
"""
from __future__ import annotations

import math
import re
import types
import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import fit_case, load_cases, load_data, load_reference

import jaxhlm
from jaxhlm._src.infer.summary import Summary

CASES = [c["id"] for c in load_cases("lmer") if "summary_text" in load_reference(c["id"])]


def r_lines(ref):
    lines = [ln.rstrip() for ln in ref["summary_text"]]
    while lines and lines[-1] == "":
        lines.pop()
    return lines


class RModel:
    """A stand-in for a fitted model that answers with R's numbers from a reference file."""

    def __init__(self, ref):
        t = ref["satterthwaite"]["table"]
        names = t["rownames"]
        self.formula = ref["formula"]
        self.reml = bool(ref["REML"])
        self.objective = ref["REMLcrit"] if self.reml else ref["deviance"]
        self.aic, self.bic, self.loglik = ref["AIC"], ref["BIC"], ref["logLik"]
        self.deviance, self.df_resid = ref["deviance"], ref["df_resid"]
        self.nobs, self.ngroups, self.sigma = ref["n"], dict(ref["ngrps"]), ref["sigma"]
        self.p, self.n_dropped = len(names), 0
        self.fixef = pd.Series([t["Estimate"][i] for i in range(len(names))], index=names)
        V = np.asarray(ref["vcov"]["matrix"], dtype=float).reshape(len(names), len(names))
        self.vcov = pd.DataFrame(V, index=names, columns=names)
        self.coef_table = pd.DataFrame({k: t[k] for k in ("Estimate", "Std. Error", "df", "t value", "Pr(>|t|)")},
                                       index=names)
        vc = ref["varcorr"]
        self.varcorr = pd.DataFrame({k: pd.Series(vc[k], dtype=object) for k in ("grp", "var1", "var2")}).assign(
            vcov=np.asarray(vc["vcov"], float), sdcor=np.asarray(vc["sdcor"], float))
        q = ref["scaled_resid_quantiles"]
        # five residuals whose quartiles (type 7) are exactly R's
        self.resid = pd.Series([q[k] * self.sigma for k in ("Min", "1Q", "Median", "3Q", "Max")])
        self.optinfo = {"messages": list(ref.get("conv_messages") or [])}
        self.converged = True


def normalise_r(lines):
    """R's lines with what is R's own and not the layout's: the class name, ``maximum
    likelihood .``, the optimizer's name."""
    text = "\n".join(lines).replace("[\nlmerModLmerTest]", "[\nLinearMixedModel]")
    text = text.replace("[lmerModLmerTest]", "[LinearMixedModel]").replace("maximum likelihood .", "maximum likelihood.")
    return text.replace("optimizer (nloptwrap)", "optimizer (BFGS)").split("\n")


@pytest.mark.parametrize("case", CASES)
def test_layout_and_formatting_with_rs_numbers(case):
    ref = load_reference(case)
    want = normalise_r(r_lines(ref))
    got = Summary(RModel(ref), data_name="dat").lines()
    if "||" in ref["formula"]:  # lme4 prints the expanded formula
        i = next(k for k, ln in enumerate(want) if ln.startswith("Formula:"))
        assert got[i] == "Formula: " + ref["formula"]
        got[i] = want[i]
    if len(ref["fixef_names"] if "fixef_names" in ref else ref["satterthwaite"]["table"]["rownames"]) > 12:
        assert got[-3:] == ["", "Correlation matrix not shown by default, as p = 18 > 12.",
                            "Use summary(correlation=True) or the model's vcov if you need it."]
        got = got[:-3]  # (R prints this as a message, not into the summary's text)
    assert got == want


NUM = re.compile(r"[-+]?(?:\d+\.?\d*(?:e[-+]\d+)?|<\s?2e-16)")


def skeleton(line):
    return " ".join(NUM.sub("#", line).split())


def numbers(line):
    return [t for t in NUM.findall(line)]


def optimizer_block(lines):
    k = next((i for i, ln in enumerate(lines) if ln.startswith("optimizer (")), len(lines))
    return lines[:k], lines[k:]


def close(a: str, b: str, rel: float) -> bool:
    if a == b:
        return True
    if "<" in a or "<" in b:
        return False
    x, y = float(a), float(b)
    dec = len(a.split("e")[0].split(".")[1]) if "." in a.split("e")[0] else 0
    step = 10.0 ** -dec * (10.0 ** int(a.split("e")[1]) if "e" in a else 1.0)
    return abs(x - y) <= max(1.01 * step, rel * max(abs(x), abs(y)))


@pytest.mark.parametrize("case", CASES)
def test_real_fit_prints_rs_structure_and_numbers(case):
    ref = load_reference(case)
    m = fit_case(case)
    want, want_opt = optimizer_block(normalise_r(r_lines(ref)))
    got, got_opt = optimizer_block(m.summary(data_name="dat").lines())
    assert bool(got_opt) == bool(m.optinfo["messages"])  # printed exactly when there is something to say
    if got_opt:
        assert got_opt[1:] == m.optinfo["messages"]
    if m.p > 12:
        got = got[:-3]
    got = [ln for ln in got if not ln.endswith("deleted due to missingness)")]  # jaxhlm's one extra line
    assert [skeleton(a) for a in got if not a.startswith("Formula:")] == \
           [skeleton(b) for b in want if not b.startswith("Formula:")]
    # how well the estimates agree: theta relative to lme4's
    th = np.array(list(ref["theta"].values()))
    dtheta = float(np.max(np.abs(m.theta.to_numpy() - th) / np.maximum(np.abs(th), 1e-3)))
    if dtheta > 1e-3:  # lme4's default optimizer stopped far from jaxhlm's optimum: only the layout
        return
    for a, b in zip(want, got):
        if a.startswith("Formula:"):
            continue
        na, nb = numbers(a), numbers(b)
        assert len(na) == len(nb), (a, b)
        for x, y in zip(na, nb):
            # the printed digits, up to one unit in the last (R's df and p come from numerical
            # derivatives, jaxhlm's from exact ones), or as close as the estimates are
            assert close(x, y, max(2e-6, 50 * dtheta)), (case, a, b)


def test_header_lines_and_data_name(sleepstudy):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer("Reaction~Days+(Days|Subject)", sleepstudy)
    text = str(m.summary())
    assert text.splitlines()[:3] == [
        "Linear mixed model fit by REML. t-tests use Satterthwaite's method [",
        "LinearMixedModel]",
        "Formula: Reaction ~ Days + (Days | Subject)",
    ]
    assert "Data:" not in text
    assert m.summary(data_name="sleepstudy").lines()[3] == "   Data: sleepstudy"
    kr = m.summary(ddf="Kenward-Roger").lines()
    assert kr[0].startswith("Linear mixed model fit by REML. t-tests use Kenward-Roger's method")
    with pytest.raises(jaxhlm.ArgumentError, match="ddf"):
        m.summary(ddf="wald")
    assert "Correlation of Fixed Effects:" not in str(m.summary(correlation=False))


def test_legend_only_with_stars(sleepstudy):
    rng = np.random.default_rng(1)
    d = sleepstudy.assign(noise=rng.normal(size=len(sleepstudy)))
    d["Reaction"] = rng.normal(size=len(d)) + rng.normal(size=18)[d["Subject"].astype("category").cat.codes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer("Reaction ~ noise + (1 | Subject)", d)
    ct = m.coef_table
    lines = m.summary().lines()
    if (ct["Pr(>|t|)"] < 0.1).any():
        pytest.skip("a coefficient happened to be significant")
    assert not any(ln.startswith("Signif. codes") for ln in lines)
    fe = lines.index("Fixed effects:")
    assert lines[fe + 1].rstrip().endswith("Pr(>|t|)")  # no stars column


def test_missing_rows_are_reported(sleepstudy):
    d = sleepstudy.copy()
    d.loc[[3, 50], "Reaction"] = np.nan
    m = jaxhlm.lmer("Reaction ~ Days + (Days | Subject)", d)
    lines = m.summary().lines()
    k = next(i for i, ln in enumerate(lines) if ln.startswith("Number of obs: 178"))
    assert lines[k + 1] == "   (2 observations deleted due to missingness)"


def test_not_converged_and_singular_lines():
    ref = load_reference(CASES[0])
    rm = RModel(ref)
    rm.optinfo = {"messages": ["Model failed to converge: max|grad| = 0.01"]}
    rm.converged = False
    lines = Summary(rm).lines()
    assert lines[-2:] == ["optimizer (BFGS) convergence code: 1 (see the message below)",
                          "Model failed to converge: max|grad| = 0.01"]


def test_format_pvalue_single():
    from jaxhlm._src.infer.summary import format_pvalue

    assert format_pvalue(1e-30) == "<2e-16"
    assert format_pvalue(0.12345) == "0.123"
    assert format_pvalue(1.6523e-6) == "1.65e-06"
    assert math.isnan(float("nan")) and format_pvalue(float("nan")) == "NA"


@pytest.mark.parametrize("formula,data,reml", [
    ("Reaction ~ Days + (Days | Subject)", "sleepstudy.csv", True),
    ("Reaction ~ Days + (Days || Subject)", "sleepstudy.csv", False),
    ("diameter ~ 1 + (1 | plate) + (1 | sample)", "Penicillin.csv", True),
])
def test_satterthwaite_differences_equal_autodiff(formula, data, reml):
    """vp_derivatives' two methods: Richardson-extrapolated differences of the exact gradient
    (single fits of small models) and forward-over-reverse autodiff (batched refits, large
    dense blocks) give the same H, J, C and df."""
    import jax

    from jaxhlm._src.engine import pls
    from jaxhlm._src.infer.satterthwaite import df_from_parts, positive_inverse

    m = jaxhlm.lmer(formula, load_data(data), reml=reml)
    vp = np.concatenate([m.opt.theta, [m.sigma / float(m.xform.s)]])
    run = jax.jit(pls.vp_derivatives, static_argnames=("layout", "reml", "method"))
    Hd, Jd, Cd = (np.asarray(v) for v in run(vp, m.stats, layout=m.layout, reml=reml, method="differences"))
    Ha, Ja, Ca = (np.asarray(v) for v in run(vp, m.stats, layout=m.layout, reml=reml, method="autodiff"))
    np.testing.assert_allclose(Cd, Ca, rtol=1e-13)
    np.testing.assert_allclose(Hd, Ha, rtol=1e-8, atol=1e-8 * np.abs(Ha).max())
    np.testing.assert_allclose(Jd, Ja, rtol=1e-7, atol=1e-8 * np.abs(Ja).max())
    L = np.eye(m.p)
    dfd = df_from_parts(positive_inverse(Hd)[0], Jd, Cd, L)
    dfa = df_from_parts(positive_inverse(Ha)[0], Ja, Ca, L)
    np.testing.assert_allclose(dfd, dfa, rtol=1e-9)
