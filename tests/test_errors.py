"""Bad input is refused clearly, before any JAX code runs; the user's data is never modified.

Every error is one of jaxhlm's classes (also a ValueError / TypeError / KeyError), names what is
wrong, and comes from jaxhlm's own checks: the fit itself is replaced by a function that fails
the test if reached, and the traceback must not pass through JAX.
"""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
import jaxhlm._src.model.pipeline as pipeline_mod
import jaxhlm._src.optim.fit as fit_mod
from jaxhlm import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
    JaxhlmError,
    RankDeficiencyWarning,
)

HERE = os.path.dirname(os.path.abspath(__file__))


def sleep() -> pd.DataFrame:
    return pd.read_csv(os.path.join(HERE, "data", "sleepstudy.csv"))


def _with(**cols):
    def make():
        d = sleep()
        for k, v in cols.items():
            d[k] = v(d) if callable(v) else v
        return d

    return make


F = "Reaction ~ Days + (Days | Subject)"

# (id, formula, data builder, kwargs, error class, builtin base, words in the message)
CASES = [
    ("unknown_fixed_column", "Reaction ~ Dayz + (1 | Subject)", sleep, {}, ColumnNotFoundError, KeyError,
     ["'Dayz'", "did you mean 'Days'"]),
    ("unknown_response", "Reacton ~ Days + (1 | Subject)", sleep, {}, ColumnNotFoundError, KeyError,
     ["'Reacton'", "'Reaction'"]),
    ("unknown_group", "Reaction ~ Days + (1 | Subjects)", sleep, {}, ColumnNotFoundError, KeyError,
     ["'Subjects'", "grouping factor", "'Subject'"]),
    ("unknown_random_slope", "Reaction ~ Days + (Dayz | Subject)", sleep, {}, ColumnNotFoundError, KeyError,
     ["'Dayz'", "random-effect term"]),
    ("unknown_function", "Reaction ~ foo(Days) + (1 | Subject)", sleep, {}, FormulaError, ValueError,
     ["'foo'", "function"]),
    ("syntax_position", "Reaction ~ Days +* (1 | Subject)", sleep, {}, FormulaError, ValueError,
     ["position 17", "^"]),
    ("unbalanced", "Reaction ~ Days + (1 | Subject", sleep, {}, FormulaError, ValueError, ["never closed"]),
    ("bar_outside_parens", "Reaction ~ Days + 1 | Subject", sleep, {}, FormulaError, ValueError,
     ["outside parentheses"]),
    ("no_random_term", "Reaction ~ Days", sleep, {}, FormulaError, ValueError, ["no random-effect term"]),
    ("formula_not_string", 42, sleep, {}, FormulaError, ValueError, ["must be a string"]),
    ("string_response", "S ~ Days + (1 | Subject)", _with(S=lambda d: "s" + d.Subject.astype(str)),
     {}, DataError, ValueError, ["'S'", "numeric"]),
    ("numbers_as_text_response", "R ~ Days + (1 | Subject)", _with(R=lambda d: d.Reaction.astype(str)),
     {}, DataError, ValueError, ["'R'", "pd.to_numeric"]),
    ("bool_response", "B ~ Days + (1 | Subject)", _with(B=lambda d: d.Reaction > 300), {}, DataError,
     ValueError, ["'B'", "bool"]),
    ("datetime_response", "T ~ Days + (1 | Subject)",
     _with(T=lambda d: pd.Timestamp("2020-01-01") + pd.to_timedelta(d.Days, "D")), {}, DataError, ValueError,
     ["'T'", "datetime"]),
    ("complex_response", "C ~ Days + (1 | Subject)", _with(C=lambda d: d.Reaction + 1j), {}, DataError,
     ValueError, ["'C'", "complex"]),
    ("complex_predictor", "Reaction ~ C + (1 | Subject)", _with(C=lambda d: d.Days + 1j), {}, DataError,
     ValueError, ["'C'", "complex"]),
    ("empty_data", F, lambda: sleep().iloc[:0], {}, DataError, ValueError, ["no rows"]),
    ("all_na_response", F, _with(Reaction=np.nan), {}, DataError, ValueError, ["'Reaction'", "missing"]),
    ("all_na_group", F, _with(Subject=np.nan), {}, DataError, ValueError, ["'Subject'", "missing"]),
    ("single_level", "Reaction ~ Days + (1 | G)", _with(G="a"), {}, DataError, ValueError,
     ["'G'", "1 level"]),
    ("single_level_after_na", "Reaction ~ Days + (1 | Subject)",
     lambda: sleep().assign(Reaction=lambda d: d.Reaction.where(d.Subject == 308)), {}, DataError, ValueError,
     ["'Subject'", "1 level"]),
    ("fewer_obs_than_fixed", "Reaction ~ Days + a + b + c + (1 | Subject)",
     lambda: sleep().groupby("Subject").head(2).head(4).assign(a=[1.0, 5, 2, 0], b=[3.0, 1, 4, 1], c=[0.0, 2, 7, 1]),
     {}, DataError, ValueError, ["4 observations", "5 fixed-effects"]),
    ("levels_vs_obs", "Reaction ~ 1 + (1 | row)", _with(row=lambda d: np.arange(len(d))), {}, DataError,
     ValueError, ["'row'", "observations"]),
    ("random_effects_vs_obs", "Reaction ~ Days + (Days | G)", _with(G=lambda d: np.arange(len(d)) // 2), {},
     DataError, ValueError, ["random effects", "(Days | G)"]),
    ("inf_response", F, _with(Reaction=lambda d: d.Reaction.where(d.index != 3, np.inf)), {}, DataError,
     ValueError, ["'Reaction'", "infinite"]),
    ("inf_predictor", F, _with(Days=lambda d: d.Days.where(d.index != 3, -np.inf)), {}, DataError,
     ValueError, ["'Days'", "infinite"]),
    ("inf_random_slope", "Reaction ~ 1 + (0 + W | Subject)",
     _with(W=lambda d: d.Days.where(d.index != 7, np.inf)), {}, DataError, ValueError, ["'W'", "infinite"]),
    ("log_of_nonpositive", "np.log(Days) ~ 1 + (1 | Subject)", sleep, {}, DataError, ValueError,
     ["np.log(Days)", "infinite"]),
    ("constant_response", "K ~ Days + (1 | Subject)", _with(K=3.5), {}, DataError, ValueError,
     ["'K'", "constant"]),
    ("response_exact_in_fixed", "L ~ Days + (1 | Subject)", _with(L=lambda d: 2.0 + 0.5 * d.Days), {},
     DataError, ValueError, ["'L'", "exact linear function"]),
    ("duplicate_column", F, lambda: pd.concat([sleep(), sleep()[["Days"]]], axis=1), {}, DataError,
     ValueError, ["'Days'", "more than once"]),
    ("reml_string", F, sleep, {"reml": "yes"}, ArgumentError, TypeError, ["reml", "'yes'"]),
    ("reml_int", F, sleep, {"reml": 1}, ArgumentError, TypeError, ["reml"]),
    ("reml_none", F, sleep, {"reml": None}, ArgumentError, TypeError, ["reml"]),
    ("data_list", F, lambda: [1, 2, 3], {}, ArgumentError, TypeError, ["DataFrame", "list"]),
    ("data_none", F, lambda: None, {}, ArgumentError, TypeError, ["DataFrame"]),
    ("data_array", F, lambda: np.zeros((3, 3)), {}, ArgumentError, TypeError, ["DataFrame", "ndarray"]),
]


@pytest.fixture
def no_fit(monkeypatch):
    """Fail the test if a fit (the first JAX code) is reached."""

    def boom(*a, **k):
        raise AssertionError("the fit was reached: the error should have been raised before any JAX code")

    monkeypatch.setattr(pipeline_mod, "fit_design", boom)
    monkeypatch.setattr(fit_mod, "run_fit", boom)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
@pytest.mark.filterwarnings("ignore:divide by zero:RuntimeWarning")  # numpy's, from np.log(0) in a formula
def test_bad_input_is_refused_before_jax(case, no_fit):
    _, formula, make, kwargs, cls, base, words = case
    data = make()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RankDeficiencyWarning)
        with pytest.raises(cls) as ei:
            jaxhlm.lmer(formula, data, **kwargs)
    err = ei.value
    assert isinstance(err, JaxhlmError) and isinstance(err, base)
    msg = str(err)
    for w in words:
        assert w in msg, f"{w!r} not in {msg!r}"
    if isinstance(err, KeyError):  # KeyError's str() would be the repr of the message
        assert msg == err.message
    for entry in ei.traceback:
        path = str(entry.path)
        assert f"{os.sep}jax{os.sep}" not in path and f"{os.sep}jaxlib{os.sep}" not in path, path


@pytest.mark.parametrize(
    "start,words",
    [("abc", "start"), ([1.0, 0.0], "3 elements"), ([1.0, np.nan, 1.0], "finite"), ([[1.0, 0.0, 1.0]], "3 elements")],
)
def test_bad_start_is_refused(start, words, monkeypatch):
    monkeypatch.setattr(fit_mod, "run_fit", lambda *a, **k: pytest.fail("fit reached"))
    with pytest.raises(ArgumentError) as ei:
        jaxhlm.lmer(F, sleep(), start=start)
    assert words in str(ei.value)


def test_error_classes():
    assert issubclass(FormulaError, ValueError) and issubclass(DataError, ValueError)
    assert issubclass(ColumnNotFoundError, KeyError) and issubclass(ArgumentError, TypeError)
    for c in (FormulaError, DataError, ColumnNotFoundError, ArgumentError):
        assert issubclass(c, JaxhlmError)
    e = ColumnNotFoundError("Dayz", ["Days", "Reaction"], "fixed-effects part")
    assert str(e) == "column 'Dayz' used in the fixed-effects part is not in the data; did you mean 'Days'?"


def test_numbers_stored_as_text_predictor_warns():
    d = sleep()
    d["Dtext"] = d.Days.astype(str).astype(object)
    d.loc[5, "Dtext"] = "."
    with pytest.warns(jaxhlm.JaxhlmWarning, match="'Dtext'.*categorical"):
        jaxhlm.build_design("Reaction ~ Dtext + (1 | Subject)", d)


# ------------------------------------------------------------------------------ the user's data
def user_frame() -> pd.DataFrame:
    """Non-default index, missing values, string / categorical / integer / nullable columns."""
    d = sleep()
    rng = np.random.default_rng(7)
    d.index = pd.Index([f"r{i:03d}" for i in rng.permutation(len(d))], name="rowid")
    d.loc[d.index[[4, 50, 51]], "Reaction"] = np.nan
    d.loc[d.index[90], "Days"] = np.nan
    d["subj_str"] = "S" + d.Subject.astype(str)
    levels = sorted(d.subj_str.unique(), reverse=True)
    d["subj_cat"] = pd.Categorical(d.subj_str, categories=levels + ["unused"])
    d["subj_int"] = (d.Subject - 300) * 3
    d["Days_nullable"] = d.Days.astype("Float64")
    return d


@pytest.fixture(scope="module")
def user_fits():
    d = user_frame()
    snap = d.copy(deep=True)
    fits = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for g in ("subj_str", "subj_cat", "subj_int"):
            fits[g] = jaxhlm.lmer(f"Reaction ~ Days_nullable + (1 | {g})", d, reml=False)
    return d, snap, fits


def test_user_dataframe_is_not_modified(user_fits):
    d, snap, _ = user_fits
    pd.testing.assert_frame_equal(d, snap, check_exact=True)
    assert d.index.equals(snap.index) and d.index.name == "rowid"
    assert list(d.dtypes) == list(snap.dtypes)
    assert list(d.subj_cat.cat.categories) == list(snap.subj_cat.cat.categories)


def test_results_keep_user_index(user_fits):
    d, _, fits = user_fits
    used = d.index[d[["Reaction", "Days_nullable"]].notna().all(axis=1).to_numpy()]
    assert len(used) == len(d) - 4
    for m in fits.values():
        for s in (m.fitted, m.resid, m.y):
            assert s.index.equals(used)
        assert m.n_dropped == 4
        np.testing.assert_allclose(m.y.to_numpy(), d.loc[used, "Reaction"].to_numpy())
        np.testing.assert_allclose((m.fitted + m.resid).to_numpy(), m.y.to_numpy(), rtol=1e-12)


def test_results_keep_user_level_labels(user_fits):
    d, _, fits = user_fits
    lv = fits["subj_str"].ranef["subj_str"].index
    assert list(lv) == sorted(d.subj_str.unique())
    lv = fits["subj_cat"].ranef["subj_cat"].index
    assert list(lv) == sorted(d.subj_str.unique(), reverse=True)  # category order, unused dropped
    lv = fits["subj_int"].ranef["subj_int"].index
    assert list(lv) == sorted(d.subj_int.unique()) and pd.api.types.is_integer_dtype(lv.dtype)
    assert list(fits["subj_int"].coef["subj_int"].index) == list(lv)
    # the same model whatever the labels: identical estimates, effects matched by label
    a, b = fits["subj_str"], fits["subj_int"]
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-10)
    ra = a.ranef["subj_str"].iloc[:, 0]
    rb = b.ranef["subj_int"].iloc[:, 0]
    rb.index = ["S" + str(v // 3 + 300) for v in rb.index]
    np.testing.assert_allclose(ra.sort_index().to_numpy(), rb.sort_index().to_numpy(), rtol=1e-8)


def test_interaction_levels_in_r_order():
    """``a:b`` levels ordered as R's interaction of factors (first factor outer), not as strings."""
    d = pd.DataFrame({"a": [2, 10, 2, 10, 1, 1] * 3, "b": [1, 1, 2, 2, 10, 2] * 3, "y": np.arange(18.0) % 5})
    des = jaxhlm.build_design("y ~ 1 + (1 | a:b)", d)
    assert list(des.factors[0].levels) == ["1:2", "1:10", "2:1", "2:2", "10:1", "10:2"]
