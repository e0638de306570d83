"""emmeans' reference grid of a fit and the linear functions of its marginal means.

The reference grid (Lenth's emmeans, ``ref_grid``) has one row per combination of

* every level of each categorical predictor of the fixed effects (a non-numeric data column,
  or a numeric one used as a factor, e.g. ``C(x)``), and
* each numeric predictor at its mean over the rows of the fit (or at the values given in
  ``at``; ``at`` may also restrict a factor to some levels),

the first predictor varying fastest. Its model matrix ``X_g`` (from the fixed side's encoding kept
at fit time: same coding, same transformations) gives the predictions ``X_g beta``. The estimated
marginal means of ``specs`` (within each ``by`` group) average the grid rows over the other
predictors with equal weights: ``L = A X_g`` with ``A`` the averaging matrix. A row of ``L``
that is not a combination of the rows of the full model matrix (aliased columns dropped at fit
time, empty cells) is not estimable and gives NaN, as emmeans' ``nonEst``.
"""
from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pandas as pd

from ..base.errors import ArgumentError, ColumnNotFoundError, InferenceError
from ..design.rvalues import r_label
from .fixed_terms import fixed_structure

__all__ = ["RefGrid", "ref_grid", "emm_linfct", "estimable", "r_level"]


def r_level(v) -> str:
    """A level as R writes it (``0.2``, ``0``, ``1e-04``; strings unchanged)."""
    if isinstance(v, (bool, np.bool_)):
        return "TRUE" if v else "FALSE"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if not np.isfinite(v):
            return "NaN" if np.isnan(v) else ("Inf" if v > 0 else "-Inf")
        # R's as.character: 15 significant digits, fixed notation unless scientific is shorter
        sig = f"{v:.15g}"
        mant, _, exp = f"{v:.14e}".partition("e")
        mant = mant.rstrip("0").rstrip(".")
        e = int(exp)
        sci = f"{mant}e{'-' if e < 0 else '+'}{abs(e):02d}"
        fixed = f"{float(sig):.{max(0, 15 - 1 - int(np.floor(np.log10(abs(v)))))}f}" if v else "0"
        if "." in fixed:
            fixed = fixed.rstrip("0").rstrip(".")
        return fixed if len(fixed) <= len(sci) else sci
    return str(v)


@dataclasses.dataclass
class RefGrid:
    """The reference grid: predictor names, their values, the grid table and its model matrix."""

    variables: list  # predictor names in formula order
    factor: dict  # name -> True if categorical
    values: dict  # name -> list of values in the grid
    table: pd.DataFrame  # one row per grid point (data dtypes)
    X: np.ndarray  # model matrix of the grid (kept columns)
    codes: dict  # name -> index into values[name] of every grid row
    null_basis: np.ndarray  # basis of the null space of the full model matrix (full columns)
    keep: np.ndarray  # kept columns of the full model matrix
    X_full: np.ndarray  # full-column model matrix of the grid


def _variables(model, frame) -> tuple:
    """Predictors (data columns) of the fixed effects in order of appearance, whether each is
    categorical, and the levels of the categorical ones present in ``frame`` (data values)."""
    fs = fixed_structure(model)
    cols = set(frame.columns)
    used: list = []
    for t in fs.terms:
        for f in t.factors:
            for v in fs.columns.get(f, ()):
                if v in cols and v not in used:
                    used.append(v)
    factor, levels = {}, {}
    for v in used:
        col = frame[v]
        cat_vars = [f for t in fs.terms for f in t.factors if not fs.numeric[f] and v in fs.columns.get(f, ())]
        is_num = pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col)
        factor[v] = (not is_num) or bool(cat_vars)
        if factor[v]:
            present = list(col.dropna().unique())
            by_label = {}
            for x in present:
                by_label.setdefault(r_label(x) if not isinstance(x, str) else x, x)
            lev = None
            for f in cat_vars:  # the fit's level order of a variable reading this column alone
                if list(fs.columns.get(f, ())) == [v]:
                    lev = [by_label[lb] for lb in fs.levels[f] if lb in by_label]
                    break
            if lev is None:
                lev = list(col.cat.categories) if isinstance(col.dtype, pd.CategoricalDtype) else sorted(present)
                lev = [x for x in lev if x in set(present)]
            levels[v] = lev
    return used, factor, levels


def _column_like(frame_col: pd.Series, values) -> object:
    if isinstance(frame_col.dtype, pd.CategoricalDtype):
        return pd.Categorical(values, categories=frame_col.cat.categories)
    return pd.Series(list(values), dtype=frame_col.dtype).to_numpy() if frame_col.dtype == object else \
        pd.array(list(values), dtype=frame_col.dtype)


def ref_grid(model, frame: pd.DataFrame, at: dict | None = None) -> RefGrid:
    """The reference grid of ``model`` over the data rows ``frame`` (see the module docstring)."""
    variables, factor, levels = _variables(model, frame)
    at = dict(at or {})
    for k in at:
        if k not in variables:
            raise ColumnNotFoundError(k, variables, "at= of emmeans (predictors of the fixed effects)")
    values = {}
    for v in variables:
        if factor[v]:
            if v in at:
                want = list(np.atleast_1d(at[v]))
                lab = {r_level(x): x for x in levels[v]}
                sel = []
                for w in want:
                    if w in levels[v]:
                        sel.append(w)
                    elif r_level(w) in lab:
                        sel.append(lab[r_level(w)])
                    else:
                        raise ArgumentError(f"at[{v!r}] = {w!r} is not a level of {v!r} ({[r_level(x) for x in levels[v]]})")
                values[v] = sel
            else:
                values[v] = levels[v]
        else:
            vals = np.atleast_1d(np.asarray(at[v], dtype=np.float64)) if v in at else np.array([float(frame[v].mean())])
            values[v] = list(vals)
    combos = list(itertools.product(*[range(len(values[v])) for v in reversed(variables)]))
    table = pd.DataFrame(index=range(len(combos)))
    codes = {}
    for j, v in enumerate(reversed(variables)):
        idx = [c[j] for c in combos]
        codes[v] = np.asarray(idx, dtype=np.int64)
        vals = [values[v][i] for i in idx]
        table[v] = _column_like(frame[v], vals) if factor[v] else np.asarray(vals, dtype=np.float64)
    table = table[variables] if variables else table
    d = model.design
    if len(table) == 0:
        raise InferenceError("the reference grid is empty")
    try:
        X_full = np.asarray(d.fixed_spec.get_model_matrix(table, na_action="ignore"), dtype=np.float64)
    except Exception as exc:
        raise InferenceError(f"cannot build the model matrix of the reference grid: {exc}") from None
    if not variables:  # intercept-only fixed part
        X_full = np.ones((1, 1))
    keep = np.asarray(d.fixed_keep, bool)
    Xf_data = np.asarray(d.fixed_spec.get_model_matrix(frame, na_action="ignore"), dtype=np.float64) \
        if d.dropped_fixef else None
    if Xf_data is not None:
        _, s, Vt = np.linalg.svd(Xf_data, full_matrices=True)
        rank = int(np.sum(s > max(Xf_data.shape) * np.finfo(float).eps * s[0]))
        null = Vt[rank:].T
    else:
        null = np.zeros((X_full.shape[1], 0))
    return RefGrid(variables=variables, factor=factor, values=values, table=table, X=X_full[:, keep],
                   codes=codes, null_basis=null, keep=keep, X_full=X_full)


def emm_linfct(grid: RefGrid, specs: list, by: list) -> tuple:
    """``(table, L, L_full)``: one row per combination of the ``specs`` and ``by`` values (first
    spec fastest, ``by`` slowest), ``L`` the average of the grid rows over the other predictors."""
    for v in list(specs) + list(by):
        if v not in grid.variables:
            raise ColumnNotFoundError(v, grid.variables, "emmeans specs (predictors of the fixed effects)")
    keys = list(specs) + [b for b in by if b not in specs]
    if not keys:
        raise ArgumentError("emmeans needs at least one predictor in specs")
    sizes = [len(grid.values[v]) for v in keys]
    idx = grid.codes
    out_rows = list(itertools.product(*[range(s) for s in reversed(sizes)]))
    rows, L, Lf = [], [], []
    for combo in out_rows:
        combo = combo[::-1]  # first key fastest
        mask = np.ones(len(grid.table), bool)
        for v, i in zip(keys, combo):
            mask &= idx[v] == i
        rows.append([grid.values[v][i] for v, i in zip(keys, combo)])
        L.append(grid.X[mask].mean(axis=0))
        Lf.append(grid.X_full[mask].mean(axis=0))
    table = pd.DataFrame(rows, columns=keys)
    return table, np.array(L), np.array(Lf)


def estimable(grid: RefGrid, L_full: np.ndarray, tol: float = 1e-8) -> np.ndarray:
    """Rows of ``L_full`` orthogonal to the null space of the full model matrix."""
    N = grid.null_basis
    if N.shape[1] == 0:
        return np.ones(L_full.shape[0], bool)
    num = np.sum((L_full @ N) ** 2, axis=1)
    den = np.sum(L_full**2, axis=1)
    return num <= tol * np.maximum(den, np.finfo(float).tiny)
