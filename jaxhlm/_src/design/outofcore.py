"""Fitting data that is not held in memory: a Dask DataFrame, or a list of Parquet / CSV files.

The rows are read twice, in chunks (Dask partitions, or chunks of each file), and never gathered:

1. **Levels.** Per chunk: the distinct values of every grouping column (or combination of
   columns, for ``a:b`` and nested terms), the distinct values of every text/categorical
   predictor, row counts. Reduced by union. This fixes the level order of each grouping factor
   (as R's ``factor()``, :mod:`jaxhlm._src.design`) and the categorical encoding of the fixed
   effects, identically for every chunk.
2. **Second moments per cell.** A *cell* is a combination of levels of all grouping factors.
   Per chunk and cell: ``M_c = sum_rows v v'`` with ``v = [z (all random-effects columns), x, y]``.
   Reduced by adding over cells with the same levels.

Every sufficient statistic of :mod:`jaxhlm._src.suffstats` is a sum over rows of entries of
``v v'`` grouped by (pairs of) levels, hence a sum of entries of the ``M_c``. So the rows can be
replaced by *pseudo-rows*: ``M_c = R_c' R_c`` with ``R_c`` from an eigendecomposition of ``M_c``
(at most ``min(rows in c, dim v)`` rows per cell), and the engine's own ``compute_stats`` run on
them gives the statistics of the full data (up to rounding). The fit then runs in JAX as usual.

Limits: predictors must be numeric, boolean or categorical (text); transformations that learn
from the data (``center``, ``scale``, ``poly``, splines, ...) need the whole column at once and
are refused. The fitted model has no per-row quantities (``fitted``, ``resid``, ``y``).

The chunk sources are in :mod:`jaxhlm._src.design.chunksource`, the two passes and
:func:`~jaxhlm._src.design.chunkmoments.pseudo_rows` in :mod:`jaxhlm._src.design.chunkmoments`;
this module assembles the designs.
"""
from __future__ import annotations

import time

import numpy as np
import pandas as pd

from ..base.lazy import formulaic
from . import build as _design
from .build import Design, GroupingFactor, TermDesign, r_name
from .chunkmoments import _combine1, _combine2, _pass1, _pass2
from .chunkmoments import pseudo_rows
from .chunksource import DEFAULT_CHUNK_ROWS
from .chunksource import DaskSource
from .chunksource import FileSource
from .chunksource import is_out_of_core
from .chunksource import _is_dask_frame
from ..base.errors import DataError, FormulaError, JaxhlmWarning, RankDeficiencyWarning, warn
from ..formula.terms import ParsedFormula, parse_formula

__all__ = ["is_out_of_core", "out_of_core_design", "OutOfCoreDesign", "DaskSource", "FileSource"]


# --------------------------------------------------------------------------------------------
# the design without rows
# --------------------------------------------------------------------------------------------
class OutOfCoreDesign(Design):
    """A :class:`~jaxhlm._src.design.Design` whose rows were never held: no ``y``, ``X`` or ``Z`` values.

    ``n``, ``p``, the terms, factor levels and encodings are those of the full data.
    """

    def __init__(self, n_obs: int, p: int, **fields):  # noqa: D107  (fields of Design except y, X)
        for k, v in fields.items():
            object.__setattr__(self, k, v)
        self._n_obs = int(n_obs)
        self._p = int(p)

    def _no_rows(self):
        raise DataError(
            "this model was fitted out of core (Dask DataFrame or files): its rows were not kept, so "
            "per-row quantities (y, fitted values, residuals, simulation) are not available"
        )

    @property
    def y(self):
        self._no_rows()

    @property
    def X(self):
        self._no_rows()

    @property
    def n(self) -> int:
        return self._n_obs

    @property
    def p(self) -> int:
        return self._p


def _term_order(terms, factors):
    """lme4's term order (as :func:`jaxhlm._src.design.build_design`)."""
    nl = [factors[td.factor].nlevels for td in terms]
    order = list(range(len(terms)))
    if any(b > a for a, b in zip(nl, nl[1:])):
        order = sorted(order, key=lambda i: nl[i])[::-1]
    return order


LARGE_MEAN = 1e4


def _warn_uncentred(XytXy, names, keep, ycol) -> None:
    """Out-of-core second moments are summed raw, chunk by chunk (before the fit's own centring
    and scaling, :func:`jaxhlm._src.stats.suffstats.preconditioner`, can act): a column whose
    mean is ``LARGE_MEAN`` times its standard deviation has lost about ``2 log10(ratio)`` of its
    16 digits there. Warn, naming the columns."""
    if "(Intercept)" not in names:
        return
    i = names.index("(Intercept)")
    n = XytXy[i, i]
    if not n > 0:
        return
    bad = []
    for j, nm in enumerate(list(names) + [ycol]):
        if j == i or (j < len(keep) and not keep[j]):
            continue
        m = XytXy[i, j] / n
        var = max(XytXy[j, j] / n - m * m, 0.0)
        if abs(m) > LARGE_MEAN * np.sqrt(var) and m != 0:
            bad.append(nm)
    if bad:
        warn(
            f"column(s) {bad} have a mean over {LARGE_MEAN:g} times their standard deviation: out-of-core fits "
            "accumulate raw cross-products, which loses digits; centre them in the data (subtract a constant) "
            "for full accuracy", JaxhlmWarning)


def out_of_core_design(formula, data, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> tuple:
    """The design of ``formula`` on a Dask DataFrame or Parquet/CSV files (see the module docstring).

    Parameters
    ----------
    formula : str
    data : dask.dataframe.DataFrame, path, or list of paths (``.parquet`` / ``.csv``)
    chunk_rows : int
        Rows per chunk when reading files.

    Returns
    -------
    (OutOfCoreDesign, Design, float)
        The design of the full data (no rows), a design of pseudo-rows with the same
        statistics, and the seconds spent.
    """
    t0 = time.perf_counter()
    parsed = formula if isinstance(formula, ParsedFormula) else parse_formula(formula)
    source = DaskSource(data) if _is_dask_frame(data) else FileSource(data, chunk_rows)
    empty = pd.DataFrame(columns=source.columns)
    needed = list(_design._required_columns(parsed, empty))
    ycol = parsed.response
    group_cols = []
    for t in parsed.random:
        if tuple(t.group) not in group_cols:
            group_cols.append(tuple(t.group))
    expr_vars = set()
    try:
        expr_vars |= set(formulaic.Formula(parsed.fixed_formula).rhs.required_variables)
        for t in parsed.random:
            expr_vars |= set(formulaic.Formula(t.expr).required_variables)
    except Exception as exc:  # pragma: no cover - _required_columns parsed it already
        raise FormulaError(str(exc)) from None
    expr_cols = [c for c in needed if c in expr_vars]
    meta1 = {"needed": needed, "response": ycol, "group_cols": group_cols, "expr_cols": expr_cols, "sample_rows": 1000}
    r1 = source.map_reduce(_pass1, _combine1, meta1, needed)
    n = r1["n_complete"]
    n_dropped = r1["n_total"] - n
    if r1["n_total"] == 0:
        raise DataError("the data has no rows")
    if n == 0:
        raise DataError(f"no complete rows: every row has a missing value in one of {needed}")
    categories = {}
    for c, vals in r1["cats"].items():
        if isinstance(vals.dtype, pd.CategoricalDtype):
            categories[c] = list(vals.cat.categories)
        else:
            categories[c] = list(pd.Categorical(vals.astype(object)).categories)
    # formulaic specs from a sample, with the global categories
    sample = r1["sample"].copy()
    for c, cats in categories.items():
        sample[c] = pd.Categorical(sample[c], categories=cats)
    try:
        mm = formulaic.model_matrix(parsed.fixed_formula, sample, na_action="ignore")
    except Exception as exc:
        raise FormulaError(f"cannot build the fixed-effects model matrix for {parsed.fixed_formula!r}: {exc}") from None
    if mm.lhs.shape[1] != 1:
        raise DataError(f"the response {ycol!r} must be one numeric column; it expands to {mm.lhs.shape[1]} columns")
    fixed_specs = mm.model_spec
    term_specs, term_names, term_objs = [], [], []
    for t in parsed.random:
        try:
            zm = formulaic.model_matrix(t.expr, sample, na_action="ignore")
        except Exception as exc:
            raise FormulaError(f"cannot evaluate random-effect term {t}: {exc}") from None
        if zm.shape[1] == 0:
            raise FormulaError(f"random-effect term {t} has no columns")
        term_specs.append(zm.model_spec)
        term_names.append([r_name(c) for c in zm.columns])
        term_objs.append(t)
    for spec, where in [(mm.rhs.model_spec, "the fixed effects")] + [(s, f"random-effect term {t}") for s, t in zip(term_specs, term_objs)]:
        state = getattr(spec, "transform_state", None)
        if state:
            raise FormulaError(
                f"{where} use{'s' if True else ''} a transformation that learns from the data ({', '.join(map(str, state))}); "
                "out-of-core fits need it computed beforehand (add the transformed column to the data)"
            )
    # grouping factors: global levels from the distinct values / combinations
    factor_cols, factor_levels = [], []
    for t in parsed.random:
        cols = tuple(t.group)
        if cols not in factor_cols:
            gf = _design._factor(t.group_name, r1["groups"][cols].reset_index(drop=True), cols)
            factor_cols.append(cols)
            factor_levels.append(pd.Index(gf.levels))
    factor_names = []
    for cols in factor_cols:
        factor_names.append(next(t.group_name for t in parsed.random if tuple(t.group) == cols))
    factor_terms = [[i for i, t in enumerate(parsed.random) if tuple(t.group) == cols] for cols in factor_cols]
    names_full = [r_name(c) for c in mm.rhs.columns]
    p_full = len(names_full)
    qs = [sum(len(term_names[i]) for i in factor_terms[f]) for f in range(len(factor_cols))]
    dim = sum(qs) + p_full + 1
    meta2 = {"needed": needed, "categories": categories, "fixed_specs": fixed_specs, "term_specs": term_specs,
             "term_objs": [str(t) for t in term_objs], "factor_cols": factor_cols, "factor_levels": factor_levels,
             "factor_terms": factor_terms, "dim": dim}
    r2 = source.map_reduce(_pass2, _combine2, meta2, needed)
    if r2["n"] != n:
        raise DataError(f"the data changed between the two passes ({n} then {r2['n']} complete rows)")
    # pseudo-rows and the global rank check of the fixed effects
    vals, cell_of = pseudo_rows(r2["cells"], r2["M"], dim)
    qtot = sum(qs)
    XytXy = np.zeros((p_full + 1, p_full + 1))
    iu, ju = np.triu_indices(dim)
    tot = r2["M"].sum(axis=0)
    full = np.zeros((dim, dim))
    full[iu, ju] = tot
    full[ju, iu] = tot
    XytXy[:] = full[qtot:, qtot:]
    keep, y_resid = _gram_rank(XytXy, p_full)
    dropped = [nm for nm, k in zip(names_full, keep) if not k]
    if dropped:
        warn(f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s) / coefficient(s): "
             f"{dropped}", RankDeficiencyWarning)
    fixef_names = [nm for nm, k in zip(names_full, keep) if k]
    _warn_uncentred(XytXy, names_full, keep, ycol)
    p = len(fixef_names)
    if n <= p:
        raise DataError(f"{n} observations are too few for {p} fixed-effects coefficients")
    ymm = r1.get("y_minmax")
    if ymm is not None and ymm[0] == ymm[1]:
        raise DataError(f"the response {ycol!r} is constant (every used row has the value {ymm[0]:g}); "
                        "there is no variation for a model to explain")
    if y_resid <= 1e-13:
        raise DataError(f"the response {ycol!r} is an exact linear function of the fixed effects (zero residuals)")
    # terms and factors as build_design orders them
    factors = [GroupingFactor(name=nm, codes=np.zeros(0, np.int64), levels=lv.rename(nm))
               for nm, lv in zip(factor_names, factor_levels)]
    factor_index = {cols: f for f, cols in enumerate(factor_cols)}
    offsets = {}
    for f in range(len(factor_cols)):
        o = 0
        for i in factor_terms[f]:
            offsets[i] = o
            o += len(term_names[i])
    qoff = np.concatenate([[0], np.cumsum(qs)])[:-1]
    terms, pseudo_terms, specs = [], [], []
    for i, t in enumerate(parsed.random):
        f = factor_index[tuple(t.group)]
        lo = qoff[f] + offsets[i]
        cols = slice(lo, lo + len(term_names[i]))
        terms.append(TermDesign(term=t, Z=np.zeros((0, len(term_names[i]))), names=term_names[i], factor=f))
        pseudo_terms.append(TermDesign(term=t, Z=np.ascontiguousarray(vals[:, cols]), names=term_names[i], factor=f))
        specs.append(term_specs[i])
    for fac in factors:
        if fac.nlevels < 2:
            raise DataError(f"grouping factor {fac.name!r} has only {fac.nlevels} level; a random effect needs at least 2")
    for td in terms:
        fac = factors[td.factor]
        if fac.nlevels * td.p >= n:
            raise DataError(f"number of observations ({n}) <= number of random effects ({fac.nlevels * td.p}) for term {td.term}")
    order = _term_order(terms, factors)
    used = []
    for i in order:
        if terms[i].factor not in used:
            used.append(terms[i].factor)
    remap = {old: new for new, old in enumerate(used)}

    def reorder(tds):
        out = [tds[i] for i in order]
        return [TermDesign(term=td.term, Z=td.Z, names=td.names, factor=remap[td.factor]) for td in out]

    terms_o, pseudo_o = reorder(terms), reorder(pseudo_terms)
    specs_o = [specs[i] for i in order]
    factors_o = [factors[i] for i in used]
    keep_idx = np.nonzero(keep)[0]
    Xp = np.ascontiguousarray(vals[:, qtot + keep_idx])
    yp = np.ascontiguousarray(vals[:, qtot + p_full])
    pseudo_factors = [GroupingFactor(name=factors[i].name, codes=np.ascontiguousarray(r2["cells"][cell_of, i]),
                                     levels=factors[i].levels) for i in used]
    common = dict(formula=parsed, fixef_names=fixef_names, dropped_fixef=dropped, n_dropped=n_dropped,
                  fixed_spec=mm.rhs.model_spec, fixed_keep=keep, term_specs=specs_o, response_name=ycol)
    pseudo = Design(y=yp, X=Xp, terms=pseudo_o, factors=pseudo_factors, index=pd.RangeIndex(len(yp)), **common)
    design = OutOfCoreDesign(n, p, terms=terms_o, factors=factors_o, index=None, **common)
    return design, pseudo, time.perf_counter() - t0


def _gram_rank(G: np.ndarray, p: int) -> tuple:
    """The rank check of :func:`jaxhlm._src.design._drop_aliased` from ``[X y]'[X y]`` alone.

    Any ``R`` with ``R'R = [X y]'[X y]`` has the columns' norms and every Gram-Schmidt residual
    of ``[X y]``; ``R`` is the Cholesky factor when it exists, else a symmetric square root.
    """
    try:
        R = np.linalg.cholesky(G).T
    except np.linalg.LinAlgError:
        w, V = np.linalg.eigh(G)
        R = (V * np.sqrt(np.maximum(w, 0.0))) @ V.T
    return _design._drop_aliased(R[:, :p].copy(), None, y=R[:, p].copy())
