"""lmerTest's ranova: reduction rules, refits, likelihood-ratio tests against R."""
from __future__ import annotations

import re

import numpy as np
import pytest

import jaxhlm
from inference_refs import fit, ids_with, ref, table
from jaxhlm._src.infer.ranova import _reductions, lm_loglik, ranova

CASES = ids_with("ranova")


@pytest.mark.parametrize("case_id", CASES)
def test_ranova_matches_lmertest(case_id):
    m = fit(case_id)
    got = ranova(m)
    r = ref(case_id)["ranova"]
    want = table(r)
    assert list(got.index) == list(want.index)
    assert list(got.columns) == ["npar", "logLik", "AIC", "LRT", "Df", "Pr(>Chisq)"]
    np.testing.assert_array_equal(got["npar"], want["npar"])
    np.testing.assert_allclose(got["logLik"], want["logLik"], rtol=1e-9, atol=1e-6)
    np.testing.assert_allclose(got["LRT"].iloc[1:], want["LRT"].iloc[1:], rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(got["Pr(>Chisq)"].iloc[1:], want["Pr(>Chisq)"].iloc[1:], rtol=1e-5, atol=1e-14)
    assert _plain(got.attrs["heading"][-1]) == _plain(r["heading"][-1])
    for k, f in (r.get("formulae") or {}).items():
        assert _plain(got.attrs["formulae"][k]) == _plain(f)


def _plain(formula: str) -> str:
    """Spaces removed; jaxhlm's C(f, contr.sum) spelled as R's f with contrasts = contr.sum."""
    return re.sub(r"C\((\w+),contr\.sum\)", r"\1", formula.replace(" ", ""))


def test_reduction_rules():
    assert _reductions("1") == [(None, None)]
    assert _reductions("Days") == [("Days", "1")]
    assert _reductions("1 + Days") == [("Days", "1")]
    assert _reductions("0 + Days") == [("Days", "1")]  # lmerTest reduces (0 + x | g) to (1 | g)
    assert _reductions("x + z") == [("x", "z"), ("z", "x")]
    assert _reductions("x * z") == [("x:z", "x + z")]  # marginality: only the interaction


def test_reduce_terms_false_removes_whole_terms():
    m = fit("sleepstudy_inf")
    t = ranova(m, reduce_terms=False)
    assert list(t.index) == ["<none>", "(Days | Subject)"]
    assert t["Df"].iloc[1] == 3
    # without random effects: the (REML) log-likelihood of the linear model
    d = m.design
    np.testing.assert_allclose(t["logLik"].iloc[1], lm_loglik(d.X, d.y, True))


def test_lm_loglik_is_rs_loglik_lm():
    # ML: -n/2 (log(2 pi RSS/n) + 1); REML subtracts log|R| of X = QR with N = n - p
    rng = np.random.default_rng(3)
    X = np.column_stack([np.ones(40), rng.standard_normal(40)])
    y = X @ [1.0, 2.0] + rng.standard_normal(40)
    rss = float(np.sum((y - X @ np.linalg.lstsq(X, y, rcond=None)[0]) ** 2))
    np.testing.assert_allclose(lm_loglik(X, y, False), -20 * (np.log(2 * np.pi * rss / 40) + 1))
    R = np.linalg.qr(X)[1]
    want = -19 * (np.log(2 * np.pi * rss / 38) + 1) - np.sum(np.log(np.abs(np.diag(R))))
    np.testing.assert_allclose(lm_loglik(X, y, True), want)


def test_ranova_method_and_printing():
    t = fit("pastes_nested").ranova()
    assert "ANOVA-like table for random-effects" in str(t)


def test_ranova_refuses_a_model_without_its_data():
    m = fit("sleep_uncorr")
    m2 = jaxhlm._src.infer.anova._ml_version(m)  # built without lmer(): holds no data
    with pytest.raises(jaxhlm.InferenceError, match="data"):
        ranova(m2)
