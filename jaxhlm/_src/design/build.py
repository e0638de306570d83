"""From an lme4 formula and a dataframe to model matrices: X, y, and the random-effects terms.

Where R and Python differ, R wins: ``^`` inside ``I()`` is a power (``**`` too) and outside it an
interaction power (``(a + b)^2``), ``a/b`` and ``%in%`` nest as in R, columns are named and ordered
as R's ``model.matrix`` (``fb``, ``a1`` for contr.sum, ``b:c`` in order of first appearance),
``scale()`` divides by the n-1 standard deviation and ``poly()`` is R's orthogonal polynomial, both
learning on all rows before rows with missing values are dropped.

The evaluation is :mod:`~jaxhlm._src.design.general`'s; plain numeric formulas take a fast path
(:mod:`~jaxhlm._src.design.fast`) that gives the same design. Each random-effects term keeps its
own dense ``n x p_i`` matrix of per-row values and the integer codes of its grouping factor: the
sparse ``Z`` of lme4 is never formed.

Rows with a missing value in any used variable are dropped (lme4's ``na.omit``); the user's
dataframe is never modified.
"""
from __future__ import annotations

import numpy as np

from ..base.errors import ArgumentError, ColumnNotFoundError, DataError, FormulaError, warn
from ..formula.rparse import _tokenize
from ..formula.terms import ParsedFormula, parse_formula
from .checks import RankDeficiencyWarning, check_random_terms, check_response_values, drop_aliased
from .checks import _r_factor  # noqa: F401 - re-exported
from .compat import cached_formula as _formula  # noqa: F401 - re-exported
from .compat import clean_message as _clean  # noqa: F401 - re-exported
from .compat import numeric_matrix as _numeric_matrix  # noqa: F401 - re-exported
from .compat import r_name
from .fast import fast_columns
from .frame import as_pandas
from .general import general_parts, required_columns
from .grouping import GroupingFactor, grouping_factor, single_factor
from .response import check_response_column, family_name
from .rvalues import DataWarning, MixedTypesWarning
from .structs import Design, TermDesign

__all__ = ["GroupingFactor", "TermDesign", "Design", "build_design", "r_name", "RankDeficiencyWarning",
           "DataWarning", "MixedTypesWarning"]

# names other modules use (the out-of-core path)
_check_response_column = check_response_column
_factor = grouping_factor
_single_factor = single_factor
_drop_aliased = drop_aliased


def _caret_in_call(text: str) -> bool:
    """Whether ``^`` (not ``**``) appears inside a function call's parentheses in R code ``text``."""
    stack, prev = [], None
    for kind, val, _ in _tokenize(text):
        if kind == "op" and val == "(":
            stack.append(prev is not None and prev[0] == "name")
        elif kind == "op" and val == ")" and stack:
            stack.pop()
        elif kind == "op" and val == "^" and any(stack):
            return True
        prev = (kind, val)
    return False


def _required_columns(parsed: ParsedFormula, data) -> list:
    """The columns the out-of-core path reads. That path still encodes chunks with formulaic, which
    reads ``^`` inside a call as Python's exclusive or: refused there rather than computed wrongly."""
    for text in (parsed.response, parsed.fixed) + tuple(t.expr for t in parsed.random):
        if _caret_in_call(text):
            raise FormulaError(
                f"{text!r}: out-of-core fits do not read '^' inside a function as R does (formulaic reads it as "
                "exclusive or); write the power with ** (e.g. I(x**2)) or add the transformed column to the data")
    return required_columns(parsed, data)


def _with_offset_argument(parsed, data, offset):
    """``offset=`` as an ``offset()`` term of the formula (an array goes into a copy of the data)."""
    if isinstance(offset, str):
        if offset not in data.columns:
            raise ColumnNotFoundError(offset, data.columns, "offset=")
        col = offset
    else:
        arr = np.asarray(offset)
        if arr.ndim != 1 or len(arr) != len(data):
            raise ArgumentError(f"offset must be a column name or one value per row ({len(data)}), got shape {arr.shape}")
        col = "..offset"
        data = data.assign(**{col: arr})  # a copy: the user's frame is never modified
    text = parsed.formula if hasattr(parsed, "formula") else str(parsed)
    return parse_formula(f"{text} + offset(`{col}`)"), data


def build_design(formula, data, *, contrasts=None, weights=None, offset=None, family=None) -> Design:
    """Evaluate an lme4 formula on a dataframe.

    Parameters
    ----------
    formula : str or ParsedFormula
        lme4 syntax, read as R reads it.
    data : pandas.DataFrame, dict of columns, polars DataFrame / LazyFrame, pyarrow Table, ...
        Never modified; other dataframe libraries are converted to pandas once (narwhals).
    contrasts : dict, optional
        Per fixed-effects factor (by its name in the formula): ``"treatment"``, ``"sum"``,
        ``"helmert"``, ``"poly"``, ``"SAS"`` (or R's ``"contr.sum"``, ...), or a levels x columns
        matrix, as lmer's ``contrasts=``. Default: treatment, ordered factors poly.
    weights : str or array-like, optional
        Prior weights: a column name or one value per row of ``data``.
    offset : str or array-like, optional
        A known term of the linear predictor (a column name or one value per row), as lmer's
        ``offset=``; added to any ``offset()`` terms of the formula.
    family : str, optional
        ``None`` / ``"gaussian"`` (a linear mixed model, the default) or a GLM family name;
        ``"binomial"`` accepts ``cbind(successes, failures)``, factor, boolean and proportion
        responses (see :mod:`~jaxhlm._src.design.response`).

    Returns
    -------
    Design
    """
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    data = as_pandas(data)
    if offset is not None:
        parsed, data = _with_offset_argument(parsed, data, offset)
    if len(data) == 0:
        raise DataError("the data has no rows")
    fam = family_name(family)
    if contrasts is not None and not isinstance(contrasts, dict):
        raise ArgumentError(f"contrasts must be a dict such as {{'f': 'sum'}}, got {type(contrasts).__name__}")
    if weights is None and not contrasts and fam == "gaussian":
        fast = fast_columns(parsed, data)
        if fast is not None and (fast["complete"] is None or fast["complete"].any()):
            return _fast_design(parsed, data, fast)
    parts = general_parts(parsed, data, contrasts=contrasts, weights=weights, family=fam)
    X, fixef_names, dropped, keep = _fixed_part(parsed.response, parts["y"], parts["X_full"], parts["names_full"],
                                                gaussian=fam == "gaussian")
    design = _assemble(parsed, parts["y"], X, fixef_names, dropped, keep, parts["Z"], parts["groups"],
                       parts["index"], parts["n_dropped"], parts["fixed_spec"], parts["term_specs"], None)
    design.offset = parts["offset"]
    design.weights = parts["weights"]
    design.trials = parts["trials"]
    return design


def _fast_design(parsed: ParsedFormula, data, fast: dict) -> Design:
    """:func:`build_design` for plain numeric columns (see :mod:`~jaxhlm._src.design.fast`)."""
    complete = fast["complete"]
    n_dropped = 0 if complete is None else int((~complete).sum())
    series = fast["series"]
    gcols = sorted({g for t in parsed.random for g in t.group})
    groups = {g: (series[g] if complete is None else series[g][complete]) for g in gcols}
    index = data.index if complete is None else data.index[complete]
    y = fast["y"]
    X, fixef_names, dropped, keep = _fixed_part(parsed.response, y, fast["X_full"], fast["names_full"])
    return _assemble(parsed, y, X, fixef_names, dropped, keep, fast["Z"], groups, index, n_dropped,
                     None, None, None)


def _fixed_part(ycol, y, X_full, names_full, gaussian: bool = True) -> tuple:
    """Checks on the response and X; aliased columns dropped with a warning (as lme4)."""
    if len(y) <= X_full.shape[1]:
        raise DataError(f"{len(y)} observations are too few for {X_full.shape[1]} fixed-effects coefficients")
    keep, y_resid = drop_aliased(X_full, names_full, y=y)
    dropped = [nm for nm, k in zip(names_full, keep) if not k]
    if dropped:
        warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} "
            f"column{'s' if len(dropped) > 1 else ''} / coefficient{'s' if len(dropped) > 1 else ''}: {dropped}",
            RankDeficiencyWarning,
        )
    X = np.asfortranarray(X_full if keep.all() else X_full[:, keep])  # columns contiguous (per-column sums)
    fixef_names = [nm for nm, k in zip(names_full, keep) if k]
    if len(y) <= X.shape[1]:
        raise DataError(f"{len(y)} observations are too few for {X.shape[1]} fixed-effects coefficients")
    if gaussian:
        check_response_values(ycol, y, y_resid)
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
            factors.append(grouping_factor(t.group_name, frame, t.group))
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
    check_random_terms(terms, factors)

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
