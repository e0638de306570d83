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
import functools
import re
import warnings

import formulaic
import numpy as np
import pandas as pd

from ..base.errors import (
    ArgumentError,
    ColumnNotFoundError,
    DataError,
    FormulaError,
    JaxhlmWarning,
)
from .fast import fast_columns
from ..formula.terms import ParsedFormula, RandomTerm, parse_formula

__all__ = ["GroupingFactor", "TermDesign", "Design", "build_design", "r_name", "RankDeficiencyWarning", "DataWarning"]


class RankDeficiencyWarning(JaxhlmWarning):
    """Fixed-effects columns were dropped because they are linear combinations of others."""


class DataWarning(JaxhlmWarning):
    """Something in the data is probably not what was meant (numbers stored as text, ...)."""


_T_LEVEL = re.compile(r"\[T\.(.*?)\]")
_F_LEVEL = re.compile(r"\[(.*?)\]")


@functools.lru_cache(maxsize=512)
def _formula(text: str):
    """formulaic's parse of a formula string, cached (parsing costs more than a small fit)."""
    return formulaic.Formula(text)


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
    spec_template: object = None

    def ensure_specs(self) -> None:
        """Build the formulaic ModelSpecs (for new data) if the fast path left them out.

        The fast path (:mod:`fastdesign`) handles plain numeric columns only, whose specs hold no
        data-dependent state, so a few rows of the data (``spec_template``) give the same specs.
        """
        if self.fixed_spec is not None:
            return
        frame = pd.DataFrame({c: np.ones(3, dtype=dt) for c, dt in self.spec_template.items()})
        self.fixed_spec = formulaic.model_matrix(_formula(self.formula.fixed_formula), frame).rhs.model_spec
        self.term_specs = [formulaic.model_matrix(_formula(td.term.expr), frame).model_spec for td in self.terms]

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
    # R-style names with dots (``Sepal.Length``): formulaic evaluates them as columns but lists
    # ``Sepal`` among its required variables; find them in the formula text instead.
    dotted = [
        c for c in data.columns
        if isinstance(c, str) and "." in c and re.search(rf"(?<![\w.]){re.escape(c)}(?![\w.])", parsed.formula)
    ]
    for c in dotted:
        needed.append(c)
    # columns formulaic does not list: ones named like its functions (a column ``C`` used as
    # ``y ~ C``), ones inside its stateful transforms (``center(x)``, ``scale(x)``, ``poly(x, 2)``)
    # and ones quoted as Q("name"): any column name standing alone in the formula text
    text = parsed.formula
    for c in data.columns:
        if not isinstance(c, str) or c in needed:
            continue
        bare = re.search(rf"(?<![\w.`]){re.escape(c)}(?![\w.]|\s*\()", text)
        quoted = re.search(rf"Q\(\s*(['\"]){re.escape(c)}\1\s*\)", text)
        if bare or quoted:
            needed.append(c)

    def add(names, where):
        for v in sorted(names, key=str):
            if v not in cols and any(d.startswith(f"{v}.") for d in dotted):
                continue
            if v not in cols:
                if re.search(rf"(?<![\w.`]){re.escape(str(v))}\s*\(", parsed.formula):
                    raise FormulaError(
                        f"{v!r} in the {where} is used as a function but is neither a column of the data "
                        "nor a function formulaic knows (numpy is available as np, e.g. np.log(x))"
                    )
                raise ColumnNotFoundError(v, data.columns, where)
            if v not in needed:
                needed.append(v)

    try:
        fixed = _formula(parsed.fixed_formula)
    except Exception as exc:
        raise FormulaError(f"cannot parse {parsed.fixed_formula!r}: {_clean(exc)}") from None
    add(fixed.lhs.required_variables, "response")
    add(fixed.rhs.required_variables, "fixed-effects part")
    for t in parsed.random:
        try:
            add(_formula(t.expr).required_variables, f"random-effect term {t}")
        except FormulaError:
            raise
        except ColumnNotFoundError:
            raise
        except Exception as exc:
            raise FormulaError(f"cannot parse {t.expr!r} in random-effect term {t}: {_clean(exc)}") from None
        add(t.group, f"grouping factor of {t}")
    return needed


def _single_factor(col: pd.Series) -> tuple:
    """Codes and levels of one column, levels sorted as R's ``factor()`` (categoricals keep
    their category order, unused categories dropped)."""
    if isinstance(col.dtype, pd.CategoricalDtype):
        col = col.cat.remove_unused_categories()
        return col.cat.codes.to_numpy().astype(np.int64), pd.Index(col.cat.categories)
    try:
        # (a NumPy integer column is factorised as its array: same codes, less overhead)
        plain_int = isinstance(col.dtype, np.dtype) and col.dtype.kind in "iu"
        codes, uniques = pd.factorize(col.to_numpy() if plain_int else col, sort=True)
    except TypeError:  # unorderable mixture: order by string label
        codes, uniques = pd.factorize(col.astype(str), sort=True)
    if len(uniques) and all(isinstance(u, str) for u in uniques):
        # R sorts character levels in the locale's collation (en_US): case-insensitive first,
        # lower case before upper case on ties ("a" < "alpha" < "Alpha" < "B" < "b10")
        order = sorted(range(len(uniques)), key=lambda i: (uniques[i].lower(), uniques[i].swapcase()))
        if order != list(range(len(uniques))):
            rank = np.empty(len(order), np.int64)
            rank[np.asarray(order)] = np.arange(len(order))
            codes = rank[codes]
            uniques = pd.Index([uniques[i] for i in order])
    return codes.astype(np.int64), pd.Index(uniques)


def _factor(name: str, frame: pd.DataFrame, cols: tuple) -> GroupingFactor:
    """The grouping factor of the columns ``cols`` (their interaction when several).

    An interaction's levels are the combinations present in the data, ordered as R's ``a:b``
    on factors (by the level order of ``a``, then of ``b``); labels are ``"a_label:b_label"``.
    """
    if len(cols) == 1:
        codes, levels = _single_factor(frame[cols[0]])
        return GroupingFactor(name=name, codes=codes, levels=levels.rename(name))
    parts = [_single_factor(frame[c]) for c in cols]
    comb = np.zeros(len(parts[0][0]), np.int64)
    for codes, levels in parts:  # mixed radix, first column most significant
        comb = comb * len(levels) + codes
    uniq, codes = np.unique(comb, return_inverse=True)
    labels = []
    rem = uniq.copy()
    digits = []
    for codes_c, levels in reversed(parts):
        digits.append(rem % len(levels))
        rem = rem // len(levels)
    digits = digits[::-1]
    strs = [np.asarray([str(v) for v in levels], dtype=object)[d] for (_, levels), d in zip(parts, digits)]
    labels = strs[0]
    for st in strs[1:]:
        labels = labels + ":" + st
    return GroupingFactor(name=name, codes=codes.astype(np.int64).ravel(), levels=pd.Index(list(labels), name=name))


def _numeric_matrix(mm, what: str) -> np.ndarray:
    raw = np.asarray(mm)
    if np.iscomplexobj(raw):
        j = int(np.nonzero(np.any(np.imag(raw.reshape(len(raw), -1)) != 0, axis=0))[0][0]) if raw.size else 0
        name = list(mm.columns)[j] if hasattr(mm, "columns") else str(j)
        raise DataError(f"{what} column {name!r} has complex values; only real numbers can be modelled")
    try:
        arr = np.asarray(raw, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise DataError(f"{what} values are not numeric: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    bad = ~np.isfinite(arr)
    if bad.any():
        j = int(np.nonzero(bad.any(axis=0))[0][0])
        name = list(mm.columns)[j] if hasattr(mm, "columns") else str(j)
        raise DataError(f"{what} column {name!r} has infinite or undefined values ({int(bad[:, j].sum())} rows)")
    return arr


def _r_factor(X: np.ndarray, y: np.ndarray | None, block: int = 65536) -> np.ndarray:
    """The triangular factor ``R`` of ``[X y]`` (``A = QR``) by a tall-skinny QR over row blocks.

    The blocks' ``R`` factors are stacked and factorised again; this equals one Householder QR
    of ``A`` up to the signs of ``R``'s rows (which no column norm sees), without forming ``A``.
    """
    n = X.shape[0]
    Rs = []
    for i in range(0, n, block):
        blk = X[i:i + block] if y is None else np.column_stack([X[i:i + block], y[i:i + block]])
        Rs.append(np.linalg.qr(blk, mode="r"))
    return Rs[0] if len(Rs) == 1 else np.linalg.qr(np.concatenate(Rs), mode="r")


def _drop_aliased(X: np.ndarray, names: list, tol: float = 1e-7, y: np.ndarray | None = None):
    """Keep a full-rank subset of the columns of ``X``, dropping the later of aliased columns.

    As R's ``qr()`` (LINPACK ``dqrdc2``, which lme4's rank check uses with ``tol = 1e-7``): the
    columns are taken in order and column ``j`` is dropped when the norm of its part orthogonal
    to the columns kept so far is below ``tol`` times its own norm. The test is relative to each
    column's norm, so it does not depend on the columns' units (a predictor in 1e-6 and one in
    1e6 are both kept). Works on the triangular factor of ``X`` (rotating ``X`` by an orthogonal
    matrix changes no such norm), so it costs one QR of ``X``.

    Returns
    -------
    keep : ndarray of bool, shape (p,)
    resid : float, only when ``y`` is given
        ``||y - P_X y|| / ||y||``, the relative norm of the least-squares residual of ``y`` on the
        kept columns (from the same QR, with ``y`` as an extra last column).
    """
    n, p = X.shape
    keep = np.zeros(p, bool)
    R = _r_factor(X, y)
    norms = np.sqrt(np.einsum("ij,ij->j", R, R))  # ||A e_j|| = ||R e_j||
    R = R / np.where(norms > 0, norms, 1.0)  # the R factor of the column-normalised matrix
    Q = np.zeros((R.shape[0], 0))  # orthonormal basis of the kept columns (in R's coordinates)

    def residual(j):
        v = R[:, j].copy()
        for _ in range(2):  # Gram-Schmidt twice is orthogonal to working precision
            v -= Q @ (Q.T @ v)
        return v

    for j in range(p):
        if norms[j] == 0:
            continue
        v = residual(j)
        r = np.linalg.norm(v)
        if r > tol:  # columns have unit norm
            keep[j] = True
            Q = np.concatenate([Q, (v / r)[:, None]], axis=1)
    if y is None:
        return keep
    return keep, (float(np.linalg.norm(residual(p))) if norms[p] > 0 else 0.0)


_ANSI = re.compile(r"\x1b\[[0-9;]*m|[\u29db\u29da]")


def _clean(msg) -> str:
    """formulaic's messages carry terminal colour codes; strip them."""
    return _ANSI.sub("", str(msg)).strip()


def _check_response_column(ycol: str, frame: pd.DataFrame) -> None:
    """A response that is a column must hold real numbers (not text, booleans, dates, complex)."""
    if ycol not in frame.columns:
        return  # an expression such as np.log(y): checked after evaluation
    col = frame[ycol]
    dt = col.dtype
    ok = (
        pd.api.types.is_numeric_dtype(dt)
        and not pd.api.types.is_bool_dtype(dt)
        and not pd.api.types.is_complex_dtype(dt)
    )
    if ok:
        return
    hint = ""
    if pd.api.types.is_object_dtype(dt) or pd.api.types.is_string_dtype(dt):
        conv = pd.to_numeric(col, errors="coerce")
        bad = col[conv.isna() & col.notna()]
        if len(bad):
            hint = f" ({len(bad)} values are not numbers, e.g. {bad.iloc[0]!r})"
        hint += f"; convert it with pd.to_numeric(data[{ycol!r}])"
    elif pd.api.types.is_bool_dtype(dt):
        hint = "; for a 0/1 response use data[{!r}].astype(float) (a linear model of a binary response)".format(ycol)
    raise DataError(f"the response column {ycol!r} must be numeric, it has dtype {dt}{hint}")


def _check_response_values(ycol: str, y: np.ndarray, resid: float) -> None:
    """Refuse a response with nothing left to model: constant, or exactly a linear function of
    the fixed effects (relative least-squares residual ``resid`` ~ 0): its residual variance
    would be 0 and the deviance minus infinity."""
    if np.all(y == y[0]):
        raise DataError(
            f"the response {ycol!r} is constant (every used row has the value {y[0]:g}); "
            "there is no variation for a model to explain"
        )
    if resid <= 1e-13:  # about 500 rounding errors: an exact fit
        raise DataError(
            f"the response {ycol!r} is an exact linear function of the fixed effects "
            "(zero residuals); there is no residual variation for a mixed model"
        )


def _warn_numbers_as_text(parsed: ParsedFormula, frame: pd.DataFrame) -> None:
    """Warn when a predictor stored as text holds (mostly) numbers: formulaic would treat it as
    categorical, with one coefficient per distinct value."""
    cols = set()
    try:
        cols |= set(_formula(parsed.fixed).required_variables)
        for t in parsed.random:
            cols |= set(_formula(t.expr).required_variables)
    except Exception:
        return
    for c in sorted(cols & set(frame.columns), key=str):
        col = frame[c]
        if not (pd.api.types.is_object_dtype(col.dtype) or pd.api.types.is_string_dtype(col.dtype)):
            continue
        vals = col.dropna()
        if len(vals) < 3:
            continue
        conv = pd.to_numeric(vals, errors="coerce")
        nnum = int(conv.notna().sum())
        nlev = vals.nunique()
        if nnum >= 0.9 * len(vals) and nlev > 2:
            bad = vals[conv.isna()]
            eg = f"; not numbers: e.g. {bad.iloc[0]!r}" if len(bad) else ""
            warnings.warn(
                f"column {c!r} holds numbers stored as {col.dtype} ({nnum} of {len(vals)} values{eg}); "
                f"it is used as a categorical variable with {nlev} levels. Convert it with "
                f"pd.to_numeric if it is a numeric predictor",
                DataWarning,
                stacklevel=4,
            )


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
    fast = fast_columns(parsed, data)
    if fast is not None and (fast["complete"] is None or fast["complete"].any()):
        return _fast_design(parsed, data, fast)
    needed = _required_columns(parsed, data)
    dup = [c for c in needed if int(np.sum(data.columns == c)) > 1]
    if dup:
        raise DataError(f"column {dup[0]!r} appears more than once in the data")
    frame = data.loc[:, needed]  # a new frame: the user's data is never modified
    _check_response_column(parsed.response, frame)
    _warn_numbers_as_text(parsed, frame)
    isna = frame.isna()
    complete = ~isna.any(axis=1).to_numpy()
    n_dropped = int((~complete).sum())
    if n_dropped:
        frame = frame.loc[complete]
    if len(frame) == 0:
        allna = [c for c in needed if bool(isna[c].all())]
        which = f"column {allna[0]!r} has only missing values" if allna else (
            f"every row has a missing value in one of {needed}")
        raise DataError(f"no complete rows: {which}")

    # response and fixed effects
    try:
        mm = formulaic.model_matrix(_formula(parsed.fixed_formula), frame, na_action="ignore")
    except Exception as exc:
        raise FormulaError(
            f"cannot build the fixed-effects model matrix for {parsed.fixed_formula!r}: {_clean(exc)}"
        ) from None
    lhs = mm.lhs
    ycol = parsed.response
    if lhs.shape[1] != 1:
        raise DataError(
            f"the response {ycol!r} must be one numeric column; it expands to {lhs.shape[1]} columns "
            f"({list(lhs.columns)[:4]}), is it a string or categorical column?"
        )
    y = _numeric_matrix(lhs, "response")[:, 0]
    X_full = _numeric_matrix(mm.rhs, "fixed-effects")
    if len(y) != len(frame) or X_full.shape[0] != len(frame):
        raise DataError(
            f"the model matrix has {X_full.shape[0]} rows and the response {len(y)} for {len(frame)} "
            "rows of data; an expression in the formula changes the number of rows"
        )
    names_full = [r_name(c) for c in mm.rhs.columns]
    X, fixef_names, dropped, keep = _fixed_part(ycol, y, X_full, names_full)

    # random-effects terms
    zmats: list = []
    specs: list = []
    for t in parsed.random:
        try:
            zm = formulaic.model_matrix(_formula(t.expr), frame, na_action="ignore")
        except Exception as exc:
            raise FormulaError(f"cannot evaluate random-effect term {t}: {_clean(exc)}") from None
        Z = _numeric_matrix(zm, f"random-effect term {t}")
        zmats.append((Z, [r_name(c) for c in zm.columns]))
        specs.append(zm.model_spec)
    return _assemble(parsed, y, X, fixef_names, dropped, keep, zmats, frame, frame.index, n_dropped,
                     mm.rhs.model_spec, specs, None)


def _fast_design(parsed: ParsedFormula, data: pd.DataFrame, fast: dict) -> Design:
    """:func:`build_design` for plain numeric columns, without formulaic (see :mod:`fastdesign`)."""
    complete = fast["complete"]
    n_dropped = 0 if complete is None else int((~complete).sum())
    series = fast["series"]
    gcols = sorted({g for t in parsed.random for g in t.group})
    groups = {g: (series[g] if complete is None else series[g][complete]) for g in gcols}
    index = data.index if complete is None else data.index[complete]
    y = fast["y"]
    X, fixef_names, dropped, keep = _fixed_part(parsed.response, y, fast["X_full"], fast["names_full"])
    template = {c: series[c].dtype for c in fast["columns"] if c not in gcols}
    return _assemble(parsed, y, X, fixef_names, dropped, keep, fast["Z"], groups, index, n_dropped,
                     None, None, template)


def _fixed_part(ycol, y, X_full, names_full) -> tuple:
    """Checks on the response and X; aliased columns dropped with a warning (as lme4)."""
    if len(y) <= X_full.shape[1]:
        raise DataError(f"{len(y)} observations are too few for {X_full.shape[1]} fixed-effects coefficients")
    keep, y_resid = _drop_aliased(X_full, names_full, y=y)
    dropped = [nm for nm, k in zip(names_full, keep) if not k]
    if dropped:
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient{'s' if len(dropped) > 1 else ''}: {dropped}",
            RankDeficiencyWarning,
            stacklevel=3,
        )
    X = np.asfortranarray(X_full if keep.all() else X_full[:, keep])  # columns contiguous (per-column sums)
    fixef_names = [nm for nm, k in zip(names_full, keep) if k]
    if len(y) <= X.shape[1]:
        raise DataError(f"{len(y)} observations are too few for {X.shape[1]} fixed-effects coefficients")
    _check_response_values(ycol, y, y_resid)
    return X, fixef_names, dropped, keep


def _assemble(parsed, y, X, fixef_names, dropped, keep, zmats, frame, index, n_dropped, fixed_spec, specs,
              template) -> Design:
    """Grouping factors, random terms in lme4's order, and the checks on their sizes."""
    factor_of: dict = {}
    factors: list = []
    terms: list = []
    for t, (Z, znames) in zip(parsed.random, zmats):
        if Z.shape[1] == 0:
            raise FormulaError(f"random-effect term {t} has no columns")
        if t.group not in factor_of:
            factor_of[t.group] = len(factors)
            factors.append(_factor(t.group_name, frame, t.group))
        terms.append(TermDesign(term=t, Z=np.asfortranarray(Z), names=znames, factor=factor_of[t.group]))

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

    # lme4 (mkReTrms): unless the numbers of levels already decrease, order the terms by
    # decreasing number of levels, ties in reverse formula order (R's rev(order(nl)))
    nl = [factors[td.factor].nlevels for td in terms]
    order = list(range(len(terms)))
    if any(b > a for a, b in zip(nl, nl[1:])):
        order = sorted(order, key=lambda i: nl[i])[::-1]
    terms = [terms[i] for i in order]
    if specs is not None:
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
        index=index,
        n_dropped=n_dropped,
        fixed_spec=fixed_spec,
        fixed_keep=keep,
        term_specs=specs,
        response_name=parsed.response,
        spec_template=template,
    )
