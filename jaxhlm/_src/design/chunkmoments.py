"""The two passes over out-of-core chunks, and pseudo-rows from second moments per cell.

Functions mapped over every chunk and their reductions (see :mod:`jaxhlm._src.design.outofcore`
for the method): pass 1 (:func:`_pass1`, :func:`_combine1`) collects the distinct values of the
grouping columns and text predictors, row counts and the response's range; pass 2
(:func:`_pass2`, :func:`_combine2`) sums ``M_c = sum_rows v v'`` with ``v = [z, x, y]`` per cell
(combination of levels of all grouping factors), packed as upper triangles.
:func:`pseudo_rows` turns the ``M_c`` into rows ``R_c`` with ``R_c' R_c = M_c``.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..base.lazy import formulaic
from . import build as _design
from ..base.errors import DataError

__all__ = ["pseudo_rows"]


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
