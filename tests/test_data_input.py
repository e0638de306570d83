"""Data as users have it: defects refused or warned about by name, other dataframe libraries,
prior weights, binomial responses, offsets, contrasts arguments. Nothing here may give a silent
wrong answer; the user's data is never modified."""
from __future__ import annotations

import os
import warnings

import numpy as np
import pandas as pd
import pytest

import jaxhlm
from jaxhlm import ArgumentError, ColumnNotFoundError, DataError, FormulaError, build_design
from jaxhlm._src.design.checks import AliasedRandomEffectsWarning
from jaxhlm._src.design.rvalues import DataWarning, MixedTypesWarning

HERE = os.path.dirname(os.path.abspath(__file__))
F = "Reaction ~ Days + (Days | Subject)"


def sleep() -> pd.DataFrame:
    return pd.read_csv(os.path.join(HERE, "data", "sleepstudy.csv"))


def quiet(formula, data, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_design(formula, data, **kw)


def same_design(a, b):
    assert a.fixef_names == b.fixef_names and a.n == b.n and a.index.equals(b.index)
    np.testing.assert_array_equal(a.X, b.X)
    np.testing.assert_array_equal(a.y, b.y)
    for ta, tb in zip(a.terms, b.terms):
        assert ta.names == tb.names
        np.testing.assert_array_equal(ta.Z, tb.Z)
    for fa, fb in zip(a.factors, b.factors):
        np.testing.assert_array_equal(fa.codes, fb.codes)
        assert [str(x) for x in fa.levels] == [str(x) for x in fb.levels]


# ------------------------------------------------------------------------------ data defects
@pytest.mark.parametrize("as_float", [False, True])
def test_ids_stored_as_int_and_str_are_one_level(as_float):
    """read_csv's mixed column: 308 in some rows, '308' in others (R: factor(as.character(x)))."""
    d = sleep()
    ids = d.Subject.astype(float) if as_float else d.Subject
    d["S"] = ids.astype(object)
    d.loc[d.index[::2], "S"] = d.Subject[::2].astype(str)
    with pytest.warns(MixedTypesWarning, match="'S'"):
        des = build_design("Reaction ~ Days + (1 | S)", d)
    assert des.factors[0].nlevels == 18
    assert list(des.factors[0].levels) == sorted(str(s) for s in d.Subject.unique())
    ref = build_design("Reaction ~ Days + (1 | S)", d.assign(S=d.Subject.astype(str)))
    np.testing.assert_array_equal(des.factors[0].codes, ref.factors[0].codes)


def test_mixed_types_in_a_fixed_factor_are_one_level():
    d = sleep()
    d["f"] = np.where(d.Days > 4, 1, 0).astype(object)
    d.loc[d.index[::3], "f"] = d.loc[d.index[::3], "f"].astype(str)
    with pytest.warns(MixedTypesWarning, match="'f'"):
        des = build_design("Reaction ~ f + (1 | Subject)", d)
    assert des.fixef_names == ["(Intercept)", "f1"]
    np.testing.assert_array_equal(des.X[:, 1], (d.Days > 4).to_numpy(float))


def test_multiindex_columns_are_refused_clearly():
    d = sleep()
    d.columns = pd.MultiIndex.from_tuples([("a", c) for c in d.columns])
    with pytest.raises(DataError, match="MultiIndex"):
        build_design(F, d)


@pytest.mark.parametrize("formula", ["Reaction ~ T + (1 | Subject)", "Reaction ~ Days + (TD | Subject)",
                                     "Reaction ~ I(TD * 2) + (1 | Subject)"])
def test_dates_and_durations_are_refused_by_name(formula):
    d = sleep().assign(T=lambda x: pd.Timestamp("2020-01-01") + pd.to_timedelta(x.Days, "D"),
                       TD=lambda x: pd.to_timedelta(x.Days, "D"))
    with pytest.raises(DataError) as ei:
        build_design(formula, d)
    col = "'T'" if "T +" in formula else "'TD'"
    assert col in str(ei.value) and "date" in str(ei.value)


def test_numbers_as_text_in_a_random_slope_name_the_column():
    d = sleep().assign(Dt=lambda x: x.Days.astype(str))
    with pytest.raises(DataError) as ei:
        build_design("Reaction ~ Days + (Dt | Subject)", d)
    assert "'Dt'" in str(ei.value) and "pd.to_numeric" in str(ei.value)
    # a categorical random slope is the user's choice: allowed
    d["Dc"] = pd.Categorical(np.where(d.Days > 4, "late", "early"))
    des = build_design("Reaction ~ Days + (Dc | Subject)", d)
    assert des.terms[0].names == ["(Intercept)", "Dclate"]


@pytest.mark.parametrize("formula, col, words", [
    ("Reaction ~ Days + (one | Subject)", "'one'", "duplicates the random intercept"),
    ("Reaction ~ Days + (gx | Subject)", "'gx'", "constant within every level"),
    ("Reaction ~ Days + (1 | Subject) + (0 + gx | Subject)", "'gx'", "constant within every level"),
    ("Reaction ~ Days + (Days + D2 | Subject)", "'D2'", "linearly dependent"),
])
def test_aliased_random_effects_warn_naming_the_term(formula, col, words):
    d = sleep().assign(one=1.0, gx=lambda x: (x.Subject % 7) * 1.5, D2=lambda x: 2 * x.Days + 1)
    with pytest.warns(AliasedRandomEffectsWarning) as rec:
        build_design(formula, d)
    msg = str(rec[0].message)
    assert col in msg and words in msg and "|" in msg


def test_ordinary_random_slopes_do_not_warn():
    d = sleep()
    d["u"] = d.Days + 0.01 * np.sin(np.arange(len(d)))  # varies within subjects, not aliased
    with warnings.catch_warnings():
        warnings.simplefilter("error", AliasedRandomEffectsWarning)
        build_design(F, d)
        build_design("Reaction ~ Days + (Days + u | Subject)", d)
        build_design("Reaction ~ Days + (Days || Subject)", d)


@pytest.mark.parametrize("scale", [1e155, 1e-170, 1e-300 * 1e5, 1.0])
def test_aliasing_test_is_scale_invariant(scale):
    d = sleep()
    d["Z"] = (d.Days + np.sin(np.arange(len(d)))) * scale
    with warnings.catch_warnings():
        warnings.simplefilter("error", jaxhlm.RankDeficiencyWarning)
        des = build_design("Reaction ~ Days + Z + (1 | Subject)", d)
    assert des.fixef_names == ["(Intercept)", "Days", "Z"]
    d["Z2"] = 2 * d.Days * scale  # truly aliased: still dropped at any scale
    with pytest.warns(jaxhlm.RankDeficiencyWarning, match="'Z2'"):
        des = build_design("Reaction ~ Days + Z2 + (1 | Subject)", d)
    assert des.fixef_names == ["(Intercept)", "Days"]


@pytest.mark.parametrize("scale", [1e151, 1e-160])
def test_response_scale_does_not_matter(scale):
    d = sleep().assign(Y=lambda x: x.Reaction * scale)
    des = build_design("Y ~ Days + (1 | Subject)", d)
    assert des.fixef_names == ["(Intercept)", "Days"]
    with pytest.raises(DataError, match="exact linear function"):
        build_design("Y ~ Days + (1 | Subject)", d.assign(Y=lambda x: (2 + 3 * x.Days) * scale))


@pytest.mark.parametrize("name", ["C", "I", "log", "poly", "offset", "T"])
def test_columns_named_like_functions(name):
    d = sleep().assign(**{name: lambda x: x.Days * 1.0})
    for formula in (f"Reaction ~ `{name}` + (1 | Subject)", f"Reaction ~ {name} + (`{name}` | Subject)"):
        des = quiet(formula, d)
        assert des.fixef_names == ["(Intercept)", name]
        np.testing.assert_array_equal(des.X[:, 1], d.Days.to_numpy(float))


def test_integer_columns_do_arithmetic_in_float64():
    d = sleep().assign(x8=lambda x: (x.Days * 13).astype(np.int8), u8=lambda x: x.Days.astype(np.uint8))
    des = build_design("Reaction ~ I(x8^2) + I(x8^3) + I(u8 - 10) + I(x8 %% 7) + (1 | Subject)", d)
    x = d.x8.to_numpy(float)
    assert x.max() == 117 and (x ** 3).max() > 1e6  # would wrap around in int8 arithmetic
    np.testing.assert_array_equal(des.X[:, 1:], np.column_stack([x ** 2, x ** 3, d.Days - 10.0, x % 7]))
    assert des.fixef_names[1:] == ["I(x8^2)", "I(x8^3)", "I(u8 - 10)", "I(x8%%7)"]


def test_power_outside_I_is_the_interaction_power_with_a_warning():
    with pytest.warns(DataWarning, match=r"I\(Days\^2\)"):
        des = build_design("Reaction ~ Days^2 + (1 | Subject)", sleep())
    assert des.fixef_names == ["(Intercept)", "Days"]


def test_undefined_values_from_an_expression_drop_rows_with_a_warning():
    d = sleep().assign(z=lambda x: x.Days - 2.0)
    with pytest.warns(DataWarning, match=r"'log\(z\)'.*36 rows"):  # Days 0 and 1
        des = build_design("Reaction ~ log(z) + (1 | Subject)", d.assign(z=d.z.where(d.z != 0, 0.5)))
    assert des.n == 144 and des.n_dropped == 36


# ------------------------------------------------------------------------------ other libraries
def _frame():
    d = sleep()
    d["g"] = "S" + d.Subject.astype(str)
    d["f"] = np.where(d.Days > 4, "late", "early")
    d.loc[3, "Reaction"] = np.nan
    return d


LIBS = ["polars", "polars_lazy", "pyarrow", "pandas_pyarrow", "pandas_nullable", "dict"]


def _convert(d, lib):
    if lib.startswith("polars"):
        pl = pytest.importorskip("polars")
        out = pl.from_pandas(d)
        return out.lazy() if lib == "polars_lazy" else out
    if lib == "pyarrow":
        pa = pytest.importorskip("pyarrow")
        return pa.Table.from_pandas(d)
    if lib == "pandas_pyarrow":
        return d.convert_dtypes(dtype_backend="pyarrow")
    if lib == "pandas_nullable":
        return d.convert_dtypes()
    return {c: d[c].to_numpy() for c in d.columns}


@pytest.mark.parametrize("lib", LIBS)
def test_other_dataframes_give_the_pandas_design(lib):
    d = _frame()
    f = "Reaction ~ f * poly(Days, 2) + (Days | g)"
    ref = build_design(f, d)
    obj = _convert(d, lib)
    des = build_design(f, obj)
    same_design(ref, des)
    if lib.startswith("pandas"):
        assert des.index.equals(ref.index)


def test_polars_frame_is_not_modified():
    pl = pytest.importorskip("polars")
    d = pl.from_pandas(_frame())
    before = d.clone()
    build_design("Reaction ~ Days + (1 | g)", d)
    assert d.equals(before)


def test_lmer_fits_a_polars_frame_like_pandas():
    pl = pytest.importorskip("polars")
    d = _frame()
    a = jaxhlm.lmer(F.replace("Subject", "g"), d)
    b = jaxhlm.lmer(F.replace("Subject", "g"), pl.from_pandas(d))
    assert a.objective == pytest.approx(b.objective, abs=1e-9)
    np.testing.assert_allclose(a.fixef.to_numpy(), b.fixef.to_numpy(), rtol=1e-10)


class _NotAFrame:
    def to_pandas(self):  # pragma: no cover - never called
        return sleep()


@pytest.mark.parametrize("obj", [[1, 2, 3], None, np.zeros((3, 3)), _NotAFrame(), 3.5])
def test_unknown_objects_are_refused_naming_the_type(obj):
    with pytest.raises(ArgumentError) as ei:
        build_design(F, obj)
    assert type(obj).__name__ in str(ei.value) and ".to_pandas()" in str(ei.value)


# ------------------------------------------------------------------------------ weights
def _w(n=180):
    return np.random.default_rng(1).uniform(0.5, 2.0, n)


@pytest.mark.parametrize("how", ["column", "array", "list", "series", "object"])
def test_weights_given_in_any_form(how):
    d = sleep()
    w = _w()
    d["w"] = w
    arg = {"column": "w", "array": w, "list": list(w), "series": d["w"], "object": w.astype(object)}[how]
    before = d.copy()
    des = build_design(F, d, weights=arg)
    assert des.weights.dtype == np.float64
    np.testing.assert_array_equal(des.weights, w)
    pd.testing.assert_frame_equal(d, before)
    assert build_design(F, d).weights is None


def test_missing_weights_drop_their_rows_as_lme4():
    d = sleep()
    w = _w()
    w[[3, 50]] = np.nan
    d.loc[7, "Reaction"] = np.nan
    des = build_design(F, d, weights=w)
    keep = np.ones(180, bool)
    keep[[3, 7, 50]] = False
    assert des.n == 177 and des.n_dropped == 3 and des.index.equals(d.index[keep])
    np.testing.assert_array_equal(des.weights, w[keep])
    np.testing.assert_array_equal(des.y, d.Reaction.to_numpy()[keep])


@pytest.mark.parametrize("bad, cls, words", [
    ("neg", DataError, "negative"), ("inf", DataError, "infinite"), ("zero", DataError, "zero"),
    ("short", DataError, "10 values for 180 rows"), ("text", DataError, "numeric"), ("bool", DataError, "numeric"),
    ("nocol", ColumnNotFoundError, "'ww'"), ("misaligned", DataError, "indexed differently"),
    ("matrix", DataError, "1-d"), ("scalar", ArgumentError, "column name or an array"),
])
def test_bad_weights_are_refused_naming_the_problem(bad, cls, words):
    d = sleep()
    w = _w()
    arg = {"neg": np.where(np.arange(180) == 3, -1.0, w), "inf": np.where(np.arange(180) == 3, np.inf, w),
           "zero": np.where(np.arange(180) == 3, 0.0, w), "short": w[:10], "text": w.astype(str),
           "bool": w > 1, "nocol": "ww", "misaligned": pd.Series(w, index=d.index[::-1]),
           "matrix": np.ones((180, 2)), "scalar": 2.0}[bad]
    with pytest.raises(cls) as ei:
        build_design(F, d, weights=arg)
    assert words in str(ei.value)


def test_zero_weights_allowed_for_binomial_models():
    cb = pd.read_csv(os.path.join(HERE, "data", "rformula", "cbpp.csv"))
    w = np.ones(len(cb))
    w[0] = 0.0
    des = build_design("incidence/size ~ factor(period) + (1 | herd)", cb, family="binomial", weights=w)
    assert des.weights[0] == 0.0


# ------------------------------------------------------------------------------ binomial responses
def test_cbind_response():
    cb = pd.read_csv(os.path.join(HERE, "data", "rformula", "cbpp.csv"))
    with pytest.raises(DataError, match="binomial"):
        build_design("cbind(incidence, size - incidence) ~ period + (1 | herd)", cb)
    des = build_design("cbind(incidence, size - incidence) ~ factor(period) + (1 | herd)", cb, family="binomial")
    np.testing.assert_array_equal(des.trials, cb["size"].to_numpy(float))
    np.testing.assert_allclose(des.y, cb.incidence / cb["size"], rtol=1e-15)
    assert des.fixef_names == ["(Intercept)", "factor(period)2", "factor(period)3", "factor(period)4"]
    z = cb.assign(incidence=lambda x: x.incidence.where(x.index != 0, 0), size=lambda x: x["size"].where(x.index != 0, 0))
    des = build_design("cbind(incidence, size - incidence) ~ 1 + (1 | herd)", z, family="binomial")
    assert des.trials[0] == 0 and des.y[0] == 0.0  # R's binomial()$initialize
    with pytest.raises(DataError, match="negative"):
        build_design("cbind(incidence, incidence - size) ~ 1 + (1 | herd)", cb, family="binomial")


def test_factor_and_logical_responses_for_binomial():
    co = pd.read_csv(os.path.join(HERE, "data", "rformula", "Contraception.csv"))
    a = build_design("use ~ age + (1 | district)", co, family="binomial")
    np.testing.assert_array_equal(a.y, (co.use == "Y").to_numpy(float))  # first level ('N') = failure
    b = build_design("I(use == 'Y') ~ age + (1 | district)", co, family="binomial")
    np.testing.assert_array_equal(a.y, b.y)
    c = build_design("u ~ age + (1 | district)", co.assign(u=co.use == "Y"), family="binomial")
    np.testing.assert_array_equal(a.y, c.y)
    np.testing.assert_array_equal(a.trials, np.ones(len(co)))
    with pytest.raises(DataError, match="numeric"):
        build_design("use ~ age + (1 | district)", co)  # a linear model of a text response
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        build_design("age ~ urban + (1 | district)", co, family="binomial")
    with pytest.warns(DataWarning, match="first"):
        build_design("livch ~ age + (1 | district)", co, family="binomial")


# ------------------------------------------------------------------------------ offsets
def test_offsets_add_up_and_follow_missing_rows():
    d = sleep()
    d.loc[5, "Days"] = np.nan
    o = d.Days.copy()
    o[9] = np.nan
    d["o"] = o
    des = build_design("Reaction ~ Days + offset(2 * Days) + offset(o) + (1 | Subject)", d)
    keep = d[["Days", "o"]].notna().all(axis=1).to_numpy()
    assert des.offset.dtype == np.float64 and len(des.offset) == des.n == 178
    np.testing.assert_array_equal(des.offset, 3 * d.Days.to_numpy()[keep])
    assert des.fixef_names == ["(Intercept)", "Days"]
    assert build_design(F, sleep()).offset is None
    nd = pd.DataFrame({"Days": [1.0, 2.0], "o": [0.5, 0.0], "Subject": [308, 309]})
    np.testing.assert_array_equal(des.fixed_spec.offset(nd), [2.5, 4.0])
    with pytest.raises(FormulaError, match="offset"):
        build_design("Reaction ~ Days + (offset(Days) | Subject)", sleep())


# ------------------------------------------------------------------------------ contrasts argument
def test_contrasts_argument_errors():
    o = pd.read_csv(os.path.join(HERE, "data", "rformula", "Oats.csv"))
    f = "yield ~ Variety + nitro + (1 | Block)"
    with pytest.raises(ArgumentError, match="'Varety'"):
        build_design(f, o, contrasts={"Varety": "sum"})
    with pytest.raises(ArgumentError, match="unknown contrasts"):
        build_design(f, o, contrasts={"Variety": "summ"})
    with pytest.raises(ArgumentError, match="dict"):
        build_design(f, o, contrasts=["Variety"])
    with pytest.raises(ArgumentError, match="rows"):
        build_design(f, o, contrasts={"Variety": np.ones((2, 1))})
    custom = pd.DataFrame({"GvM": [1.0, -1.0, 0.0], "VvR": [0.5, 0.5, -1.0]})
    des = build_design(f, o, contrasts={"Variety": custom})
    assert des.fixef_names == ["(Intercept)", "VarietyGvM", "VarietyVvR", "nitro"]
    levels = sorted(o.Variety.unique())
    np.testing.assert_array_equal(des.X[:, 1], custom.GvM.to_numpy()[[levels.index(v) for v in o.Variety]])
    # C() in the formula and treatment with another base level (formulaic's spelling)
    des = build_design("yield ~ C(Variety, Treatment('Victory')) + (1 | Block)", o)
    assert des.fixef_names == ["(Intercept)", "C(Variety, Treatment(\"Victory\"))Golden Rain",
                               "C(Variety, Treatment(\"Victory\"))Marvellous"]


def test_out_of_core_path_refuses_a_power_it_would_misread(tmp_path):
    """The out-of-core path still encodes chunks with formulaic, which reads ^ in I() as XOR."""
    pytest.importorskip("pyarrow")
    path = tmp_path / "sleep.parquet"
    sleep().to_parquet(path)
    with pytest.raises(FormulaError, match="exclusive or"):
        jaxhlm.lmer("Reaction ~ I(Days^2) + (1 | Subject)", str(path))


def test_fit_does_not_alias_the_users_columns():
    """pandas hands out views of a frame's columns, and an in-place edit of the frame after the
    fit (``df.loc[0, "y"] = ...``) writes through them: the design must hold its own copies, or
    later results of the fit (residuals, refits, bootstrap) would silently change."""
    import warnings

    rng = np.random.default_rng(0)
    df = pd.DataFrame({"y": rng.normal(size=40), "x": rng.normal(size=40), "g": np.repeat(np.arange(8), 5)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = jaxhlm.lmer("y ~ x + (x | g)", df)
    for col in ("y", "x"):
        arr = df[col].to_numpy()
        assert not np.shares_memory(m.design.y, arr) and not np.shares_memory(m.design.X, arr)
        assert all(not np.shares_memory(td.Z, arr) for td in m.design.terms)
    before = m.resid.to_numpy().copy()
    df.loc[0, "y"] = 1e6
    df.loc[1, "x"] = -1e6
    np.testing.assert_array_equal(m.resid.to_numpy(), before)
    assert m.refit(m.design.y).objective == pytest.approx(m.objective, rel=1e-9)
