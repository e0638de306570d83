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
"""
from __future__ import annotations

import dataclasses
import os
import time
import warnings

import formulaic
import numpy as np
import pandas as pd

from . import build as _design
from .build import Design, GroupingFactor, TermDesign, r_name
from ..base.errors import ArgumentError, DataError, FormulaError, JaxhlmWarning
from ..formula.terms import ParsedFormula, parse_formula

__all__ = ["is_out_of_core", "out_of_core_design", "OutOfCoreDesign", "DaskSource", "FileSource"]

DEFAULT_CHUNK_ROWS = 500_000


# --------------------------------------------------------------------------------------------
# sources of chunks
# --------------------------------------------------------------------------------------------
def _is_dask_frame(data) -> bool:
    mod = type(data).__module__ or ""
    return mod.startswith("dask") and hasattr(data, "to_delayed") and hasattr(data, "columns")


def _is_path(x) -> bool:
    return isinstance(x, (str, os.PathLike))


def is_out_of_core(data) -> bool:
    """True for a Dask DataFrame, a path, or a list/tuple of paths."""
    if _is_dask_frame(data):
        return True
    if _is_path(data):
        return True
    return isinstance(data, (list, tuple)) and len(data) > 0 and all(_is_path(p) for p in data)


class DaskSource:
    """Chunks = partitions of a Dask DataFrame; map over partitions, tree-reduce, one ``compute``.

    Runs on whatever scheduler is active (a ``distributed.Client`` if one was created).
    """

    def __init__(self, ddf):
        self.ddf = ddf
        self.columns = list(ddf.columns)

    def map_reduce(self, fn, combine, meta, columns):
        import dask

        parts = self.ddf[list(columns)].to_delayed()
        meta_d = dask.delayed(meta, pure=True, traverse=False)
        mapped = [dask.delayed(fn, pure=True)(p, meta_d) for p in parts]
        comb = dask.delayed(combine, pure=True)
        while len(mapped) > 1:  # pairwise, keeping partition order
            nxt = [comb(mapped[i], mapped[i + 1]) for i in range(0, len(mapped) - 1, 2)]
            if len(mapped) % 2:
                nxt.append(mapped[-1])
            mapped = nxt
        return dask.compute(mapped[0])[0]


class FileSource:
    """Chunks of Parquet (``pyarrow``) or CSV (``pandas``) files, read ``chunk_rows`` rows at a time."""

    def __init__(self, paths, chunk_rows: int = DEFAULT_CHUNK_ROWS):
        if _is_path(paths):
            paths = [paths]
        self.paths = [os.fspath(p) for p in paths]
        for p in self.paths:
            if not os.path.isfile(p):
                raise ArgumentError(f"data file {p!r} does not exist")
        self.kinds = [self._kind(p) for p in self.paths]
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, (int, np.integer)) or chunk_rows < 1:
            raise ArgumentError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.chunk_rows = int(chunk_rows)
        self.columns = self._columns()

    @staticmethod
    def _kind(p: str) -> str:
        low = p.lower()
        if low.endswith((".parquet", ".pq", ".parq")):
            return "parquet"
        if low.endswith((".csv", ".csv.gz", ".csv.bz2", ".csv.zip", ".csv.xz", ".txt")):
            return "csv"
        raise ArgumentError(f"cannot tell the format of {p!r}: use .parquet or .csv files")

    def _columns(self) -> list:
        cols = None
        for p, k in zip(self.paths, self.kinds):
            if k == "parquet":
                import pyarrow.parquet as pq

                c = list(pq.read_schema(p).names)
            else:
                c = list(pd.read_csv(p, nrows=0).columns)
            if cols is None:
                cols = c
            elif set(c) != set(cols):
                missing = sorted(set(cols) ^ set(c), key=str)
                raise DataError(f"the files do not all have the same columns: {p!r} differs in {missing[:5]}")
        return cols

    def chunks(self, columns):
        for p, k in zip(self.paths, self.kinds):
            if k == "parquet":
                import pyarrow.parquet as pq

                f = pq.ParquetFile(p)
                for batch in f.iter_batches(batch_size=self.chunk_rows, columns=list(columns)):
                    yield batch.to_pandas()
            else:
                for df in pd.read_csv(p, usecols=list(columns), chunksize=self.chunk_rows):
                    yield df

    def map_reduce(self, fn, combine, meta, columns):
        acc = None
        for df in self.chunks(columns):
            r = fn(df, meta)
            acc = r if acc is None else combine(acc, r)
        return acc


# --------------------------------------------------------------------------------------------
# pass 1: levels and categories
# --------------------------------------------------------------------------------------------
def _is_text_like(s: pd.Series) -> bool:
    dt = s.dtype
    return (isinstance(dt, pd.CategoricalDtype) or pd.api.types.is_object_dtype(dt)
            or pd.api.types.is_string_dtype(dt))


def _pass1(df: pd.DataFrame, meta: dict) -> dict:
    df = df.loc[:, meta["needed"]]
    complete = ~df.isna().any(axis=1).to_numpy()
    sub = df.loc[complete]
    _design._check_response_column(meta["response"], sub)
    out = {"n_total": len(df), "n_complete": int(complete.sum()), "groups": {}, "cats": {}, "kinds": {},
           "sample": sub.head(meta["sample_rows"])}
    for cols in meta["group_cols"]:
        out["groups"][cols] = sub.loc[:, list(cols)].drop_duplicates()
    for c in meta["expr_cols"]:
        col = sub[c]
        if _is_text_like(col):
            out["cats"][c] = pd.Series(pd.unique(col))
            out["kinds"][c] = "cat"
        else:
            out["kinds"][c] = "num"
    if meta["response"] in sub.columns and len(sub):
        yv = sub[meta["response"]].to_numpy(dtype=np.float64)
        out["y_minmax"] = (float(np.min(yv)), float(np.max(yv)))
    return out


def _combine1(a: dict, b: dict) -> dict:
    out = {"n_total": a["n_total"] + b["n_total"], "n_complete": a["n_complete"] + b["n_complete"],
           "groups": {}, "cats": {}, "kinds": dict(a["kinds"]),
           "sample": a["sample"] if len(a["sample"]) else b["sample"]}
    for k in a["groups"]:
        out["groups"][k] = pd.concat([a["groups"][k], b["groups"][k]], ignore_index=True).drop_duplicates()
    for c in set(a["cats"]) | set(b["cats"]):
        parts = [x["cats"][c] for x in (a, b) if c in x["cats"]]
        out["cats"][c] = pd.Series(pd.unique(pd.concat(parts, ignore_index=True)))
    for c, k in b["kinds"].items():
        if out["kinds"].get(c, k) != k:
            raise DataError(f"column {c!r} holds numbers in some chunks and text in others; give it one type")
        out["kinds"][c] = k
    mm = [x["y_minmax"] for x in (a, b) if "y_minmax" in x]
    if mm:
        out["y_minmax"] = (min(m[0] for m in mm), max(m[1] for m in mm))
    return out


# --------------------------------------------------------------------------------------------
# pass 2: second moments per cell
# --------------------------------------------------------------------------------------------
def _prepare(df: pd.DataFrame, meta: dict) -> pd.DataFrame:
    """Complete rows, text columns as categoricals with the global categories."""
    df = df.loc[:, meta["needed"]]
    df = df.loc[~df.isna().any(axis=1).to_numpy()]
    if not len(df):
        return df
    df = df.copy()
    for c, cats in meta["categories"].items():
        df[c] = pd.Categorical(df[c], categories=cats)
    return df


def _row_vectors(df: pd.DataFrame, meta: dict) -> tuple:
    """``V = [z..., x..., y]`` (rows x d) and the global level codes of every factor (rows x F)."""
    mm = formulaic.model_matrix(meta["fixed_specs"], df, na_action="ignore")
    y = _design._numeric_matrix(mm.lhs, "response")[:, 0]
    X = _design._numeric_matrix(mm.rhs, "fixed-effects")
    Zs = []
    for spec, t in zip(meta["term_specs"], meta["term_objs"]):
        Zs.append(_design._numeric_matrix(formulaic.model_matrix(spec, df, na_action="ignore"), f"random-effect term {t}"))
    cols = []
    for f in range(len(meta["factor_cols"])):
        for i in meta["factor_terms"][f]:
            cols.append(Zs[i])
    V = np.concatenate(cols + [X, y[:, None]], axis=1)
    codes = np.empty((len(df), len(meta["factor_cols"])), np.int64)
    for f, (cols_f, levels) in enumerate(zip(meta["factor_cols"], meta["factor_levels"])):
        local = _design._factor("g", df, cols_f)
        idx = levels.get_indexer(local.levels)
        if np.any(idx < 0):
            bad = local.levels[np.nonzero(idx < 0)[0][0]]
            raise DataError(f"level {bad!r} of grouping factor {cols_f} was not seen in the first pass over the data")
        codes[:, f] = idx[local.codes]
    return V, codes


def _pass2(df: pd.DataFrame, meta: dict) -> dict:
    df = _prepare(df, meta)
    d = meta["dim"]
    iu, ju = np.triu_indices(d)
    if not len(df):
        return {"cells": np.zeros((0, len(meta["factor_cols"])), np.int64), "M": np.zeros((0, len(iu))), "n": 0}
    V, codes = _row_vectors(df, meta)
    cells, inv = np.unique(codes, axis=0, return_inverse=True)
    inv = inv.ravel()
    nc = len(cells)
    M = np.empty((nc, len(iu)))
    for k, (i, j) in enumerate(zip(iu, ju)):
        M[:, k] = np.bincount(inv, weights=V[:, i] * V[:, j], minlength=nc)
    return {"cells": cells, "M": M, "n": len(df)}


def _combine2(a: dict, b: dict) -> dict:
    cells = np.concatenate([a["cells"], b["cells"]])
    M = np.concatenate([a["M"], b["M"]])
    if not len(cells):
        return {"cells": cells, "M": M, "n": a["n"] + b["n"]}
    uc, inv = np.unique(cells, axis=0, return_inverse=True)
    inv = inv.ravel()
    out = np.empty((len(uc), M.shape[1]))
    for k in range(M.shape[1]):
        out[:, k] = np.bincount(inv, weights=M[:, k], minlength=len(uc))
    return {"cells": uc, "M": out, "n": a["n"] + b["n"]}


def pseudo_rows(cells: np.ndarray, Mpacked: np.ndarray, d: int) -> tuple:
    """Rows ``R_c`` with ``R_c' R_c = M_c`` for every cell: (values (N, d), cell index (N,)).

    ``M_c`` is scaled to unit diagonal before its eigendecomposition (so every entry keeps its
    own relative precision); eigenvalues below ``1e-15`` of the largest are dropped (exactly
    rank-deficient directions, e.g. a cell with fewer rows than ``d``).
    """
    nc = len(cells)
    iu, ju = np.triu_indices(d)
    M = np.zeros((nc, d, d))
    M[:, iu, ju] = Mpacked
    M[:, ju, iu] = Mpacked
    dg = np.sqrt(np.maximum(np.einsum("cii->ci", M), 0.0))
    s = np.where(dg > 0, dg, 1.0)
    Ms = M / s[:, :, None] / s[:, None, :]
    w, Vv = np.linalg.eigh(Ms)
    keep = w > 1e-15 * np.maximum(w[:, -1:], 1e-300)
    keep[:, -1] = True  # at least one row per cell
    w = np.maximum(w, 0.0)
    # row k of R_c: sqrt(w_k) v_k' D, for kept k
    R = np.sqrt(w)[:, :, None] * np.swapaxes(Vv, 1, 2) * s[:, None, :]  # (nc, d, d)
    ci, ki = np.nonzero(keep)
    return R[ci, ki, :], ci


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
        warnings.warn(
            f"column(s) {bad} have a mean over {LARGE_MEAN:g} times their standard deviation: out-of-core fits "
            "accumulate raw cross-products, which loses digits; centre them in the data (subtract a constant) "
            "for full accuracy", JaxhlmWarning, stacklevel=4)


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
        warnings.warn(
            f"fixed-effect model matrix is rank deficient so dropping {len(dropped)} column(s) / coefficient(s): {dropped}",
            _design.RankDeficiencyWarning,
            stacklevel=3,
        )
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
