"""From a formula and a DataFrame to model matrices: X, y, and the random-effects terms.

The fixed-effects matrix is built by formulaic; its :class:`formulaic.ModelSpec` is kept so
new data (``predict``) is encoded the same way. Each random-effects term keeps its own dense
``n x p_i`` matrix of per-row values and the integer codes of its grouping factor: the sparse
``Z`` of lme4 is never formed.

Rows with a missing value in any used column are dropped (lme4's ``na.omit``); the user's
DataFrame is never modified.
"""
from __future__ import annotations

import dataclasses
import re
import warnings

import formulaic
import numpy as np
import pandas as pd

from .errors import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
    JaxhlmWarning,
)
from .formula import ParsedFormula, RandomTerm, parse_formula

__all__ = ["GroupingFactor", "TermDesign", "Design", "build_design", "r_name"]


class RankDeficiencyWarning(JaxhlmWarning):
    """Fixed-effects columns were dropped because they are linear combinations of others."""


_T_LEVEL = re.compile(r"\[T\.(.*?)\]")
_F_LEVEL = re.compile(r"\[(.*?)\]")


def r_name(name: str) -> str:
    """Column name as R writes it: ``Intercept`` -> ``(Intercept)``, ``f[T.b]`` -> ``fb``."""
    if name == "Intercept":
        return "(Intercept)"
    name = _T_LEVEL.sub(lambda m: m.group(1), name)
    name = _F_LEVEL.sub(lambda m: m.group(1), name)
    return name


@dataclasses.dataclass
class GroupingFactor:
    """A grouping factor: the integer code of every row and the level labels.

    Fields
    ------
    name : str
        lme4's name (``"sch_id"``, ``"cask:batch"``).
    codes : ndarray of int64, shape (n,)
        Level index of each row, in ``0 .. nlevels-1``.
    levels : pandas.Index
        Level labels in lme4's order (sorted as R's ``factor()`` sorts them).
    """

    name: str
    codes: np.ndarray
    levels: pd.Index

    @property
    def nlevels(self) -> int:
        return len(self.levels)


@dataclasses.dataclass
class TermDesign:
    """One random-effects term ``(expr | group)`` evaluated on the data.

    Fields
    ------
    term : RandomTerm
    Z : ndarray, shape (n, p)
        Per-row values of the term's columns (1 for an intercept).
    names : list of str
        R-style column names (``(Intercept)``, ``Days``).
    factor : int
        Index of the grouping factor in :attr:`Design.factors`.
    """

    term: RandomTerm
    Z: np.ndarray
    names: list
    factor: int

    @property
    def p(self) -> int:
        return self.Z.shape[1]


@dataclasses.dataclass
class Design:
    """Everything the engine needs from the data.

    Fields
    ------
    formula : ParsedFormula
    y : ndarray (n,)
    X : ndarray (n, p)
    fixef_names : list of str
    dropped_fixef : list of str
        Aliased fixed-effects columns removed for rank deficiency.
    terms : list of TermDesign
        Random terms in lme4's order (stable sort by decreasing number of levels).
    factors : list of GroupingFactor
        Distinct grouping factors, in order of first use by :attr:`terms`.
    index : pandas.Index
        Row labels (from the user's data) of the rows used.
    n_dropped : int
        Rows dropped for missing values.
    fixed_spec : formulaic ModelSpec of the fixed effects (for new data)
    term_specs : list of formulaic ModelSpecs of the random terms
    response_name : str
    """

    formula: ParsedFormula
    y: np.ndarray
    X: np.ndarray
    fixef_names: list
    dropped_fixef: list
    terms: list
    factors: list
    index: pd.Index
    n_dropped: int
    fixed_spec: object
    fixed_keep: np.ndarray
    term_specs: list
    response_name: str

    @property
    def n(self) -> int:
        return len(self.y)

    @property
    def p(self) -> int:
        return self.X.shape[1]


def _as_dataframe(data) -> pd.DataFrame:
    if isinstance(data, pd.DataFrame):
        return data
    if isinstance(data, dict):
        try:
            return pd.DataFrame(data)
        except Exception as exc:
            raise ArgumentError(f"cannot turn the dict given as data into a DataFrame: {exc}") from None
    raise ArgumentError(f"data must be a pandas DataFrame (or a dict of columns), got {type(data).__name__}")


def _required_columns(parsed: ParsedFormula, data: pd.DataFrame) -> tuple:
    cols = set(data.columns)
    needed: list = []

    def add(names, where):
        for v in sorted(names, key=str):
            if v not in cols:
                raise ColumnNotFoundError(v, data.columns, where)
            if v not in needed:
                needed.append(v)

    try:
        fixed = formulaic.Formula(parsed.fixed_formula)
    except Exception as exc:
        raise FormulaError(f"cannot parse {parsed.fixed_formula!r}: {exc}") from None
    add(fixed.lhs.required_variables, "response")
    add(fixed.rhs.required_variables, "fixed-effects part")
    for t in parsed.random:
        try:
            add(formulaic.Formula(t.expr).required_variables, f"random-effect term {t}")
        except FormulaError:
            raise
        except ColumnNotFoundError:
            raise
        except Exception as exc:
            raise FormulaError(f"cannot parse {t.expr!r} in random-effect term {t}: {exc}") from None
        add(t.group, f"grouping factor of {t}")
    return needed


def _factor(name: str, frame: pd.DataFrame, cols: tuple) -> GroupingFactor:
    if len(cols) == 1:
        col = frame[cols[0]]
        if isinstance(col.dtype, pd.CategoricalDtype):
            col = col.cat.remove_unused_categories()
            codes = col.cat.codes.to_numpy().astype(np.int64)
            levels = pd.Index(col.cat.categories, name=name)
        else:
            try:
                codes, uniques = pd.factorize(col, sort=True)
            except TypeError:  # unorderable mixture: order by string label
                codes, uniques = pd.factorize(col.astype(str), sort=True)
            levels = pd.Index(uniques, name=name)
            codes = codes.astype(np.int64)
    else:
        labels = frame[cols[0]].astype(str)
        for c in cols[1:]:
            labels = labels + ":" + frame[c].astype(str)
        codes, uniques = pd.factorize(labels, sort=True)
        codes = codes.astype(np.int64)
        levels = pd.Index(uniques, name=name)
    return GroupingFactor(name=name, codes=codes, levels=levels)


def _numeric_matrix(mm, what: str) -> np.ndarray:
    arr = np.asarray(mm, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    bad = ~np.isfinite(arr)
    if bad.any():
        j = int(np.nonzero(bad.any(axis=0))[0][0])
        name = list(mm.columns)[j] if hasattr(mm, "columns") else str(j)
        raise DataError(f"{what} column {name!r} has infinite or undefined values ({int(bad[:, j].sum())} rows)")
    return arr


def _drop_aliased(X: np.ndarray, names: list) -> tuple:
    """Keep a full-rank subset of columns (pivoted QR, tolerance 1e-7 as lme4)."""
    import scipy.linalg

    if X.shape[1] == 0:
        return np.ones(0, bool)
    _, R, piv = scipy.linalg.qr(X, mode="economic", pivoting=True)
    d = np.abs(np.diag(R))
    rank = int(np.sum(d > 1e-7 * d[0])) if d.size and d[0] > 0 else 0
    keep = np.zeros(X.shape[1], bool)
    keep[np.sort(piv[:rank])] = True
    return keep


def build_design(formula, data) -> Design:
    """Evaluate an lme4 formula on a DataFrame.

    Parameters
    ----------
    formula : str or ParsedFormula
    data : pandas.DataFrame

    Returns
    -------
    Design
    """
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    data = _as_dataframe(data)
    if len(data) == 0:
        raise DataError("the data has no rows")
    needed = _required_columns(parsed, data)
    frame = data.loc[:, needed]
    complete = frame.notna().all(axis=1).to_numpy()
    n_dropped = int((~complete).sum())
    if n_dropped:
        frame = frame.loc[complete]
    if len(frame) == 0:
        raise DataError(f"no complete rows: every row has a missing value in one of {needed}")

    # response and fixed effects
    try:
        mm = formulaic.model_matrix(parsed.fixed_formula, frame, na_action="ignore")
    except Exception as exc:
        raise FormulaError(f"cannot build the fixed-effects model matrix for {parsed.fixed_formula!r}: {exc}") from None
    lhs = mm.lhs
    if lhs.shape[1] != 1:
        col = parsed.response
        raise DataError(
            f"the response {col!r} must be one numeric column; it expands to {lhs.shape[1]} columns "
            f"({list(lhs.columns)[:4]}), is it a string or categorical column?"
        )
    ycol = parsed.response
    if ycol in frame.columns and not (
        pd.api.types.is_numeric_dtype(frame[ycol]) and not pd.api.types.is_bool_dtype(frame[ycol])
    ):
        raise DataError(f"the response column {ycol!r} must be numeric, it has dtype {frame[ycol].dtype}")
    y = _numeric_matrix(lhs, "response")[:, 0]
    X_full = _numeric_matrix(mm.rhs, "fixed-effects")
    names_full = [r_name(c) for c in mm.rhs.columns]
    keep = _drop_aliased(X_full, names_full)
    dropped = [nm for nm, k in zip(names_full, keep) if not k]
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient{'s' if len(dropped) > 1 else ''}: {dropped}",
            RankDeficiencyWarning,
            stacklevel=3,
        )
    X = np.ascontiguousarray(X_full[:, keep])
    fixef_names = [nm for nm, k in zip(names_full, keep) if k]

    # random-effects terms and grouping factors
    factor_of: dict = {}
    factors: list = []
    terms: list = []
    specs: list = []
    for t in parsed.random:
        try:
            zm = formulaic.model_matrix(t.expr, frame, na_action="ignore")
        except Exception as exc:
            raise FormulaError(f"cannot evaluate random-effect term {t}: {exc}") from None
        Z = _numeric_matrix(zm, f"random-effect term {t}")
        if Z.shape[1] == 0:
            raise FormulaError(f"random-effect term {t} has no columns")
        if t.group not in factor_of:
            factor_of[t.group] = len(factors)
            factors.append(_factor(t.group_name, frame, t.group))
        terms.append(TermDesign(term=t, Z=np.ascontiguousarray(Z), names=[r_name(c) for c in zm.columns], factor=factor_of[t.group]))
        specs.append(zm.model_spec)

    n = len(y)
    for f in factors:
        if f.nlevels < 2:
            raise DataError(f"grouping factor {f.name!r} has only {f.nlevels} level; a random effect needs at least 2")
    for td in terms:
        f = factors[td.factor]
        if f.nlevels >= n and td.p == 1 and td.names == ["(Intercept)"]:
            raise DataError(
                f"number of levels of grouping factor {f.name!r} ({f.nlevels}) must be less than the number "
                f"of observations ({n})"
            )
        if f.nlevels * td.p >= n:
            raise DataError(
                f"number of observations ({n}) <= number of random effects ({f.nlevels * td.p}) for term "
                f"{td.term}; the random-effects parameters and the residual variance are unidentifiable"
            )
    if n <= X.shape[1]:
        raise DataError(f"{n} observations are too few for {X.shape[1]} fixed-effects coefficients")

    # lme4 orders terms by decreasing number of levels (stable)
    order = sorted(range(len(terms)), key=lambda i: -factors[terms[i].factor].nlevels)
    terms = [terms[i] for i in order]
    specs = [specs[i] for i in order]
    # factors renumbered in order of first use
    used: list = []
    for td in terms:
        if td.factor not in used:
            used.append(td.factor)
    remap = {old: new for new, old in enumerate(used)}
    factors = [factors[i] for i in used]
    for td in terms:
        td.factor = remap[td.factor]

    return Design(
        formula=parsed,
        y=y,
        X=X,
        fixef_names=fixef_names,
        dropped_fixef=dropped,
        terms=terms,
        factors=factors,
        index=frame.index,
        n_dropped=n_dropped,
        fixed_spec=mm.rhs.model_spec,
        fixed_keep=keep,
        term_specs=specs,
        response_name=ycol,
    )
