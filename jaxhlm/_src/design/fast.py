"""A fast path from formula to model matrices for the commonest formulas.

Most mixed models in practice use plain numeric columns: ``y ~ x1 + x2 + (1 + x1 | g)``. For
those, evaluating the formula in general (:mod:`~jaxhlm._src.design.general`) costs more than
needed; this module recognises such formulas and builds the same
:class:`~jaxhlm._src.design.Design` directly from the columns' NumPy arrays.

Eligible: a response and predictors that are each a bare column name (letters, digits, ``_``)
of a real numeric dtype (not bool, not pandas' nullable dtypes), an intercept given or removed
with ``1``, ``0`` or ``- 1``, and grouping factors that are columns. Anything else (categorical
predictors, interactions, transforms, ``I()``, ``C()``, ...) returns ``None`` and the caller uses
the general path. The result is identical to the general path's: same column names and order
(intercept first, then terms in formula order), same rows dropped for missing values. The specs
that :func:`~jaxhlm._src.infer.predict.predict` needs are built lazily from the formula (for
numeric columns a spec holds no data-dependent state).
"""
from __future__ import annotations

import re

import numpy as np
import pandas as pd

__all__ = ["parse_simple_rhs", "fast_columns"]

_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]*\Z")  # R-syntactic names only (R backticks `_x`)
_TOKEN = re.compile(r"\s*([+-]?)\s*([^+\-\s]+)\s*")
# names that formulaic treats as functions or constants when they stand alone
_RESERVED = {"C", "I", "Q", "np", "center", "scale", "poly", "bs", "lag", "log", "exp", "True", "False", "None"}


def parse_simple_rhs(rhs: str):
    """``(intercept, [names])`` for a right-hand side made of bare names, ``1``, ``0``, ``- 1``;
    ``None`` for anything else."""
    text = rhs.strip()
    if not text:
        return None
    pos = 0
    toks = []
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            return None
        toks.append((m.group(1) or "+", m.group(2)))
        pos = m.end()
    intercept = True
    names: list = []
    seen_int = set()
    for i, (sign, tok) in enumerate(toks):
        if tok in ("0", "1"):
            if tok in seen_int:
                return None
            seen_int.add(tok)
            if sign == "-" and tok == "1":
                intercept = False
            elif sign == "+" and tok == "0":
                intercept = False
            elif sign == "+" and tok == "1":
                pass
            else:
                return None
            continue
        if sign != "+" or not _NAME.match(tok) or tok in _RESERVED or tok in names:
            return None
        names.append(tok)
    if seen_int == {"0", "1"}:
        return None
    return intercept, names


def _plain_numeric(dt) -> bool:
    return isinstance(dt, np.dtype) and dt.kind in "fiu"


def _shared(X_full, names_full, intercept, names):
    """A random term's columns as a view of the fixed-effects matrix when they are a run of its
    columns (``(x | g)`` with ``y ~ x``: the common case), so they are stored once."""
    zn = (["(Intercept)"] if intercept else []) + list(names)
    if not zn or zn[0] not in names_full:
        return None
    j = names_full.index(zn[0])
    if names_full[j:j + len(zn)] != zn:
        return None
    return X_full[:, j:j + len(zn)], zn


def fast_columns(parsed, data: pd.DataFrame):
    """The pieces of a design built straight from NumPy columns, or ``None`` if not eligible.

    Returns
    -------
    dict with ``complete`` (bool mask of rows kept or None when all are), ``y``, ``X_full``,
    ``names_full``, per random term ``(Z, names)``, the list of columns used and ``series``
    (each used column of ``data``, fetched once).
    """
    if not isinstance(data, pd.DataFrame) or not data.columns.is_unique:
        return None
    cols = data.columns
    ycol = parsed.response
    if not isinstance(ycol, str) or not _NAME.match(ycol) or ycol not in cols:
        return None
    fixed = parse_simple_rhs(parsed.fixed)
    if fixed is None:
        return None
    terms = []
    for t in parsed.random:
        r = parse_simple_rhs(t.expr)
        if r is None or not (r[0] or r[1]):
            return None
        terms.append(r)
        for g in t.group:
            if g not in cols:
                return None
    numeric = set(fixed[1]) | {n for _, ns in terms for n in ns}
    if any(c not in cols for c in numeric):
        return None
    gcols = {g for t in parsed.random for g in t.group}
    series = {c: data[c] for c in {ycol} | numeric | gcols}  # each used column fetched once
    if not all(_plain_numeric(series[c].dtype) for c in {ycol} | numeric):
        return None
    arrays = {c: series[c].to_numpy() for c in {ycol} | numeric}
    # rows with a missing value in any used column (numeric NaN, or NA in a grouping column)
    bad = None
    for c, a in arrays.items():
        if a.dtype.kind == "f":  # (integer columns are always finite)
            if np.isinf(a).any():
                return None  # the general path names the column in its error (or drops the row)
            m = np.isnan(a)
            bad = m if bad is None else (bad | m)
    for g in gcols:
        if isinstance(series[g].dtype, np.dtype) and series[g].dtype.kind in "iub":
            continue  # NumPy integers and booleans cannot be missing
        m = series[g].isna().to_numpy()
        if m.any():
            bad = m if bad is None else (bad | m)
    complete = None if bad is None or not bad.any() else ~bad

    def take(a):
        a = a if complete is None else a[complete]
        return a.astype(np.float64, copy=False)

    def matrix(intercept, names, n):
        X = np.empty((n, int(intercept) + len(names)), order="F")
        j = 0
        if intercept:
            X[:, 0] = 1.0
            j = 1
        for nm in names:
            X[:, j] = take(arrays[nm])
            j += 1
        return X, (["(Intercept)"] if intercept else []) + list(names)

    y = np.array(take(arrays[ycol]), dtype=np.float64)
    n = len(y)
    X_full, names_full = matrix(fixed[0], fixed[1], n)
    zs = [_shared(X_full, names_full, i, nm) or matrix(i, nm, n) for i, nm in terms]
    return {"complete": complete, "y": y, "X_full": X_full, "names_full": names_full, "Z": zs,
            "columns": [ycol] + sorted(numeric) + sorted(gcols), "series": series}
