"""glmer's arguments, refusals and warnings (no R needed)."""
import warnings

import numpy as np
import pandas as pd
import pytest

import glmm_refs as G
import jaxhlm
from jaxhlm._src.engine.families import get_family
from jaxhlm._src.model.glmm_pipeline import as_family


def _balanced():
    """Every group has the same responses at the same x: the between-group variance estimate is 0."""
    g = np.repeat(np.arange(10), 20)
    y = np.tile(np.array([1, 0, 0, 1, 0, 1, 0, 0, 1, 0, 0, 0, 1, 0, 1, 0, 0, 1, 0, 1.0]), 10)
    x = np.tile(np.linspace(-1, 1, 20), 10)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{k}" for k in g]})


def test_family_spellings():
    assert as_family("binomial") == get_family("binomial", "logit")
    assert as_family(("binomial", "probit")) == jaxhlm.families.Binomial(link="probit")
    assert as_family(jaxhlm.families.Poisson()) == get_family("poisson")
    with pytest.raises(jaxhlm.ArgumentError):
        as_family("gamma")
    with pytest.raises(jaxhlm.ArgumentError):
        as_family(("poisson", "logit"))


def test_singular_fit_warns_and_is_exactly_zero():
    df = _balanced()
    with pytest.warns(jaxhlm.SingularFitWarning):
        m = jaxhlm.glmer("y ~ x + (1 | g)", df, family="binomial")
    assert m.is_singular and m.theta.iloc[0] == 0.0
    assert m.varcorr["vcov"].iloc[0] == 0.0
    # with no random-effect variance the fit is the logistic regression's (Laplace is then exact)
    X = np.column_stack([np.ones(len(df)), df["x"]])
    b = np.zeros(2)
    for _ in range(50):  # logistic regression by Newton's method
        p = 1 / (1 + np.exp(-X @ b))
        b = b + np.linalg.solve(X.T @ (X * (p * (1 - p))[:, None]), X.T @ (df["y"] - p))
    p = 1 / (1 + np.exp(-X @ b))
    llf = np.sum(df["y"] * np.log(p) + (1 - df["y"]) * np.log1p(-p))
    np.testing.assert_allclose(m.beta, b, atol=1e-6)
    np.testing.assert_allclose(m.objective, -2 * llf, atol=1e-8)
    assert "Variance" in str(m.summary())


def test_nagq_rules():
    df = G.frame("contra_urban_slope")
    with pytest.raises(jaxhlm.ArgumentError, match="single, scalar"):
        jaxhlm.glmer("use ~ age + (urban | district)", df, family="binomial", nAGQ=5)
    for bad in (-1, 1.5, "two"):
        with pytest.raises(jaxhlm.ArgumentError):
            jaxhlm.glmer("use ~ age + (1 | district)", df, family="binomial", nAGQ=bad)


def test_response_checks():
    df = G.frame("cbpp_cbind_laplace")
    with pytest.raises(jaxhlm.DataError, match=r"outside \[0, 1\]"):
        jaxhlm.glmer("incidence ~ period + (1 | herd)", df, family="binomial")
    bad = df.assign(neg=-df["incidence"])
    with pytest.raises(jaxhlm.DataError, match="negative"):
        jaxhlm.glmer("neg ~ period + (1 | herd)", bad, family="poisson")


def test_offset_argument_equals_offset_term():
    df = G.frame("cbpp_cbind_laplace").assign(lsize=lambda d: np.log(d["size"]))
    a = jaxhlm.glmer("incidence ~ period + offset(log(size)) + (1 | herd)", df, family="poisson")
    b = jaxhlm.glmer("incidence ~ period + (1 | herd)", df, family="poisson", offset="lsize")
    assert a.objective == pytest.approx(b.objective, abs=1e-9)
    np.testing.assert_allclose(a.beta, b.beta, atol=1e-9)
    np.testing.assert_allclose(a.predict(df.iloc[:3], type="response"), a.fitted.iloc[:3], rtol=1e-9)


def test_user_data_not_modified_and_repr():
    df = G.frame("cbpp_cbind_laplace")
    before = df.copy()
    m = G.fit("cbpp_cbind_laplace")
    pd.testing.assert_frame_equal(df, before)
    assert "Binomial" in repr(m) and "Laplace" in repr(m)
    with pytest.raises(jaxhlm.ArgumentError):
        m.predict(type="probability")
    with pytest.raises(jaxhlm.ArgumentError):
        m.residuals("raw")


def test_small_programs_are_separate_cache_entries():
    from jaxhlm._src.optim import glmm_fit

    fast, full = glmm_fit._PROGRAMS[("stage1", True)], glmm_fit._PROGRAMS[("stage1", False)]
    assert fast._name != full._name and "xla_backend_optimization_level" in fast._name
    from jaxhlm._src.optim.pirls import GlmmData

    small = GlmmData(np.zeros(10), None, None, None)
    assert glmm_fit._program("stage1", small) is fast
    # the search, which every refit runs too, is always optimised
    search = glmm_fit._program("search", small)
    assert search is glmm_fit._program("search", GlmmData(np.zeros(glmm_fit.SMALL_ROWS), None, None, None))
    assert "xla_backend_optimization_level" not in search._name


def test_out_of_core_refused():
    with pytest.raises(jaxhlm.ArgumentError, match="in memory"):
        jaxhlm.glmer("y ~ x + (1 | g)", "some/file.parquet", family="binomial")
